"""The tiny vLLM endpoint's own output, read and followed through the API: vLLM's lines,
Ray Serve's, and the access line of a call, found by its request id."""

import json
import threading
import uuid

import httpx
from openai import OpenAI


def test_the_replicas_output_is_read_and_a_new_line_followed(llm):
    lines = llm.api.get("/endpoints/tiny/logs", params={"limit": 5000}).json()["lines"]
    replicas = set(llm.api.get("/endpoints/tiny").json()["replicas"]["ids"])
    ready = [ln for ln in lines if "vLLM engine ready" in ln["line"]]
    assert ready and ready[-1]["replica"] in replicas and ready[-1]["level"] == "INFO" and ready[-1]["time"]
    assert any(ln["level"] and "[" in ln["line"] for ln in lines if ln is not ready[-1])  # vLLM's own format, parsed

    request_id = f"e2e-follow-{uuid.uuid4().hex[:8]}"
    seen: list[dict] = []

    def call():
        client = OpenAI(base_url=llm.base_url, api_key=llm.admin_key, max_retries=0)
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2, extra_headers={"x-request-id": request_id}
        )

    headers = {"Authorization": f"Bearer {llm.admin_key}"}
    params = {"follow": "true", "search": request_id}
    with httpx.stream("GET", f"{llm.url}/api/v1/endpoints/tiny/logs", params=params, headers=headers, timeout=60) as r:
        assert r.status_code == 200
        threading.Timer(2.0, call).start()  # once the stream is open
        for raw in r.iter_lines():
            if raw.startswith("data: "):
                seen.append(json.loads(raw[6:]))
                break
    assert request_id in seen[0]["line"] and seen[0]["replica"] in replicas  # the replica's access line for that call
