"""The console, end to end in headless Chromium on the tiny vLLM model: sign in, pick a
model, fill the launch wizard with a daily task in a non-UTC timezone, Launch, Activate,
the fire starts the endpoint, then Playground, Request logs, Monitoring, Logs, Scaling,
stop, start and delete, all through the pages, under the pages' own Content-Security-Policy
(htmx, uPlot, the live status and log streams and the Playground all work within it)."""

import re
from datetime import datetime, timedelta

import pytest
import pytz
from playwright.sync_api import expect, sync_playwright

from support.browser import launch, screenshots
from support.procs import wait_until
from support.tasks import wait_task

ZONE = "Asia/Kolkata"  # +05:30, no DST: the local time the test writes is plain to check
STARTUP_MS = 300_000  # the fire, then a vLLM engine starting on two CPU cores


@pytest.fixture
def page(llm):
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("dialog", lambda d: d.accept())  # stop and delete ask first
        yield page
        browser.close()
    # Whatever the test got to, its task and engine go: the package's other tests share the CPUs.
    llm.api.delete("/tasks/wizard-daily")
    llm.api.delete("/endpoints/wizard")


def test_launch_schedule_activate_and_run_an_endpoint_from_the_browser(page, llm):
    url = llm.url
    page.goto(url + "/console/")
    page.get_by_label("API key").fill(llm.admin_key)
    page.get_by_role("button", name="Sign in").click()

    page.get_by_role("link", name="Models").click()
    page.get_by_role("searchbox").fill("tiny")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Dedicated endpoint from tiny-llama-cpu").click()
    # Due in ~15 s in Kolkata: enough to review, launch and activate first (each a page of ~0.1 s).
    at = (datetime.now(pytz.timezone(ZONE)) + timedelta(seconds=15)).strftime("%H:%M:%S")
    page.get_by_label("Endpoint name").fill("wizard")
    page.get_by_label("Routing key (the model clients send; optional)").fill("wizard")
    page.get_by_label("Task name").fill("wizard-daily")
    page.get_by_label("Timezone (IANA name; type to search)").fill(ZONE)
    page.get_by_label("Time 1").fill(at)
    page.get_by_label("Min replicas 1").fill("1")
    page.get_by_label("Max replicas 1").fill("1")
    page.get_by_label("Context length (tokens)").fill("256")
    page.get_by_label("Longest prompt (tokens)").fill("64")
    page.get_by_role("button", name="Review").click()
    expect(page.locator("main")).to_contain_text(f"{at}")
    page.get_by_role("button", name="Launch").click()
    expect(page.locator("h1 .badge")).to_have_text("idle")

    page.get_by_role("link", name="Tasks").click()
    page.get_by_role("button", name="Activate wizard-daily", exact=True).click()
    expect(page.get_by_role("button", name="Deactivate wizard-daily")).to_be_visible()
    task = wait_task(llm, "wizard-daily", lambda t: t["last_run"] is not None, timeout=90, what="the daily entry fired")
    assert task["last_run"]["trigger"] == "schedule" and task["status"] == "active"

    page.get_by_role("link", name="wizard-daily").click()
    expect(page.locator("main")).to_contain_text("on time")  # the run, in the task's history
    page.get_by_role("link", name="wizard", exact=True).click()
    # The status block refreshes itself (htmx) until the engine serves: no reload.
    expect(page.locator("#ep-status .badge")).to_have_text("RUNNING", timeout=STARTUP_MS)
    ep_url = page.url.split("?")[0]

    page.get_by_role("link", name="Playground").click()
    page.get_by_label("Message").fill("Say hello")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#answer")).to_have_attribute("data-done", "true", timeout=60_000)
    answer = page.locator("#answer").inner_text()
    assert answer.strip() and not answer.startswith("[") and "[error" not in answer and "did not answer" not in answer, answer

    # The gateway ships its records within a second or two: then the tab lists the call.
    wait_until(lambda: llm.api.get("/endpoints/wizard/requests").json()["data"], 30, what="the Playground's call logged")
    page.get_by_role("link", name="Request logs").click()
    row = page.locator("table.list tbody tr").first
    expect(row).to_contain_text("200")
    expect(row).to_contain_text(llm.admin_key[:12])  # joined to the signed-in key
    row.get_by_role("link").click()
    expect(page.locator("main")).to_contain_text("gen_ai.usage.output_tokens")
    expect(page.locator("main")).to_contain_text("chat")
    page.go_back()

    # Each vLLM replica reports its engine's gauges and its hardware every 10 s.
    series = wait_until(
        lambda: (
            (s := llm.api.get("/endpoints/wizard/metrics").json())["hardware"]
            and any(p["kv_cache_usage"] is not None for p in s["points"])
            and s
        ),
        40,
        what="the replica's own figures",
    )
    (replica,) = series["hardware"]
    assert replica["replica"] in llm.api.get("/endpoints/wizard").json()["replicas"]["ids"]
    assert all(
        p["memory_bytes"] > 2**27 and p["cpu_percent"] >= 0 for p in replica["points"]
    )  # vLLM's processes: well over 128 MiB
    engine = [p for p in series["points"] if p["kv_cache_usage"] is not None]
    assert all(0 <= p["kv_cache_usage"] <= 1 and p["engine_running"] >= 0 and p["engine_waiting"] >= 0 for p in engine)
    page.goto(ep_url + "?tab=monitoring&window=15m")
    expect(page.locator("#chart-requests canvas")).to_be_visible()
    assert int(page.locator("#chart-requests").get_attribute("data-points")) > 0
    for chart in ("#chart-streams", "#chart-inflight", "#chart-kv", "#chart-engine", "#chart-cpu", "#chart-memory"):
        expect(page.locator(f"{chart} canvas")).to_be_visible()
    assert re.search(r"[1-9]\d* calls? in the last 15m", page.locator("main").inner_text())

    page.get_by_role("link", name="Logs", exact=True).click()
    replica = llm.api.get("/endpoints/wizard").json()["replicas"]["ids"][0]
    expect(page.locator("#log-lines")).to_contain_text(replica, timeout=60_000)  # the replica's own lines, live

    page.get_by_role("link", name="Scaling").click()
    before = llm.api.get("/endpoints/wizard").json()["replicas"]["ids"]
    page.get_by_label("Max replicas").fill("2")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("main")).to_contain_text("Bounds in force")
    # Applied in place: once Ray Serve runs the new bounds, the serving replica is the same one.
    ep = wait_until(
        lambda: (e := llm.api.get("/endpoints/wizard").json())["converged"] and e["status"] == "RUNNING" and e,
        60,
        what="the scaling edit applied",
    )
    assert ep["scaling"]["max_replicas"] == 2 and ep["replicas"]["ids"] == before

    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#ep-status .badge")).to_have_text("STOPPED", timeout=60_000)
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    assert llm.api.get("/endpoints/wizard").json()["desired"] == "running"
    screenshots(page, "flow-endpoint")
    # A driven endpoint is not deleted under its task: the page says so, in words.
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("alert")).to_contain_text("wizard-daily drive this endpoint")
    page.goto(url + "/console/tasks/wizard-daily")
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"/console/tasks$"))
    page.goto(ep_url)
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"/console/endpoints$"))
    assert llm.api.get("/endpoints/wizard").json()["desired"] == "deleted"
    assert llm.api.get("/tasks/wizard-daily").status_code == 404
