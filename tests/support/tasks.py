"""Helpers to drive tasks through the API in tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytz

from support.procs import RotaServer, wait_until


def zone_near_noon() -> str:
    """A fixed-offset zone where it is around noon now, so "in a few seconds" stays today."""
    utc_hour = datetime.now(timezone.utc).hour
    offset = (12 - utc_hour + 12) % 24 - 12  # local = utc + offset, in [-12, 11]
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")  # Etc/GMT-3 is UTC+3


def local_in(tz: str, seconds: float) -> datetime:
    return datetime.now(timezone.utc).astimezone(pytz.timezone(tz)) + timedelta(seconds=seconds)


def hms(dt: datetime) -> str:
    return dt.strftime("%H:%M:%S")


def task_body(name: str, type_: str, tz: str, schedule: list[dict], **kw) -> dict:
    return {
        "name": name,
        "file_path": "echo",
        "deployment_name": "app",
        "type": type_,
        "timezone": tz,
        "schedule": schedule,
        "resources": {"num_cpus": 0.1},
        **kw,
    }


def wait_task(server: RotaServer, ref, predicate, timeout: float = 90, what: str = "task state"):
    def check():
        t = server.api.get(f"/tasks/{ref}").json()
        return t if predicate(t) else None

    try:
        return wait_until(check, timeout, interval=0.3, what=what)
    except AssertionError:
        print(server.log_tail())
        print(server.api.get(f"/tasks/{ref}/events").json())
        raise


def kinds(server: RotaServer, ref) -> list[str]:
    return [e["kind"] for e in server.api.get(f"/tasks/{ref}/events").json()]


def running_with(n: int):
    """A task whose endpoint is RUNNING with n replicas."""
    return lambda t: t["endpoint"]["status"] == "RUNNING" and len(t["endpoint"]["replicas"]["ids"]) == n


def endpoint_kinds(server: RotaServer, ref) -> list[str]:
    return [e["kind"] for e in server.api.get(f"/endpoints/{ref}/events").json()]


def start_one_off(server: RotaServer, name: str, seconds: float = 2, **fields) -> dict:
    """Create a one-off task of the echo app firing in a few seconds, and activate it.

    On a loaded machine (a Ray head starting next to it) the create can outlast the lead:
    then the time has passed, activation is refused (422, as it should be), and the
    schedule is moved ahead again."""
    tz = zone_near_noon()

    def entry() -> list[dict]:
        return [{"time": local_in(tz, seconds).strftime("%Y-%m-%dT%H:%M:%S"), "min_replicas": 1, "max_replicas": 1}]

    r = server.api.post("/tasks", json=task_body(name, "one_off", tz, entry(), **fields))
    assert r.status_code == 201, r.text
    for _ in range(3):
        r = server.api.post(f"/tasks/{name}/activate")
        if r.status_code != 422 or r.json()["error"]["field"] != "schedule":
            break
        server.api.patch(f"/tasks/{name}", json={"schedule": entry()}).raise_for_status()
    return r.raise_for_status().json()


def route_json(url: str, timeout: float = 15) -> dict:
    """GET an application's route, tolerating the brief window in which Serve's HTTP
    ingress reloads its configuration right after a change."""
    import httpx

    def get():
        r = httpx.get(url, timeout=5)
        return r.json() if r.status_code == 200 else None

    return wait_until(get, timeout, interval=0.2, what=f"200 from {url}")
