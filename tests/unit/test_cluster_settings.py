"""The embedded head's command line and environment (nothing is started here)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rota.config import Settings
from rota.serve import haproxy
from rota.serve.cluster import LocalRayHead, free_port


@pytest.fixture(autouse=True)
def no_files_left(tmp_path):
    """``ingress_env`` makes HAProxy's directory in /tmp: each one made here is removed."""
    mine = f"{haproxy.files_dir(0).name.rsplit('-', 1)[0]}-*"
    before = set(Path("/tmp").glob(mine))
    yield
    for made in set(Path("/tmp").glob(mine)) - before:
        if made.is_symlink():
            made.unlink()
        else:
            shutil.rmtree(made, ignore_errors=True)


def test_haproxy_files_are_per_cluster_and_short(tmp_path):
    head = LocalRayHead(Settings(home=tmp_path, ray_dashboard_port=41723, ray_temp_dir=tmp_path / "a" / "very" / "deep" / "dir"))
    env = head.ingress_env()
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    # Ray adds "/<56-char node id>" before admin.sock; HAProxy allows 97 characters, with
    # any uid (id-mapped ones have ten digits) and port.
    assert len(env["RAY_SERVE_HAPROXY_SOCKET_PATH"]) + 57 <= 97
    assert len(str(haproxy.files_dir(65535, uid=4294967294) / "admin.sock")) + 57 <= 97
    assert haproxy.files_dir(41723, uid=0).name == "rota-0-41723" and haproxy.files_dir(1, uid=36 * 36).name == "rota-100-1"
    assert "41723" in env["RAY_SERVE_HAPROXY_SOCKET_PATH"]
    base = env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]  # every socket and file in it (none in a shared /tmp/haproxy-serve)
    assert all(env[k].startswith(base + "/") for k in env if k.endswith(("_PATH", "_LOC", "_FILE")))
    other = LocalRayHead(Settings(home=tmp_path, ray_dashboard_port=41724)).ingress_env()
    assert other["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] != env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] != env["RAY_SERVE_HAPROXY_METRICS_PORT"]
    # A stopping replica stays reachable 10 s (Ray's 30 s is for external load balancers).
    assert env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "10.0"
    assert (
        LocalRayHead(Settings(home=tmp_path, serve_drain_s=2)).ingress_env()["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"]
        == "2.0"
    )


def test_python_proxy_mode_sets_nothing(tmp_path):
    assert LocalRayHead(Settings(home=tmp_path, serve_ingress="proxy")).ingress_env() == {}


def test_command_pins_every_port(tmp_path):
    s = Settings(home=tmp_path, ray_gcs_port=1, ray_dashboard_port=2, ray_client_server_port=3, ray_dashboard_agent_port=4)
    cmd = LocalRayHead(s).command()
    pairs = dict(zip(cmd, cmd[1:], strict=False))
    assert (
        pairs["--port"],
        pairs["--dashboard-port"],
        pairs["--ray-client-server-port"],
        pairs["--dashboard-agent-listen-port"],
    ) == ("1", "2", "3", "4")
    assert pairs["--min-worker-port"] == "0" and pairs["--max-worker-port"] == "0" and pairs["--dashboard-host"] == "127.0.0.1"


def test_where_serve_listens_is_not_where_the_control_plane_reaches_it(tmp_path, monkeypatch):
    for name in ("ROTA_SERVE_HOST", "ROTA_SERVE_ADDRESS", "ROTA_RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    embedded = Settings(home=tmp_path, serve_port=8000)
    assert (embedded.serve_listen_host, embedded.serve_url) == ("127.0.0.1", "http://127.0.0.1:8000")
    # An existing cluster (a KubeRay head service): Serve listens on every interface of the
    # head, and the control plane reaches it at the head's address, not at its own loopback.
    remote = Settings(home=tmp_path, ray_address="http://rota-head-svc.rota.svc:8265")
    assert (remote.serve_listen_host, remote.serve_url) == ("0.0.0.0", "http://rota-head-svc.rota.svc:8000")
    assert Settings(home=tmp_path, ray_address="http://[fd00::1]:8265").serve_url == "http://[fd00::1]:8000"
    pinned = Settings(home=tmp_path, ray_address="http://head:8265", serve_host="10.0.0.5", serve_port=9000)
    assert pinned.serve_url == "http://10.0.0.5:9000"
    behind = Settings(home=tmp_path, ray_address="http://head:8265", serve_address="https://llm.example.com/")
    assert (behind.serve_listen_host, behind.serve_url) == ("0.0.0.0", "https://llm.example.com")
    from rota.serve.client import ServeClient

    c = ServeClient(remote.dashboard_url, None, remote.serve_listen_host, remote.serve_port, remote.serve_url)
    assert c.routes_url == "http://rota-head-svc.rota.svc:8000/-/routes" and c.http_options["host"] == "0.0.0.0"


def test_without_a_public_url_the_cluster_is_told_an_address_it_can_reach(tmp_path, monkeypatch):
    import socket

    for name in ("ROTA_PUBLIC_URL", "ROTA_HOST", "ROTA_RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    # This host's address on its default route: what a remote head would reach it at.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("203.0.113.1", 9))  # TEST-NET-3: routed, never sent to
        own = probe.getsockname()[0]
    assert own != "127.0.0.1"
    remote = f"http://{own}:8265"
    cases = [
        ({}, "http://127.0.0.1:8080"),
        ({"host": "0.0.0.0"}, "http://127.0.0.1:8080"),  # embedded head: loopback
        ({"host": "0.0.0.0", "ray_address": "http://127.0.0.1:8265"}, "http://127.0.0.1:8080"),
        ({"host": "0.0.0.0", "ray_address": remote}, f"http://{own}:8080"),  # never 0.0.0.0
        ({"host": "0.0.0.0", "ray_address": remote, "public_url": "http://rota.rota.svc:8080/"}, "http://rota.rota.svc:8080"),
        ({"host": "10.1.2.3", "ray_address": remote}, "http://10.1.2.3:8080"),
        ({"host": "0.0.0.0", "ray_node_ip": "10.9.8.7"}, "http://10.9.8.7:8080"),  # embedded head that workers join
    ]
    for over, want in cases:
        assert Settings(home=tmp_path, port=8080, **over).control_url == want, over
    unresolvable = Settings(home=tmp_path, host="0.0.0.0", ray_address="http://no-such-head.invalid:8265")
    with pytest.raises(ValueError, match="ROTA_PUBLIC_URL"):
        _ = unresolvable.control_url  # never a silent loopback the cluster cannot reach


def test_embedded_workers_run_at_rays_niceness_and_ray_keeps_quiet_unless_told_otherwise(tmp_path, monkeypatch):
    for name in ("ROTA_RAY_QUIET", "ROTA_RAY_WORKER_NICENESS"):
        monkeypatch.delenv(name, raising=False)
    quiet = LocalRayHead(Settings(home=tmp_path, serve_ingress="proxy"))
    env, cmd = quiet.environment("c1"), quiet.command()
    assert env["RAY_worker_niceness"] == "15" and env["RAY_enable_metrics_collection"] == "0"
    assert dict(zip(cmd, cmd[1:], strict=False))["--include-log-monitor"] == "false"
    assert env["ROTA_RAY_CLUSTER"] == "c1" and not any(
        k.startswith("ROTA_") and k != "ROTA_RAY_CLUSTER" and k != "ROTA_MODELS_DIR" for k in env
    )
    ray_defaults = LocalRayHead(Settings(home=tmp_path, serve_ingress="proxy", ray_quiet=False, ray_worker_niceness=0))
    assert ray_defaults.environment("c2")["RAY_worker_niceness"] == "0"
    assert "RAY_enable_metrics_collection" not in ray_defaults.environment("c2")
    assert "--include-log-monitor" not in ray_defaults.command()
    with pytest.raises(ValueError, match="ray_worker_niceness"):
        Settings(home=tmp_path, ray_worker_niceness=20)


def test_a_port_is_never_handed_out_twice_by_one_process():
    # Picked now, bound later: six picks for one Ray node once met at one port (two of Ray's
    # components on it, and the node never started).
    picks = [free_port() for _ in range(1000)]  # at random, 1,000 of ~12,700 would meet
    assert len(set(picks)) == len(picks) and all(20000 <= p < 65536 for p in picks)


def test_haproxys_files_are_in_a_directory_only_this_user_enters(tmp_path):
    """HAProxy's admin socket is mode 666 (Ray's template) and Rota runs the wrapper it
    writes there: the directory is this user's and closed, and one that someone else made
    first (or a link) is refused, never used."""
    env = LocalRayHead(Settings(home=tmp_path, ray_dashboard_port=41725)).ingress_env()
    base = Path(env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])
    try:
        assert base.stat().st_mode & 0o777 == 0o700 and base.stat().st_uid == os.getuid()
        assert Path(env["RAY_SERVE_HAPROXY_BINARY_PATH"]).parent == base
        base.chmod(0o755)  # one an older version left open: closed again
        haproxy.private_dir(base)
        assert base.stat().st_mode & 0o777 == 0o700
        if os.getuid() == 0:  # another user's directory
            os.chown(base, 4242, -1)
            with pytest.raises(RuntimeError, match="not a directory of this user"):
                LocalRayHead(Settings(home=tmp_path, ray_dashboard_port=41725)).ingress_env()
    finally:
        shutil.rmtree(base)
    target = tmp_path / "elsewhere"
    target.mkdir()
    base.symlink_to(target)
    try:
        with pytest.raises(RuntimeError, match="not a directory of this user"):
            haproxy.private_dir(base)
    finally:
        base.unlink()


@pytest.mark.parametrize(
    "ports,expected",
    [
        (None, ["127.0.0.1:8000", "127.0.0.1:9101", "127.0.0.1:8404", "127.0.0.1:84041 ssl", "10.0.0.5:7000"]),
        ([8404], ["*:8000", ":9101", "127.0.0.1:8404", "*:84041 ssl", "10.0.0.5:7000"]),
    ],
)
def test_the_wrapper_moves_haproxys_listeners_to_loopback(tmp_path, ports, expected):
    """Single node: every listener; a head on a node address: the stats page only."""
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        "frontend f\n    bind *:8000\n    bind :9101\nlisten stats\n  bind 0.0.0.0:8404\n  bind *:84041 ssl\n  bind 10.0.0.5:7000\n"
    )
    script = haproxy.wrapper(tmp_path, "/bin/true", ports)
    subprocess.run([str(script), "-db", "-f", str(cfg)], check=True)
    assert [line.split("bind ", 1)[1] for line in cfg.read_text().splitlines() if "bind" in line] == expected
