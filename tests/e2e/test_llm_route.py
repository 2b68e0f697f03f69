"""The OpenAI route of a task running serve:app, called as users call it."""

import httpx
import pytest
from openai import BadRequestError, NotFoundError, OpenAI

from support.tasks import kinds, local_in, wait_task, zone_near_noon


@pytest.fixture
def client(llm):
    return OpenAI(base_url=llm.base_url, api_key="unused")


def test_models_lists_served_name(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_chat_completion(client):
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=8)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.usage.completion_tokens == 8 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + 8


def test_chat_completion_streamed(client):
    chunks = list(
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=12, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage.completion_tokens == 12
    assert any(c.choices and c.choices[0].finish_reason == "length" for c in chunks)


def test_completions_both_ways(client):
    r = client.completions.create(model="tiny", prompt="the model", max_tokens=5)
    assert r.choices[0].text and r.usage.completion_tokens == 5
    parts = [c.choices[0].text for c in client.completions.create(model="tiny", prompt="the model", max_tokens=5, stream=True)]
    assert len(parts) >= 2


def test_over_long_prompt_is_400_in_openai_format(client, llm):
    with pytest.raises(BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello world " * 60}], max_tokens=4)
    assert "max_input_length is 64" in str(e.value)
    raw = httpx.post(f"{llm.base_url}/completions", json={"model": "tiny", "prompt": "word " * 300, "max_tokens": 2}, timeout=30)
    assert raw.status_code == 400
    err = raw.json()["error"]
    assert err["type"] and err["message"] and err["code"] == 400


def test_unknown_model_is_404_in_openai_format(client):
    with pytest.raises(NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}], max_tokens=2)


def test_health_route(llm):
    assert httpx.get(llm.base_url.removesuffix("/v1") + "/health", timeout=10).status_code == 200


def test_bad_model_path_fails_the_task_with_a_reason(llm):
    tz = zone_near_noon()
    body = {
        "name": "no-weights", "file_path": "serve", "deployment_name": "app", "type": "one_off", "timezone": tz,
        "schedule": [{"time": local_in(tz, 2).strftime("%Y-%m-%dT%H:%M:%S"), "min_replicas": 1, "max_replicas": 1}],
        "args": {"model": "/nonexistent/weights"}, "resources": {"num_cpus": 0.5},
    }  # fmt: skip
    assert llm.api.post("/tasks", json=body).status_code == 201
    llm.api.post("/tasks/no-weights/activate").raise_for_status()
    t = wait_task(llm, "no-weights", lambda t: t["status"] == "failed", timeout=180, what="bad model fails")
    assert "/nonexistent/weights does not exist" in t["status_reason"]
    assert "failed" in kinds(llm, "no-weights")
    llm.api.delete("/tasks/no-weights")


def test_bad_args_are_rejected_before_anything_runs(llm):
    body = {
        "name": "bad-args", "file_path": "serve", "deployment_name": "app", "type": "daily", "timezone": "UTC",
        "schedule": [{"time": "09:00", "min_replicas": 1, "max_replicas": 1}], "args": {"model": "x", "max_num_seqs": 0},
    }  # fmt: skip
    r = llm.api.post("/tasks", json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == "args" and "max_num_seqs" in r.json()["error"]["message"]
