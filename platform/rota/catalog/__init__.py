"""The template catalog (``templates.yaml``) and how a create request resolves against it.

``resolve`` is pure: it turns a template (or a custom model) plus the request's
flavor, GPU choice, scaling and engine settings into everything an endpoint stores.
Unsupported combinations are ``InvalidInput`` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from rota.domain.endpoints import Engine, Scaling
from rota.domain.errors import InvalidInput, from_validation
from rota.domain.names import IDENT_PATTERN, Strict

DEFAULT_PATH = Path(__file__).with_name("templates.yaml")
TINY = "rota:tiny"  # generated on first use by each node that serves it (serve_apps/_tiny_model.py)
CPU = "cpu"
# What a custom model (no template) may ask for.
CUSTOM_GPU_TYPES = (CPU, "T4", "L4", "A10G", "L40S", "A100", "H100", "H200")
CUSTOM_GPU_COUNTS = (0, 1, 2, 4, 8)
CUSTOM_APP = "serve:app"


class TemplateDefaults(Strict):
    flavor: str
    gpu_type: str
    gpu_count: int = Field(ge=0)
    scaling: Scaling
    engine: Engine = Field(default_factory=Engine)


class Template(Strict):
    name: str = Field(pattern=r"^[a-z0-9][-.a-z0-9]{0,62}$")
    description: str = ""
    app: str = Field(pattern=IDENT_PATTERN.rstrip("$") + ":" + IDENT_PATTERN.lstrip("^"))
    model: str
    gpu_types: list[str] = Field(min_length=1)
    gpu_counts: list[int] = Field(min_length=1)
    resources: dict[str, Any] = Field(default_factory=dict)
    args: dict[str, Any] = Field(default_factory=dict)
    flavors: dict[str, dict[str, Any]] = Field(min_length=1)
    defaults: TemplateDefaults
    cold_start_s: float | None = Field(None, ge=0, description="estimated start-to-serving time until one is measured")

    @model_validator(mode="after")
    def _defaults_supported(self) -> Template:
        d = self.defaults
        if d.flavor not in self.flavors:
            raise ValueError(f"defaults.flavor {d.flavor!r} is not one of its flavors")
        if d.gpu_type not in self.gpu_types or d.gpu_count not in self.gpu_counts:
            raise ValueError("defaults.gpu_type/gpu_count must be among gpu_types/gpu_counts")
        return self


class Catalog(Strict):
    templates: list[Template]

    def get(self, name: str) -> Template:
        for t in self.templates:
            if t.name == name:
                return t
        raise InvalidInput(f"no template {name!r}; available: {', '.join(t.name for t in self.templates)}", field="template")


def load_catalog(path: Path | None = None) -> Catalog:
    path = path or DEFAULT_PATH
    try:
        return Catalog.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as e:
        raise ValueError(f"template catalog {path}: {e}") from None


@dataclass(frozen=True)
class Resolved:
    """Everything an endpoint stores, resolved from its template (or custom model)."""

    template: str | None
    flavor: str | None
    gpu_type: str
    gpu_count: int
    model: str
    revision: str | None
    file_path: str
    deployment_name: str
    base_args: dict[str, Any]  # template args + flavor settings
    resources: dict[str, Any]
    scaling: Scaling
    engine: Engine


def resolve(
    catalog: Catalog,
    *,
    template: str | None,
    flavor: str | None,
    gpu_type: str | None,
    gpu_count: int | None,
    hf_model_repo: str | None,
    revision: str | None,
    model_path: str | None,
    scaling: Scaling | None,
    engine: Engine | None,
    max_replicas_limit: int,
) -> Resolved:
    if template:
        t = catalog.get(template)
        flavor = flavor or t.defaults.flavor
        if flavor not in t.flavors:
            raise InvalidInput(f"template {t.name} has no flavor {flavor!r}; it has: {', '.join(t.flavors)}", field="flavor")
        gpu_type = gpu_type or t.defaults.gpu_type
        if gpu_type not in t.gpu_types:
            raise InvalidInput(f"template {t.name} runs on {', '.join(t.gpu_types)}, not {gpu_type!r}", field="gpu_type")
        gpu_count = t.defaults.gpu_count if gpu_count is None else gpu_count
        if gpu_count not in t.gpu_counts:
            raise InvalidInput(
                f"template {t.name} supports {', '.join(map(str, t.gpu_counts))} GPU(s) per replica, not {gpu_count}",
                field="gpu_count",
            )
        model, app, resources = t.model, t.app, dict(t.resources)
        base_args = {**t.args, **t.flavors[flavor]}
        scaling = scaling or t.defaults.scaling
        try:  # the request's settings over the template's: the two together must still hold
            engine = Engine.model_validate(
                {**t.defaults.engine.model_dump(exclude_none=True), **(engine or Engine()).model_dump(exclude_none=True)}
            )
        except ValidationError as e:
            err = from_validation(e.errors())
            raise InvalidInput(f"engine.{err.message}", field=f"engine.{err.field}" if err.field else "engine") from None
    else:
        gpu_type = gpu_type or CPU
        if gpu_type not in CUSTOM_GPU_TYPES:
            raise InvalidInput(f"gpu_type must be one of {', '.join(CUSTOM_GPU_TYPES)}", field="gpu_type")
        gpu_count = (0 if gpu_type == CPU else 1) if gpu_count is None else gpu_count
        if gpu_count not in CUSTOM_GPU_COUNTS:
            raise InvalidInput(f"gpu_count must be one of {', '.join(map(str, CUSTOM_GPU_COUNTS))}", field="gpu_count")
        model = hf_model_repo or model_path  # type: ignore[assignment]
        app, resources, base_args = CUSTOM_APP, {"num_cpus": 1}, {}
        if gpu_type == CPU:
            base_args = {"dtype": "float32"}
        scaling = scaling or Scaling(min_replicas=1, max_replicas=1)
        engine = engine or Engine()
        flavor = None
    if (gpu_type == CPU) != (gpu_count == 0):
        raise InvalidInput("gpu_count must be 0 with gpu_type 'cpu' and at least 1 with a GPU type", field="gpu_count")
    if scaling.bounds[1] > max_replicas_limit:
        raise InvalidInput(
            f"max_replicas ({scaling.bounds[1]}) exceeds this platform's limit of {max_replicas_limit}",
            field="scaling.max_replicas" if scaling.replicas is None else "scaling.replicas",
        )
    file_path, deployment_name = app.split(":", 1)
    return Resolved(
        template=template,
        flavor=flavor,
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        model=model,
        revision=revision if hf_model_repo else None,
        file_path=file_path,
        deployment_name=deployment_name,
        base_args=base_args,
        resources=resources,
        scaling=scaling,
        engine=engine,
    )


def serve_args(r: Resolved, source: str, routing_key: str) -> dict[str, Any]:
    """The application's ``args`` (serve_apps/serve.py ``LLMConfig``), without its token;
    ``source`` is ``model_source``: hub, local or generated."""
    e = r.engine
    args: dict[str, Any] = {**r.base_args, "model": r.model, "model_source": source, "served_model_name": routing_key}
    if r.revision:
        args["revision"] = r.revision
    mapped = {
        "max_num_seqs": e.max_batch_size,
        "max_input_length": e.max_input_length,
        "max_model_len": e.max_token_count,
        "skip_special_tokens": e.skip_special_tokens,
        "add_special_tokens": e.add_special_tokens,
    }
    args.update({k: v for k, v in mapped.items() if v is not None})
    if e.max_batch_size:
        args["max_ongoing_requests"] = e.max_batch_size
    if r.gpu_count > 1:
        args["tensor_parallel_size"] = r.gpu_count
    if r.gpu_type != CPU:
        args["accelerator_type"] = r.gpu_type
    return args


def actor_options(r: Resolved) -> dict[str, Any]:
    """Ray actor options of a replica: the template's resources plus its GPU."""
    opts = dict(r.resources)
    if r.gpu_count == 1:
        opts.update(num_gpus=1, accelerator_type=r.gpu_type)
    return opts
