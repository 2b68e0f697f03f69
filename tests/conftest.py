"""Shared fixtures. The Ray cluster is started once per session, on first use."""

import sys
import tempfile
from pathlib import Path

import pytest

# The support helpers live next to the tests; the package itself is installed (-e).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.cluster import Cluster
from support.procs import RotaServer


@pytest.fixture(scope="session")
def cluster():
    # Ray's socket paths must stay short: a /tmp root, not pytest's deep tmp dirs.
    root = Path(tempfile.mkdtemp(prefix="rota-it-", dir="/tmp"))
    c = Cluster(root)
    c.start()
    yield c
    c.stop()


@pytest.fixture
def servers(cluster, tmp_path):
    """Start `rota server`s against the session cluster; all are stopped afterwards."""
    started: list[RotaServer] = []

    def make(home: Path | None = None, **env) -> RotaServer:
        s = RotaServer(home or tmp_path / "rota", {**cluster.server_env(), **env})
        started.append(s)
        return s.start()

    yield make
    for s in started:
        s.kill()


def pytest_terminal_summary(terminalreporter):
    """Where the console's browser tests wrote their screenshots."""
    from support import browser

    if browser.written:
        terminalreporter.write_line(f"console screenshots ({len(browser.written)}): {browser.shots_dir()}")
