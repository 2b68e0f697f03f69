"""The README's main command, as `rota demo --exit` on its own ports and home."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from support.procs import embedded_env, free_port


def test_demo_end_to_end(tiny_model):
    home = Path(tempfile.mkdtemp(prefix="rota-demo-", dir="/tmp"))
    env = {**os.environ, "ROTA_HOME": str(home), "ROTA_PORT": str(free_port()), **embedded_env(home)}
    cmd = [sys.executable, "-m", "rota", "demo", "--exit", "--model", str(tiny_model)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    for expected in (
        "rota apply -f schedules/demo.yaml",
        "endpoint/demo created",
        "task/demo-launch created",
        "fired",
        "endpoint RUNNING (READY), task completed",
        "chat completion:",
        "streamed (",
        "OpenAI base URL",
        '/v1     (model "demo"',
        "/console/     (sign in with the key in",
        "stopping rota server",
    ):
        assert expected in out, (expected, out[-4000:])
    assert not (home / "ray_head.json").exists()  # the demo's Ray head was stopped
