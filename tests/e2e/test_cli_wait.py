"""The CLI as a new user drives it against real vLLM: create follows the endpoint to READY
in a terminal (live display), chat goes through the base URL, a broken model ends
non-zero with its code and reason, --timeout exits 124 and leaves the endpoint as it is."""

import os
import subprocess
import sys

import pexpect


def argv(llm, *args):
    return ["-m", "rota", "--api-url", llm.url, *args]


def env(llm):
    return {**os.environ, "ROTA_HOME": str(llm.home), "NO_COLOR": "1"}


def run(llm, *args, stdin=None):
    """The CLI with plain pipes (not a terminal): no live display, no waiting unless asked."""
    cmd = [sys.executable, *argv(llm, *args)]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=600, env=env(llm))


def terminal(llm, *args):
    return pexpect.spawn(sys.executable, argv(llm, *args), env=env(llm), encoding="utf-8", timeout=420, dimensions=(40, 200))


def test_create_in_a_terminal_waits_until_ready_then_chat_and_delete(llm):
    child = terminal(
        llm,
        "endpoints",
        "create",
        "--template",
        "tiny-llama-cpu",
        "--name",
        "cli-tiny",
        "--min-replicas",
        "1",
        "--max-replicas",
        "1",
    )
    child.expect("endpoint/cli-tiny created")
    child.expect("ENGINE_INITIALIZING|REQUESTING_RESOURCES|WAITING_FOR_ROUTE")  # the live display, while it starts
    child.expect(r"endpoint/cli-tiny READY in [0-9.]+ s \(")
    child.expect(r"model \(routing key\): (cli-tiny-[0-9a-f]+)")
    key = child.match.group(1)
    child.expect(r"base URL: +(http://\S+/v1)")
    assert child.match.group(1) == llm.base_url
    child.expect(f'model="{key}"')  # the openai snippet, ready to paste
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    ep = llm.api.get("/endpoints/cli-tiny").json()
    assert (ep["status"], ep["converged"]) == ("RUNNING", True)

    one = run(llm, "endpoints", "chat", "cli-tiny", "-m", "hello", "--max-tokens", "8")
    assert one.returncode == 0 and one.stdout.strip(), one.stderr

    chat = terminal(llm, "endpoints", "chat", "cli-tiny", "--max-tokens", "4")
    chat.expect("chatting with cli-tiny")
    chat.expect("> ")
    chat.sendline("hello")
    chat.expect("> ")  # the streamed answer came, and it asks for the next message
    chat.sendline("/exit")
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0

    gone = run(llm, "endpoints", "delete", "cli-tiny", "--wait", "--timeout", "120")
    assert gone.returncode == 0 and gone.stdout.rstrip().endswith("endpoint/cli-tiny deleted"), gone.stdout + gone.stderr
    assert llm.api.get("/endpoints/cli-tiny").status_code == 404


def test_a_broken_model_ends_non_zero_with_its_code_and_a_timeout_exits_124(llm):
    args = (
        "endpoints",
        "create",
        "--name",
        "no-weights",
        "--model-path",
        "/nonexistent/weights",
        "--min-replicas",
        "1",
        "--max-replicas",
        "1",
    )
    early = run(llm, *args, "--wait", "--timeout", "1")
    assert early.returncode == 124, early.stdout + early.stderr
    assert "endpoint/no-weights created" in early.stdout and "after 1 s: left as it is" in early.stderr
    assert llm.api.get("/endpoints/no-weights").status_code == 200  # nothing undone

    failed = run(llm, "endpoints", "wait", "no-weights", "--timeout", "300")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAILED: MODEL_DOWNLOAD_FAILED" in failed.stderr and "/nonexistent/weights does not exist" in failed.stderr
    ep = llm.api.get("/endpoints/no-weights").json()
    assert ep["error_code"] == "MODEL_DOWNLOAD_FAILED" and "/nonexistent/weights does not exist" in ep["message"]
    assert run(llm, "endpoints", "delete", "no-weights", "--no-wait").returncode == 0
