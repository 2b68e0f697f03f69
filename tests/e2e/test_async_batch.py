"""Async invocations on real vLLM: a batch of 200 chat requests through the base URL with
the official `openai` client on the tiny model, its 200 answers in input order and a line
the engine refuses in the error file; a single async call with the engine's usage in its answer."""

import json

import httpx
import pytest
from openai import OpenAI

from support.endpoints import logged_request, wait_relayed
from support.procs import wait_until


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


def test_a_single_async_call_answers_with_the_engines_body(llm):
    auth = {"Authorization": f"Bearer {llm.admin_key}"}
    body = {"model": "tiny", "prompt": "once upon", "max_tokens": 3}
    r = httpx.post(f"{llm.base_url}/async/completions", json=body, headers=auth)
    assert r.status_code == 202, r.text

    def answered():
        a = httpx.get(f"{llm.base_url}/async/{r.json()['id']}", headers=auth).json()
        return a if a["status"] in ("succeeded", "failed") else None

    a = wait_until(answered, 120, 0.3, what="the async answer")
    assert a["status"] == "succeeded" and a["response"]["usage"]["completion_tokens"] == 3
    assert logged_request(llm, a["id"])["gen_ai.usage.output_tokens"] == 3  # in the request log under its id
