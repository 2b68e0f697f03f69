"""A real Ray cluster shared with applications Rota did not deploy: one deployed with
`serve deploy` from a config file before Rota starts, one with `serve.run` from a driver."""

import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import yaml

from support.endpoints import TEST_TEMPLATES, status_is, wait_endpoint
from support.procs import wait_until

TEAM_CONFIG = """\
http_options: {host: 127.0.0.1, port: SERVE_PORT}
applications:
  - name: team
    route_prefix: /team
    import_path: echo:app
    args: {greeting: from-the-team}
    deployments:
      - name: Echo
        num_replicas: 2
"""

DRIVER = textwrap.dedent(
    """
    import sys
    import ray
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0.1})
    class Driver:
        def __call__(self, request):
            return "from-the-driver"

    ray.init(address=sys.argv[1], log_to_driver=False)
    if sys.argv[2] == "run":
        serve.run(Driver.bind(), name="driver", route_prefix="/driver", blocking=False)
    else:
        serve.delete("driver")
    """
)


def driver(cluster, action: str) -> None:
    subprocess.run([sys.executable, "-c", DRIVER, cluster.gcs_address, action], env=cluster.ray_env(), check=True, timeout=180)


def replicas(cluster, name: str) -> list[str]:
    app = cluster.applications()[name]
    return sorted(r["replica_id"] for d in app["deployments"].values() for r in d["replicas"] if r["state"] == "RUNNING")


@pytest.fixture
def foreign(cluster, tmp_path):
    """Both applications, deployed before Rota starts; removed afterwards."""
    (tmp_path / "team.yaml").write_text(TEAM_CONFIG.replace("SERVE_PORT", str(cluster.settings.serve_port)))
    subprocess.run(
        [str(Path(sys.executable).parent / "serve"), "deploy", str(tmp_path / "team.yaml"), "--address", cluster.dashboard_url],
        env=cluster.ray_env(),
        check=True,
        timeout=120,
    )
    driver(cluster, "run")
    for name, route, body in (("team", "/team", "from-the-team"), ("driver", "/driver", "from-the-driver")):
        wait_until(lambda b=body, r=route: b in httpx.get(cluster.serve_url + r).text, 120, what=f"{name} serving")
    yield {n: replicas(cluster, n) for n in ("team", "driver")}
    driver(cluster, "delete")


def test_applications_rota_did_not_deploy_run_on_through_its_work_and_a_restart(servers, cluster, foreign, tmp_path):
    env = {"ROTA_RAY_OWN_CLUSTER": "false", "ROTA_TEMPLATES_PATH": str(TEST_TEMPLATES)}
    srv = servers(tmp_path / "rota", **env)
    srv.api.post("/endpoints", json={"name": "chat", "template": "echo-chat", "scaling": {"replicas": 1}}).raise_for_status()
    wait_endpoint(srv, "chat", status_is("RUNNING"), what="Rota's endpoint beside them")
    srv.api.patch("/endpoints/chat", json={"scaling": {"replicas": 2}}).raise_for_status()
    wait_endpoint(srv, "chat", lambda e: e["status"] == "RUNNING" and e["replicas"]["running"] == 2, what="rescaled")

    # The gateway an earlier server left is deleted by `serve deploy`'s PUT (Rota must not bring it back): then Rota's.
    listed = wait_until(
        lambda: (
            (a := {a["name"]: a for a in srv.api.get("/cluster/apps").json()}).get("rota-gateway", {}).get("owner")
            == {"kind": "gateway"}
            and a
        ),
        90,
        what="Rota's own gateway listed",
    )
    assert {n: (listed[n]["owner"]["kind"], listed[n]["source"]) for n in ("team", "driver")} == {
        "team": ("foreign", "declarative"),
        "driver": ("foreign", "imperative"),
    }

    srv.stop()
    srv.start()  # a restart: the new process knows only what the cluster and its store say
    srv.api.delete("/endpoints/chat").raise_for_status()
    wait_until(lambda: srv.api.get("/endpoints/chat").status_code == 404, 90, what="Rota's endpoint gone")
    assert "team" in cluster.applications() and "driver" in cluster.applications()
    assert {n: replicas(cluster, n) for n in ("team", "driver")} == foreign  # the same replicas throughout
    assert "from-the-team" in httpx.get(cluster.serve_url + "/team").text
    assert "from-the-driver" in httpx.get(cluster.serve_url + "/driver").text


def test_an_endpoint_never_takes_a_foreign_applications_name_or_route(servers, cluster, tmp_path):
    srv = servers(tmp_path / "rota", ROTA_RAY_OWN_CLUSTER="false", ROTA_TEMPLATES_PATH=str(TEST_TEMPLATES))
    first = srv.api.post("/endpoints", json={"name": "a", "template": "echo-chat", "scaling": {"replicas": 1}}).json()
    wait_endpoint(srv, "a", status_is("RUNNING"), what="a first endpoint")
    # Another tool deploys under the very name and route Rota's next endpoint would get,
    # carrying over what runs (as Rota does).
    nxt = first["id"] + 1
    squat = yaml.safe_load(TEAM_CONFIG.replace("name: team", f"name: ep-{nxt}").replace("/team", f"/ep/{nxt}"))
    headers = {"Authorization": f"Bearer {cluster.settings.ray_token()}"}
    url = cluster.dashboard_url + "/api/serve/applications/"
    running = httpx.get(url, headers=headers).json()["applications"].values()
    kept = [a["deployed_app_config"] for a in running if a.get("deployed_app_config")]
    httpx.put(url, json={"applications": kept + squat["applications"]}, headers=headers, timeout=30).raise_for_status()
    wait_until(lambda: "from-the-team" in httpx.get(cluster.serve_url + f"/ep/{nxt}").text, 120, what="the squatter serving")
    wait_until(lambda: any(a["name"] == f"ep-{nxt}" for a in srv.api.get("/cluster/apps").json()), 60, what="seen by Rota")

    second = srv.api.post("/endpoints", json={"name": "b", "template": "echo-chat", "scaling": {"replicas": 1}}).json()
    assert second["id"] == nxt and not second["url"].endswith(f"/ep/{nxt}"), second
    wait_endpoint(srv, "b", status_is("RUNNING"), what="the second endpoint, elsewhere")
    assert "from-the-team" in httpx.get(cluster.serve_url + f"/ep/{nxt}").text  # the squatter still answers there
    assert {a["name"]: a["owner"]["kind"] for a in srv.api.get("/cluster/apps").json()}[f"ep-{nxt}"] == "foreign"
    key = srv.api.post("/keys", json={"name": "m"}).json()["key"]
    assert srv.api.get("/cluster/apps", headers={"Authorization": f"Bearer {key}"}).status_code == 403
