"""The request log's cost measured inside one run: the switch flipped every few seconds
while vLLM's serving benchmark keeps the base URL busy, and each block with the log on
compared with its neighbour with it off.

Runs apart (``request_path.py --logging-rounds``) compare an engine that, on a small CPU,
swings by tens of percent from one run to the next (docs/performance.md): a cost of ~1 %
drowns. Neighbouring blocks of one run meet the engine in the same state. Blocks go
on/off, off/on, on/off, ... so a drift within a pair favours neither. Each window starts
``margin_s`` after its switch (the gateways pull the switch every second and send their
records every second) and ends at the next switch, or at the last request sent (after it
the load drains).

``blocks``, ``pairs`` and ``summary`` are pure (the figures from vLLM's detailed result and
the times of the switches); ``measure`` runs it.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from common import cpu_s


def switch_on(k: int) -> bool:
    """Block k's setting: on, off | off, on | on, off | ..."""
    return k % 4 in (0, 3)


@dataclass(frozen=True)
class Block:
    on: bool
    start: float  # perf_counter of the window's start and end
    end: float
    completed: int  # requests that finished in the window
    tokens_per_s: float  # their output tokens over the window
    ttft_p50_ms: float | None  # of the requests sent in the window
    sent: int


def blocks(detail: dict[str, list[Any]], switches: list[tuple[float, bool]], margin_s: float) -> list[Block]:
    """One window per switch, from ``margin_s`` after it to the next (or the last request sent)."""
    starts, latencies, ttfts, lens = (detail[k] for k in ("start_times", "latencies", "ttfts", "output_lens"))
    ends = [s + d for s, d in zip(starts, latencies, strict=True)]
    last_sent = max(starts)
    out = []
    for (at, on), nxt in zip(switches, [t for t, _ in switches[1:]] + [last_sent], strict=True):
        lo, hi = at + margin_s, min(nxt, last_sent)
        if hi - lo < 0.5 * (nxt - at):  # the last, cut short by the end of the load
            continue
        done = [i for i, e in enumerate(ends) if lo <= e < hi]
        sent = [ttfts[i] for i, s in enumerate(starts) if lo <= s < hi]
        out.append(
            Block(
                on=on,
                start=lo,
                end=hi,
                completed=len(done),
                tokens_per_s=sum(lens[i] for i in done) / (hi - lo),
                ttft_p50_ms=statistics.median(sent) * 1000 if sent else None,
                sent=len(sent),
            )
        )
    return out


def pairs(bs: list[Block], skip: int = 1, least: int = 5) -> list[tuple[Block, Block]]:
    """(on, off) of each pair of neighbouring windows with opposite settings, the first
    ``skip`` pairs left out (the load's ramp) and any with fewer than ``least`` requests
    sent in a window."""
    out = []
    for a, b in zip(bs[::2], bs[1::2], strict=False):
        if a.on == b.on or min(a.sent, b.sent, a.completed, b.completed) < least:
            continue
        out.append((a, b) if a.on else (b, a))
    return out[skip:]


def summary(bs: list[Block], skip: int = 1) -> dict[str, Any]:
    """Per pair on/off tokens/s and on - off TTFT p50; their medians and quartiles."""
    ps = pairs(bs, skip)
    ratios = [on.tokens_per_s / off.tokens_per_s for on, off in ps if off.tokens_per_s]
    deltas = [on.ttft_p50_ms - off.ttft_p50_ms for on, off in ps if on.ttft_p50_ms is not None and off.ttft_p50_ms is not None]

    def spread(xs: list[float]) -> dict[str, float] | None:
        if len(xs) < 2:
            return None
        q = statistics.quantiles(xs, n=4)
        return {"median": statistics.median(xs), "q1": q[0], "q3": q[2]}

    return {
        "pairs": len(ps),
        "throughput_ratio_per_pair": ratios,
        "throughput_ratio": spread(ratios),
        "ttft_p50_delta_ms_per_pair": deltas,
        "ttft_p50_delta_ms": spread(deltas),
        "blocks": [asdict(b) for b in bs],
    }


def set_log(srv: Any, project: str, on: bool) -> None:
    srv.api.patch(f"/projects/{project}", json={"request_log": on}).raise_for_status()


@contextlib.contextmanager
def switching(
    switch: Callable[[bool], None], every_s: float, pids: tuple[int, ...]
) -> Iterator[tuple[list[tuple[float, bool]], list[tuple[float, ...]]]]:
    """Switch (``switch_on``'s pattern) every ``every_s`` seconds until the block ends, then
    on for good: (when each switch was made and to what, the CPU seconds of ``pids`` then)."""
    switches: list[tuple[float, bool]] = []
    cpu: list[tuple[float, ...]] = []
    stop = threading.Event()

    def flip() -> None:
        k = 0
        while not stop.is_set():
            on = switch_on(k)
            switch(on)
            now = time.perf_counter()
            switches.append((now, on))
            cpu.append((now, *(cpu_s(p) for p in pids)))
            k += 1
            stop.wait(every_s)

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    try:
        yield switches, cpu
    finally:
        stop.set()
        flipper.join()
        switch(True)


def measure(
    up: dict[str, Any],
    bench: Callable[..., dict[str, Any]],
    levels: list[int],
    seconds: float,
    block_s: float,
    margin_s: float = 2.0,
) -> dict[str, Any]:
    """On a running Rota (``request_path.switchable_rota``'s ``up``): per level, one run of
    vLLM's client (``bench``: ``request_path.vllm_bench``) lasting about ``seconds``, while
    the key's project turns its request log on and off every ``block_s`` seconds
    (``PATCH /api/v1/projects/{name}``). Also each block's share of a core taken by the
    gateway replica and by the control plane."""
    srv = up["state"]["server"]
    key, project = srv.admin_key, srv.api.get("/me").json()["project"]
    gateway, control = up["gateway_pid"](), srv.proc.pid
    out: dict[str, Any] = {"block_s": block_s, "margin_s": margin_s, "levels": {}}
    for c in levels:
        probe = bench(up["base"], c, 64 if c == 1 else 256, key)  # a warm-up, and the rate that sizes the run
        n = int(probe["request_throughput"] * seconds * 1.1) + c
        with switching(lambda on: set_log(srv, project, on), block_s, (gateway, control)) as (switches, cpu):
            run = bench(up["base"], c, n, key, detailed=True)
        shares: dict[bool, tuple[list[float], list[float]]] = {True: ([], []), False: ([], [])}
        for (t0, g0, c0), (t1, g1, c1), (_, on) in zip(cpu, cpu[1:], switches, strict=False):
            shares[on][0].append(100 * (g1 - g0) / (t1 - t0))
            shares[on][1].append(100 * (c1 - c0) / (t1 - t0))
        level = summary(blocks(run.pop("detail"), switches, margin_s))
        level["run"] = run
        level["cpu_share_percent_median"] = {
            ("on" if on else "off"): {"gateway": statistics.median(g), "control_plane": statistics.median(cp)}
            for on, (g, cp) in shares.items()
            if g
        }
        out["levels"][c] = level
        tr, dt = level["throughput_ratio"], level["ttft_p50_delta_ms"]
        print(
            f"request log blocks c={c}: {level['pairs']} pairs; tok/s on/off median "
            f"{tr['median'] if tr else float('nan'):.3f}; TTFT p50 on - off median {dt['median'] if dt else float('nan'):+.2f} ms",
            flush=True,
        )
    return out
