"""`rota demo` / `make demo`: the whole product in one command, on the embedded default.

1. `rota server` (local Ray, SQLite under ROTA_HOME, a first admin key), unless one
   already answers;
2. `rota apply -f schedules/demo.yaml`: an endpoint (the tiny CPU template, or --model:
   a Hugging Face id or a local directory) that sleeps when idle, and a one-off task a
   few seconds ahead in this machine's timezone that holds one replica;
3. the endpoint's and the task's statuses and events as they happen, until it is READY;
4. one normal and one streamed chat completion with the official `openai` client,
   through the one OpenAI base URL, with the admin key;
5. the URLs, and how to stop. With --exit everything is stopped at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta

import httpx

from rota.cli.client import Api
from rota.cli.manifest import apply_manifest, load_manifest
from rota.config import REPO_ROOT, ClientSettings, Settings

LEAD_S = 8  # how far ahead the one-off fire is scheduled


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _local_zone() -> str:
    try:
        from tzlocal import get_localzone_name

        return get_localzone_name() or "UTC"
    except Exception:
        return "UTC"


def _server_up(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def run(model: str | None = None, exit_after: bool = False) -> int:
    settings = Settings()
    api = settings.api_url
    server = None
    if _server_up(api):
        _say(f"using the Rota server already running at {api}")
    else:
        settings.home.mkdir(parents=True, exist_ok=True)
        log = settings.home / "demo-server.log"
        _say(f"starting `rota server` (log: {log})")
        with open(log, "ab") as out:  # the child keeps its own handle
            server = subprocess.Popen(
                [sys.executable, "-m", "rota", "server"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while not _server_up(api):
            if server.poll() is not None or time.monotonic() > deadline:
                _say(f"rota server did not start; see {log}")
                return 1
            time.sleep(0.5)
    try:
        return _drive(settings, model, server, exit_after)
    except KeyboardInterrupt:
        return 130
    finally:
        if server is not None:  # whatever happened, the server this demo started goes
            _stop(server)


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        _say("stopping rota server and its Ray head")
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def _drive(settings: Settings, model: str | None, server: subprocess.Popen[bytes] | None, exit_after: bool) -> int:
    key = ClientSettings(home=settings.home).key or ""
    http = httpx.Client(base_url=settings.api_url + "/api/v1", timeout=60, headers={"Authorization": f"Bearer {key}"})
    deadline = time.monotonic() + 300
    while not (status := http.get("/status").json())["ray"]["reachable"]:  # the embedded head takes a few seconds
        if status["ray"].get("start_error") or time.monotonic() > deadline:
            _say(f"Ray is not reachable: {status['ray'].get('start_error') or status['ray'].get('error')}")
            return 1
        time.sleep(1)

    import pytz

    zone = _local_zone()
    at = datetime.now(pytz.timezone(zone)) + timedelta(seconds=LEAD_S)
    values = {**os.environ, "DEMO_AT": at.strftime("%Y-%m-%dT%H:%M:%S"), "DEMO_TZ": zone}
    if model:
        local = model.startswith(("/", ".", "~")) or os.path.isdir(model)
        values.update(
            MODEL_FIELD="model_path" if local else "hf_model_repo", MODEL_VALUE=os.path.abspath(model) if local else model
        )
    manifest = REPO_ROOT / "schedules" / "demo.yaml"
    earlier = http.get("/events", params={"limit": 10000}).json()
    seen = earlier[-1]["id"] if earlier else 0  # show this run's events only
    _say(
        f"rota apply -f {manifest.relative_to(REPO_ROOT)}  (endpoint demo: {model or 'the tiny-llama-cpu template'}; "
        f"one-off at {values['DEMO_AT']} {zone})"
    )
    apply_manifest(Api(settings.api_url, key), load_manifest(manifest, values))

    last = None
    deadline = time.monotonic() + 900
    while True:
        ep, t = http.get("/endpoints/demo").json(), http.get("/tasks/demo-launch").json()
        state = (ep["status"], ep["phase"], t["status"])
        if state != last:
            _say(f"endpoint {ep['status']} ({ep['phase'] or '-'}), task {t['status']}")
            last = state
        for e in http.get("/events", params={"after_id": seen}).json():
            if e["task_name"] == "demo-launch" or e["endpoint_name"] == "demo":
                _say(f"  event {e['task_name'] or e['endpoint_name']:<12} {e['kind']:<10} {e['message']}")
            seen = e["id"]
        if ep["status"] == "RUNNING" and t["status"] == "completed":
            break
        if ep["status"] == "FAILED" or time.monotonic() > deadline:
            _say(f"the endpoint did not come up: {ep['error_code']}: {ep['message']}")
            return 1
        time.sleep(1)

    from openai import OpenAI
    from openai.types.chat import ChatCompletionMessageParam

    base, name = ep["base_url"], ep["routing_key"]
    client = OpenAI(base_url=base, api_key=key)
    question: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello to the people who run Rota."}]
    r = client.chat.completions.create(model=name, messages=question, max_tokens=24)
    usage = f"{r.usage.prompt_tokens} prompt + {r.usage.completion_tokens} completion tokens" if r.usage else "-"
    _say(f"chat completion: {r.choices[0].message.content!r} (usage: {usage})")
    parts = []
    for chunk in client.chat.completions.create(model=name, messages=question, max_tokens=24, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    _say(f"streamed ({len(parts)} chunks): {''.join(parts)!r}")
    if ep["template"] == "tiny-llama-cpu":
        _say("(the tiny model has random weights: its words are noise; --model <HF id or dir> serves a real one)")
    keyfile = settings.admin_key_path
    print(
        f"""
  Rota API docs     {settings.api_url}/docs
  Ray dashboard     {settings.dashboard_url}
  OpenAI base URL   {base}     (model "{name}"; API key in {keyfile})
  Try               curl {base}/chat/completions -H "Authorization: Bearer $(cat {keyfile})" \\
                      -H 'content-type: application/json' \\
                      -d '{{"model": "{name}", "messages": [{{"role": "user", "content": "hi"}}]}}'
                    .venv/bin/rota endpoints list ; .venv/bin/rota endpoints events demo ; .venv/bin/rota tasks list
  Web console       {settings.api_url}/console/     (sign in with the key in {keyfile})
""",
        flush=True,
    )
    if exit_after or server is None:
        return 0
    _say("serving; press Ctrl-C to stop Rota and its Ray head")
    server.wait()
    return 0
