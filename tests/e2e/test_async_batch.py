"""Async invocations on real vLLM: a batch of 200 chat requests through the base URL with
the official `openai` client on the tiny model, its 200 answers in input order and a line
the engine refuses in the error file; single async calls with the engine's usage in their answer, polled and
with a webhook to a local receiver (its signature checked); a request and a batch
cancelled while queued (what was queued is never sent)."""

import json

import httpx
import pytest
from openai import OpenAI

from support.endpoints import logged_request, wait_relayed
from support.procs import wait_until
from support.webhooks import signed_by, webhook_receiver


@pytest.fixture
def client(llm):
    return OpenAI(base_url=llm.base_url, api_key=llm.admin_key, max_retries=0)


def test_a_batch_on_the_tiny_model_with_the_official_client(client, llm):
    wait_relayed(llm.base_url.removesuffix("/v1"), llm.admin_key)
    lines = [
        {
            "custom_id": f"n{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "tiny", "messages": [{"role": "user", "content": f"say {i}"}], "max_tokens": 4, "ignore_eos": True},
        }
        for i in range(200)
    ]
    too_long = {**lines[0], "custom_id": "too-long"}
    too_long["body"] = {**lines[0]["body"], "messages": [{"role": "user", "content": "word " * 200}]}
    lines.insert(5, too_long)
    f = client.files.create(file=("b.jsonl", "\n".join(map(json.dumps, lines)).encode()), purpose="batch")
    batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    done = wait_until(
        lambda: (b := client.batches.retrieve(batch.id)).status in ("completed", "failed", "expired") and b,
        240,
        0.5,
        what="the batch done",
    )
    assert done.status == "completed" and (done.request_counts.completed, done.request_counts.failed) == (200, 1)
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert [x["custom_id"] for x in out] == [f"n{i}" for i in range(200)]
    assert all(x["response"]["body"]["usage"]["completion_tokens"] == 4 for x in out)
    (err,) = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert err["custom_id"] == "too-long" and err["response"]["status_code"] == 400  # the engine's answer, kept


def test_async_calls_polled_and_with_a_webhook(llm):
    auth = {"Authorization": f"Bearer {llm.admin_key}"}

    def post(body):
        r = httpx.post(f"{llm.base_url}/async/completions", json=body, headers=auth)
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def get(rid):
        return httpx.get(f"{llm.base_url}/async/{rid}", headers=auth).json()

    body = {"model": "tiny", "prompt": "once upon", "max_tokens": 3}
    with webhook_receiver() as (url, got):
        polled, hooked = post(body), post({**body, "webhook_url": url})
        a = wait_until(lambda: (x := get(polled))["status"] in ("succeeded", "failed") and x, 120, 0.3, what="the answer")
        assert a["status"] == "succeeded" and a["response"]["usage"]["completion_tokens"] == 3
        assert logged_request(llm, a["id"])["gen_ai.usage.output_tokens"] == 3  # in the request log under its id

        # The webhook, checked as its receiver would: t=<time>,sha256=<HMAC of "<t>." + body>.
        wait_until(lambda: got, 60, 0.3, what="the webhook")
        sent, sig = got[0]
        assert signed_by(llm.api.get("/async/webhook-secret").json()["secret"], sig, sent)
        delivered = json.loads(sent)
        assert delivered["id"] == hooked and delivered["response"]["usage"]["completion_tokens"] == 3


def test_a_queued_request_and_a_batch_cancelled_with_the_official_client(client, llm):
    auth = {"Authorization": f"Bearer {llm.admin_key}"}
    body = {"model": "tiny", "messages": [{"role": "user", "content": "go"}], "max_tokens": 16, "ignore_eos": True}
    lines = [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions", "body": body} for i in range(200)]
    f = client.files.create(file=("c.jsonl", "\n".join(map(json.dumps, lines)).encode()), purpose="batch")
    batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    wait_until(lambda: client.batches.retrieve(batch.id).request_counts.completed > 0, 60, 0.05, what="a line answered")
    # Sent oldest first: a request submitted now waits behind the batch's lines still queued.
    single = httpx.post(f"{llm.base_url}/async/chat/completions", json={**body, "max_tokens": 4}, headers=auth).json()["id"]
    r = httpx.delete(f"{llm.base_url}/async/{single}", headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert client.batches.cancel(batch.id).status in ("cancelling", "cancelled")
    done = wait_until(lambda: (b := client.batches.retrieve(batch.id)).status == "cancelled" and b, 120, 0.5, what="cancelled")
    sent = done.request_counts.completed + done.request_counts.failed
    assert done.request_counts.total == 200 and 0 < sent < 200  # what was sent finished; the rest never went
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert len(out) == done.request_counts.completed and [x["custom_id"] for x in out] == sorted(
        (x["custom_id"] for x in out), key=lambda c: int(c[1:])
    )
    gone = httpx.get(f"{llm.base_url}/async/{single}", headers=auth).json()
    assert (gone["status"], gone["attempts"], gone["response"]) == ("cancelled", 0, None)  # never sent
