"""A throwaway Prometheus server (the distribution's, which the Makefile installs if
missing) scraping a control plane's ``/metrics`` every second with its admin key."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx

from support.procs import free_port, wait_until


class Prometheus:
    def __init__(self, target: str, key_file: Path):
        self.dir = Path(tempfile.mkdtemp(prefix="rota-prom-", dir="/tmp"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.target, self.key_file = target, key_file
        self.proc: subprocess.Popen | None = None

    def start(self) -> Prometheus:
        binary = shutil.which("prometheus")
        if not binary:
            raise RuntimeError("prometheus not found: run the tests with `make test`, which installs it")
        config = {  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "rota",
                    "scrape_timeout": "1s",
                    "authorization": {"credentials_file": str(self.key_file)},
                    "static_configs": [{"targets": [self.target]}],
                }
            ],
        }
        (self.dir / "prometheus.yml").write_text(json.dumps(config))
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "log", "wb"),  # noqa: SIM115 (closed with the process)
        )
        wait_until(lambda: httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200, 60, 0.3, "prometheus ready")
        return self

    def value(self, query: str) -> float | None:
        """An instant query's first value, if any."""
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=5).json()
        result = r["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)
