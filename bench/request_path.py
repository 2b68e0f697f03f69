"""Request-path benchmark, A/B/C: bare vLLM vs a Rota endpoint's own prefix vs the base URL.

Bare vLLM's OpenAI server and a Rota endpoint serving the same model with the same engine
flags (float32, context 256, eager) are up side by side; the load is vLLM's own serving
benchmark (``vllm.benchmarks.serve``: random 64-token prompts, 32 output tokens with
``ignore_eos``, streamed chat completions), so the figures compare with anyone's. The
three paths run **interleaved**, round after round, in every order in turn (A/B/C,
A/C/B, B/A/C, ...), so drift of the machine and ordering cannot favour one of them:

- ``bare``: vLLM's own server;
- ``prefix``: the endpoint's own prefix ``/ep/<key>/v1`` (HAProxy -> the replica);
- ``base_url``: the one OpenAI base URL ``/v1`` (HAProxy -> the gateway -> HAProxy -> the replica).

Each round's figures are kept; a path's ratio to bare is computed within each round and
the median over rounds is what is compared with the targets: output tokens/s at
concurrency 8 >= 0.95x (base URL) and >= 0.98x (prefix), at 32 >= 0.9x (base URL); TTFT
p50 at concurrency 1 at most +3 ms. Cold start (bare vLLM launch -> first token vs Rota
endpoint create -> first token through the base URL) is alternated as well, ratio <= 1.2.

Then the request log's cost: the base URL with it on vs off (``ROTA_REQUEST_LOG``), on a
Rota whose Ray cluster is started apart (the control plane restarts to switch; the
endpoint's replica and the gateway's keep running, the same processes in every run),
alternated on/off, off/on, ...:
at most +0.3 ms TTFT p50 at concurrency 1, and no throughput lost at 8 (>= 0.98x).

    .venv/bin/python bench/request_path.py [--rounds 6] [--levels 1,8,32] [--requests 256]
    .venv/bin/python bench/request_path.py --rounds 0 --cold 0 --logging-rounds 4   # the request log's cost only
    .venv/bin/python bench/request_path.py --rounds 0 --cold 0 --logging-rounds 0 --logging-blocks 300
        # the same, switched every --block-s seconds within one run per level (log_blocks.py)

MODEL=<dir or HF id> benchmarks that model instead of a generated tiny one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # free-port and process helpers shared with the tests
sys.path.insert(0, str(REPO / "bench"))

import log_blocks  # noqa: E402
import relay_cpu  # noqa: E402
from common import cpu_s, cpu_shares, embedded_rota, process_ticks, table, write_result  # noqa: E402
from support.procs import RotaServer, free_port, wait_until  # noqa: E402

MAX_MODEL_LEN = 256
INPUT_LEN, OUTPUT_LEN = 64, 32
PATHS = ("bare", "prefix", "base_url")
ORDERS = list(itertools.permutations(PATHS))
TARGETS = {  # (path, concurrency, figure) -> bound
    ("base_url", 8, "throughput_ratio"): 0.95,
    ("base_url", 32, "throughput_ratio"): 0.90,
    ("prefix", 8, "throughput_ratio"): 0.98,
    ("base_url", 1, "ttft_p50_delta_ms"): 3.0,
    ("prefix", 1, "ttft_p50_delta_ms"): 3.0,
}
COLD_TARGET = 1.2
# The request log's cost on the base URL, vs the same path with it off: at most +0.3 ms TTFT
# p50 at concurrency 1, and no throughput at 8 (within the noise of a round: >= 0.98x).
LOG_TTFT_TARGET_MS = 0.3
LOG_THROUGHPUT_TARGET = 0.98
KEPT = (  # from vLLM's result, per run
    "completed",
    "failed",
    "duration",
    "output_throughput",
    "request_throughput",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_itl_ms",
    "median_tpot_ms",
)


def vllm_bench(
    base_url: str, model: str, concurrency: int, requests: int, key: str | None, detailed: bool = False
) -> dict[str, Any]:
    """One run of vLLM's serving benchmark (in this process: its console script does not
    work with the CPU build); its printout is kept out of ours. ``detailed``: each request's
    times too (``detail``)."""
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    argv = [
        *("--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", base_url),
        *("--model", model, "--served-model-name", "tiny", "--dataset-name", "random"),
        *("--random-input-len", str(INPUT_LEN), "--random-output-len", str(OUTPUT_LEN), "--ignore-eos"),
        *("--num-prompts", str(requests), "--max-concurrency", str(concurrency), "--num-warmups", str(concurrency)),
        *("--percentile-metrics", "ttft,tpot,itl", "--disable-tqdm", "--seed", str(time.time_ns() % 2**31)),
        "--save-detailed",  # each request's TTFT and gaps, kept in the returned result (in_one_piece)
    ]
    if key:
        argv += ["--header", f"Authorization=Bearer {key}"]
    with contextlib.redirect_stdout(io.StringIO()):
        result = main(parser.parse_args(argv))
    if result.get("failed"):
        raise RuntimeError(f"{result['failed']} of {requests} requests failed on {base_url}: {result.get('errors', [])[:3]}")
    kept: dict[str, Any] = {k: result.get(k) for k in KEPT}
    if concurrency == 1:
        kept["one_piece_share"] = one_piece_share(result["ttfts"], result["itls"])
        kept["in_one_piece"] = kept["one_piece_share"] >= 0.5
    if detailed:
        kept["detail"] = {k: result[k] for k in ("start_times", "latencies", "ttfts", "output_lens")}
    return kept


def one_piece_share(ttfts: list[float], itls: list[list[float]]) -> float:
    """The share of answers that came in one piece: the first token after three quarters of
    the answer's whole time. vLLM on a small CPU falls into this now and then, bare or behind
    Rota (docs/performance.md); at concurrency 1 (where nothing queues) a run with half its
    answers so (``in_one_piece``) has the whole generation's TTFT, whatever the path."""
    whole = [t > 0.75 * (t + sum(gaps)) for t, gaps in zip(ttfts, itls, strict=True)]
    return sum(whole) / len(whole)


def first_token_at(url: str, model: str, key: str | None, timeout: float = 900) -> float:
    """Send one streamed chat until it answers; the perf_counter instant of its first token."""
    deadline = time.perf_counter() + timeout
    headers = {"Authorization": f"Bearer {key}"} if key else None
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, "stream": True}
    while time.perf_counter() < deadline:
        try:
            with httpx.stream("POST", url, json=body, headers=headers, timeout=600) as r:
                if r.status_code == 200:
                    for line in r.iter_lines():
                        if line.startswith("data: ") and '"content"' in line:
                            return time.perf_counter()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"no token from {url} in {timeout}s")


@contextlib.contextmanager
def bare_vllm(model: str) -> Iterator[tuple[str, float]]:
    """vLLM's OpenAI server on a free port: (its base URL, seconds from launch to first token)."""
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    cmd = [
        *(sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--dtype", "float32"),
        *("--max-model-len", str(MAX_MODEL_LEN), "--enforce-eager", "--served-model-name", "tiny"),
        *("--port", str(port), "--disable-uvicorn-access-log"),
    ]
    t0 = time.perf_counter()
    with open(Path(tempfile.gettempdir()) / f"rota-bench-bare-vllm-{port}.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        yield url, first_token_at(f"{url}/v1/chat/completions", "tiny", None) - t0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def endpoint_body(name: str, model: str) -> dict[str, Any]:
    return {
        "name": name,
        "routing_key": name,
        "model_path": model,
        "scaling": {"replicas": 1},
        "engine": {"max_token_count": MAX_MODEL_LEN},
    }


@contextlib.contextmanager
def rota(model: str) -> Iterator[dict[str, Any]]:
    """``rota server`` on its embedded Ray with one endpoint ``tiny``: its URLs and keys."""
    with embedded_rota("rota-bench-") as (srv, base):
        srv.api.post("/endpoints", json=endpoint_body("tiny", model)).raise_for_status()
        wait_until(lambda: srv.api.get("/endpoints/tiny").json()["status"] == "RUNNING", 900, 0.5, "Rota endpoint")
        # The endpoint's own prefix takes its own token (read here as the gateway reads it).
        gateway = {"Authorization": f"Bearer {srv.gateway_token}"}
        routing = httpx.get(f"{srv.url}/internal/v1/routing", headers=gateway).json()
        own = next(e["token"] for e in routing["endpoints"] if e["routing_key"] == "tiny")
        first_token_at(f"{base}/v1/chat/completions", "tiny", srv.admin_key, 120)
        yield {"server": srv, "base": base, "prefix": srv.api.get("/endpoints/tiny").json()["url"], "own_token": own}


def cold_rota(up: dict[str, Any], model: str, i: int) -> float:
    """Rota endpoint create -> first token through the base URL (the gateway holds the
    request while it initializes); the endpoint is deleted afterwards."""
    srv, name = up["server"], f"cold-{i}"
    t0 = time.perf_counter()
    srv.api.post("/endpoints", json=endpoint_body(name, model)).raise_for_status()
    took = first_token_at(f"{up['base']}/v1/chat/completions", name, srv.admin_key) - t0
    srv.api.delete(f"/endpoints/{name}").raise_for_status()
    wait_until(lambda: srv.api.get(f"/endpoints/{name}").status_code == 404, 300, 0.5, f"{name} deleted")
    return took


@contextlib.contextmanager
def switchable_rota(model: str) -> Iterator[tuple[Callable[[bool], None], dict[str, Any]]]:
    """Rota with one endpoint ``tiny`` on a Ray cluster started apart from it, so the
    control plane can restart with the request log on or off (``ROTA_REQUEST_LOG``) while
    the endpoint's replica and the gateway's keep running (the gateway follows the switch
    through its routing table): (a function that sets the request log, what the runs need)."""
    from support.cluster import Cluster

    root = Path(tempfile.mkdtemp(prefix="rota-bench-log-", dir="/tmp"))
    cluster = Cluster(root)
    cluster.start()
    home = root / "rota"
    env = {**cluster.server_env(), "ROTA_PORT": str(free_port()), "ROTA_LOG_LEVEL": "WARNING"}
    state: dict[str, Any] = {"on": True, "server": RotaServer(home, {**env, "ROTA_REQUEST_LOG": "true"})}

    def gateway_pid() -> int:
        (pid,) = cluster.gateway_replicas().values()
        return pid

    def set_request_log(on: bool) -> None:
        if on == state["on"]:
            return
        state["server"].stop()
        state["server"] = RotaServer(home, {**env, "ROTA_REQUEST_LOG": str(on).lower()}).start(120)
        state["on"] = on
        time.sleep(3)  # the gateway's next routing-table pulls (every second) carry the switch
        first_token_at(f"{cluster.serve_url}/v1/chat/completions", "tiny", state["server"].admin_key, 120)
        quiet(state["server"].proc.pid)  # its start's own work (catching up, first scrapes) done before a run

    try:
        srv = state["server"].start(120)
        wait_until(lambda: srv.health()["ray"]["reachable"], 300, 1, "Ray")
        srv.api.post("/endpoints", json=endpoint_body("tiny", model)).raise_for_status()
        wait_until(lambda: srv.api.get("/endpoints/tiny").json()["status"] == "RUNNING", 900, 0.5, "Rota endpoint")
        first_token_at(f"{cluster.serve_url}/v1/chat/completions", "tiny", srv.admin_key, 120)
        yield set_request_log, {"base": cluster.serve_url, "state": state, "gateway_pid": gateway_pid}
    finally:
        state["server"].stop(120)
        cluster.stop()


def quiet(pid: int, below: float = 0.05, most_s: float = 30) -> None:
    """Wait until a process uses less than ``below`` of a core over a second (at most ``most_s``)."""
    deadline = time.monotonic() + most_s
    while time.monotonic() < deadline:
        before = cpu_s(pid)
        time.sleep(1)
        if cpu_s(pid) - before < below:
            return


def logged_calls(state: dict[str, Any]) -> int:
    """Calls in the request log so far (every page)."""
    n, cursor = 0, None
    while True:
        page = state["server"].api.get("/requests", params={"limit": 1000, **({"cursor": cursor} if cursor else {})}).json()
        n += len(page["data"])
        if not (cursor := page["next_cursor"]):
            return n


def request_log_cost(model: str, a: argparse.Namespace, levels: list[int]) -> dict[str, Any]:
    """On one Rota: the runs with the request log on vs off (``--logging-rounds``), then the
    switch flipped within runs (``--logging-blocks``, ``log_blocks.py``)."""
    with switchable_rota(model) as (set_request_log, up):
        out = (
            logging_ab(model, up, set_request_log, a.logging_rounds, levels, a.requests, a.requests_c1)
            if a.logging_rounds
            else {}
        )
        if a.logging_blocks:

            def bench(base: str, c: int, n: int, key: str | None, detailed: bool = False) -> dict[str, Any]:
                return vllm_bench(base, model, c, n, key, detailed)

            out["blocks"] = log_blocks.measure(up, bench, levels, a.logging_blocks, a.block_s)
            blocks_targets(out["blocks"])
    return out


def logging_ab(
    model: str,
    up: dict[str, Any],
    set_request_log: Callable[[bool], None],
    rounds: int,
    levels: list[int],
    requests: int,
    requests_c1: int,
) -> dict[str, Any]:
    """The base URL with the request log on vs off, interleaved (on/off, off/on, ...),
    every level in each round; each run's figures, and per level the median over rounds
    of on - off (TTFT p50) and on / off (output tokens/s)."""
    runs: list[dict[str, Any]] = []
    vllm_bench(up["base"], model, max(levels), requests, up["state"]["server"].admin_key)  # a warm-up, not kept
    time.sleep(2.5)  # its records stored
    quiet(up["state"]["server"].proc.pid)
    for rnd in range(rounds):
        for on in (True, False) if rnd % 2 == 0 else (False, True):
            set_request_log(on)
            for c in levels:
                before, pid = logged_calls(up["state"]), up["gateway_pid"]()
                n = requests_c1 if c == 1 else requests
                run = {"round": rnd, "request_log": on, "concurrency": c, "gateway_pid": pid}
                control = up["state"]["server"].proc.pid
                cpu0, control0, every0, t0 = cpu_s(pid), cpu_s(control), process_ticks(), time.monotonic()
                run |= vllm_bench(up["base"], model, c, n, up["state"]["server"].admin_key)
                # Every process's share of a core during the run (who took the CPU the engine lost, if any).
                run["cpu_share_percent"] = dict(list(cpu_shares(every0, process_ticks(), time.monotonic() - t0).items())[:8])
                time.sleep(2.5)  # the gateway sends its records every second: the last ones stored too
                # CPU per measured request (warm-ups and the idle wait alike in both modes) of the
                # gateway replica, and of the control plane (which stores the records it sends).
                run["gateway_cpu_ms_per_request"] = (cpu_s(pid) - cpu0) * 1000 / n
                run["control_plane_cpu_ms_per_request"] = (cpu_s(control) - control0) * 1000 / n
                run["logged"] = logged_calls(up["state"]) - before
                if (run["logged"] >= n) != on or (not on and run["logged"]):
                    raise RuntimeError(f"request log {'on' if on else 'off'}, yet {run['logged']} of {n} calls logged")
                runs.append(run)
                print(
                    f"logging round {rnd} {'on ' if on else 'off'} c={c:<3} {run['output_throughput']:8.1f} tok/s "
                    f"TTFT p50 {run['median_ttft_ms']:7.2f} ms; CPU per request: gateway "
                    f"{run['gateway_cpu_ms_per_request']:.3f} ms, control plane {run['control_plane_cpu_ms_per_request']:.3f} ms; "
                    f"{run['logged']} calls logged; CPU shares: "
                    + ", ".join(f"{k.split()[0][-32:]} {v:.0f}%" for k, v in list(run["cpu_share_percent"].items())[:5]),
                    flush=True,
                )
    summary = []
    for c in levels:
        pairs = [
            tuple(
                next(r for r in runs if r["round"] == rnd and r["concurrency"] == c and r["request_log"] is on)
                for on in (True, False)
            )
            for rnd in range(rounds)
        ]
        deltas = [a["median_ttft_ms"] - b["median_ttft_ms"] for a, b in pairs]
        ratios = [a["output_throughput"] / b["output_throughput"] for a, b in pairs]
        cpu = [a["gateway_cpu_ms_per_request"] - b["gateway_cpu_ms_per_request"] for a, b in pairs]
        control = [a["control_plane_cpu_ms_per_request"] - b["control_plane_cpu_ms_per_request"] for a, b in pairs]
        row = {
            "concurrency": c,
            "ttft_p50_delta_ms_per_round": deltas,
            "ttft_p50_delta_ms": statistics.median(deltas),
            "throughput_ratio_per_round": ratios,
            "throughput_ratio": statistics.median(ratios),
            "gateway_cpu_ms_per_request_delta_per_round": cpu,
            "gateway_cpu_ms_per_request_delta": statistics.median(cpu),
            "control_plane_cpu_ms_per_request_delta_per_round": control,
            "control_plane_cpu_ms_per_request_delta": statistics.median(control),
        }
        if c == 1:
            row["runs_in_one_piece"] = {
                "on": sum(a["in_one_piece"] for a, _ in pairs),
                "off": sum(b["in_one_piece"] for _, b in pairs),
            }
            row["target"] = {
                "figure": "ttft_p50_delta_ms",
                "bound": LOG_TTFT_TARGET_MS,
                "met": bool(row["ttft_p50_delta_ms"] <= LOG_TTFT_TARGET_MS),
            }
        elif c == 8:
            row["target"] = {
                "figure": "throughput_ratio",
                "bound": LOG_THROUGHPUT_TARGET,
                "met": bool(row["throughput_ratio"] >= LOG_THROUGHPUT_TARGET),
            }
        summary.append(row)
    # One gateway process served every run: on and off differ by the switch alone.
    return {"runs": runs, "summary": summary, "gateway_processes": len({r["gateway_pid"] for r in runs})}


def summarize(runs: list[dict[str, Any]], levels: list[int]) -> list[dict[str, Any]]:
    """Per path and concurrency: each round's ratio to bare (same round), and the medians."""
    rows = []
    for c in levels:
        bare = {r["round"]: r for r in runs if r["path"] == "bare" and r["concurrency"] == c}
        for path in PATHS[1:]:
            mine = [r for r in runs if r["path"] == path and r["concurrency"] == c]
            ratios = [r["output_throughput"] / bare[r["round"]]["output_throughput"] for r in mine]
            deltas = [r["median_ttft_ms"] - bare[r["round"]]["median_ttft_ms"] for r in mine]
            row = {
                "path": path,
                "concurrency": c,
                "throughput_ratio_per_round": ratios,
                "throughput_ratio": statistics.median(ratios),
                "throughput_ratio_of_sums": sum(r["output_throughput"] for r in mine)
                / sum(b["output_throughput"] for b in bare.values()),
                "ttft_p50_delta_ms_per_round": deltas,
                "ttft_p50_delta_ms": statistics.median(deltas),
            }
            if c == 1:
                row["runs_in_one_piece"] = {
                    "bare": sum(b["in_one_piece"] for b in bare.values()),
                    path: sum(r["in_one_piece"] for r in mine),
                }
            for (p, level, figure), bound in TARGETS.items():
                if (p, level) == (path, c):
                    ok = row[figure] >= bound if figure == "throughput_ratio" else row[figure] <= bound
                    row.setdefault("targets", {})[figure] = {"bound": bound, "met": bool(ok)}
            rows.append(row)
    return rows


def blocks_targets(blocks: dict[str, Any]) -> None:
    """The targets, on the medians over pairs: TTFT p50 at 1, tokens/s at 8."""
    for c, lv in blocks["levels"].items():
        figure, bound = {1: ("ttft_p50_delta_ms", LOG_TTFT_TARGET_MS), 8: ("throughput_ratio", LOG_THROUGHPUT_TARGET)}.get(
            c, (None, 0)
        )
        if figure and lv[figure]:
            median = lv[figure]["median"]
            lv["target"] = {"figure": figure, "bound": bound, "met": bool(median <= bound if c == 1 else median >= bound)}


def blocks_table(blocks: dict[str, Any]) -> str:
    """The request log switched within runs: per level, each pair and the medians against the targets."""
    head = ["request log, switched within a run", "conc", "pairs", "tok/s on/off per pair", "median [q1, q3]"]
    rows = [[*head, "TTFT p50 on - off ms per pair", "median [q1, q3]", "target"]]
    nan = {"median": float("nan"), "q1": float("nan"), "q3": float("nan")}
    for c, lv in blocks["levels"].items():
        tr, dt, t = lv["throughput_ratio"] or nan, lv["ttft_p50_delta_ms"] or nan, lv.get("target")
        rows.append(
            [
                "base URL",
                str(c),
                str(lv["pairs"]),
                " ".join(f"{x:.2f}" for x in lv["throughput_ratio_per_pair"]),
                f"x{tr['median']:.3f} [{tr['q1']:.3f}, {tr['q3']:.3f}]",
                " ".join(f"{x:+.1f}" for x in lv["ttft_p50_delta_ms_per_pair"]),
                f"{dt['median']:+.2f} [{dt['q1']:+.2f}, {dt['q3']:+.2f}]",
                f"{t['figure']} {'met' if t['met'] else 'NOT met'} ({t['bound']})" if t else "",
            ]
        )
    return table(rows)


def one_piece_line(counts: dict[str, dict[str, int]]) -> str:
    """How many runs of each kind came in one piece (``in_one_piece``): read their TTFT with that in mind."""
    each = "; ".join(f"{where}: " + ", ".join(f"{k} {n}" for k, n in c.items()) for where, c in counts.items())
    return f"runs at concurrency 1 whose median answer came in one piece (vLLM's stall on a small CPU, any path): {each}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=6, help="rounds (6: every order of the three paths once)")
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--requests", type=int, default=256, help="requests per run at concurrency > 1")
    ap.add_argument("--requests-c1", type=int, default=64, help="requests per run at concurrency 1 (TTFT)")
    ap.add_argument("--cold", type=int, default=3, help="cold starts of each kind, alternated (0: none)")
    ap.add_argument(
        "--logging-rounds", type=int, default=3, help="rounds of the base URL with the request log on vs off (0: none)"
    )
    ap.add_argument(
        "--logging-blocks",
        type=float,
        default=0,
        help="seconds of one run per level with the request log switched on and off within it (0: none)",
    )
    ap.add_argument("--block-s", type=float, default=10, help="seconds between the switches of --logging-blocks")
    ap.add_argument("--logging-levels", default="1,8")
    ap.add_argument("--label", default="", help="a name for this run, kept in the JSON (e.g. the commit)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "request_path.json"))
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    model = os.environ.get("MODEL")
    if not model:
        from rota.models import make_tiny

        model = str(make_tiny(Path(tempfile.mkdtemp(prefix="rota-bench-model-", dir="/tmp")) / "tiny"))
    print(f"model {model}; {a.rounds} interleaved rounds; levels {levels}; {a.requests} requests per run", flush=True)

    runs, cold = abc(a, model, levels) if a.rounds or a.cold else ([], [])
    return finish(a, model, levels, runs, cold)


def abc(a: argparse.Namespace, model: str, levels: list[int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Bare vLLM, the endpoint's prefix and the base URL, interleaved; then the cold starts."""
    runs: list[dict[str, Any]] = []
    cold: list[dict[str, Any]] = []
    with bare_vllm(model) as (bare_url, _), rota(model) as up:
        urls = {
            "bare": (bare_url, None),
            "prefix": (up["prefix"], up["own_token"]),
            "base_url": (up["base"], up["server"].admin_key),
        }
        for rnd in range(a.rounds):
            for c in levels:
                # Every order of the three in turn (A/B/C, A/C/B, B/A/C, ...): none always follows another.
                for path in ORDERS[(rnd + levels.index(c)) % len(ORDERS)]:
                    url, key = urls[path]
                    n = a.requests_c1 if c == 1 else a.requests
                    run = {"round": rnd, "path": path, "concurrency": c, **vllm_bench(url, model, c, n, key)}
                    runs.append(run)
                    print(
                        f"round {rnd} c={c:<3} {path:<9} {run['output_throughput']:8.1f} tok/s "
                        f"TTFT p50 {run['median_ttft_ms']:7.2f} ms",
                        flush=True,
                    )
        for i in range(a.cold):
            for kind in ("bare", "rota") if i % 2 == 0 else ("rota", "bare"):
                if kind == "bare":
                    with bare_vllm(model) as (_, took):
                        pass
                else:
                    took = cold_rota(up, model, i)
                cold.append({"i": i, "kind": kind, "to_first_token_s": took})
                print(f"cold start {i} {kind}: {took:.1f} s", flush=True)
    return runs, cold


def finish(a: argparse.Namespace, model: str, levels: list[int], runs: list[dict[str, Any]], cold: list[dict[str, Any]]) -> int:
    """The request log's A/B (its own Rota, after the A/B/C part has stopped its own), then
    the JSON and the tables."""
    log_levels = [int(x) for x in a.logging_levels.split(",")]
    logging = request_log_cost(model, a, log_levels) if a.logging_rounds or a.logging_blocks else {}
    if a.logging_rounds:  # what the request log adds to the gateway's own work, which the runs above cannot resolve
        logging["relay_cpu"] = relay_cpu.measure(a.logging_rounds, 3000)
    summary = summarize(runs, levels) if runs else []
    cold_summary: dict[str, Any] = {}
    if cold:
        med = {k: statistics.median(x["to_first_token_s"] for x in cold if x["kind"] == k) for k in ("bare", "rota")}
        cold_summary = {"median_s": med, "ratio": med["rota"] / med["bare"], "target_ratio": COLD_TARGET}
        cold_summary["met"] = bool(cold_summary["ratio"] <= COLD_TARGET)
    result = {
        "benchmark": "request_path",
        "label": a.label,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "client": "vllm.benchmarks.serve (openai-chat, random dataset, ignore_eos)",
        "model": model,
        "input_len": INPUT_LEN,
        "output_len": OUTPUT_LEN,
        "rounds": a.rounds,
        "runs": runs,
        "summary": summary,
        "cold_starts": cold,
        "cold_start": cold_summary,
        "request_log": logging,
    }
    out = write_result(a.out, result)

    rows = [["path", "conc", "tok/s per round", "ratio per round", "median ratio", "TTFT p50 Δ ms (median)", "target"]]
    for c in levels if runs else []:
        bare = [f"{r['output_throughput']:.0f}" for r in runs if r["path"] == "bare" and r["concurrency"] == c]
        rows.append(["bare vLLM", str(c), " / ".join(bare), "", "", "", ""])
        for s in (s for s in summary if s["concurrency"] == c):
            tps = [f"{r['output_throughput']:.0f}" for r in runs if r["path"] == s["path"] and r["concurrency"] == c]
            verdict = ", ".join(f"{f} {'met' if t['met'] else 'NOT met'} ({t['bound']})" for f, t in s.get("targets", {}).items())
            rows.append(
                [
                    s["path"],
                    str(c),
                    " / ".join(tps),
                    " / ".join(f"{x:.2f}" for x in s["throughput_ratio_per_round"]),
                    f"x{s['throughput_ratio']:.3f}",
                    f"{s['ttft_p50_delta_ms']:+.2f}",
                    verdict,
                ]
            )
    if runs:
        print(table(rows))
        if c1 := {s["path"]: s["runs_in_one_piece"] for s in summary if "runs_in_one_piece" in s}:
            print(one_piece_line(c1))
    if logging.get("blocks"):
        print(blocks_table(logging["blocks"]))
    if a.logging_rounds:
        rows = [
            [
                "request log",
                "conc",
                "tok/s on / off per round",
                "on/off median",
                "TTFT p50 on - off ms per round",
                "median",
                "CPU ms/request on - off (median): gateway, control plane",
                "target",
            ]
        ]
        for row in logging["summary"]:
            c = row["concurrency"]
            pairs = [
                " / ".join(
                    f"{r['output_throughput']:.0f}"
                    for on in (True, False)
                    for r in logging["runs"]
                    if r["round"] == rnd and r["concurrency"] == c and r["request_log"] is on
                )
                for rnd in range(a.logging_rounds)
            ]
            t = row.get("target")
            rows.append(
                [
                    "base URL",
                    str(c),
                    ", ".join(pairs),
                    f"x{row['throughput_ratio']:.3f}",
                    " / ".join(f"{x:+.2f}" for x in row["ttft_p50_delta_ms_per_round"]),
                    f"{row['ttft_p50_delta_ms']:+.2f}",
                    f"{row['gateway_cpu_ms_per_request_delta']:+.3f}, {row['control_plane_cpu_ms_per_request_delta']:+.3f}",
                    f"{t['figure']} {'met' if t['met'] else 'NOT met'} ({t['bound']})" if t else "",
                ]
            )
        print(table(rows))
        if c1 := [r["runs_in_one_piece"] for r in logging["summary"] if "runs_in_one_piece" in r]:
            print(one_piece_line({"request log": c1[0]}))
        print(f"gateway processes across the on and off runs: {logging['gateway_processes']} (1: the switch alone differs)")
        print(relay_cpu.summary(logging["relay_cpu"], a.logging_rounds))
    if cold_summary:
        m = cold_summary["median_s"]
        print(
            f"cold start to first token (median of {a.cold} each, alternated): bare vLLM {m['bare']:.1f} s, "
            f"Rota {m['rota']:.1f} s -> ratio {cold_summary['ratio']:.2f} (target <= {COLD_TARGET}: {cold_summary['met']})"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
