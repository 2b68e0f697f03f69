"""The web console over the in-memory Ray: sign-in and sessions, CSRF, project isolation,
the launch wizard's validation next to its fields, and the pages' actions."""

import html
import re
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from rota.api.app import create_app
from rota.store.tables import EndpointRow, TaskRow
from support.console import csrf_of, field_error, sign_in

WIZARD = {
    "template": "echo-chat",
    "flavor": "base",
    "gpu_type": "cpu",
    "gpu_count": "0",
    "name": "paris-chat",
    "task_name": "paris-mornings",
    "type": "daily",
    "timezone": "Europe/Paris",
    "schedule.0.time": "08:00",
    "schedule.0.min_replicas": "1",
    "schedule.0.max_replicas": "2",
    "schedule.1.time": "20:00",
    "schedule.1.min_replicas": "0",
    "schedule.1.max_replicas": "1",
}


@pytest.fixture
def browser(rt, settings, client):
    """A second client with no Authorization header: a browser, cookies only."""
    with TestClient(create_app(settings, rt)) as b:
        rt.reconciler.stop()
        rt.scheduler.shutdown()
        rt.dispatcher.stop()
        b.admin_key = settings.admin_key_path.read_text()
        b.api = client
        yield b


def signed_in(browser, key=None):
    r = sign_in(browser, key or browser.admin_key)
    assert r.status_code == 303, r.text
    return browser


def post(browser, path, page_path, data=None, **kw):
    """A form post with the CSRF token of the page the form is on."""
    token = csrf_of(browser.get(page_path).text)
    return browser.post(path, data={"csrf_token": token, **(data or {})}, follow_redirects=False, **kw)


def counts(rt):
    with rt.db.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (TaskRow, EndpointRow))


def test_pages_need_a_session_and_a_wrong_key_is_refused(browser):
    r = browser.get("/console/endpoints", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in?next=")
    r = sign_in(browser, "rota_not-a-key")
    assert r.status_code == 401 and "not valid" in field_error(r.text, "key")
    assert "rota_session" not in browser.cookies
    assert browser.get("/console/endpoints", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_httponly_strict_and_names_no_key(browser, clock):
    r = sign_in(browser, browser.admin_key, next="/console/tasks")
    assert r.status_code == 303 and r.headers["location"] == "/console/tasks"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("rota_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert browser.admin_key not in cookie and browser.admin_key[5:20] not in cookie
    assert browser.get("/console/tasks").status_code == 200
    # A forged session (another key id, the same signature) is no session.
    key_id, issued, mac = browser.cookies["rota_session"].split(".")
    browser.cookies.clear()
    forgeries = (
        f"{int(key_id) + 1}.{issued}.{mac}",
        f"{key_id}.{int(issued) + 9999}.{mac}",
        f"{key_id}.{issued}",
        "\u00e9",
        f"{key_id}.{issued}.{mac[:-1]}\u00e9",
    )
    for forged in forgeries:
        r = browser.get("/console/tasks", headers={"cookie": f"rota_session={forged}".encode()}, follow_redirects=False)
        assert r.status_code == 303, forged
    r = browser.get("/console/tasks", headers={"cookie": f"rota_session={key_id}.{issued}.{mac}"}, follow_redirects=False)
    assert r.status_code == 200
    # A session is over after its lifetime, on the clock sessions are issued by.
    clock.advance(hours=13)
    r = browser.get("/console/tasks", headers={"cookie": f"rota_session={key_id}.{issued}.{mac}"}, follow_redirects=False)
    assert r.status_code == 303


def test_sign_in_never_redirects_off_the_console(browser):
    for target in ("https://evil.example/", "//evil.example/x", "/api/v1/keys", "/console/\\evil"):
        r = sign_in(browser, browser.admin_key, next=target)
        assert r.headers["location"] == "/console/endpoints", target


def test_sign_out_ends_the_session_and_a_revoked_keys_session_ends_at_once(browser, clock):
    key = browser.api.post("/api/v1/keys", json={"name": "alice"}).json()
    signed_in(browser, key["key"])
    old_cookie = browser.cookies["rota_session"]
    r = post(browser, "/console/sign-out", "/console/tasks")
    assert r.status_code == 303 and browser.get("/console/tasks", follow_redirects=False).status_code == 303
    # The old cookie, replayed after sign-out, is no session either: sign-out ended it.
    browser.cookies.clear()
    r = browser.get("/console/tasks", headers={"cookie": f"rota_session={old_cookie}"}, follow_redirects=False)
    assert r.status_code == 303
    clock.advance(seconds=1)  # a new sign-in after the sign-out works
    signed_in(browser, key["key"])
    assert browser.get("/console/tasks", follow_redirects=False).status_code == 200
    assert browser.api.delete(f"/api/v1/keys/{key['id']}").status_code == 200
    assert browser.get("/console/tasks", follow_redirects=False).status_code == 303


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(browser, rt):
    browser.api.post("/api/v1/endpoints", json={"name": "e1", "template": "echo-chat"})
    signed_in(browser)
    before = browser.api.get("/api/v1/endpoints/e1").json()["desired"]
    for data in ({}, {"csrf_token": "0" * 40}, {"csrf_token": "\u00e9" * 40}):
        r = browser.post("/console/endpoints/e1/stop", data=data, follow_redirects=False)
        assert r.status_code == 403 and "CSRF" in r.text
    # Another browser's token does not fit this session either.
    assert browser.api.get("/api/v1/endpoints/e1").json()["desired"] == before == "running"
    # Nor does a sign-in without the pre-session the form was served with.
    browser.cookies.clear()
    r = browser.post("/console/sign-in", data={"key": browser.admin_key, "csrf_token": "x"}, follow_redirects=False)
    assert r.status_code == 403 and "rota_session" not in browser.cookies


def test_the_wizard_launches_an_endpoint_and_an_idle_task_then_activate(browser, rt):
    signed_in(browser)
    models = browser.get("/console/models?search=echo").text
    assert 'href="/console/launch?template=echo-chat"' in models
    page = browser.get("/console/launch?template=echo-chat").text
    assert 'value="base" selected' in page and csrf_of(page)
    review = post(browser, "/console/launch", "/console/launch?template=echo-chat", WIZARD | {"action": "review"})
    assert review.status_code == 200, review.text
    text = review.text
    # Next fires in the task's time and in UTC; a projection of the schedule's use and cost.
    assert "Europe/Paris" in text and re.search(r"\d{4}-\d\d-\d\d 0[67]:00 UTC", text), text
    assert "replica-hours" in text and "Launch" in text and counts(rt) == (0, 0)
    edit = browser.post(
        "/console/launch",
        data=dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', text)) | {"action": "edit:settings"},
    )
    assert 'value="paris-mornings"' in edit.text and "autofocus" in edit.text
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', text))
    r = browser.post("/console/launch", data=hidden | {"action": "launch"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/tasks/")
    task = browser.api.get("/api/v1/tasks/paris-mornings").json()
    assert task["status"] == "idle" and task["endpoint"]["name"] == "paris-chat" and task["timezone"] == "Europe/Paris"
    ep = browser.api.get("/api/v1/endpoints/paris-chat").json()
    assert ep["scaling"]["min_replicas"] == 0 and ep["scaling"]["max_replicas"] == 2 and ep["template"] == "echo-chat"
    listing = browser.get("/console/tasks?status=idle&timezone=Europe/Paris").text
    assert "paris-mornings" in listing and "Activate paris-mornings" in listing
    assert "paris-mornings" not in browser.get("/console/tasks?timezone=UTC").text
    r = post(browser, f"/console/tasks/{task['id']}/activate", "/console/tasks", {"back": "/console/tasks"})
    assert r.status_code == 303 and r.headers["location"] == "/console/tasks"
    assert browser.api.get("/api/v1/tasks/paris-mornings").json()["status"] == "active"
    # From the list with htmx: the row alone comes back, to be swapped in place.
    row = post(
        browser,
        f"/console/tasks/{task['id']}/deactivate",
        "/console/tasks",
        {"back": "/console/tasks"},
        headers={"hx-request": "true"},
    )
    assert row.status_code == 200 and row.text.strip().startswith("<tr>") and "Activate paris-mornings" in row.text
    assert "<html" not in row.text and browser.api.get("/api/v1/tasks/paris-mornings").json()["status"] == "idle"
    post(browser, f"/console/tasks/{task['id']}/activate", "/console/tasks")
    page = browser.get(f"/console/tasks/{task['id']}").text
    assert "Deactivate" in page and "Europe/Paris" in page and "activated" in page


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"timezone": "Mars/Olympus"}, "timezone", "timezone"),
        ({"schedule.0.time": "25:99"}, "schedule.0.time", "time"),
        ({"schedule.1.min_replicas": "3"}, "schedule.1.max_replicas", "max_replicas"),
        ({"schedule.0.max_replicas": "two"}, "schedule.0.max_replicas", "whole number"),
        ({"name": "Bad Name!"}, "name", "name"),
        ({"task_name": ""}, "task_name", "name"),
        ({"flavor": "huge"}, "flavor", "flavor"),
        ({"engine.max_input_length": "999", "engine.max_token_count": "64"}, "engine.max_input_length", "exceeds"),
        # An entry after a blank row: its error names and sits next to its own row.
        (
            {"schedule.1.time": "", "schedule.1.min_replicas": "", "schedule.1.max_replicas": ""}
            | {"schedule.2.time": "20:00", "schedule.2.min_replicas": "2", "schedule.2.max_replicas": "1"},
            "schedule.2.max_replicas",
            "schedule.2.max_replicas: max_replicas (1) must be >= min_replicas (2)",
        ),
    ],
)
def test_an_invalid_wizard_field_shows_its_message_next_to_it_and_creates_nothing(browser, rt, change, field, words):
    signed_in(browser)
    for action in ("review", "launch"):
        r = post(browser, "/console/launch", "/console/launch?template=echo-chat", WIZARD | change | {"action": action})
        assert r.status_code in (409, 422), r.text
        message = field_error(r.text, field)
        assert message and words in message, (field, message)
        assert f'aria-describedby="err-{field.replace(".", "-")}"' in r.text
    assert counts(rt) == (0, 0)


def test_a_name_taken_by_a_task_leaves_no_endpoint_behind(browser, rt):
    browser.api.post("/api/v1/endpoints", json={"name": "taken-ep", "template": "echo-chat"})
    body = {
        "name": "paris-mornings",
        "endpoint": "taken-ep",
        "type": "daily",
        "timezone": "UTC",
        "schedule": [{"time": "08:00", "min_replicas": 1, "max_replicas": 1}],
    }
    assert browser.api.post("/api/v1/tasks", json=body).status_code == 201
    signed_in(browser)
    r = post(browser, "/console/launch", "/console/launch?template=echo-chat", WIZARD | {"action": "launch"})
    assert r.status_code == 409 and "exists" in field_error(r.text, "task_name")
    assert browser.api.get("/api/v1/endpoints/paris-chat").status_code == 404  # the name was checked first
    # Corrected, the same launch goes through at once.
    r = post(
        browser, "/console/launch", "/console/launch?template=echo-chat", WIZARD | {"task_name": "paris-2", "action": "launch"}
    )
    assert r.status_code == 303 and browser.api.get("/api/v1/tasks/paris-2").json()["endpoint"]["name"] == "paris-chat"


def test_user_strings_are_escaped(browser):
    signed_in(browser)
    r = post(
        browser,
        "/console/launch",
        "/console/launch?template=echo-chat",
        WIZARD | {"timezone": "<script>alert(1)</script>", "action": "review"},
    )
    assert "<script>alert(1)" not in r.text and "&lt;script&gt;alert(1)" in r.text
    r = browser.get("/console/models?search=<img src=x onerror=alert(1)>")
    assert "<img src=x" not in r.text and "&lt;img src=x" in r.text


def test_a_key_sees_only_its_project_in_every_page_and_action(browser, rt):
    api = browser.api
    api.post("/api/v1/endpoints", json={"name": "mine", "template": "echo-chat"})
    sched = {"type": "daily", "timezone": "UTC", "schedule": [{"time": "08:00", "min_replicas": 1, "max_replicas": 1}]}
    assert api.post("/api/v1/tasks", json={"name": "my-task", "endpoint": "mine", **sched}).status_code == 201
    ep, task = api.get("/api/v1/endpoints/mine").json(), api.get("/api/v1/tasks/my-task").json()
    other = api.post("/api/v1/keys", json={"name": "bob", "project": "team-b"}).json()["key"]
    signed_in(browser, other)
    assert "mine" not in browser.get("/console/endpoints").text and "my-task" not in browser.get("/console/tasks").text
    for path in (
        f"/console/endpoints/{ep['id']}",
        "/console/endpoints/mine",
        f"/console/endpoints/{ep['id']}/status/stream",
        f"/console/endpoints/{ep['id']}?tab=requests",
        f"/console/tasks/{task['id']}",
        "/console/tasks/my-task",
    ):
        assert browser.get(path).status_code == 404, path
    for path in (
        f"/console/endpoints/{ep['id']}/stop",
        f"/console/endpoints/{ep['id']}/delete",
        f"/console/endpoints/{ep['id']}/scaling",
        f"/console/tasks/{task['id']}/activate",
        f"/console/tasks/{task['id']}/delete",
    ):
        r = post(browser, path, "/console/tasks", {"min_replicas": "0", "max_replicas": "1"})
        assert r.status_code == 404, (path, r.status_code)
    assert api.get("/api/v1/endpoints/mine").json()["desired"] == "running"
    assert api.get("/api/v1/tasks/my-task").json()["status"] == "idle"
    keys = browser.get("/console/keys").text
    assert "bob" in keys and "member" not in keys and "admin" not in keys.split("<tbody>")[1]
    # An ordinary key cannot mint a key for another project or an admin key from the page.
    r = post(browser, "/console/keys", "/console/keys", {"name": "sneaky", "project": "default", "admin": "on"})
    assert r.status_code in (403, 422) and not any(k["name"] == "sneaky" for k in api.get("/api/v1/keys").json())


def test_the_monitoring_tab_charts_each_replicas_hardware_once_it_reported(browser, rt):
    browser.api.post("/api/v1/endpoints", json={"name": "e1", "template": "echo-chat", "routing_key": "e1-key"})
    signed_in(browser)
    page = browser.get("/console/endpoints/e1?tab=monitoring").text
    assert 'id="chart-kv"' in page and 'id="chart-cpu"' not in page and "No replica reported its hardware" in page
    token = next(e["token"] for e in rt.cluster.routing_table([])["endpoints"] if e["routing_key"] == "e1-key")
    rt.cluster.clock = lambda: datetime.now(timezone.utc)  # the tab shows the last hour of the real clock
    rt.reconciler.tick()
    rt.reconciler.tick()
    (replica,) = browser.api.get("/api/v1/endpoints/e1").json()["replicas"]["ids"]
    r = browser.api.post(
        "/internal/v1/replica-stats",
        json={"replica": replica, "cpu_percent": 42.0, "memory_bytes": 3e9, "kv_cache_usage": 0.25},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 204, r.text
    page = browser.get("/console/endpoints/e1?tab=monitoring").text
    assert 'id="chart-cpu"' in page and 'id="chart-memory"' in page and 'id="chart-gpu"' not in page  # no GPU reported
    assert f'"replica":"{replica}"' in page.replace(" ", "")  # the series the charts draw


def test_endpoint_page_tabs_scaling_edit_stop_start_delete(browser, rt):
    browser.api.post("/api/v1/endpoints", json={"name": "e1", "template": "echo-chat", "routing_key": "e1-key"})
    signed_in(browser)
    page = browser.get("/console/endpoints/e1").text
    assert 'model="e1-key"' in page and 'base_url="http://' in page and 'id="ep-status"' in page
    assert "created" in browser.get("/console/endpoints/e1?tab=events").text
    assert "No requests yet" in browser.get("/console/endpoints/e1?tab=requests").text
    bad_cursor = browser.get("/console/endpoints/e1?tab=requests&cursor=zzz")
    assert bad_cursor.status_code == 200 and 'class="error" role="alert"' in bad_cursor.text and "cursor" in bad_cursor.text
    bad = post(
        browser, "/console/endpoints/e1/scaling", "/console/endpoints/e1?tab=scaling", {"min_replicas": "3", "max_replicas": "1"}
    )
    assert bad.status_code == 422 and "max_replicas" in field_error(bad.text, "max_replicas")
    r = post(
        browser,
        "/console/endpoints/e1/scaling",
        "/console/endpoints/e1?tab=scaling",
        {"min_replicas": "0", "max_replicas": "3", "cooldown_period_s": "60"},
    )
    assert r.status_code == 303
    scaling = browser.api.get("/api/v1/endpoints/e1").json()["scaling"]
    assert (scaling["min_replicas"], scaling["max_replicas"], scaling["cooldown_period_s"]) == (0, 3, 60)
    assert post(browser, "/console/endpoints/e1/stop", "/console/endpoints/e1").status_code == 303
    assert browser.api.get("/api/v1/endpoints/e1").json()["desired"] == "stopped"
    assert "Start" in browser.get("/console/endpoints/e1").text
    assert post(browser, "/console/endpoints/e1/start", "/console/endpoints/e1").status_code == 303
    assert browser.api.get("/api/v1/endpoints/e1").json()["desired"] == "running"
    assert post(browser, "/console/endpoints/e1/delete", "/console/endpoints/e1").status_code == 303
    assert browser.api.get("/api/v1/endpoints/e1").json()["desired"] == "deleted"


def test_keys_page_shows_a_new_secret_once_and_revokes(browser):
    signed_in(browser)
    r = post(browser, "/console/keys", "/console/keys", {"name": "ci-bot"})
    assert r.status_code == 201
    secret = re.search(r'id="secret" readonly value="(rota_[^"]+)"', r.text).group(1)
    assert browser.api.get("/api/v1/tasks", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert secret not in browser.get("/console/keys").text
    key_id = next(k["id"] for k in browser.api.get("/api/v1/keys").json() if k["name"] == "ci-bot")
    assert post(browser, f"/console/keys/{key_id}/revoke", "/console/keys").status_code == 303
    assert browser.api.get("/api/v1/tasks", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_empty_states_say_what_to_do_and_errors_are_words(browser):
    signed_in(browser)
    assert "launch" in browser.get("/console/tasks").text.lower()
    assert "Pick a model" in browser.get("/console/endpoints").text
    r = browser.get("/console/tasks?page=abc")
    assert r.status_code == 422 and "page" in r.text and "Traceback" not in r.text and "<html" in r.text


def test_a_tasks_runs_and_filters_in_the_api_and_on_its_page(browser, rt, clock):
    from rota.services.fires import process_due

    api = browser.api
    api.post("/api/v1/endpoints", json={"name": "e1", "template": "echo-chat"})
    body = {"endpoint": "e1", "type": "daily", "schedule": [{"time": "09:00", "min_replicas": 1, "max_replicas": 1}]}
    assert api.post("/api/v1/tasks", json={"name": "paris", "timezone": "Europe/Paris", **body}).status_code == 201
    assert api.post("/api/v1/tasks", json={"name": "utc", "timezone": "UTC", **body}).status_code == 201
    task = api.post("/api/v1/tasks/utc/activate").json()
    clock.now = datetime.fromisoformat(task["next_fire_at"])
    process_due(rt.db, task["id"], clock.now, "schedule", timedelta(hours=1))
    runs = api.get("/api/v1/tasks/utc/runs").json()
    assert [(r["entry"], r["trigger"]) for r in runs] == [(0, "schedule")]
    assert [t["name"] for t in api.get("/api/v1/tasks", params={"timezone": "Europe/Paris"}).json()["items"]] == ["paris"]
    assert api.get("/api/v1/tasks", params={"timezone": "x" * 65}).status_code == 422
    other = {"Authorization": "Bearer " + api.post("/api/v1/keys", json={"name": "o", "project": "team-b"}).json()["key"]}
    assert api.get("/api/v1/tasks/utc/runs", headers=other).status_code == 404
    assert api.get("/api/v1/tasks/utc/runs", headers={"Authorization": "Bearer rota_nope"}).status_code == 401
    assert api.get("/api/v1/tasks", params={"timezone": "UTC"}, headers=other).json()["items"] == []
    signed_in(browser)
    page = browser.get(f"/console/tasks/{task['id']}").text
    assert "on time" in page and "Deactivate" in page
    scaling = browser.get("/console/endpoints/e1?tab=scaling").text  # the tasks that drive it, from the store
    assert 'href="/console/tasks/' in scaling and ">paris<" in scaling and ">utc<" in scaling


def test_events_newest_first_on_the_pages(browser, rt, admin):
    browser.api.post("/api/v1/endpoints", json={"name": "e1", "template": "echo-chat"})
    for _ in range(3):
        browser.api.post("/api/v1/endpoints/e1/stop")
        browser.api.post("/api/v1/endpoints/e1/start")
    newest = rt.events.list(admin, endpoint_name="e1", newest_first=True)
    oldest = rt.events.list(admin, endpoint_name="e1")
    assert [e.id for e in newest] == [e.id for e in oldest][::-1] and len(newest) >= 7
    assert [e.id for e in rt.events.list(admin, limit=2, endpoint_name="e1", newest_first=True)] == [e.id for e in newest[:2]]
    signed_in(browser)
    page = browser.get("/console/endpoints/e1?tab=events").text
    shown = re.findall(r"</time></td><td>([a-z_]+)</td>", page)
    assert shown == [e.kind.value for e in newest] and shown[-1] == "created"


def test_playground_logs_and_request_pages_are_the_keys_own(browser, rt):
    browser.api.post("/api/v1/endpoints", json={"name": "e1", "template": "echo-chat"})
    ep = browser.api.get("/api/v1/endpoints/e1").json()
    other = browser.api.post("/api/v1/keys", json={"name": "bob", "project": "team-b"}).json()["key"]
    signed_in(browser, other)
    assert post(browser, f"/console/endpoints/{ep['id']}/chat", "/console/keys", {"message": "hi"}).status_code == 404
    assert browser.get(f"/console/endpoints/{ep['id']}/logs/stream").status_code == 404
    assert browser.get("/console/requests/no-such-id").status_code == 404
    assert browser.get("/console/requests/theirs%2Fwith-a-slash").status_code == 404
    browser.cookies.clear()
    for path in (f"/console/endpoints/{ep['id']}/logs/stream", "/console/requests/x"):
        assert browser.get(path, follow_redirects=False).status_code == 303  # signed out: to the sign-in page
    assert browser.post(f"/console/endpoints/{ep['id']}/chat", data={"message": "hi"}, follow_redirects=False).status_code in (
        303,
        403,
    )
    signed_in(browser)
    r = browser.post(f"/console/endpoints/{ep['id']}/chat", data={"message": "hi"}, follow_redirects=False)
    assert r.status_code == 403  # no CSRF token
    r = post(browser, f"/console/endpoints/{ep['id']}/chat", "/console/keys", {"message": ""})
    assert r.status_code == 422 and "message" in r.text


def test_stream_text_of_a_chat_completion():
    from rota.console.playground import deltas

    assert deltas('data: {"choices": [{"delta": {"content": "Hel"}}]}') == "Hel"
    assert deltas('data: {"choices": [{"delta": {"role": "assistant"}}]}') == ""
    assert deltas("data: [DONE]") == "" and deltas(": keep-alive") == "" and deltas("data: {broken") == ""
    assert deltas('data: {"choices": [], "usage": {"total_tokens": 3}}') == ""
    assert "overloaded" in deltas('data: {"error": {"message": "overloaded"}}')
    assert "boom" in deltas('data: {"error": "boom"}')  # however an error is shaped, the stream goes on
    assert deltas('data: {"choices": null}') == "" and deltas('data: {"choices": [null]}') == "" and deltas("data: [1, 2]") == ""


def test_async_tab_shows_requests_and_batches_cancels_and_downloads_only_the_keys_own(browser, rt):
    from tests.unit.test_async_api import CHAT, drain, jsonl, line, set_status, upload

    api = browser.api
    ep = api.post("/api/v1/endpoints", json={"name": "chat", "template": "echo-chat", "routing_key": "chat"}).json()
    set_status(api, ep["id"], "RUNNING")
    done = api.post("/v1/async/chat/completions", json=CHAT).json()
    api.rt = rt
    drain(api)  # answered: succeeded
    waiting = api.post("/v1/async/chat/completions", json=CHAT).json()
    fid = upload(api, jsonl([line(1), line(2)]))
    batch = api.post("/v1/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions"}).json()
    signed_in(browser)
    tab = browser.get(f"/console/endpoints/{ep['id']}?tab=async").text
    assert done["id"] in tab and waiting["id"] in tab and batch["id"] in tab and "Cancel batch" in tab
    page = browser.get(f"/console/async/{done['id']}").text
    assert "succeeded" in page and "echo" in page and "UTC" in page
    r = post(browser, f"/console/async/{waiting['id']}/cancel", f"/console/async/{waiting['id']}")
    assert r.status_code == 303 and api.get(f"/v1/async/{waiting['id']}").json()["status"] == "cancelled"
    back = f"/console/endpoints/{ep['id']}?tab=async"
    r = post(browser, f"/console/batches/{batch['id']}/cancel", back, {"back": back})
    assert r.status_code == 303 and r.headers["location"] == back
    assert api.get(f"/v1/batches/{batch['id']}").json()["status"] in ("cancelling", "cancelled")
    r = browser.get(f"/console/files/{fid}/content")
    assert r.status_code == 200 and r.headers["content-disposition"].startswith("attachment;") and b"req-1" in r.content
    other = api.post("/api/v1/keys", json={"name": "bob", "project": "team-b"}).json()["key"]
    signed_in(browser, other)
    assert browser.get(f"/console/async/{done['id']}").status_code == 404
    assert browser.get(f"/console/files/{fid}/content").status_code == 404
    assert post(browser, f"/console/async/{done['id']}/cancel", "/console/keys").status_code == 404
    assert post(browser, f"/console/batches/{batch['id']}/cancel", "/console/keys").status_code == 404


def test_the_task_page_draws_its_week_with_a_dst_day_at_its_length(browser, clock):
    browser.api.post("/api/v1/endpoints", json={"name": "e1", "template": "echo-chat"})
    body = {"name": "paris", "endpoint": "e1", "type": "daily", "timezone": "Europe/Paris"}
    sched = [{"time": "08:00", "min_replicas": 1, "max_replicas": 3}, {"time": "20:00", "min_replicas": 0, "max_replicas": 1}]
    task = browser.api.post("/api/v1/tasks", json={**body, "schedule": sched}).json()
    clock.now = datetime(2026, 3, 27, 12, 0, tzinfo=timezone.utc)
    signed_in(browser)
    page = browser.get(f"/console/tasks/{task['id']}").text
    assert "Sun 29 Mar (23 h)" in page and "Sat 28 Mar<" in page
    assert page.count(">1–3</text>") == 7 and "The week ahead in Europe/Paris" in page


def test_editing_a_tasks_schedule_patches_it_and_errors_stay_next_to_their_row(browser):
    browser.api.post("/api/v1/endpoints", json={"name": "e1", "template": "echo-chat"})
    sched = [{"time": "08:00", "min_replicas": 1, "max_replicas": 2}]
    task = browser.api.post(
        "/api/v1/tasks", json={"name": "t", "endpoint": "e1", "type": "daily", "timezone": "UTC", "schedule": sched}
    ).json()
    browser.api.post("/api/v1/tasks/t/activate")
    signed_in(browser)
    page = browser.get(f"/console/tasks/{task['id']}/edit").text
    assert 'value="08:00"' in page and 'id="schedule.1.time"' in page  # one blank row for one more time
    edit = f"/console/tasks/{task['id']}/edit"
    form = {
        "type": "daily",
        "timezone": "Europe/Paris",
        "schedule.0.time": "08:00",
        "schedule.0.min_replicas": "1",
        "schedule.0.max_replicas": "2",
    }
    bad = post(
        browser, edit, edit, form | {"schedule.2.time": "07:00", "schedule.2.min_replicas": "5", "schedule.2.max_replicas": "1"}
    )
    assert bad.status_code == 422 and "max_replicas" in field_error(bad.text, "schedule.2.max_replicas")
    dup = post(
        browser, edit, edit, form | {"schedule.3.time": "08:00", "schedule.3.min_replicas": "0", "schedule.3.max_replicas": "1"}
    )
    assert dup.status_code == 422 and "same time" in field_error(dup.text, "schedule.0.time")  # entries 0 and 1: rows 0 and 3

    assert browser.api.get("/api/v1/tasks/t").json()["timezone"] == "UTC"  # nothing changed
    ok = post(
        browser, edit, edit, form | {"schedule.1.time": "20:00", "schedule.1.min_replicas": "0", "schedule.1.max_replicas": "1"}
    )
    assert ok.status_code == 303
    got = browser.api.get("/api/v1/tasks/t").json()
    assert (
        got["timezone"] == "Europe/Paris"
        and [e["time"] for e in got["schedule"]] == ["08:00", "20:00"]
        and got["status"] == "active"
    )
    other = browser.api.post("/api/v1/keys", json={"name": "bob", "project": "team-b"}).json()["key"]
    signed_in(browser, other)
    assert browser.get(edit).status_code == 404
    assert post(browser, edit, "/console/keys", form).status_code == 404


def test_an_error_about_no_input_of_the_wizard_is_shown_at_its_top(browser, rt):
    signed_in(browser)
    r = post(
        browser,
        "/console/launch",
        "/console/launch?template=echo-chat",
        WIZARD | {"schedule.0.max_replicas": "50", "action": "review"},
    )
    assert r.status_code == 422 and re.search(r'<p class="error" role="alert">[^<]*max_replicas[^<]*10', r.text), r.text
    assert counts(rt) == (0, 0)


def test_admin_keys_see_and_create_projects_ordinary_keys_do_not(browser):
    signed_in(browser)
    page = browser.get("/console/keys").text
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    main = page.split('<main id="main"', 1)[1]
    assert title.strip() == "Keys · Rota" and "Create project" in main and "<td>default</td>" in main
    r = post(browser, "/console/projects", "/console/keys", {"name": "team-c", "request_log_retention_days": "9"})
    assert r.status_code == 303
    assert any(p["name"] == "team-c" and p["request_log_retention_days"] == 9 for p in browser.api.get("/api/v1/projects").json())
    r = post(browser, "/console/projects", "/console/keys", {"name": "team-quiet", "request_log_off": "on"})
    assert r.status_code == 303
    made = {p["name"]: p for p in browser.api.get("/api/v1/projects").json()}
    assert made["team-quiet"]["request_log"] is False and made["team-c"]["request_log"] is True
    assert re.search(r"<tr><td>team-quiet</td>(?:(?!</tr>).)*<td>off: calls not recorded</td>", browser.get("/console/keys").text)
    bad = post(browser, "/console/projects", "/console/keys", {"name": "Team C!", "request_log_retention_days": "0"})
    assert bad.status_code == 422 and field_error(bad.text, "name") and field_error(bad.text, "request_log_retention_days")
    dup = post(browser, "/console/projects", "/console/keys", {"name": "team-c"})
    assert dup.status_code == 409 and "exists" in field_error(dup.text, "name")
    member = browser.api.post("/api/v1/keys", json={"name": "m"}).json()["key"]
    signed_in(browser, member)
    assert "Create project" not in browser.get("/console/keys").text
    r = post(browser, "/console/projects", "/console/keys", {"name": "team-d"})
    assert r.status_code == 403 and not any(p["name"] == "team-d" for p in browser.api.get("/api/v1/projects").json())


NEW = {
    "name": "my-llm",
    "source": "hf",
    "hf_model_repo": "Qwen/Qwen2.5-0.5B-Instruct",
    "revision": "main",
    "gpu_type": "cpu",
    "gpu_count": "0",
    "engine.max_token_count": "2048",
    "engine.skip_special_tokens": "no",
    "scaling.min_replicas": "0",
    "scaling.max_replicas": "2",
    "scaling.cooldown_period_s": "120",
    "env.0.name": "TZ",
    "env.0.value": "Europe/Paris",
}


def test_a_custom_model_endpoint_from_the_form_summary_edit_and_create(browser):
    signed_in(browser)
    page = browser.get("/console/new/endpoint").text
    assert 'name="env.1.name"' in page and 'value="0"' in page
    more = post(browser, "/console/new/endpoint", "/console/new/endpoint", NEW | {"action": "add-env"})
    assert 'name="env.2.name"' in more.text and 'value="TZ"' in more.text
    review = post(browser, "/console/new/endpoint", "/console/new/endpoint", NEW | {"action": "review"})
    assert review.status_code == 200 and "Qwen/Qwen2.5-0.5B-Instruct" in review.text and "@ main" in review.text
    assert "TZ (values are write-only)" in review.text and "Europe/Paris" not in review.text.split("<section")[-1]
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', review.text))
    edit = browser.post("/console/new/endpoint", data=hidden | {"action": "edit:scaling"})
    assert 'id="scaling.min_replicas"' in edit.text and "autofocus" in edit.text and 'value="120"' in edit.text
    r = browser.post("/console/new/endpoint", data=hidden | {"action": "create"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/endpoints/")
    ep = browser.api.get("/api/v1/endpoints/my-llm").json()
    assert (ep["kind"], ep["model"], ep["revision"]) == ("hf_model", "Qwen/Qwen2.5-0.5B-Instruct", "main")
    assert ep["scaling"]["min_replicas"] == 0 and ep["scaling"]["cooldown_period_s"] == 120
    assert ep["engine"]["max_token_count"] == 2048 and ep["engine"]["skip_special_tokens"] is False
    assert list(ep["env"]) == ["TZ"]


SCHEDULED = {
    "scheduled": "yes",
    "task_name": "qwen-office-hours",
    "type": "daily",
    "timezone": "Asia/Tokyo",
    "schedule.0.time": "09:00",
    "schedule.0.min_replicas": "1",
    "schedule.0.max_replicas": "2",
    "schedule.1.time": "18:30",
    "schedule.1.min_replicas": "0",
    "schedule.1.max_replicas": "1",
}


def test_a_custom_model_and_the_task_that_schedules_it_in_one_form(browser, rt):
    signed_in(browser)
    before = counts(rt)
    bad = post(browser, "/console/new/endpoint", "/console/new/endpoint", NEW | SCHEDULED | {"schedule.1.time": "25:99"})
    assert bad.status_code == 422 and "schedule" in field_error(bad.text, "schedule.1.time") and counts(rt) == before
    big = NEW | SCHEDULED | {"schedule.0.max_replicas": "11"}  # over the platform's limit: only the service knows it
    for action in ("review", "create"):
        r = post(browser, "/console/new/endpoint", "/console/new/endpoint", big | {"action": action})
        assert r.status_code == 422 and "10" in field_error(r.text, "schedule.0.max_replicas") and counts(rt) == before
    review = post(browser, "/console/new/endpoint", "/console/new/endpoint", NEW | SCHEDULED | {"action": "review"})
    assert review.status_code == 200 and "qwen-office-hours" in review.text and "09:00 (Asia/Tokyo): 1–2 replicas" in review.text
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', review.text))
    edit = browser.post("/console/new/endpoint", data=hidden | {"action": "edit:schedule"})
    assert 'value="qwen-office-hours"' in edit.text and 'value="18:30"' in edit.text
    r = browser.post("/console/new/endpoint", data=hidden | {"action": "create"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/tasks/"), r.text
    task = browser.api.get("/api/v1/tasks/qwen-office-hours").json()
    assert task["status"] == "idle" and task["timezone"] == "Asia/Tokyo" and task["endpoint"]["name"] == "my-llm"
    assert [(e["time"], e["min_replicas"], e["max_replicas"]) for e in task["schedule"]] == [("09:00", 1, 2), ("18:30", 0, 1)]
    assert browser.api.get("/api/v1/endpoints/my-llm").json()["kind"] == "hf_model"
    # The task's name taken: neither is created, the error is next to the task's name.
    again = browser.post("/console/new/endpoint", data=hidden | {"name": "my-llm-2", "action": "create"}, follow_redirects=False)
    assert again.status_code == 409 and "exists" in field_error(again.text, "task_name")
    assert browser.api.get("/api/v1/endpoints/my-llm-2").status_code == 404


@pytest.mark.parametrize(
    "change, field",
    [
        ({"hf_model_repo": "not a repo"}, "hf_model_repo"),
        ({"source": "local", "model_path": "relative/dir"}, "model_path"),
        ({"gpu_type": "TPU"}, "gpu_type"),
        ({"scaling.min_replicas": "3"}, "scaling.max_replicas"),
        ({"engine.max_token_count": "abc"}, "engine.max_token_count"),
        ({"env.0.name": "LD_PRELOAD"}, "env"),
    ],
)
def test_an_invalid_custom_model_field_is_shown_next_to_it_and_creates_nothing(browser, rt, change, field):
    member = browser.api.post("/api/v1/keys", json={"name": "m"}).json()["key"]  # the env policy applies to ordinary keys
    signed_in(browser, member)
    for action in ("review", "create"):
        r = post(browser, "/console/new/endpoint", "/console/new/endpoint", NEW | change | {"action": action})
        assert r.status_code in (403, 422), (field, r.status_code)
        assert field_error(r.text, field), (field, re.findall(r'role="alert">([^<]*)<', r.text))
    assert counts(rt) == (0, 0)


def test_crafted_row_names_neither_crash_nor_blow_up_a_form(browser, rt):
    signed_in(browser)
    for crafted in ({"schedule.\u00b2.time": "08:00"}, {"schedule.99999999999.time": "08:00"}, {"env.\u00b2.name": "TZ"}):
        r = post(browser, "/console/launch", "/console/launch?template=echo-chat", WIZARD | crafted | {"action": "review"})
        assert r.status_code == 200, (crafted, r.status_code)
        r = post(browser, "/console/new/endpoint", "/console/new/endpoint", NEW | crafted | {"action": "edit:env"})
        assert r.status_code == 200 and len(r.text) < 200_000, crafted
    r = post(browser, "/console/new/endpoint", "/console/new/endpoint", NEW | {"env.300000.name": "A", "action": "edit:env"})
    assert r.status_code == 200 and len(r.text) < 200_000 and 'name="env.64.name"' not in r.text
    assert counts(rt) == (0, 0)


def test_a_request_record_opens_for_its_project_only_even_with_a_slash_in_its_id(browser, rt):
    from rota.domain.requests import GatewayBatch

    ep = browser.api.post("/api/v1/endpoints", json={"name": "e1", "template": "echo-chat"}).json()
    record = {"record_id": "a" * 32, "request_id": "caller/own-id-1", "started_at": 1_795_000_000.0, "project_id": 1, "key_id": 1, "key_prefix": "rota_abc",
              "endpoint_id": ep["id"], "model": ep["routing_key"], "route": "/v1/chat/completions", "status": 200,
              "duration_ms": 12.5, "stream": False}  # fmt: skip
    stored = rt.requests.ingest(GatewayBatch.model_validate({"records": [record], "dropped": 0}))
    assert stored["stored"] == 1, stored
    signed_in(browser)
    page = browser.get(f"/console/endpoints/{ep['id']}?tab=requests").text
    assert 'href="/console/requests/caller/own-id-1"' in page
    r = browser.get("/console/requests/caller/own-id-1")
    assert r.status_code == 200 and "rota_abc" in r.text and "http.route" in r.text
    other = browser.api.post("/api/v1/keys", json={"name": "bob", "project": "team-b"}).json()["key"]
    signed_in(browser, other)
    assert browser.get("/console/requests/caller/own-id-1").status_code == 404


def test_messages_from_ray_are_escaped_in_the_page_and_the_live_status(browser, rt):
    from sqlalchemy import update

    from rota.console.live import status_block
    from rota.store.tables import EndpointRow

    ep = browser.api.post("/api/v1/endpoints", json={"name": "e1", "template": "echo-chat"}).json()
    with rt.db.session() as s:
        s.execute(update(EndpointRow).where(EndpointRow.id == ep["id"]).values(message='<img src=x onerror="alert(1)">'))
    signed_in(browser)
    page = browser.get(f"/console/endpoints/{ep['id']}").text
    block = status_block(rt.endpoints.get(rt.auth.principal_of(1), ep["id"]))
    for text in (page, block):
        assert "<img src=x" not in text and "&lt;img src=x" in text


def test_stream_limits_per_key_project_and_in_all():
    from rota.console.live import Limit
    from rota.domain.errors import Busy
    from rota.services.auth import Principal

    limit = Limit("streams", per_key=2, per_project=3, total=4)
    a1, a2, b1 = Principal(1, 1, "p", False), Principal(2, 1, "p", False), Principal(3, 2, "q", False)
    limit.admit(a1)
    limit.admit(a1)
    with pytest.raises(Busy):
        limit.admit(a1)  # the key's own cap
    limit.admit(a2)
    with pytest.raises(Busy):
        limit.admit(a2)  # the project's cap, though this key holds one
    limit.admit(b1)
    with pytest.raises(Busy):
        limit.admit(b1)  # the process's cap
    limit.release(a1)
    limit.admit(b1)


def test_console_pages_carry_security_headers_and_the_api_does_not_change(browser):
    page = browser.get("/console/sign-in")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    api = browser.get("/healthz")
    assert "content-security-policy" not in api.headers
    # Errors under /console are pages (with their headers), under /api JSON as before.
    r = browser.put("/console/sign-in")
    assert r.status_code == 405 and "<html" in r.text and "GET" in r.headers["allow"]
    r = browser.get("/console", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"].endswith("/console/")  # the slash added
    r = browser.get("/console/no-such-page")
    assert r.status_code == 404 and "<html" in r.text and "Not found" in r.text
    r = browser.put("/api/v1/tasks")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_the_session_cookie_is_secure_behind_tls(browser, rt):
    r = sign_in(browser, browser.admin_key)
    assert "secure" not in next(c for c in r.headers.get_list("set-cookie") if c.startswith("rota_session=")).lower()
    page = browser.get("/console/sign-in", headers={"x-forwarded-proto": "https"})
    r = browser.post(
        "/console/sign-in",
        data={"csrf_token": csrf_of(page.text), "key": browser.admin_key},
        headers={"x-forwarded-proto": "https"},
        follow_redirects=False,
    )
    assert "; secure" in next(c for c in r.headers.get_list("set-cookie") if c.startswith("rota_session=")).lower()


TASK = {"task_name": "nightly", "target": "endpoint", "endpoint": "e1", "type": "daily", "timezone": "Asia/Tokyo",
        "schedule.0.time": "22:00", "schedule.0.min_replicas": "0", "schedule.0.max_replicas": "1"}  # fmt: skip


def test_a_new_task_over_an_endpoint_or_its_own_application(browser, rt):
    browser.api.post("/api/v1/endpoints", json={"name": "e1", "template": "echo-chat"})
    signed_in(browser)
    page = browser.get("/console/new/task").text
    assert '<option value="e1"' in page
    r = post(browser, "/console/new/task", "/console/new/task", TASK)
    assert r.status_code == 303
    task = browser.api.get("/api/v1/tasks/nightly").json()
    assert (task["status"], task["endpoint"]["name"], task["timezone"], task["owns_endpoint"]) == (
        "idle",
        "e1",
        "Asia/Tokyo",
        False,
    )
    app = TASK | {"task_name": "own-app", "target": "application", "file_path": "echo", "deployment_name": "app"}
    assert post(browser, "/console/new/task", "/console/new/task", app).status_code == 303
    own = browser.api.get("/api/v1/tasks/own-app").json()
    assert own["owns_endpoint"] and (own["file_path"], own["deployment_name"]) == ("echo", "app")


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"timezone": "Asia/Atlantis"}, "timezone", "timezone"),
        ({"endpoint": "not-there"}, "endpoint", "no endpoint"),
        ({"endpoint": ""}, "endpoint", "endpoint"),
        ({"target": "application", "file_path": "no_such_script", "deployment_name": "app"}, "file_path", "no_such_script"),
        ({"target": "application", "file_path": "echo", "deployment_name": "nope"}, "deployment_name", "nope"),
        ({"task_name": "e1"}, "task_name", "exists"),
        ({"type": "one_off"}, "schedule.0.time", "date"),
    ],
)
def test_an_invalid_new_task_field_is_shown_next_to_it_and_creates_nothing(browser, rt, change, field, words):
    browser.api.post("/api/v1/endpoints", json={"name": "e1", "template": "echo-chat"})
    browser.api.post(
        "/api/v1/tasks",
        json={
            "name": "e1",
            "endpoint": "e1",
            "type": "daily",
            "timezone": "UTC",
            "schedule": [{"time": "01:00", "min_replicas": 0, "max_replicas": 1}],
        },
    )
    before = counts(rt)
    signed_in(browser)
    r = post(browser, "/console/new/task", "/console/new/task", TASK | change)
    assert r.status_code in (404, 409, 422), (field, r.status_code)
    message = field_error(r.text, field)
    assert message is not None and words in message, (field, message, re.findall(r'role="alert">([^<]*)<', r.text))
    assert counts(rt) == before


def test_another_projects_endpoint_cannot_be_driven_from_the_new_task_page(browser, rt):
    browser.api.post("/api/v1/endpoints", json={"name": "e1", "template": "echo-chat"})
    other = browser.api.post("/api/v1/keys", json={"name": "bob", "project": "team-b"}).json()["key"]
    signed_in(browser, other)
    assert '<option value="e1"' not in browser.get("/console/new/task").text
    r = post(browser, "/console/new/task", "/console/new/task", TASK)
    assert r.status_code in (404, 422) and "no endpoint" in field_error(r.text, "endpoint") and counts(rt) == (0, 1)


def test_the_wizards_preview_follows_its_fields_and_creates_nothing(browser, rt):
    signed_in(browser)
    r = post(browser, "/console/launch/preview", "/console/launch?template=echo-chat", WIZARD)
    assert (
        r.status_code == 200 and "Next fires once activated" in r.text and "Europe/Paris" in r.text and "replica-hours" in r.text
    )
    r = post(browser, "/console/launch/preview", "/console/launch?template=echo-chat", WIZARD | {"timezone": "Nowhere/Land"})
    assert r.status_code == 200 and "once the schedule is complete" in r.text and "Nowhere/Land" in r.text
    assert browser.post("/console/launch/preview", data=WIZARD).status_code == 403  # a post like any other: CSRF
    # Ready by 08:00: the fire moves earlier by the estimate (nothing measured for a new endpoint).
    r = post(browser, "/console/launch/preview", "/console/launch?template=echo-chat", WIZARD | {"schedule.0.ready_by": "on"})
    note = "starts 07:54:30 so that 1 replica is ready by 08:00 Europe/Paris; the default estimate 5 m 30 s"
    assert note in html.unescape(r.text), r.text
    assert counts(rt) == (0, 0)


@pytest.mark.parametrize("client_gone", [True, False])
def test_a_held_stream_gives_its_slot_back_once_however_it_ends(client_gone):
    """A client gone before the body starts: the body's own clean-up never runs, the
    response's does. A stream that ends normally: released once, not twice."""
    import anyio

    from rota.api.streaming import HeldStream, Once

    released = []
    release = Once(lambda: released.append(1))

    async def body():
        try:
            yield "data: one\n\n"
        finally:
            release()

    async def receive():
        if client_gone:
            return {"type": "http.disconnect"}
        await anyio.sleep(1)
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            await anyio.sleep(0.2)  # the client leaves meanwhile: the body never starts

    scope = {
        "type": "http",
        "asgi": {"spec_version": "2.3"},
        "method": "GET",
        "path": "/",
        "headers": [],
    }  # as uvicorn serves HTTP
    anyio.run(HeldStream(body(), release).__call__, scope, receive, send)
    assert released == [1]


def test_a_task_or_endpoint_named_new_has_its_page(browser):
    browser.api.post("/api/v1/endpoints", json={"name": "new", "template": "echo-chat"})
    body = {
        "name": "new",
        "endpoint": "new",
        "type": "daily",
        "timezone": "UTC",
        "schedule": [{"time": "01:00", "min_replicas": 0, "max_replicas": 1}],
    }
    assert browser.api.post("/api/v1/tasks", json=body).status_code == 201
    signed_in(browser)
    assert "<h1>Task new" in browser.get("/console/tasks/new").text
    assert "<h1>Endpoint new</h1>" in browser.get("/console/endpoints/new").text
