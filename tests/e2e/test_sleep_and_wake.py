"""Scale to zero and wake on request with a real vLLM engine (runs last: it changes the
package's endpoint)."""

import time

from openai import OpenAI

from support.endpoints import logged_request, wait_endpoint


def test_sleeping_endpoint_wakes_on_a_request(llm):
    r = llm.api.patch("/endpoints/tiny", json={"scaling": {"min_replicas": 0, "max_replicas": 1, "cooldown_period_s": 1}})
    assert r.status_code == 200 and r.json()["status"] == "RUNNING"  # a scaling change: no restart
    wait_endpoint(llm, "tiny", lambda e: e["status"] == "SLEEPING", timeout=180, what="SLEEPING")
    time.sleep(2)  # the gateway's routing table (refreshed every second) says SLEEPING too

    t0 = time.monotonic()
    client = OpenAI(base_url=llm.base_url, api_key=llm.admin_key, max_retries=0, timeout=300)
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": "wake up"}], max_tokens=4
    )
    out = raw.parse()
    assert out.choices[0].message.content and out.usage.completion_tokens == 4
    took = time.monotonic() - t0
    print(f"wake-on-request with vLLM answered in {took:.1f}s")
    # The request log says this call waited for a cold start, and for how long.
    logged = logged_request(llm, raw.headers["x-request-id"])
    assert logged["rota.cold_start"] is True and 0 < logged["rota.wake_ms"] <= took * 1000
    assert logged["http.response.status_code"] == 200 and logged["gen_ai.usage.output_tokens"] == 4

    wait_endpoint(llm, "tiny", lambda e: e["status"] == "RUNNING", what="RUNNING after wake")
    changes = [
        (e["data"]["to"], e["data"]["phase"]) for e in llm.api.get("/endpoints/tiny/events").json() if e["kind"] == "status"
    ]
    statuses = [s for i, (s, _) in enumerate(changes) if i == 0 or changes[i - 1][0] != s]  # phase changes repeat a status
    assert statuses[-3:] == ["SLEEPING", "AWAKING", "RUNNING"], changes
    assert ("AWAKING", "ENGINE_INITIALIZING") in changes, changes
