"""Request-path benchmark: bare vLLM's OpenAI server vs the same model as a Rota endpoint,
called on its own prefix (/ep/<id>, straight to the replica) and through the
one OpenAI base URL (/v1, the gateway routing by `model`).

Same machine, same run, same model and engine settings, one after the other (never at
once: they would share the cores). Streaming chat completions with a fixed output
length (`ignore_eos`), at concurrency 1 and 8. Reports time to first token (p50/p95),
inter-token latency (p50) and output tokens/s for each path, and their ratio/delta to
bare vLLM, against the targets: TTFT p50 within +5 ms at concurrency 1, throughput
>= 0.95x at 8. Also cold start: bare vLLM launch -> first token vs Rota endpoint create
-> first token through the base URL (Ray already up), target ratio <= 1.2.

    .venv/bin/python bench/request_path.py [--requests 40] [--max-tokens 32] [--out bench/results/request_path.json]

MODEL=<dir or HF id> benchmarks that model instead of a generated tiny one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # free-port and process helpers shared with the tests
sys.path.insert(0, str(REPO / "bench"))

from common import pct, table, write_result  # noqa: E402
from support.procs import RotaServer, free_port, wait_until  # noqa: E402

MAX_MODEL_LEN = 256
PROMPT = [{"role": "user", "content": "Tell me about schedules and replicas in a few words."}]


async def one_request(client: httpx.AsyncClient, url: str, model: str, max_tokens: int) -> dict:
    body = {
        "model": model,
        "messages": PROMPT,
        "max_tokens": max_tokens,
        "stream": True,
        "ignore_eos": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    stamps: list[float] = []
    tokens = 0
    async with client.stream("POST", url, json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                stamps.append(time.perf_counter())
    return {
        "ttft": stamps[0] - t0 if stamps else float("nan"),
        "itl": [b - a for a, b in zip(stamps, stamps[1:], strict=False)],
        "tokens": tokens,
        "latency": time.perf_counter() - t0,
    }


async def load(url: str, model: str, concurrency: int, requests: int, max_tokens: int, key: str | None = None) -> dict:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}"} if key else None
    async with httpx.AsyncClient(timeout=120, limits=limits, headers=headers) as client:
        for _ in range(3):  # warm up: connections, caches, the engine's first steps
            await one_request(client, url, model, max_tokens)
        queue = list(range(requests))
        results: list[dict] = []

        async def worker():
            while queue:
                queue.pop()
                results.append(await one_request(client, url, model, max_tokens))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    ttft = [r["ttft"] * 1000 for r in results]
    itl = [x * 1000 for r in results for x in r["itl"]]
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "ttft_p50_ms": pct(ttft, 0.5),
        "ttft_p95_ms": pct(ttft, 0.95),
        "itl_p50_ms": pct(itl, 0.5),
        "output_tokens_per_s": sum(r["tokens"] for r in results) / wall,
        "wall_s": wall,
    }


def first_token_at(url: str, key: str | None, timeout: float = 900) -> float:
    """Send one streamed chat until it answers; the perf_counter instant of its first token."""
    deadline = time.perf_counter() + timeout
    headers = {"Authorization": f"Bearer {key}"} if key else None
    body = {"model": "tiny", "messages": PROMPT, "max_tokens": 4, "stream": True}
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


def run_bare(model_dir: str, max_tokens: int, requests: int, levels: list[int]) -> tuple[list[dict], dict]:
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model_dir,
        "--dtype",
        "float32",
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--enforce-eager",
        "--served-model-name",
        "tiny",
        "--port",
        str(port),
        "--disable-uvicorn-access-log",
    ]
    t0 = time.perf_counter()
    with open(Path(tempfile.gettempdir()) / "rota-bench-bare-vllm.log", "wb") as log:  # the child keeps its own handle
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        started = {"to_first_token": first_token_at(url, None) - t0}  # cold start: launch -> first token
        return [asyncio.run(load(url, "tiny", c, requests, max_tokens)) for c in levels], started
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def run_rota(model_dir: str, max_tokens: int, requests: int, levels: list[int]) -> tuple[list[dict], list[dict], dict]:
    """Both Rota paths against one endpoint: its own prefix, then the base URL."""
    home = Path(tempfile.mkdtemp(prefix="rota-bench-", dir="/tmp"))
    serve_port = free_port()
    env = {
        "ROTA_RAY_ADDRESS": "",
        "ROTA_SERVE_PORT": str(serve_port),
        "ROTA_RAY_DASHBOARD_PORT": str(free_port()),
        "ROTA_RAY_GCS_PORT": str(free_port()),
        "ROTA_RAY_CLIENT_SERVER_PORT": str(free_port()),
        "ROTA_RAY_DASHBOARD_AGENT_PORT": str(free_port()),
        "ROTA_RAY_TEMP_DIR": str(home / "ray"),
        "ROTA_LOG_LEVEL": "WARNING",
    }
    srv = RotaServer(home, env)
    try:
        srv.start()
        wait_until(lambda: srv.health()["ray"]["reachable"], 300, 1, "embedded Ray")
        body = {
            "name": "bench",
            "routing_key": "tiny",
            "model_path": model_dir,
            "scaling": {"replicas": 1},
            "engine": {"max_token_count": MAX_MODEL_LEN},
        }
        base = f"http://127.0.0.1:{serve_port}"
        wait_until(lambda: "/" in httpx.get(f"{base}/-/routes", timeout=2).json(), 120, 0.5, "the gateway")
        t0 = time.perf_counter()
        srv.api.post("/endpoints", json=body).raise_for_status()
        # Cold start as a user sees it: create -> first token through the base URL (the
        # gateway holds the request while the endpoint initializes).
        started = {"to_first_token": first_token_at(f"{base}/v1/chat/completions", srv.admin_key) - t0}
        wait_until(lambda: srv.api.get("/endpoints/bench").json()["status"] == "RUNNING", 900, 0.5, "Rota endpoint")
        # The endpoint's own prefix takes its own token (read here as the gateway reads it).
        gateway = {"Authorization": f"Bearer {(home / 'internal_token').read_text().strip()}"}
        table = httpx.get(f"{srv.url}/internal/v1/routing", headers=gateway).json()
        own = next(e["token"] for e in table["endpoints"] if e["routing_key"] == "tiny")
        url = srv.api.get("/endpoints/bench").json()["url"]
        wait_until(
            lambda: httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {srv.admin_key}"}).json()["data"], 60
        )
        prefix = [asyncio.run(load(f"{url}/v1/chat/completions", "tiny", c, requests, max_tokens, own)) for c in levels]
        routed = [
            asyncio.run(load(f"{base}/v1/chat/completions", "tiny", c, requests, max_tokens, srv.admin_key)) for c in levels
        ]
        return prefix, routed, started
    finally:
        srv.stop(120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=40, help="measured requests per concurrency level")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--levels", default="1,8")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "request_path.json"))
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    model = os.environ.get("MODEL")
    if not model:
        from rota.models import make_tiny

        model = str(make_tiny(Path(tempfile.mkdtemp(prefix="rota-bench-model-", dir="/tmp")) / "tiny"))
    print(f"model {model}; {a.requests} streamed chat requests x {a.max_tokens} tokens per level; levels {levels}", flush=True)
    bare, bare_start = run_bare(model, a.max_tokens, a.requests, levels)
    prefix, routed, rota_start = run_rota(model, a.max_tokens, a.requests, levels)
    cold_ratio = rota_start["to_first_token"] / bare_start["to_first_token"]

    paths = {"endpoint_prefix": prefix, "base_url": routed}
    comparison = []
    for path, runs in paths.items():
        for b, r in zip(bare, runs, strict=False):
            comparison.append(
                {
                    "path": path,
                    "concurrency": b["concurrency"],
                    "ttft_p50_delta_ms": r["ttft_p50_ms"] - b["ttft_p50_ms"],
                    "ttft_p95_delta_ms": r["ttft_p95_ms"] - b["ttft_p95_ms"],
                    "itl_p50_delta_ms": r["itl_p50_ms"] - b["itl_p50_ms"],
                    "throughput_ratio": r["output_tokens_per_s"] / b["output_tokens_per_s"],
                }
            )
    targets = {"ttft_p50_delta_ms_at_c1": 5.0, "throughput_ratio_at_c8": 0.95}
    met = {
        path: {
            "ttft_p50_delta_ms_at_c1": next(
                (c["ttft_p50_delta_ms"] <= 5.0 for c in comparison if c["path"] == path and c["concurrency"] == 1), None
            ),
            "throughput_ratio_at_c8": next(
                (c["throughput_ratio"] >= 0.95 for c in comparison if c["path"] == path and c["concurrency"] == 8), None
            ),
        }
        for path in paths
    }
    result = {
        "benchmark": "request_path",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "model": model,
        "max_tokens": a.max_tokens,
        "requests_per_level": a.requests,
        "bare_vllm": bare,
        "rota_endpoint_prefix": prefix,
        "rota_base_url": routed,
        "comparison": comparison,
        "targets": targets,
        "met": met,
        "cold_start_s": {
            "bare_vllm_launch_to_first_token": bare_start["to_first_token"],
            "rota_create_to_first_token": rota_start["to_first_token"],
            "ratio": cold_ratio,
            "target_ratio": 1.2,
            "met": cold_ratio <= 1.2,
        },
    }
    out = write_result(a.out, result)

    rows = [["path", "conc", "TTFT p50 ms", "TTFT p95 ms", "ITL p50 ms", "out tok/s"]]
    for name, runs in (("bare vLLM", bare), ("Rota /ep/<id>", prefix), ("Rota base URL", routed)):
        for x in runs:
            rows.append(
                [
                    name,
                    str(x["concurrency"]),
                    f"{x['ttft_p50_ms']:.1f}",
                    f"{x['ttft_p95_ms']:.1f}",
                    f"{x['itl_p50_ms']:.2f}",
                    f"{x['output_tokens_per_s']:.0f}",
                ]
            )
    for c in comparison:
        rows.append(
            [
                f"{c['path']} - bare",
                str(c["concurrency"]),
                f"{c['ttft_p50_delta_ms']:+.1f}",
                f"{c['ttft_p95_delta_ms']:+.1f}",
                f"{c['itl_p50_delta_ms']:+.2f}",
                f"x{c['throughput_ratio']:.3f}",
            ]
        )
    print(table(rows))
    for path, m in met.items():
        print(
            f"targets ({path}): TTFT p50 +<=5 ms at c=1: {m['ttft_p50_delta_ms_at_c1']}; throughput >=0.95x at c=8: {m['throughput_ratio_at_c8']}"
        )
    print(
        f"cold start to first token: bare vLLM {bare_start['to_first_token']:.1f}s; Rota endpoint create "
        f"{rota_start['to_first_token']:.1f}s -> ratio {cold_ratio:.2f} (target <= 1.2: {cold_ratio <= 1.2})"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
