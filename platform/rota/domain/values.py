"""Values users send that become paths, flags, environment variables or parts of the
config Rota PUTs to Ray: their shapes and sizes, checked before anything uses them."""

from __future__ import annotations

import json
import posixpath
import re
from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints

MAX_ARGS_BYTES = 64 * 1024
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
EnvValue = Annotated[str, StringConstraints(max_length=32 * 1024, pattern=r"^[^\x00]*$")]
MAX_ENV_BYTES = 64 * 1024


def check_env_size(v: dict[str, str]) -> dict[str, str]:
    """All of an application's variables together: they travel in every config Rota PUTs."""
    size = sum(len(k) + len(x.encode()) for k, x in v.items())
    if size > MAX_ENV_BYTES:
        raise ValueError(f"env is {size} bytes in all; at most {MAX_ENV_BYTES}")
    return v


EnvMap = Annotated[dict[EnvName, EnvValue], AfterValidator(check_env_size)]

_HUB_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")


def check_hub_id(v: str) -> str:
    """``org/name`` (or a legacy top-level ``name``) in the Hub's characters and lengths."""
    parts = v.split("/")
    if len(parts) > 2 or not all(_HUB_PART.match(p) for p in parts) or "--" in v or ".." in v:
        raise ValueError(f"{v[:100]!r} is not a Hugging Face repo id (org/name: letters, digits, '-', '_', '.')")
    return v


def check_directory(v: str) -> str:
    """An absolute, normalized path: no '..', no '.', no doubled or trailing '/'."""
    if not v.startswith("/") or posixpath.normpath(v) != v or "\x00" in v or "\n" in v:
        raise ValueError(f"{v[:100]!r} is not an absolute, normalized directory (e.g. /models/llama-3)")
    return v


def check_args_size(v: dict[str, Any]) -> dict[str, Any]:
    """Plain JSON (no NaN or infinities: Ray Serve's config could not carry them), at most 64 KiB."""
    try:
        size = len(json.dumps(v, allow_nan=False))
    except (ValueError, TypeError) as e:
        raise ValueError(f"args must be plain JSON values: {e}") from None
    if size > MAX_ARGS_BYTES:
        raise ValueError(f"args are {size} bytes; at most {MAX_ARGS_BYTES}")
    return v
