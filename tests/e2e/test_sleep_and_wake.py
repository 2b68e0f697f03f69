"""ready_by windows, then scale to zero and wake on request, with a real vLLM engine (runs
last: it changes the package's endpoint).

ready_by: once a start of the endpoint was measured (its deploy, then each window's wake),
daily entries about a minute apart start it early by the measured cold start, and each
window says whether its replica served at the written time. READY_BY_WINDOWS (default 2)
sets how many windows; ``make ready-by`` runs 10. No call is made during the windows, so
each scale-down sleeps at once; the wake test that follows calls it."""

import math
import os
import time
from datetime import datetime, timedelta, timezone

import pytz
from openai import OpenAI

from support.endpoints import logged_request, wait_endpoint
from support.procs import wait_until

SLEEPY = {"scaling": {"min_replicas": 0, "max_replicas": 1, "cooldown_period_s": 1}}


WINDOWS = int(os.environ.get("READY_BY_WINDOWS", "2"))
HOLD_S = 4  # each window scales to zero this long after its written time
# Windows are as far apart as a start early by the measured cold start, the hold and this
# much more: the replica a window scaled to zero is gone (its engine stopped, its CPUs
# free) before the next window starts a new one, so each wake is measured on its own.
SETTLE_S = 15
ZONE = "Asia/Kolkata"


def _local(at: datetime) -> str:
    return at.astimezone(pytz.timezone(ZONE)).strftime("%H:%M:%S")


def test_ready_by_windows_serve_at_their_written_times(llm):
    r = llm.api.patch("/endpoints/tiny", json=SLEEPY)
    assert r.status_code == 200, r.text
    wait_endpoint(llm, "tiny", lambda e: e["status"] == "SLEEPING", timeout=180, what="SLEEPING")
    measured = llm.api.get("/endpoints/tiny").json()["cold_start"]
    assert measured["source"] == "measured" and measured["count"] >= 1, measured  # its deploy, at least
    margin = measured["lead_s"] - measured["p95_s"]

    first = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=measured["lead_s"] + 8)
    period = math.ceil(measured["lead_s"] + HOLD_S + SETTLE_S)
    written = [first + timedelta(seconds=period * k) for k in range(WINDOWS)]
    schedule = []
    for w in written:
        schedule.append({"time": _local(w), "min_replicas": 1, "max_replicas": 1, "ready_by": True})
        schedule.append({"time": _local(w + timedelta(seconds=HOLD_S)), "min_replicas": 0, "max_replicas": 1})
    body = {"name": "ready-windows", "endpoint": "tiny", "type": "daily", "timezone": ZONE, "schedule": schedule}
    assert llm.api.post("/tasks", json=body).status_code == 201
    task = llm.api.post("/tasks/ready-windows/activate").json()
    note = task["next_fires"][0]["note"]
    assert note.startswith("starts ") and f"so that 1 replica is ready by {_local(written[0])} {ZONE}" in note, note

    try:

        def judged():
            runs = [r for r in llm.api.get("/tasks/ready-windows/runs").json() if r["ready_state"]]
            return (
                runs
                if len(runs) == WINDOWS and all(r["ready_state"] in ("on_time", "ready_late", "never") for r in runs)
                else None
            )

        wait = (written[-1] - datetime.now(timezone.utc)).total_seconds() + 60
        runs = sorted(wait_until(judged, wait, interval=1, what="every window judged"), key=lambda r: r["scheduled_at"])
        events = [e for e in llm.api.get("/events", params={"task_name": "ready-windows"}).json() if e["kind"] == "ready"]
    finally:
        llm.api.delete("/tasks/ready-windows")

    on_time, rows = 0, []
    for k, r in enumerate(runs):
        at = datetime.fromisoformat(r["scheduled_at"])
        ready = datetime.fromisoformat(r["ready_at"]) if r["ready_at"] else None
        ahead = (at - ready).total_seconds() if ready else None
        cold = r["lead_s"] - margin  # the p95 cold start the fire was early by
        rows.append((_local(at), r["lead_s"], cold, ahead, r["ready_state"]))
        if r["ready_state"] == "on_time":
            on_time += 1
            # Up before the written time by at most 30 % of the measured cold start, once wakes
            # were measured (a first window planned on the deploy's start, which is longer,
            # is only required to be on time).
            if k > 0 or measured["kind"] == "wake":
                assert ahead <= 0.3 * cold, (r, cold)
    print(f"\nready_by windows ({ZONE}, margin {margin:.1f} s):")
    print(f"{'written':>9} {'early by':>9} {'p95 cold':>9} {'up before':>10}  state")
    for w, lead, cold, ahead, state in rows:
        print(f"{w:>9} {lead:>8.1f}s {cold:>8.1f}s {'-' if ahead is None else f'{ahead:.1f}s':>10}  {state}")
    assert on_time >= WINDOWS - math.floor(WINDOWS / 10), rows  # 9 of 10; every one of fewer
    assert len(events) >= WINDOWS and all(e["data"]["state"] in ("on_time", "late", "ready_late", "never") for e in events)


def test_sleeping_endpoint_wakes_on_a_request(llm):
    r = llm.api.patch("/endpoints/tiny", json=SLEEPY)
    assert r.status_code == 200 and r.json()["status"] in ("RUNNING", "SLEEPING")  # a scaling change: no restart
    wait_endpoint(llm, "tiny", lambda e: e["status"] == "SLEEPING", timeout=180, what="SLEEPING")
    time.sleep(2)  # the gateway's routing table (refreshed every second) says SLEEPING too

    t0 = time.monotonic()
    client = OpenAI(base_url=llm.base_url, api_key=llm.admin_key, max_retries=0, timeout=300)
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": "wake up"}], max_tokens=4
    )
    out = raw.parse()
    assert out.choices[0].message.content and out.usage.completion_tokens == 4
    took = time.monotonic() - t0
    print(f"wake-on-request with vLLM answered in {took:.1f}s")
    # The request log says this call waited for a cold start, and for how long.
    logged = logged_request(llm, raw.headers["x-request-id"])
    assert logged["rota.cold_start"] is True and 0 < logged["rota.wake_ms"] <= took * 1000
    assert logged["http.response.status_code"] == 200 and logged["gen_ai.usage.output_tokens"] == 4

    wait_endpoint(llm, "tiny", lambda e: e["status"] == "RUNNING", what="RUNNING after wake")
    changes = [
        (e["data"]["to"], e["data"]["phase"]) for e in llm.api.get("/endpoints/tiny/events").json() if e["kind"] == "status"
    ]
    statuses = [s for i, (s, _) in enumerate(changes) if i == 0 or changes[i - 1][0] != s]  # phase changes repeat a status
    assert statuses[-3:] == ["SLEEPING", "AWAKING", "RUNNING"], changes
    assert ("AWAKING", "ENGINE_INITIALIZING") in changes, changes
