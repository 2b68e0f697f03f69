"""The `rota` CLI against a running server: apply -f (idempotent), tasks list/get/events/..."""

import subprocess
import sys
import textwrap

from support.tasks import zone_near_noon


def rota(srv, *args, check=True):
    p = subprocess.run([sys.executable, "-m", "rota", "--api-url", srv.url, *args], capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"rota {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def test_apply_manifest_idempotent_and_errors_name_file_and_field(servers, tmp_path):
    srv = servers()
    tz = zone_near_noon()
    manifest = tmp_path / "team.yaml"
    manifest.write_text(
        textwrap.dedent(
            f"""
            tasks:
              - name: cli-day
                file_path: echo
                deployment_name: app
                type: daily
                timezone: {tz}
                schedule:
                  - {{time: "08:00", min_replicas: 1, max_replicas: 1}}
                  - {{time: "20:00", min_replicas: 0, max_replicas: 1}}
                resources: {{num_cpus: 0.1}}
                active: true
              - name: cli-once
                file_path: echo
                deployment_name: app
                type: one_off
                timezone: {tz}
                schedule: [{{time: "2099-01-01T00:00", min_replicas: 1, max_replicas: 1}}]
            """
        )
    )
    out = rota(srv, "apply", "-f", str(manifest)).stdout
    assert "task/cli-day created" in out and "active" in out and "task/cli-once created" in out
    out = rota(srv, "apply", "-f", str(manifest)).stdout
    assert "task/cli-day unchanged" in out and "task/cli-once unchanged" in out
    assert srv.api.get("/tasks").json()["total"] == 2

    manifest.write_text(manifest.read_text().replace('"20:00", min_replicas: 0', '"21:00", min_replicas: 0'))
    assert "task/cli-day updated" in rota(srv, "apply", "-f", str(manifest)).stdout
    assert srv.api.get("/tasks/cli-day").json()["schedule"][1]["time"] == "21:00"

    bad = tmp_path / "bad.yaml"
    bad.write_text(manifest.read_text().replace("min_replicas: 0, max_replicas: 1", "min_replicas: 4, max_replicas: 1"))
    p = rota(srv, "apply", "-f", str(bad), check=False)
    assert p.returncode == 1 and f"{bad}: tasks.0.schedule.1.max_replicas" in p.stderr
    bad.write_text(manifest.read_text().replace("file_path: echo", "file_path: nosuch", 1))
    p = rota(srv, "apply", "-f", str(bad), check=False)
    assert p.returncode == 1 and "field: file_path" in p.stderr
    assert srv.api.get("/tasks/cli-day").json()["file_path"] == "echo"

    listing = rota(srv, "tasks", "list").stdout
    assert "cli-day" in listing and "cli-once" in listing and "NEXT FIRE (LOCAL)" in listing
    assert '"name": "cli-once"' in rota(srv, "tasks", "get", "cli-once").stdout
    assert "active" in rota(srv, "tasks", "activate", "cli-once").stdout
    assert "idle" in rota(srv, "tasks", "deactivate", "cli-once").stdout
    events = rota(srv, "tasks", "events", "cli-day").stdout
    assert "created" in events and "activated" in events and "updated" in events
    assert "deleted" in rota(srv, "tasks", "delete", "cli-once").stdout
    p = rota(srv, "tasks", "get", "cli-once", check=False)
    assert p.returncode == 1 and "404" in p.stderr


def test_help_everywhere():
    for args in ([], ["server"], ["apply"], ["tasks"], ["tasks", "list"], ["tasks", "events"], ["models"]):
        p = subprocess.run([sys.executable, "-m", "rota", *args, "--help"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and "Usage" in p.stdout, (args, p.stdout, p.stderr)
