"""Validate an application against the scripts in ``serve_apps/``.

The script is executed in the control plane to find the Ray Serve application, its
ingress deployment (whose replica bounds Rota sets) and how many requests a replica
takes at once. Applications must therefore keep heavy imports (vLLM, torch) inside
their replicas: building the application graph must be cheap. This is the same
contract ``serve build`` relies on.

A script that wants its endpoint's own token (so that every route can require it)
says under which argument: ``ROTA_TOKEN_ARG = "api_key"``. Rota's own ``gateway``
script and scripts whose names start with ``_`` cannot be deployed by users.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rota.domain.errors import InvalidInput

_LOCK = threading.Lock()  # sys.path is process-global
RESERVED_SCRIPTS = frozenset({"gateway"})
MAX_PER_REPLICA = 100_000


@dataclass(frozen=True)
class AppInfo:
    ingress: str  # name of the ingress deployment
    per_replica: int  # its max_ongoing_requests
    token_arg: str | None  # the argument it takes its endpoint's token as


def find_script(dirs: list[Path], file_path: str) -> Path:
    if file_path in RESERVED_SCRIPTS or file_path.startswith("_"):
        raise InvalidInput(f"{file_path} is Rota's own application, not one to deploy", field="file_path")
    for d in dirs:
        candidate = d / f"{file_path}.py"
        if candidate.is_file():
            return candidate
    found = {p.stem for d in dirs if d.is_dir() for p in d.glob("*.py")}
    available = sorted(n for n in found if not n.startswith("_") and n not in RESERVED_SCRIPTS)
    raise InvalidInput(f"no script {file_path}.py in serve_apps; available: {', '.join(available) or 'none'}", field="file_path")


_CACHE: dict[tuple[Any, ...], AppInfo] = {}
_CACHE_SIZE = 256


def inspect_app(dirs: list[Path], file_path: str, deployment_name: str, args: dict[str, Any]) -> AppInfo:
    """Load the script, build its application with ``args`` and describe its ingress.

    Remembered per (script, its size and mtime, attribute, a digest of args): building
    runs the script, and creating many tasks of one application should not run it each
    time. Only the digest is kept, not the args. Failures are not remembered."""
    script = find_script(dirs, file_path)
    st = script.stat()
    digest = hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()
    key = (str(script), st.st_mtime_ns, st.st_size, deployment_name, digest)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    info = _inspect(script, file_path, deployment_name, args)
    with _LOCK:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = info
    return info


def _inspect(script: Path, file_path: str, deployment_name: str, args: dict[str, Any]) -> AppInfo:
    name = f"_rota_app_{uuid.uuid4().hex}"
    with _LOCK:
        sys.path.insert(0, str(script.parent))
        # Registered while inspected: pydantic resolves postponed annotations through
        # sys.modules (scripts with `from __future__ import annotations`).
        spec = importlib.util.spec_from_file_location(name, script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            try:
                spec.loader.exec_module(module)
            except Exception as e:  # the script itself is broken
                raise InvalidInput(f"{script.name} failed to import: {type(e).__name__}: {e}", field="file_path") from None
            app = _build(module, script, file_path, deployment_name, args)
        finally:
            sys.path.remove(str(script.parent))
            sys.modules.pop(name, None)
    deployment = app._bound_deployment
    token_arg = getattr(module, "ROTA_TOKEN_ARG", None)
    per_replica = min(max(int(deployment.max_ongoing_requests), 1), MAX_PER_REPLICA)  # it sizes the gateway's admission
    return AppInfo(deployment.name, per_replica, token_arg if isinstance(token_arg, str) else None)


def _build(module: Any, script: Path, file_path: str, deployment_name: str, args: dict[str, Any]) -> Any:
    from ray.serve import Application
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    if not hasattr(module, deployment_name):
        names = sorted(
            n for n, v in vars(module).items() if not n.startswith("_") and (isinstance(v, Application) or callable(v))
        )
        raise InvalidInput(
            f"{script.name} defines no {deployment_name!r}; candidates: {', '.join(names) or 'none'}", field="deployment_name"
        )
    target = getattr(module, deployment_name)
    try:
        app = call_user_app_builder_with_args_if_necessary(target, dict(args))
    except TypeError as e:
        raise InvalidInput(
            f"{file_path}:{deployment_name} is not a Serve application or builder: {e}", field="deployment_name"
        ) from None
    except Exception as e:
        raise InvalidInput(f"{file_path}:{deployment_name} rejected its args: {_short(e)}", field=_field(e)) from None
    if not isinstance(app, Application):
        raise InvalidInput(f"{file_path}:{deployment_name} did not build a Serve application", field="deployment_name")
    return app


def _field(e: Exception) -> str:
    """``args.<the first field a pydantic error names>``, else ``args``."""
    from pydantic import ValidationError

    loc = e.errors()[0]["loc"] if isinstance(e, ValidationError) and e.errors() else ()
    return ".".join(("args", *(str(p) for p in loc)))


def _short(e: Exception) -> str:
    """A pydantic error as "field: message" lines; anything else as type: message."""
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(args)'}: {err['msg']}" for err in e.errors())
    return f"{type(e).__name__}: {e}"
