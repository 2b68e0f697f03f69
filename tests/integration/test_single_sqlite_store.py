"""SQLite is one process's store: a second `rota server` on the same file is refused with
a message that says why and what to do, the first goes on untouched, and a restart after
a SIGKILL is not refused (the kernel drops the lock with the process)."""

import subprocess
import sys

import pytest

from support.procs import free_port

pytestmark = pytest.mark.integration


def test_a_second_server_on_one_sqlite_store_is_refused_and_a_restart_after_a_kill_is_not(servers):
    srv = servers()
    srv.api.post("/keys", json={"name": "kept"}).raise_for_status()
    env = {**srv.env, "ROTA_PORT": str(free_port())}
    p = subprocess.run([sys.executable, "-m", "rota", "server"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, (p.returncode, p.stderr[-2000:])
    assert f"another rota server (pid {srv.proc.pid})" in p.stderr and "PostgreSQL (ROTA_DATABASE_URL)" in p.stderr
    assert srv.api.get("/keys").status_code == 200 and srv.proc.poll() is None  # the first one is untouched

    srv.kill()
    srv.start()  # same home: the lock went with the killed process
    assert "kept" in [k["name"] for k in srv.api.get("/keys").json()]
