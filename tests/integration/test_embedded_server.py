"""`rota server` with no ROTA_RAY_ADDRESS: it starts a local Ray head, keeps it across its
own crash (applications keep serving), adopts it on restart and stops it on shutdown."""

import json
import tempfile
from pathlib import Path

import httpx

from rota.config import Settings
from rota.serve.cluster import LocalRayHead, _cluster_pids, dashboard_up
from support.procs import RotaServer, embedded_env, wait_until
from support.sockets import listening
from support.tasks import route_json, start_one_off, wait_task


def test_embedded_ray_lifecycle(tmp_path):
    root = Path(tempfile.mkdtemp(prefix="rota-emb-", dir="/tmp"))
    env = embedded_env(root, test_apps=True)
    home = tmp_path / "home"
    srv = RotaServer(home, env)
    settings = Settings(home=home, ray_dashboard_port=int(env["ROTA_RAY_DASHBOARD_PORT"]), serve_port=int(env["ROTA_SERVE_PORT"]))
    try:
        srv.start()
        assert srv.health()["ray"]["embedded"] is True
        wait_until(lambda: srv.health()["ray"]["reachable"], 180, what="embedded Ray head up")
        token_file = home / "ray_auth_token"
        assert token_file.stat().st_mode & 0o777 == 0o600

        # Nothing of the embedded head listens beyond loopback (GCS, raylet, workers, agents, metrics, Serve).
        pids = _cluster_pids(json.loads((home / "ray_head.json").read_text())["cluster_id"])
        sockets = listening(pids)
        assert len(sockets) >= 5, sockets
        assert {a for a, _, _ in sockets} <= {"127.0.0.1", "::1"}, sorted(sockets)

        t = start_one_off(srv, "emb", seconds=3)
        t = wait_task(srv, t["id"], lambda t: t["endpoint"]["status"] == "RUNNING", what="deployed on the embedded head")
        replica = t["endpoint"]["replicas"]["ids"][0]
        url = srv.api.get("/endpoints/emb").json()["url"] + "/"
        assert route_json(url)["replica"] == replica

        srv.kill()  # the control plane dies; Ray and the application keep serving
        assert httpx.get(url, timeout=10).json()["replica"] == replica

        srv.start()  # adopts the running head instead of starting another
        assert srv.health()["ray"]["start_error"] is None
        ep = srv.api.get("/endpoints/emb").json()
        t = wait_task(srv, t["id"], lambda t: t["endpoint"]["status"] == "RUNNING", what="adopted")
        assert t["endpoint"]["replicas"]["ids"] == [replica] and ep["observed_at"] is not None

        srv.stop()  # graceful: the head it owns goes too
        assert not dashboard_up(settings.dashboard_url, token_file.read_text().strip())
        try:
            httpx.get(url, timeout=3)
            raise AssertionError("Serve still answering after shutdown")
        except httpx.HTTPError:
            pass
    finally:
        srv.kill()
        LocalRayHead(settings).stop()
