"""The request log, black-box: calls through the base URL with the official `openai`
client on the tiny vLLM model, then read back as a user reads them."""

import os
import subprocess
import sys
import time

import httpx
import pytest
from openai import AuthenticationError, BadRequestError, OpenAI

from support.endpoints import logged_request
from support.procs import wait_until


@pytest.fixture
def client(llm):
    return OpenAI(base_url=llm.base_url, api_key=llm.admin_key, max_retries=0)


def test_a_normal_call_is_logged_with_its_tokens_latency_and_replica(client, llm):
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=6, extra_headers={"x-request-id": "e2e-normal"}
    )
    out = raw.parse()
    assert raw.headers["x-request-id"] == "e2e-normal"
    r = logged_request(llm, "e2e-normal")
    assert r["http.response.status_code"] == 200 and r["error.type"] is None and r["rota.endpoint"] == "tiny"
    assert (r["gen_ai.request.model"], r["gen_ai.operation.name"]) == ("tiny", "chat")
    assert (r["gen_ai.usage.input_tokens"], r["gen_ai.usage.output_tokens"]) == (out.usage.prompt_tokens, 6)
    assert r["gen_ai.response.finish_reasons"] == [out.choices[0].finish_reason]
    assert r["rota.replica_id"] and r["rota.cold_start"] is False and r["rota.stream"] is False
    assert 0 <= r["rota.queue_ms"] < r["rota.duration_ms"] < 60_000
    assert r["rota.request_content"] is None  # content logging is off unless the endpoint turns it on


def test_a_stream_is_logged_with_its_usage_which_the_caller_gets_only_if_it_asks(client, llm):
    def stream(**extra):
        raw = client.chat.completions.with_raw_response.create(
            model="tiny", messages=[{"role": "user", "content": "count"}], max_tokens=5, stream=True, **extra
        )
        return raw.headers["x-request-id"], list(raw.parse())

    plain_id, plain = stream()
    assert all(c.usage is None for c in plain) and any(c.choices and c.choices[0].delta.content for c in plain)
    asked_id, asked = stream(stream_options={"include_usage": True})
    usage = asked[-1].usage
    assert usage is not None and asked[-1].choices == []
    for request_id in (plain_id, asked_id):
        r = logged_request(llm, request_id)
        assert r["rota.stream"] is True and r["http.response.status_code"] == 200
        assert r["gen_ai.usage.input_tokens"] == usage.prompt_tokens and r["gen_ai.usage.output_tokens"] == 5
        assert 0 < r["rota.time_to_first_token_ms"] <= r["rota.duration_ms"]


def test_a_rejected_and_an_unauthorised_call_are_logged_with_their_codes(client, llm):
    with pytest.raises(BadRequestError) as bad:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "word " * 200}], max_tokens=4)
    r = logged_request(llm, bad.value.response.headers["x-request-id"])
    assert r["http.response.status_code"] == 400 and r["error.type"] and r["rota.endpoint"] == "tiny"

    stranger = OpenAI(base_url=llm.base_url, api_key="rota_not-a-key", max_retries=0)
    with pytest.raises(AuthenticationError) as denied:
        stranger.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
    r = logged_request(llm, denied.value.response.headers["x-request-id"])  # the admin sees calls no project was found for
    assert r["http.response.status_code"] == 401 and r["error.type"] == "invalid_api_key" and r["rota.project"] is None

    listed = llm.api.get("/endpoints/tiny/requests", params={"status": "4xx"}).json()["data"]
    assert bad.value.response.headers["x-request-id"] in [x["request_id"] for x in listed]


def test_a_project_that_keeps_its_calls_out_of_the_request_log_leaves_no_record(client, llm):
    project = llm.api.get("/me").json()["project"]

    def switch(on: bool) -> None:
        assert llm.api.patch(f"/projects/{project}", json={"request_log": on}).json()["request_log"] is on
        time.sleep(2)  # the gateway pulls its routing table every second

    def call(request_id: str) -> None:
        raw = client.chat.completions.with_raw_response.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2, extra_headers={"x-request-id": request_id}
        )
        assert raw.parse().choices

    try:
        switch(False)
        call("e2e-kept-out")
        time.sleep(2)  # a record of it, had the gateway made one, would reach the control plane now
    finally:
        switch(True)

    def recorded_again(attempt=iter(range(100))) -> bool:
        call(request_id := f"e2e-recorded-again-{next(attempt)}")
        time.sleep(1.5)  # shipped every second
        return llm.api.get(f"/requests/{request_id}").status_code == 200

    wait_until(recorded_again, 30, 0, "a call recorded again")
    assert llm.api.get("/requests/e2e-kept-out").status_code == 404  # records go in order: it would be there by now


def test_the_cli_shows_an_endpoints_requests(client, llm):
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": "cli"}], max_tokens=2, extra_headers={"x-request-id": "e2e-cli"}
    )
    assert raw.parse().choices
    logged_request(llm, "e2e-cli")
    env = {**os.environ, "ROTA_HOME": str(llm.home)}
    p = subprocess.run(
        [sys.executable, "-m", "rota", "--api-url", llm.url, "endpoints", "requests", "tiny", "--search", "e2e-cli"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    header, line = p.stdout.strip().splitlines()
    assert header.startswith("TIME") and "e2e-cli" in line and " 200 " in line
    assert httpx.get(llm.url + "/api/v1/endpoints/tiny/requests").status_code == 401  # no key, no log


def test_the_metrics_count_what_the_request_log_holds(llm):
    from prometheus_client.parser import text_string_to_metric_families

    logged, cursor = 0, None
    while True:
        page = llm.api.get("/endpoints/tiny/requests", params={"limit": 1000, **({"cursor": cursor} if cursor else {})}).json()
        logged += len(page["data"])
        if not (cursor := page["next_cursor"]):
            break
    text = httpx.get(llm.url + "/metrics", headers={"Authorization": f"Bearer {llm.admin_key}"}, timeout=10).text
    counted = sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "rota_gateway_requests_total" and s.labels["endpoint"] == "tiny"
    )
    assert logged >= 5 and counted == logged
    # The monitoring series of the last hour (the whole session) count the same calls,
    # and show the replica that served them.
    series = llm.api.get("/endpoints/tiny/metrics", params={"step": 60}).json()
    assert sum(p["requests"] for p in series["points"]) == logged

    def sampled():  # replicas are sampled every 10 s: the first sample may be a moment away
        points = llm.api.get("/endpoints/tiny/metrics", params={"step": 60}).json()["points"]
        return any(p["replicas_running"] for p in points)

    wait_until(sampled, 30, 1, what="a sample of the endpoint's running replica")
