"""What every benchmark shares: percentiles, the printed table, the JSON it writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def pct(values: list[float], q: float) -> float:
    """The q-quantile, linearly interpolated (NaN for no values)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def table(rows: list[list[str]]) -> str:
    """Rows as aligned columns: the first left-aligned, numbers right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False))) for r in rows
    )


def write_result(path: str | Path, result: dict[str, Any]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    return out


def embedded_env(home: Path, test_apps: bool = False, **extra: str) -> dict[str, str]:
    """``rota server`` on its own embedded Ray head, every port free and every path under
    ``home``; ``test_apps``: with the engine-less echo application and its templates."""
    from support.procs import TEST_APPS, free_port

    env = {
        "ROTA_RAY_ADDRESS": "",
        "ROTA_SERVE_PORT": str(free_port()),
        "ROTA_RAY_DASHBOARD_PORT": str(free_port()),
        "ROTA_RAY_GCS_PORT": str(free_port()),
        "ROTA_RAY_CLIENT_SERVER_PORT": str(free_port()),
        "ROTA_RAY_DASHBOARD_AGENT_PORT": str(free_port()),
        "ROTA_RAY_TEMP_DIR": str(home / "ray"),
        "ROTA_LOG_LEVEL": "WARNING",
    }
    if test_apps:
        env["ROTA_SERVE_APPS_PATH"] = os.pathsep.join([str(REPO / "serve_apps"), str(TEST_APPS)])
        env["ROTA_TEMPLATES_PATH"] = str(TEST_APPS / "templates.yaml")
    return {**env, **extra}
