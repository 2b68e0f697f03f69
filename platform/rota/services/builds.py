"""From a request to what an endpoint stores.

A template or a custom model is resolved against the catalog into the arguments of Rota's
vLLM application; a custom application is taken as it is. Either is checked against the
security policy for the caller, then built as Ray Serve will build it, which validates its
arguments and finds its ingress deployment, how many requests a replica takes, and under
which argument it takes its own token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rota.catalog import TINY, Catalog, actor_options, resolve, serve_args
from rota.config import Settings
from rota.domain.endpoints import EndpointCreate, EndpointKind, Resources, Scaling
from rota.domain.errors import InvalidInput
from rota.domain.policy import Policy
from rota.serve.apps import AppInfo, inspect_app
from rota.services.auth import Principal

LLM_SCRIPT = "serve"  # Rota's vLLM application: the policy checks its arguments


@dataclass(frozen=True)
class Build:
    kind: EndpointKind
    file_path: str
    deployment_name: str
    app: AppInfo
    args: dict[str, Any]
    resources: dict[str, Any]
    engine: dict[str, Any]
    scaling: dict[str, Any] | None
    template: str | None = None
    flavor: str | None = None
    gpu_type: str | None = None
    gpu_count: int = 0
    model: str | None = None
    revision: str | None = None


@dataclass
class Builder:
    settings: Settings
    catalog: Catalog
    policy: Policy
    inspector: Callable[..., AppInfo] = inspect_app
    make_tiny: Callable[[Path], Any] | None = None  # generates the rota:tiny model (rota.models.tiny)

    def endpoint(self, who: Principal, data: EndpointCreate, routing_key: str) -> Build:
        self.policy.check_env(data.env, who.admin)
        if data.kind is EndpointKind.APPLICATION:
            assert data.file_path and data.deployment_name
            return self.application(
                who,
                data.file_path,
                data.deployment_name,
                data.args or {},
                data.resources,
                routing_key,
                data.scaling or Scaling(min_replicas=1, max_replicas=1),
            )
        if data.model_path:
            self.policy.check_model_dir(data.model_path, who.admin, "model_path")
        r = resolve(
            self.catalog,
            template=data.template,
            flavor=data.flavor,
            gpu_type=data.gpu_type,
            gpu_count=data.gpu_count,
            hf_model_repo=data.hf_model_repo,
            revision=data.revision,
            model_path=data.model_path,
            scaling=data.scaling,
            engine=data.engine,
            max_replicas_limit=self.settings.max_replicas,
        )
        local = r.model == TINY or r.model.startswith("/")
        args = serve_args(r, self._model_dir(r.model), local, routing_key)
        app = self.inspector(self.settings.serve_apps_dirs, r.file_path, r.deployment_name, args)
        return Build(
            data.kind,
            r.file_path,
            r.deployment_name,
            app,
            args,
            actor_options(r),
            r.engine.model_dump(exclude_none=True),
            r.scaling.model_dump(exclude_none=True),
            r.template,
            r.flavor,
            r.gpu_type,
            r.gpu_count,
            r.model,
            r.revision,
        )

    def application(
        self,
        who: Principal,
        file_path: str,
        deployment_name: str,
        args: dict[str, Any],
        resources: Resources | None,
        routing_key: str,
        scaling: Scaling | None,
    ) -> Build:
        """A custom application: a script in serve_apps/ with its args and resources;
        ``scaling`` None sizes it by its task's schedule only."""
        args = dict(args)
        if scaling is not None:
            self.check_replicas(scaling.bounds[1], "scaling.max_replicas" if scaling.replicas is None else "scaling.replicas")
        if file_path == LLM_SCRIPT:
            self.policy.check_llm_args(args, who.admin)
            args = llm_defaults(file_path, args, routing_key)
        app = self.inspector(self.settings.serve_apps_dirs, file_path, deployment_name, args)
        actor = (resources or Resources()).model_dump(exclude_none=True)
        return Build(
            EndpointKind.APPLICATION,
            file_path,
            deployment_name,
            app,
            args,
            actor,
            {},
            scaling.model_dump(exclude_none=True) if scaling else None,
        )

    def check_replicas(self, n: int, field: str) -> None:
        if n > self.settings.max_replicas:
            raise InvalidInput(f"max_replicas ({n}) exceeds this platform's limit of {self.settings.max_replicas}", field=field)

    def _model_dir(self, model: str) -> str:
        if model != TINY:
            return model
        path = self.settings.home / "models" / "tiny"
        if not (path / "config.json").exists():
            if self.make_tiny is None:
                raise InvalidInput("this control plane cannot generate the rota:tiny model", field="template")
            self.make_tiny(path)
        return str(path)


def llm_defaults(file_path: str | None, args: dict[str, Any], routing_key: str) -> dict[str, Any]:
    """The arguments Rota fills in for its vLLM application, so that the same request sent
    again (a re-applied manifest) compares equal to what was stored."""
    if file_path != LLM_SCRIPT:
        return args
    out = {"served_model_name": routing_key, **args}  # clients send the routing key as `model`
    if isinstance(out.get("model"), str) and out.get("model_source", "auto") == "auto":
        out["model_source"] = "local" if out["model"].startswith("/") else "hub"  # said, never guessed
    return out
