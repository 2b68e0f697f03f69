"""The OpenAI base URL in front of an endpoint running serve:app, called as users call it."""

import httpx
import pytest
from openai import AuthenticationError, BadRequestError, NotFoundError, OpenAI

from support.endpoints import wait_endpoint


@pytest.fixture
def client(llm):
    return OpenAI(base_url=llm.base_url, api_key=llm.admin_key, max_retries=0)


def test_models_lists_served_name(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_chat_completion(client):
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=8,
        extra_body={"ignore_eos": True},  # random weights may pick the end of text early
    )
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.usage.completion_tokens == 8 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + 8


def test_chat_completion_streamed(client):
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
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
    raw = httpx.post(
        f"{llm.base_url}/completions",
        json={"model": "tiny", "prompt": "word " * 300, "max_tokens": 2},
        headers={"Authorization": f"Bearer {llm.admin_key}"},
        timeout=30,
    )
    assert raw.status_code == 400
    err = raw.json()["error"]
    assert err["type"] and err["message"] and err["code"] == 400


def test_unknown_model_is_404_in_openai_format(client):
    with pytest.raises(NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}], max_tokens=2)


def test_every_route_of_the_endpoints_own_prefix_needs_its_own_token(llm):
    # vLLM's --api-key guards only /v1; Rota's guard covers every route of the replica.
    gateway_token = llm.gateway_token
    table = httpx.get(f"{llm.url}/internal/v1/routing", headers={"Authorization": f"Bearer {gateway_token}"}).json()
    own = next(e["token"] for e in table["endpoints"] if e["routing_key"] == "tiny")
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    routes = [
        ("GET", "/health", None),
        ("GET", "/metrics", None),
        ("GET", "/v1/models", None),
        ("POST", "/tokenize", {"model": "tiny", "prompt": "x"}),
        ("POST", "/invocations", chat),
        ("POST", "/v1/chat/completions", chat),
    ]
    for method, path, body in routes:
        for token in (None, llm.admin_key, gateway_token):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            r = httpx.request(method, llm.endpoint_url + path, json=body, headers=headers, timeout=30)
            assert r.status_code == 401, (path, token == gateway_token, r.status_code)
        r = httpx.request(method, llm.endpoint_url + path, json=body, headers={"Authorization": f"Bearer {own}"}, timeout=60)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])


def test_no_key_is_401(llm):
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=llm.base_url, api_key="rota_wrong", max_retries=0).models.list()


def test_bad_args_are_rejected_before_anything_runs(llm):
    body = {
        "name": "bad-args",
        "file_path": "serve",
        "deployment_name": "app",
        "type": "daily",
        "timezone": "UTC",
        "schedule": [{"time": "09:00", "min_replicas": 1, "max_replicas": 1}],
        "args": {"model": "x", "max_num_seqs": 0},
    }
    r = llm.api.post("/tasks", json=body)
    assert (
        r.status_code == 422
        and r.json()["error"]["field"] == "args.max_num_seqs"
        and "max_num_seqs" in r.json()["error"]["message"]
    )


def test_a_hub_model_downloads_first_and_a_failed_download_is_coded(llm):
    # This machine cannot reach the Hub: the replica reports DOWNLOADING_MODEL, then fails.
    r = llm.api.post(
        "/endpoints", json={"name": "from-hub", "hf_model_repo": "rota-test/does-not-exist", "scaling": {"replicas": 1}}
    )
    assert r.status_code == 201, r.text
    ep = wait_endpoint(llm, "from-hub", lambda e: e["status"] == "FAILED", timeout=180, what="download fails")
    assert ep["error_code"] == "MODEL_DOWNLOAD_FAILED", ep
    phases = [e["data"].get("phase") for e in llm.api.get("/endpoints/from-hub/events").json() if e["kind"] == "status"]
    assert "DOWNLOADING_MODEL" in phases, phases
    assert llm.api.delete("/endpoints/from-hub").status_code == 204


MALFORMED = [
    ("not json", b"{model: tiny", "application/json"),
    ("not an object", b"[1, 2]", "application/json"),
    ("no model", b'{"messages": [{"role": "user", "content": "x"}]}', "application/json"),
    ("model not a string", b'{"model": 7, "messages": []}', "application/json"),
    ("messages not a list", b'{"model": "tiny", "messages": "hi"}', "application/json"),
    (
        "negative max_tokens",
        b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}',
        "application/json",
    ),
    (
        "max_tokens over the context",
        b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}',
        "application/json",
    ),
    (
        "temperature a string",
        b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
        "application/json",
    ),
    ("n zero", b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "n": 0}', "application/json"),
    ("empty body", b"", "application/json"),
]


@pytest.mark.parametrize("name,body,ctype", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_openai_requests_are_4xx_that_say_why(llm, name, body, ctype):
    r = httpx.post(
        f"{llm.base_url}/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {llm.admin_key}", "content-type": ctype},
        timeout=30,
    )
    assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["message"], (name, r.text[:300])
