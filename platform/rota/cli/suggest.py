"""``rota endpoints suggest-schedule``: a daily schedule from the endpoint's traffic, printed
as a manifest for ``rota apply`` with what it and the current schedule cost."""

from __future__ import annotations

from typing import Any

import typer
import yaml

from rota.cli.client import api, ref_argument


def _line(name: str, o: dict[str, Any]) -> str:
    p = o["projection"]
    rh = f"{p['floor']['replica_hours']:.1f}..{p['ceiling']['replica_hours']:.1f}"
    cost = f"{p['floor']['cost']:.2f}..{p['ceiling']['cost']:.2f}"
    return f"#   {name:<44} {rh:>17} {cost:>15} {o['cold_start_waits']:>10}"


def header(s: dict[str, Any]) -> str:
    cs = s["cold_start"]
    basis = f"p50 {cs['p50_s']} s over {cs['count']} starts" if cs["count"] else f"estimated {cs['lead_s']} s with margin"
    unit = s["suggested"]["projection"]["unit"]
    return "\n".join(
        [
            f"# Suggested for endpoint {s['endpoint']} from {s['requests']} calls over {s['days'][0]}..{s['days'][-1]}"
            f" ({s['timezone']}),",
            f"# {s['period_minutes']}-minute periods, {s['headroom']:.0%} headroom,"
            f" {s['target_ongoing_requests']:g} ongoing requests per replica; cold start {basis}.",
            f"#   {'over the analysed days':<44} {'replica-hours':>17} {'cost (' + unit + ')':>15} {'cold waits':>10}",
            _line("suggested", s["suggested"]),
            _line(s["current"]["schedule"], s["current"]),
            "# Apply with `rota apply -f FILE`: the task is created idle; activate it to use it.",
        ]
    )


def suggest_schedule(
    ctx: typer.Context,
    endpoint: str = ref_argument("endpoints"),
    days: int = typer.Option(14, min=1, max=90, help="the last full local days to analyse"),
    timezone: str | None = typer.Option(None, help="IANA zone of the pattern (default: its task's, else UTC)"),
    period_minutes: int = typer.Option(60, help="length of a period of the day: 15, 30, 60, 120, 180 or 240"),
    headroom: float = typer.Option(0.2, min=0, help="extra capacity over the traffic (0.2: 20 %)"),
    ready_by: bool = typer.Option(True, "--ready-by/--no-ready-by", help="scale-ups start early by the cold start"),
) -> None:
    """Suggest a daily schedule from the endpoint's request log, as a manifest for `rota apply`."""
    params: dict[str, Any] = {"days": days, "period_minutes": period_minutes, "headroom": headroom, "ready_by": ready_by}
    if timezone:
        params["timezone"] = timezone
    s = api(ctx).call("GET", f"/endpoints/{endpoint}/suggested-schedule", params=params)
    typer.echo(header(s))
    typer.echo(yaml.safe_dump(s["manifest"], sort_keys=False, default_flow_style=None).rstrip())
