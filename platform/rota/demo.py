"""`rota demo` / `make demo`: the whole product in one command, on the embedded default.

1. a model: $MODEL (Hugging Face id or local directory), else a tiny generated one;
2. `rota server` (local Ray, SQLite under ROTA_HOME), unless one already answers;
3. `rota apply -f schedules/demo.yaml`: a one-off task a few seconds ahead in this
   machine's timezone, running `serve:app`, activated;
4. the task's states and events as they happen, until its route is up;
5. one normal and one streamed chat completion with the official `openai` client;
6. the URLs, and how to stop. With --exit everything is stopped at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta

import httpx

from rota.config import REPO_ROOT, Settings

LEAD_S = 8  # how far ahead the one-off fire is scheduled


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _local_zone() -> str:
    try:
        from tzlocal import get_localzone_name

        return get_localzone_name() or "UTC"
    except Exception:  # noqa: BLE001 - any failure: fall back to UTC
        return "UTC"


def _model(settings: Settings) -> str:
    if os.environ.get("MODEL"):
        return os.environ["MODEL"]
    path = settings.home / "models" / "tiny"
    if not (path / "config.json").exists():
        _say(f"no MODEL given: generating a tiny random-weight Llama in {path}")
        from rota.models.tiny import make_tiny

        make_tiny(path)
    return str(path)


def _server_up(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def run(exit_after: bool = False) -> int:
    settings = Settings()
    api = settings.api_url
    model = _model(settings)
    server = None
    if _server_up(api):
        _say(f"using the Rota server already running at {api}")
    else:
        settings.home.mkdir(parents=True, exist_ok=True)
        log = settings.home / "demo-server.log"
        _say(f"starting `rota server` (log: {log})")
        server = subprocess.Popen(
            [sys.executable, "-m", "rota", "server"], stdout=open(log, "ab"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not _server_up(api):
            if server.poll() is not None or time.monotonic() > deadline:
                _say(f"rota server did not start; see {log}")
                return 1
            time.sleep(0.5)
    try:
        return _drive(settings, api, model, server, exit_after)
    except KeyboardInterrupt:
        return 130
    finally:
        if server is not None:  # whatever happened, the server this demo started goes
            _stop(server)


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        _say("stopping rota server and its Ray head")
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def _drive(settings: Settings, api: str, model: str, server, exit_after: bool) -> int:
    http = httpx.Client(base_url=api + "/api/v1", timeout=30)
    health = http.get(api + "/healthz").json()
    deadline = time.monotonic() + 300
    while not health["ray"]["reachable"]:  # the embedded head takes a few seconds
        if health["ray"].get("start_error") or time.monotonic() > deadline:
            _say(f"Ray is not reachable: {health['ray'].get('start_error')}")
            return 1
        time.sleep(1)
        health = http.get(api + "/healthz").json()

    zone = _local_zone()
    import pytz

    at = datetime.now(pytz.timezone(zone)) + timedelta(seconds=LEAD_S)
    env = {**os.environ, "DEMO_AT": at.strftime("%Y-%m-%dT%H:%M:%S"), "DEMO_TZ": zone, "MODEL": model, "ROTA_API_URL": api}
    if http.get("/tasks/demo").status_code == 200:
        http.delete("/tasks/demo")  # a fresh run each time
        time.sleep(1)
    manifest = REPO_ROOT / "schedules" / "demo.yaml"
    _say(f"rota apply -f {manifest.relative_to(REPO_ROOT)}  (one-off at {env['DEMO_AT']} {zone}, model {model})")
    p = subprocess.run([sys.executable, "-m", "rota", "apply", "-f", str(manifest)], env=env, text=True, capture_output=True)
    print(p.stdout + p.stderr, end="", flush=True)
    if p.returncode != 0:
        return p.returncode

    seen, last = 0, None
    deadline = time.monotonic() + 900
    while True:
        t = http.get("/tasks/demo").json()
        state = (t["status"], t["app"]["status"])
        if state != last:
            _say(f"task {t['status']:<9} application {t['app']['status']}")
            last = state
        for e in http.get("/tasks/demo/events", params={"after_id": seen}).json():
            _say(f"  event {e['kind']:<10} {e['message']}")
            seen = e["id"]
        if t["app"]["status"] == "RUNNING":
            break
        if t["status"] == "failed" or time.monotonic() > deadline:
            _say(f"the endpoint did not come up: {t['status_reason'] or t['app']['message']}")
            return 1
        time.sleep(1)

    from openai import OpenAI

    base = f"{settings.serve_url}/demo/v1"
    client = OpenAI(base_url=base, api_key="not-needed")
    name = client.models.list().data[0].id
    question = [{"role": "user", "content": "Say hello to the people who run Rota."}]
    r = client.chat.completions.create(model=name, messages=question, max_tokens=24)
    _say(f"chat completion: {r.choices[0].message.content!r} (usage: {r.usage.prompt_tokens} prompt + {r.usage.completion_tokens} completion tokens)")
    parts = []
    for chunk in client.chat.completions.create(model=name, messages=question, max_tokens=24, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    _say(f"streamed ({len(parts)} chunks): {''.join(parts)!r}")
    if model == str(settings.home / "models" / "tiny"):
        _say("(the tiny model has random weights: its words are noise; MODEL=<HF id or dir> serves a real one)")

    print(
        f"""
  Rota API docs     {api}/docs
  Ray dashboard     {settings.dashboard_url if settings.embedded_ray else settings.ray_address}
  OpenAI base URL   {base}     (model "{name}")
  Try               curl {base}/chat/completions -H 'content-type: application/json' \\
                      -d '{{"model": "{name}", "messages": [{{"role": "user", "content": "hi"}}]}}'
                    .venv/bin/rota tasks list ; .venv/bin/rota tasks events demo
""",
        flush=True,
    )
    if exit_after or server is None:
        return 0
    _say("serving; press Ctrl-C to stop Rota and its Ray head")
    server.wait()
    return 0
