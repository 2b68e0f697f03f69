"""A Ray cluster shared with applications Rota did not deploy (the in-memory Ray Serve;
tests/integration/test_shared_cluster_on_ray.py does it on a real one)."""

import pytest
from typer.testing import CliRunner

from rota.cli import app as cli
from rota.domain.specs import OWNER_ENV
from rota.services.leadership import Leadership

TEAM = {"name": "team", "route_prefix": "/team", "import_path": "team_app:app", "deployments": [{"name": "Team"}]}


def deploy_foreign(ray, cfg=TEAM, source="declarative"):
    ray.apps[cfg["name"]] = {"config": cfg, "target": 1, "replicas": [f"{cfg['name']}-replica"], "source": source}


def tick(client, n=1):
    for _ in range(n):
        client.rt.reconciler.tick()


def endpoint(name, **over):
    return {"name": name, "template": "echo-chat", "routing_key": name, **over}


@pytest.mark.parametrize("source", ["declarative", "imperative"])
def test_what_rota_did_not_deploy_runs_on_through_its_creates_rescales_deletes_and_restarts(client, ray, source):
    deploy_foreign(ray, source=source)
    before = {k: ray.apps["team"][k] for k in ("config", "replicas")}
    client.post("/api/v1/endpoints", json=endpoint("chat", scaling={"replicas": 1})).raise_for_status()
    tick(client, 2)
    client.patch("/api/v1/endpoints/chat", json={"scaling": {"replicas": 2}}).raise_for_status()
    tick(client, 2)
    ep = client.get("/api/v1/endpoints/chat").json()
    assert ep["status"] == "RUNNING" and ray.apps[f"ep-{ep['id']}"]["target"] == 2
    client.delete("/api/v1/endpoints/chat").raise_for_status()
    tick(client, 3)
    client.rt.reconciler.sharing.held = {}  # a restarted control plane knows nothing of the last tick
    tick(client, 2)
    assert {k: ray.apps["team"][k] for k in ("config", "replicas")} == before  # same config, same replicas
    assert set(ray.apps) == {"team", "rota-gateway"}


def test_rota_marks_its_own_applications_with_who_it_is(client, ray):
    client.post("/api/v1/endpoints", json=endpoint("chat", scaling={"replicas": 1})).raise_for_status()
    tick(client)
    owner = client.rt.cipher.owner_id
    assert all(a["config"]["runtime_env"]["env_vars"][OWNER_ENV] == owner for a in ray.apps.values())


def test_another_rotas_applications_are_foreign_too(client, ray):
    other = {**TEAM, "name": "ep-1", "route_prefix": "/ep/1", "runtime_env": {"env_vars": {OWNER_ENV: "another-rota"}}}
    deploy_foreign(ray, other)
    tick(client)
    ep = client.post("/api/v1/endpoints", json=endpoint("chat", scaling={"replicas": 1})).json()
    tick(client, 2)
    assert ep["id"] == 1 and ep["url"] != client.rt.settings.serve_url + "/ep/1"  # it takes neither name nor route
    assert client.get("/api/v1/endpoints/chat").json()["status"] == "RUNNING"
    assert ray.apps["ep-1"]["config"] == other


def test_a_standby_asks_ray_what_is_not_rotas_before_it_names_an_endpoint(client, ray, db):
    other = {**TEAM, "name": "ep-1", "route_prefix": "/ep/1", "runtime_env": {"env_vars": {OWNER_ENV: "another-rota"}}}
    deploy_foreign(ray, other)
    leader = Leadership(db, "the leader", alone=True)
    client.rt.leadership.candidate.alone = False  # as on PostgreSQL
    assert leader.acquire() and not client.rt.leadership.acquire()  # this one stands by: it runs no ticks
    ep = client.post("/api/v1/endpoints", json=endpoint("chat", scaling={"replicas": 1})).json()
    assert ep["id"] == 1 and ep["url"] != client.rt.settings.serve_url + "/ep/1"  # it asked Ray: neither name nor route
    status = client.get("/api/v1/status").json()["ray"]
    assert status["reachable"] is True
    ray.reachable = False
    client.rt.reconciler.standby.every_s = 3600
    assert client.get("/api/v1/status").json()["ray"]["reachable"] is True  # asked a moment ago: not again yet
    client.rt.reconciler.standby.every_s = 0
    assert client.get("/api/v1/status").json()["ray"]["reachable"] is False  # as it is now, not as a tick once saw


def test_an_application_that_takes_an_endpoints_name_is_left_alone_and_the_endpoint_says_why(client, ray):
    ep = client.post("/api/v1/endpoints", json=endpoint("chat", scaling={"replicas": 1})).json()
    tick(client)
    squatter = {**TEAM, "name": f"ep-{ep['id']}"}
    ray.apps.pop(squatter["name"])
    deploy_foreign(ray, squatter)  # e.g. another tool's deploy of an application by that name
    tick(client, 2)
    got = client.get("/api/v1/endpoints/chat").json()
    assert got["status"] == "FAILED" and got["error_code"] == "CONFIG_REJECTED", got
    assert "Rota did not deploy" in got["message"]
    assert ray.apps[squatter["name"]]["config"] == squatter


def test_a_foreign_application_on_the_base_urls_route_keeps_it_and_endpoints_still_deploy(client, ray):
    ray.apps = {}  # another tool's PUT of its own config (it replaces the whole set)
    deploy_foreign(ray, {**TEAM, "route_prefix": "/"})
    client.post("/api/v1/endpoints", json=endpoint("chat", scaling={"replicas": 1})).raise_for_status()
    tick(client, 2)
    assert "rota-gateway" not in ray.apps and ray.apps["team"]["config"]["route_prefix"] == "/"
    assert client.get("/api/v1/endpoints/chat").json()["status"] == "RUNNING"
    assert "route / is already served" in client.get("/api/v1/status").json()["gateway_error"]  # admins are told


def test_an_application_its_owner_is_deleting_is_not_brought_back(client, ray):
    deploy_foreign(ray)
    ray.deleting.add("team")  # its owner's own PUT left it out
    client.post("/api/v1/endpoints", json=endpoint("chat", scaling={"replicas": 1})).raise_for_status()
    tick(client)
    assert "team" not in ray.apps and any(n.startswith("ep-") for n in ray.apps)


def test_on_a_cluster_that_is_rotas_alone_the_rest_is_removed(client, ray):
    client.rt.reconciler.sharing.own_cluster = True
    deploy_foreign(ray)
    tick(client)
    assert "team" not in ray.apps


def test_the_cluster_listing_says_whose_each_application_is_to_admin_keys_only(client, ray):
    deploy_foreign(ray)
    deploy_foreign(ray, {**TEAM, "name": "driver", "route_prefix": "/driver"}, source="imperative")
    client.post("/api/v1/endpoints", json=endpoint("chat", scaling={"replicas": 1})).raise_for_status()
    task = {"name": "nightly", "file_path": "echo", "deployment_name": "app", "type": "daily", "timezone": "UTC"}
    task["schedule"] = [{"time": "00:00", "min_replicas": 1, "max_replicas": 1}]
    client.post("/api/v1/tasks", json=task).raise_for_status()
    with client.rt.db.session() as s:  # the task's application sized as if it had fired
        from rota.store.tables import EndpointRow

        for row in s.query(EndpointRow).filter(EndpointRow.owner_task_id.isnot(None)):
            row.scheduled_min = row.scheduled_max = 1
    tick(client, 2)
    apps = {a["name"]: a for a in client.get("/api/v1/cluster/apps").json()}
    kinds = {n: (a["owner"]["kind"], a["source"]) for n, a in apps.items()}
    assert kinds == {
        "team": ("foreign", "declarative"),
        "driver": ("foreign", "imperative"),
        "rota-gateway": ("gateway", "declarative"),
        "ep-1": ("endpoint", "declarative"),
        "ep-2": ("task", "declarative"),
    }, kinds
    assert apps["ep-2"]["owner"]["task"] == "nightly" and apps["ep-1"]["owner"]["endpoint"]["project"] == "default"
    member = client.post("/api/v1/keys", json={"name": "m"}).json()["key"]
    r = client.get("/api/v1/cluster/apps", headers={"Authorization": f"Bearer {member}"})
    assert r.status_code == 403 and "team" not in r.text
    assert client.get("/api/v1/cluster/apps", headers={"Authorization": ""}).status_code == 401


def test_rota_cluster_apps_prints_the_owners(client, ray, monkeypatch):
    from rota.cli import client as cli_client

    deploy_foreign(ray)
    tick(client)
    monkeypatch.setattr(cli_client.httpx, "Client", lambda **kw: client)
    out = CliRunner().invoke(cli, ["--api-key", client.headers["Authorization"][7:], "cluster", "apps"])
    assert out.exit_code == 0, out.output
    assert [line.split()[0] for line in out.output.splitlines()[1:]] == ["rota-gateway", "team"]
    assert "foreign" in out.output.splitlines()[2]


def test_what_ray_reports_of_other_applications_is_read_as_it_means():
    import httpx

    from rota.serve.client import ServeClient, parse_applications

    body = {
        "target_capacity": 50,
        "applications": {
            # Being built: no route reported yet, and its config leaves the route to the default "/".
            "slow": {"status": "DEPLOYING", "deployments": {}, "deployed_app_config": {"import_path": "x:app"}},
            "driver": {"status": "RUNNING", "route_prefix": "/driver", "source": "IMPERATIVE", "deployments": {}},
        },
    }
    apps = parse_applications(body)
    assert (apps["slow"].route_prefix, apps["driver"].route_prefix, apps["driver"].source) == ("/", "/driver", "imperative")

    sent = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            sent.append(request.read())
            return httpx.Response(200, json={})
        return httpx.Response(200, json=body) if "applications" in request.url.path else httpx.Response(404)

    c = ServeClient("http://ray", None, "127.0.0.1", 8000, "http://127.0.0.1:8000")
    c._http = httpx.Client(transport=httpx.MockTransport(handler))
    c.observe()
    c.apply([])
    assert b'"target_capacity":50' in sent[0].replace(b" ", b"")  # carried on, not reset for everyone


def test_an_application_rota_01_deployed_is_still_rotas_to_stop(client, ray):
    client.post("/api/v1/endpoints", json=endpoint("chat", scaling={"replicas": 1})).raise_for_status()
    tick(client)
    for a in ray.apps.values():  # as 0.1 deployed them: no mark
        a["config"].pop("runtime_env", None)
    tick(client)
    assert "ep-1" in ray.apps and "runtime_env" not in ray.apps["ep-1"]["config"]  # its replicas were not restarted
    client.post("/api/v1/endpoints/chat/stop").raise_for_status()
    tick(client, 2)
    assert "ep-1" not in ray.apps and client.get("/api/v1/endpoints/chat").json()["status"] == "STOPPED"


def test_no_put_while_a_foreign_application_is_being_built(client, ray):
    deploy_foreign(ray)
    ray.building.add("team")  # e.g. installing its runtime_env: a PUT would restart that
    client.post("/api/v1/endpoints", json=endpoint("chat", scaling={"replicas": 1})).raise_for_status()
    puts = ray.puts
    tick(client, 2)
    assert ray.puts == puts
    ray.building.clear()
    tick(client)
    assert ray.puts == puts + 1 and client.get("/api/v1/endpoints/chat").json()["status"] != "INITIALIZING"


def test_the_wait_for_a_foreign_build_is_bounded(client, ray):
    deploy_foreign(ray)
    ray.building.add("team")
    client.rt.reconciler.sharing.max_wait_s = 0
    client.post("/api/v1/endpoints", json=endpoint("chat", scaling={"replicas": 1})).raise_for_status()
    puts = ray.puts
    tick(client)
    assert ray.puts == puts + 1


def test_a_foreign_change_between_look_and_put_stops_that_put(client, ray):
    deploy_foreign(ray)
    tick(client)
    client.post("/api/v1/endpoints", json=endpoint("chat", scaling={"replicas": 1})).raise_for_status()
    looks = []

    def look():
        looks.append(1)
        if len(looks) == 1:
            ray.on_observe = look  # the tick's own look: nothing changes yet
        else:
            deploy_foreign(ray, {**TEAM, "name": "late", "route_prefix": "/late"})  # just before Rota's PUT

    ray.on_observe, puts = look, ray.puts
    tick(client)
    assert ray.puts == puts and "late" in ray.apps
    tick(client)
    assert ray.puts == puts + 1 and {"team", "late"} <= set(ray.apps)


def test_a_sudden_empty_answer_is_not_trusted_once(client, ray):
    deploy_foreign(ray)
    tick(client)
    client.post("/api/v1/endpoints", json=endpoint("chat", scaling={"replicas": 1})).raise_for_status()
    ray.blank_once = True
    tick(client)
    assert "team" in ray.apps
    tick(client)
    assert "team" in ray.apps and any(n.startswith("ep-") for n in ray.apps)


def test_an_endpoint_created_before_rota_saw_a_foreign_name_moves_out_of_its_way(client, ray):
    other = {**TEAM, "name": "ep-1", "route_prefix": "/ep/1", "runtime_env": {"env_vars": {OWNER_ENV: "another-rota"}}}
    deploy_foreign(ray, other)  # and Rota has just restarted: it has not looked yet
    ep = client.post("/api/v1/endpoints", json=endpoint("chat", scaling={"replicas": 1})).json()
    assert ep["url"].endswith("/ep/1")
    tick(client, 2)
    got = client.get("/api/v1/endpoints/chat").json()
    assert got["status"] == "RUNNING" and not got["url"].endswith("/ep/1"), got
    assert ray.apps["ep-1"]["config"] == other
