"""The security policy: what a key may make a replica do.

Ray has no isolation between the processes of one cluster: code running in a replica
can reach all of it (its control store, its other actors and their arguments). So an
ordinary (non-admin) key can never make a replica run code of its choosing or read the
host: options that load code (``trust_remote_code``, code-loading engine flags),
path-valued options, and library-loading environment variables are refused with a 403
naming the field. Admin keys may use them; the operator can allow more with
``ROTA_ALLOWED_ENV`` and ``ROTA_ALLOWED_ENGINE_ARGS``. Names Rota uses itself
(``ROTA_*``) are refused for everyone. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rota.domain.errors import Forbidden, InvalidInput
from rota.domain.values import check_directory, check_hub_id

# Environment variables an ordinary key may set: credentials and tuning, nothing that
# loads a library, changes an interpreter's path or turns on a server's debug routes.
ENV_ALLOWED = frozenset(
    "HF_TOKEN HUGGING_FACE_HUB_TOKEN HF_HUB_ENABLE_HF_TRANSFER HF_HUB_DISABLE_PROGRESS_BARS HF_HUB_DOWNLOAD_TIMEOUT "
    "HF_HUB_ETAG_TIMEOUT VLLM_LOGGING_LEVEL VLLM_CPU_KVCACHE_SPACE VLLM_CPU_OMP_THREADS_BIND OMP_NUM_THREADS "
    "TOKENIZERS_PARALLELISM NCCL_DEBUG TZ".split()
)
RESERVED_ENV_PREFIX = "ROTA_"

# vLLM engine flags (serve:app's engine_args) an ordinary key may set: none loads code,
# reads a path, or enables a development route.
ENGINE_ARGS_ALLOWED = frozenset(
    "kv_cache_dtype block_size seed cpu_offload_gb max_logprobs disable_log_stats enable_chunked_prefill "
    "long_prefill_token_threshold quantization tokenizer_mode disable_sliding_window disable_cascade_attn "
    "enable_auto_tool_choice tool_call_parser reasoning_parser override_generation_config scheduling_policy "
    "limit_mm_per_prompt num_gpu_blocks_override disable_custom_all_reduce async_scheduling".split()
)
# serve:app arguments Rota itself sets (an endpoint's token, where it reports its phase).
SET_BY_ROTA = frozenset({"api_key", "report_url"})


def _matches(name: str, allowed: frozenset[str]) -> bool:
    return name in allowed or any(a.endswith("*") and name.startswith(a[:-1]) for a in allowed)


@dataclass(frozen=True)
class Policy:
    model_roots: tuple[str, ...] = ()
    extra_env: frozenset[str] = frozenset()  # names, or PREFIX_* patterns
    extra_engine_args: frozenset[str] = frozenset()

    def check_env(self, env: Mapping[str, Any], admin: bool, field: str = "env") -> None:
        for name in env:
            where = f"{field}.{name}"
            if name.startswith(RESERVED_ENV_PREFIX):
                raise InvalidInput(f"{name} is reserved: Rota sets ROTA_* variables itself", field=where)
            if not admin and not _matches(name, ENV_ALLOWED | self.extra_env):
                raise Forbidden(
                    f"{name} may only be set with an admin key or allowed by the operator (ROTA_ALLOWED_ENV); "
                    f"allowed: {', '.join(sorted(ENV_ALLOWED | self.extra_env))}",
                    field=where,
                )

    def check_model_dir(self, path: str, admin: bool, field: str) -> None:
        try:
            check_directory(path)
        except ValueError as e:
            raise InvalidInput(str(e), field=field) from None
        if admin:
            return
        if not any(path == root or path.startswith(root.rstrip("/") + "/") for root in self.model_roots):
            roots = ", ".join(self.model_roots) or "none configured"
            raise Forbidden(f"{path} is not under a model root (ROTA_MODEL_ROOTS: {roots})", field=field)

    def check_llm_args(self, args: Mapping[str, Any], admin: bool, field: str = "args") -> None:
        """The arguments of Rota's vLLM application (serve:app) as a custom application."""
        for name in SET_BY_ROTA & args.keys():
            raise InvalidInput(f"{name} is set by Rota", field=f"{field}.{name}")
        model = args.get("model")
        if isinstance(model, str):
            source = args.get("model_source", "auto")
            if source == "local" or (source == "auto" and model.startswith(("/", ".", "~"))):
                self.check_model_dir(model, admin, f"{field}.model")
            else:
                try:
                    check_hub_id(model)
                except ValueError as e:
                    raise InvalidInput(str(e), field=f"{field}.model") from None
        if admin:
            return
        if args.get("trust_remote_code"):
            raise Forbidden(
                "trust_remote_code runs the model repository's code: admin keys only", field=f"{field}.trust_remote_code"
            )
        extra = args.get("engine_args") or {}
        if not isinstance(extra, Mapping):
            return  # the application's own validation names it
        allowed = ENGINE_ARGS_ALLOWED | self.extra_engine_args
        for flag in extra:
            if not _matches(str(flag), allowed):
                raise Forbidden(
                    f"engine flag {flag!r} may only be set with an admin key or allowed by the operator "
                    "(ROTA_ALLOWED_ENGINE_ARGS)",
                    field=f"{field}.engine_args.{flag}",
                )
