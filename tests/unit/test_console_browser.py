"""The console in a real headless Chromium over the in-memory Ray: every page passes an
accessibility check (axe-core: no serious or critical violation), fits 1280x800 and
390x844 without scrolling sideways, and is screenshotted at both sizes; a wrong key, a
post without its CSRF token, another project's endpoint and an invalid wizard field are
refused as a user sees them. The whole flow on a real vLLM endpoint is in
tests/e2e/test_console_flow.py."""

import re
import threading
import time

import httpx
import pytest
import uvicorn
from playwright.sync_api import expect, sync_playwright

from rota.api.app import create_app
from rota.domain.requests import GatewayBatch
from support.browser import axe_violations, launch, no_horizontal_scroll, screenshots, with_axe
from support.procs import free_port

SCHEDULE = {
    "type": "daily",
    "timezone": "America/New_York",
    "schedule": [
        {"time": "07:30", "min_replicas": 1, "max_replicas": 2},
        {"time": "19:00", "min_replicas": 0, "max_replicas": 1},
    ],
}


@pytest.fixture
def console(rt, settings):
    """The control plane served on a free port (uvicorn, in this process), its loops stopped."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, rt), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the console did not start"
        time.sleep(0.05)
    rt.reconciler.stop()
    rt.scheduler.shutdown()
    rt.dispatcher.stop()
    api = httpx.Client(base_url=url + "/api/v1", headers={"Authorization": f"Bearer {settings.admin_key_path.read_text()}"})
    yield url, api, settings.admin_key_path.read_text()
    api.close()
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def chromium():
    with sync_playwright() as p:
        browser = launch(p)
        yield browser
        browser.close()


def check(page, name):
    """Accessible, no sideways scrolling at either size, and screenshotted."""
    assert axe_violations(page) == [], name
    assert 0 < len(page.title()) < 60, (name, page.title())
    for size in ({"width": 1280, "height": 800}, {"width": 390, "height": 844}):
        page.set_viewport_size(size)
        assert no_horizontal_scroll(page), (name, size)
    page.set_viewport_size({"width": 1280, "height": 800})
    screenshots(page, name)


def test_every_page_is_accessible_fits_both_sizes_and_refuses_what_it_must(console, chromium, rt):
    url, api, admin_key = console
    api.post("/endpoints", json={"name": "chat-a", "template": "echo-chat", "routing_key": "chat-a"}).raise_for_status()
    api.post("/tasks", json={"name": "nightly", "endpoint": "chat-a", **SCHEDULE}).raise_for_status()
    ep = api.get("/endpoints/chat-a").json()
    page = chromium.new_page(viewport={"width": 1280, "height": 800})
    with_axe(page)
    blocked = []  # what the pages' Content-Security-Policy blocked: nothing of theirs may be
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)

    # Signing in: a wrong key is refused, next to the field.
    page.goto(url + "/")
    expect(page).to_have_url(re.compile(r"/console/sign-in"))
    check(page, "sign-in")
    page.get_by_label("API key").fill("rota_wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#err-key")).to_contain_text("not valid")
    page.get_by_label("API key").fill(admin_key)
    page.keyboard.press("Enter")  # keyboard alone
    expect(page).to_have_url(re.compile(r"/console/endpoints$"))
    check(page, "endpoints")

    page.get_by_role("link", name="New endpoint for a custom model").click()
    check(page, "endpoint-new")
    page.get_by_label("Endpoint name").fill("custom-qwen")
    page.get_by_label("Hugging Face repo (org/name)").fill("Qwen/Qwen2.5-0.5B-Instruct")
    page.get_by_role("button", name="Add variable").click()
    expect(page.get_by_label("Name 3")).to_be_focused()  # the new row, ready to type
    page.get_by_role("button", name="Review").click()
    check(page, "endpoint-new-summary")

    page.get_by_role("link", name="Models").click()
    check(page, "models")
    page.get_by_role("link", name="Dedicated endpoint from echo-chat").click()
    check(page, "launch")
    page.get_by_label("Endpoint name").fill("wizard-ep")
    page.get_by_label("Task name").fill("wizard-task")
    page.get_by_label("Timezone (IANA name; type to search)").fill("Mars/Olympus")
    page.get_by_label("Time 1").fill("08:15")
    page.get_by_label("Min replicas 1").fill("1")
    page.get_by_label("Max replicas 1").fill("1")
    page.get_by_role("button", name="Review").click()
    expect(page.locator("#err-timezone")).to_contain_text("timezone")
    expect(page.get_by_label("Timezone (IANA name; type to search)")).to_have_attribute("aria-invalid", "true")
    check(page, "launch-invalid")
    page.get_by_label("Timezone (IANA name; type to search)").fill("Asia/Kolkata")
    page.keyboard.press("Tab")  # a changed field: the preview follows (htmx), before any Review
    expect(page.locator("#preview")).to_contain_text("02:45 UTC")
    page.get_by_role("button", name="Review").click()
    expect(page.get_by_role("heading", name="Summary")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Asia/Kolkata")
    expect(page.locator("main")).to_contain_text("02:45 UTC")  # 08:15 in Kolkata (+05:30)
    check(page, "launch-summary")
    page.get_by_role("button", name="Launch").click()
    expect(page.locator(".notice")).to_contain_text("Launched")
    expect(page.locator("h1 .badge")).to_have_text("idle")
    check(page, "task")
    page.get_by_role("link", name="Edit").click()
    check(page, "task-edit")
    page.get_by_label("Time 2").fill("21:00")
    page.get_by_label("Min replicas 2").fill("0")
    page.get_by_label("Max replicas 2").fill("1")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name=re.compile("Task wizard-task"))).to_be_visible()
    assert [e["time"] for e in api.get("/tasks/wizard-task").json()["schedule"]] == ["08:15", "21:00"]

    page.get_by_role("link", name="Tasks").click()
    check(page, "tasks")
    page.get_by_role("link", name="New task").click()
    check(page, "task-new")
    page.get_by_role("link", name="Tasks").click()
    page.evaluate("window.notReloaded = true")
    page.get_by_role("button", name="Activate wizard-task", exact=True).click()
    expect(page.get_by_role("button", name="Deactivate wizard-task", exact=True)).to_be_visible()
    assert api.get("/tasks/wizard-task").json()["status"] == "active"
    assert page.evaluate("window.notReloaded === true")  # htmx swapped the row in place

    for tab in ("overview", "playground", "monitoring", "requests", "logs", "events", "async", "scaling"):
        page.goto(f"{url}/console/endpoints/{ep['id']}?tab={tab}")
        expect(page.locator("#ep-status")).to_be_visible()
        check(page, f"endpoint-{tab}")
    # The status block follows the endpoint live (server-sent events), without a reload.
    page.goto(f"{url}/console/endpoints/{ep['id']}")
    rt.reconciler.tick()
    rt.reconciler.tick()
    expect(page.locator("#ep-status .badge")).to_have_text("RUNNING", timeout=10_000)
    api.post("/endpoints/chat-a/stop").raise_for_status()
    rt.reconciler.tick()
    expect(page.locator("#ep-status .badge")).to_have_text("STOPPED", timeout=10_000)
    api.post("/endpoints/chat-a/start").raise_for_status()
    rt.reconciler.tick()
    expect(page.locator("#ep-status .badge")).to_have_text("RUNNING", timeout=10_000)

    # A request log record and an async request, opened from their tabs.
    record = {"record_id": "b" * 32, "request_id": "req-browser-1", "started_at": time.time(), "project_id": 1, "key_id": 1,
              "key_prefix": admin_key[:12], "endpoint_id": ep["id"], "model": "chat-a", "route": "/v1/chat/completions",
              "status": 200, "duration_ms": 8.0}  # fmt: skip
    rt.requests.ingest(GatewayBatch.model_validate({"records": [record], "dropped": 0}))
    page.goto(f"{url}/console/endpoints/{ep['id']}?tab=requests")
    page.get_by_role("link", name="req-browser-1").click()
    expect(page.get_by_role("heading", name=re.compile("req-browser-1"))).to_be_visible()
    check(page, "request")
    queued = api.post(f"{url}/v1/async/chat/completions", json={"model": "chat-a", "messages": []})
    assert queued.status_code == 202, queued.text
    page.goto(f"{url}/console/endpoints/{ep['id']}?tab=async")
    page.get_by_role("link", name=queued.json()["id"]).click()
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    check(page, "async-request")

    page.get_by_role("link", name="Keys").click()
    check(page, "keys")

    # Keyboard alone: Tab reaches the row's button, Enter presses it.
    page.goto(f"{url}/console/tasks")
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('aria-label')") == "Deactivate wizard-task":
            break
    else:
        raise AssertionError("Tab never reached the Deactivate button")
    page.keyboard.press("Enter")
    # exact: a role name matches as a case-insensitive substring by default, and
    # "Deactivate wizard-task" contains "activate wizard-task" (the expect would pass at
    # once, before the swapped row, and the read below would race the POST).
    expect(page.get_by_role("button", name="Activate wizard-task", exact=True)).to_be_visible()
    assert api.get("/tasks/wizard-task").json()["status"] == "idle"

    # A form post without its CSRF token (the session cookie alone) changes nothing.
    refused = page.request.post(f"{url}/console/endpoints/{ep['id']}/stop", form={"x": "1"})
    assert refused.status == 403 and "CSRF" in refused.text()
    assert api.get("/endpoints/chat-a").json()["desired"] == "running"

    # Another project's key sees a 404 for this endpoint, in words.
    other = api.post("/keys", json={"name": "bob", "project": "team-b"}).json()["key"]
    second = chromium.new_page()
    with_axe(second)
    second.goto(url + "/console/sign-in")
    second.get_by_label("API key").fill(other)
    second.get_by_role("button", name="Sign in").click()
    expect(second.locator("main")).to_contain_text("No endpoints yet")
    response = second.goto(f"{url}/console/endpoints/{ep['id']}")
    assert response.status == 404
    expect(second.get_by_role("heading", name="Not found")).to_be_visible()
    check(second, "not-found")
    assert blocked == []


def tab_to(page, target, limit=120):
    """Press Tab until ``target`` has the focus (so it is reachable by keyboard, in order),
    and check that the focus is drawn (its outline or shadow differs from unfocused)."""
    drawn = "el => getComputedStyle(el).outline + ' ' + getComputedStyle(el).boxShadow"
    unfocused = target.evaluate(drawn)
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            assert target.evaluate(drawn) != unfocused, f"no visible focus on {target}"
            return
    raise AssertionError(f"Tab never reached {target}")


def test_sign_in_launch_and_activate_with_the_keyboard_alone(console, chromium):
    url, api, admin_key = console
    page = chromium.new_page(viewport={"width": 1280, "height": 800})
    page.goto(url + "/console/sign-in")
    tab_to(page, page.get_by_label("API key"))
    page.keyboard.type(admin_key)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/endpoints$"))

    tab_to(page, page.get_by_role("link", name="Models"))
    page.keyboard.press("Enter")
    tab_to(page, page.get_by_role("link", name="Dedicated endpoint from echo-chat"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Launch a dedicated endpoint")).to_be_visible()
    for label, text in (
        ("Endpoint name", "kb-ep"),
        ("Task name", "kb-task"),
        ("Timezone (IANA name; type to search)", "Europe/Paris"),
        ("Time 1", "07:00"),
        ("Min replicas 1", "1"),
        ("Max replicas 1", "2"),
    ):
        tab_to(page, page.get_by_label(label, exact=True))
        page.keyboard.type(text)
    tab_to(page, page.get_by_label("Ready by: start row 1 early"))
    page.keyboard.press("Space")
    tab_to(page, page.get_by_role("button", name="Review"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Summary")).to_be_visible()
    tab_to(page, page.get_by_role("button", name="Launch"))
    page.keyboard.press("Enter")
    expect(page.locator(".notice")).to_contain_text("Launched")
    tab_to(page, page.get_by_role("button", name="Activate"))
    page.keyboard.press("Enter")
    expect(page.locator("h1 .badge")).to_have_text("active")
    task = api.get("/tasks/kb-task").json()
    assert (task["status"], task["timezone"], task["endpoint"]["name"]) == ("active", "Europe/Paris", "kb-ep")
    assert task["schedule"][0] == {"time": "07:00", "min_replicas": 1, "max_replicas": 2, "ready_by": True}
