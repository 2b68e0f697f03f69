"""What every benchmark shares: percentiles, the printed table, the JSON it writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
