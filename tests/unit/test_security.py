"""Isolation and hardening, as an attacker with an ordinary key would try them (the REST
API in process, real SQLite, the in-memory Ray). Each test names the item it holds."""

import os
import threading

import pytest
from sqlalchemy import func, select, text

from rota.domain.errors import Conflict
from rota.services.fires import process_due
from rota.store.tables import ApiKeyRow, EndpointRow, EventRow, RunRow, TaskRow


@pytest.fixture
def member(client):
    """An ordinary key of the admin's project, and a key of another project."""
    key = client.post("/api/v1/keys", json={"name": "member"}).json()["key"]
    other = client.post("/api/v1/keys", json={"name": "other", "project": "team-b"}).json()["key"]
    client.member, client.other = {"Authorization": f"Bearer {key}"}, {"Authorization": f"Bearer {other}"}
    return client


def counts(client):
    with client.rt.db.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (TaskRow, EndpointRow, EventRow, ApiKeyRow))


def task(name="t", **over):
    return {
        "name": name,
        "file_path": "echo",
        "deployment_name": "app",
        "type": "daily",
        "timezone": "UTC",
        "schedule": [{"time": "09:00", "min_replicas": 1, "max_replicas": 1}],
        **over,
    }


def llm(name="llm", **args):
    return task(name, file_path="serve", args={"model": "org/model", **args})


def endpoint(name="chat", **over):
    return {"name": name, "template": "echo-chat", "routing_key": name, **over}


# -------------------------------------------------------------- 4: no code, no host paths


@pytest.mark.parametrize(
    "body,field",
    [
        (llm(trust_remote_code=True), "args.trust_remote_code"),
        (llm(engine_args={"middleware": ["evil.Mw"]}), "args.engine_args.middleware"),
        (llm(engine_args={"worker_extension_cls": "evil.X"}), "args.engine_args.worker_extension_cls"),
        (llm(engine_args={"tool_parser_plugin": "/tmp/x.py"}), "args.engine_args.tool_parser_plugin"),
        (llm(engine_args={"allowed_local_media_path": "/"}), "args.engine_args.allowed_local_media_path"),
        (llm(model="/root/.ssh"), "args.model"),
        (task(env={"LD_PRELOAD": "/tmp/x.so"}), "env.LD_PRELOAD"),
        (task(env={"PYTHONPATH": "/tmp"}), "env.PYTHONPATH"),
        (task(env={"VLLM_SERVER_DEV_MODE": "1"}), "env.VLLM_SERVER_DEV_MODE"),
    ],
)
def test_an_ordinary_key_cannot_make_a_replica_run_code_or_read_the_host(member, body, field):
    before = counts(member)
    r = member.post("/api/v1/tasks", json=body, headers=member.member)
    assert r.status_code == 403 and r.json()["error"]["field"] == field, r.text
    assert counts(member) == before
    assert member.post("/api/v1/tasks", json=body).status_code == 201  # an admin key may


@pytest.mark.parametrize(
    "body,field",
    [
        (endpoint(model_path="/", template=None), "model_path"),
        (endpoint(model_path="/etc/ssl", template=None), "model_path"),
        (endpoint(env={"LD_LIBRARY_PATH": "/tmp"}), "env.LD_LIBRARY_PATH"),
    ],
)
def test_an_ordinary_key_cannot_create_endpoints_that_read_the_host(member, body, field):
    r = member.post("/api/v1/endpoints", json=body, headers=member.member)
    assert r.status_code == 403 and r.json()["error"]["field"] == field, r.text


@pytest.mark.parametrize(
    "over,field",
    [
        ({"model_path": "../../etc", "template": None}, "model_path"),
        ({"model_path": "/models/../etc", "template": None}, "model_path"),
        ({"hf_model_repo": "../../etc/passwd", "template": None}, "hf_model_repo"),
        ({"hf_model_repo": "a" * 5000, "template": None}, "hf_model_repo"),
        ({"hf_model_repo": "org/model\nx", "template": None}, "hf_model_repo"),
        ({"hf_model_repo": "https://evil.example/model", "template": None}, "hf_model_repo"),
        ({"env": {"": "x"}}, "env."),
        ({"env": {"A=B": "x"}}, "env.A=B"),
        ({"env": {"TZ": "a\x00b"}}, "env.TZ"),
        ({"env": {"ROTA_ENDPOINT_TOKEN": "x"}}, "env.ROTA_ENDPOINT_TOKEN"),
        ({"scaling": {"min_replicas": 0, "max_replicas": 1, "cooldown_period_s": "Infinity"}}, "scaling.cooldown_period_s"),
    ],
)
def test_malformed_values_are_a_422_naming_the_field_for_everyone(member, over, field):
    for headers in (member.member, {}):
        r = member.post("/api/v1/endpoints", json=endpoint(**over), headers=headers)
        assert r.status_code == 422 and r.json()["error"]["field"].startswith(field), r.text


def test_operators_can_allow_more_and_model_roots_are_where_models_may_be(member, settings):
    policy = member.rt.endpoints.builder.policy
    roots = policy.model_roots
    assert roots == (str(settings.home.resolve() / "models"),)
    r = member.post("/api/v1/endpoints", json=endpoint(template=None, model_path=f"{roots[0]}/llama"), headers=member.member)
    assert r.status_code == 201, r.text
    r = member.post("/api/v1/tasks", json=task(env={"MY_APP_MODE": "x"}), headers=member.member)
    assert r.status_code == 403
    member.rt.endpoints.builder.policy = type(policy)(roots, frozenset({"MY_APP_*"}), frozenset({"compilation_config"}))
    assert member.post("/api/v1/tasks", json=task(env={"MY_APP_MODE": "x"}), headers=member.member).status_code == 201
    r = member.post(
        "/api/v1/tasks", json=llm("l2", engine_args={"compilation_config": {"level": 0}, "seed": 1}), headers=member.member
    )
    assert r.status_code == 201, r.text


def test_rotas_own_gateway_script_cannot_be_deployed(member):
    r = member.post("/api/v1/tasks", json=task(file_path="gateway"))
    assert r.status_code == 422 and r.json()["error"]["field"] == "file_path"


# -------------------------------------------------------------- 5: admin keys


def test_an_ordinary_key_can_neither_see_nor_revoke_admin_keys_and_the_last_admin_key_stays(member):
    admin_id = member.get("/api/v1/me").json()["key_id"]
    listed = member.get("/api/v1/keys", headers=member.member).json()
    assert [k["name"] for k in listed] == ["member"] and not any(k["admin"] for k in listed)
    assert member.delete(f"/api/v1/keys/{admin_id}", headers=member.member).status_code == 404
    r = member.delete(f"/api/v1/keys/{admin_id}")
    assert r.status_code == 409 and "last admin key" in r.json()["error"]["message"]
    second = member.post("/api/v1/keys", json={"name": "ops", "admin": True}).json()
    assert member.delete(f"/api/v1/keys/{admin_id}").status_code == 200  # another admin key remains
    assert member.get("/api/v1/me", headers={"Authorization": f"Bearer {second['key']}"}).json()["admin"] is True


def test_bootstrap_mints_a_working_admin_key_when_none_works(rt, settings):
    with rt.db.session() as s:
        s.execute(text("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP"))
    made = rt.auth.mint_admin(settings.admin_key_path, "rescue")
    assert rt.auth.authenticate(f"Bearer {made.key}").admin and settings.admin_key_path.read_text() == made.key
    assert os.stat(settings.admin_key_path).st_mode & 0o777 == 0o600


# -------------------------------------------------------------- 6: secrets


def test_env_values_are_write_only_encrypted_at_rest_and_patched_by_name(member, settings):
    ep = member.post("/api/v1/endpoints", json=endpoint(env={"HF_TOKEN": "hf_secret", "TZ": "UTC"})).json()
    assert ep["env"] == {"HF_TOKEN": "***", "TZ": "***"}
    for path in ("/api/v1/endpoints/chat", "/api/v1/endpoints"):
        assert "hf_secret" not in member.get(path).text
    with member.rt.db.session() as s:
        assert "hf_secret" not in s.scalar(select(EndpointRow.env).where(EndpointRow.id == ep["id"])).__repr__()
    r = member.patch("/api/v1/endpoints/chat", json={"env": {"HF_TOKEN": "hf_new", "TZ": None}}).json()
    assert r["env"] == {"HF_TOKEN": "***"}
    with member.rt.db.session() as s:
        row = s.get(EndpointRow, ep["id"])
        assert member.rt.cipher.decrypt_map(row.env) == {"HF_TOKEN": "hf_new"}
    assert os.stat(settings.home).st_mode & 0o777 == 0o700
    assert all(os.stat(p).st_mode & 0o777 == 0o600 for p in settings.home.glob("rota.db*"))
    assert os.stat(settings.secret_key_path).st_mode & 0o777 == 0o600


# -------------------------------------------------------------- 7: races


def test_parallel_creates_of_one_name_are_one_201_and_409s(member):
    codes, barrier = [], threading.Barrier(4)

    def create():
        barrier.wait()
        codes.append(member.post("/api/v1/endpoints", json=endpoint()).status_code)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(codes) == [201, 409, 409, 409]
    with member.rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(EndpointRow)) == 1


def test_a_store_conflict_names_its_field(rt, admin):
    from rota.domain.endpoints import EndpointCreate

    rt.endpoints.create(admin, EndpointCreate(name="a", template="echo-chat", routing_key="k"))
    with pytest.raises(Conflict) as e:  # the database's constraint, not only the service's check
        rt.endpoints.create(admin, EndpointCreate(name="b", template="echo-chat", routing_key="k"))
    assert e.value.field == "routing_key"


# -------------------------------------------------------------- 8, 9, 12, 13: bounds, sizes, bad input


@pytest.mark.parametrize("n", [11, 10**9, 2**63 - 1, 10**30])
def test_task_bounds_are_capped(member, n):
    r = member.post("/api/v1/tasks", json=task(schedule=[{"time": "09:00", "min_replicas": 1, "max_replicas": n}]))
    assert r.status_code == 422 and r.json()["error"]["field"] == "schedule.0.max_replicas", r.text


def test_bodies_over_the_limit_are_a_413_and_deep_json_a_4xx(member):
    r = member.post(
        "/api/v1/tasks", content=b'{"name": "' + b"x" * (2 << 20) + b'"}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and str(member.rt.settings.max_body_bytes) in r.json()["error"]["message"]
    deep = b'{"name": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    r = member.post("/api/v1/tasks", content=deep, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500 and r.json()["error"]["message"]


@pytest.mark.parametrize(
    "method,path,body,status,field",
    [
        ("GET", "/api/v1/tasks/" + "9" * 5000, None, 404, "task"),
        (
            "POST",
            "/api/v1/tasks",
            task(type="one_off", schedule=[{"time": "9999-12-31T23:59", "min_replicas": 1, "max_replicas": 1}]),
            422,
            "schedule",
        ),
        (
            "POST",
            "/api/v1/tasks",
            task(type="one_off", schedule=[{"time": "0001-01-01T00:00", "min_replicas": 1, "max_replicas": 1}]),
            422,
            "schedule",
        ),
        ("POST", "/api/v1/tasks", task(schedule=[{"time": "٠٩:٠٠", "min_replicas": 1, "max_replicas": 1}]), 422, "schedule"),
        ("POST", "/api/v1/tasks", task(resources={"num_gpus": "Infinity"}), 422, "resources.num_gpus"),
        ("PUT", "/api/v1/tasks", None, 405, None),
        ("GET", "/api/v1/nothing-here", None, 404, None),
    ],
)
def test_bad_input_that_was_a_5xx_is_a_4xx_in_the_documented_shape(member, method, path, body, status, field):
    r = member.request(method, path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"] and r.json()["error"]["field"] == field


def test_patching_a_one_off_to_year_9999_is_a_422(member):
    member.post(
        "/api/v1/tasks", json=task(type="one_off", schedule=[{"time": "2030-01-01T00:00", "min_replicas": 1, "max_replicas": 1}])
    )
    r = member.patch("/api/v1/tasks/t", json={"schedule": [{"time": "9999-01-01T00:00", "min_replicas": 1, "max_replicas": 1}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "schedule"


# -------------------------------------------------------------- 14: leaks


def test_routing_keys_belong_to_a_project_and_ray_errors_stay_with_their_endpoint(member, ray):
    assert member.post("/api/v1/endpoints", json=endpoint("mine")).status_code == 201
    assert member.post("/api/v1/endpoints", json=endpoint("mine"), headers=member.other).status_code == 201  # not "taken"
    theirs = member.get("/api/v1/endpoints/mine", headers=member.other).json()
    ray.refuse.add(f"ep-{theirs['id']}")
    member.rt.reconciler.tick()
    mine = member.get("/api/v1/endpoints/mine").json()
    theirs = member.get("/api/v1/endpoints/mine", headers=member.other).json()
    assert (theirs["status"], theirs["error_code"]) == ("FAILED", "CONFIG_REJECTED")
    assert mine["status"] == "RUNNING" and f"ep-{theirs['id']}" not in (mine["message"] or "")
    assert f"ep-{mine['id']}" in ray.apps  # one refused application does not stop the others
    member.patch("/api/v1/endpoints/mine", json={"scaling": {"replicas": 2}})
    member.rt.reconciler.tick()  # still refused; the others still follow their changes
    assert ray.apps[f"ep-{mine['id']}"]["target"] == 2 and f"ep-{theirs['id']}" not in ray.apps
    assert member.get("/api/v1/endpoints/mine", headers=member.other).json()["status"] == "FAILED"
    ray.refuse.clear()  # a refusal is not remembered: once Ray takes it, it runs
    member.rt.reconciler.tick()
    assert member.get("/api/v1/endpoints/mine", headers=member.other).json()["status"] == "RUNNING"


def test_values_that_are_not_plain_json_are_refused_and_never_freeze_the_loop(member, ray):
    body = task(file_path="serve", args={"model": "a/b", "engine_args": {"seed": float("nan")}})
    r = member.post(
        "/api/v1/tasks", content=__import__("json").dumps(body).encode(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "args"
    member.rt.reconciler.tick()
    assert "rota-gateway" in ray.apps


def test_engine_flag_values_are_values_never_flags():
    import importlib.util
    import sys

    from support.procs import REPO

    spec = importlib.util.spec_from_file_location("serve_for_argv", REPO / "serve_apps" / "serve.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    argv = mod.LLMConfig(model="a/b", engine_args={"disable_log_stats": "--trust-remote-code", "seed": 3}).vllm_argv(True)
    assert "--trust-remote-code" not in argv and "--disable-log-stats=--trust-remote-code" in argv and "--seed=3" in argv


def test_another_tasks_own_application_cannot_be_driven_and_reapplying_keeps_the_bounds(member, clock):
    from datetime import timedelta

    own = member.post("/api/v1/tasks", json=task("a")).json()
    r = member.post("/api/v1/tasks", json=task("b", file_path=None, deployment_name=None, endpoint="a"))
    assert r.status_code == 422 and r.json()["error"]["field"] == "endpoint"
    member.post("/api/v1/endpoints", json=endpoint("chat")).raise_for_status()
    drive = task("d", file_path=None, deployment_name=None, endpoint="chat")
    d = member.post("/api/v1/tasks", json=drive).json()
    member.post("/api/v1/tasks/d/activate").raise_for_status()
    process_due(member.rt.db, d["id"], clock.now.replace(hour=9), "schedule", timedelta(hours=1))
    before, d = member.get("/api/v1/endpoints/chat").json()["replicas"], member.get("/api/v1/tasks/d").json()
    assert before["source"] == "schedule"
    again = member.patch("/api/v1/tasks/d", json={"endpoint": "chat"}).json()  # what `rota apply` sends again
    assert member.get("/api/v1/endpoints/chat").json()["replicas"] == before and again["updated_at"] == d["updated_at"]
    assert own["owns_endpoint"]


def test_apply_substitutes_in_values_only(tmp_path):
    from rota.cli.manifest import read_yaml

    f = tmp_path / "m.yaml"
    f.write_text("# ${NOT_SET_ANYWHERE}\nname: ${A}\nother: ${B}\n${K:-key}: 1\n")
    out = read_yaml(f, {"A": "a #not a comment", "B": "x\ninjected: true"})
    assert out == {"name": "a #not a comment", "other": "x\ninjected: true", "key": 1}


def test_a_fire_with_the_cap_lowered_later_still_applies(rt, admin, clock):
    # Caps are checked when a schedule is written; a stored schedule keeps firing.
    from datetime import timedelta

    from rota.domain.tasks import TaskCreate

    t = rt.tasks.activate(admin, rt.tasks.create(admin, TaskCreate.model_validate(task())).id)
    assert process_due(rt.db, t.id, clock.now.replace(hour=9), "schedule", timedelta(hours=1)).applied is not None


def test_a_project_holds_at_most_max_endpoints_and_others_are_unaffected(member):
    member.rt.settings.max_endpoints = 2
    assert member.post("/api/v1/endpoints", json=endpoint("e1"), headers=member.member).status_code == 201
    assert member.post("/api/v1/tasks", json=task("t1"), headers=member.member).status_code == 201  # its application counts
    before = counts(member)
    for r in (
        member.post("/api/v1/endpoints", json=endpoint("e2"), headers=member.member),
        member.post("/api/v1/tasks", json=task("t2"), headers=member.member),
    ):
        assert r.status_code == 403 and "ROTA_MAX_ENDPOINTS" in r.json()["error"]["message"], r.text
    assert counts(member) == before
    assert member.post("/api/v1/endpoints", json=endpoint("e1"), headers=member.other).status_code == 201
    assert member.post("/api/v1/endpoints", json=endpoint("e3")).status_code == 201  # the admin's key: not limited


def test_all_of_an_applications_env_is_bounded_on_create_and_patch(member):
    big = {f"HF_{i}": "x" * 30_000 for i in range(3)}
    for who in (member.member, {}):  # an ordinary key, the admin's
        r = member.post("/api/v1/endpoints", json=endpoint("e1", env=big), headers=who)
        assert r.status_code == 422 and r.json()["error"]["field"] == "env", r.text
    member.post("/api/v1/endpoints", json=endpoint("e1", env={"A": "x" * 30_000})).raise_for_status()
    before = member.get("/api/v1/endpoints/e1").json()
    r = member.patch("/api/v1/endpoints/e1", json={"env": {"B": "x" * 30_000, "C": "x" * 30_000}})
    assert r.status_code == 422 and r.json()["error"]["field"] == "env", r.text
    assert member.get("/api/v1/endpoints/e1").json() == before


@pytest.mark.parametrize(
    "body,field",
    [
        ({"file_path": "echo", "deployment_name": "app", "engine": {"max_batch_size": 2}}, "engine"),
        ({"template": "echo-chat", "resources": {"num_cpus": 1}}, "resources"),
    ],
)
def test_settings_of_another_kind_of_endpoint_are_a_422_not_ignored(member, body, field):
    r = member.post("/api/v1/endpoints", json={"name": "x", "scaling": {"replicas": 1}, **body})
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


def test_a_task_naming_its_own_application_as_its_endpoint_keeps_it(member):
    own = member.post("/api/v1/tasks", json=task("a")).json()
    assert member.patch("/api/v1/tasks/a", json={"endpoint": "a"}).json()["updated_at"] == own["updated_at"]
    later = [{"time": "10:00", "min_replicas": 1, "max_replicas": 1}]
    again = member.patch("/api/v1/tasks/a", json={"endpoint": "a", "schedule": later})
    assert again.status_code == 200 and again.json()["owns_endpoint"], again.text
    ep = member.get(f"/api/v1/endpoints/{own['endpoint']['id']}").json()
    assert ep["desired"] == "running" and again.json()["endpoint"]["id"] == own["endpoint"]["id"]


def test_an_endpoint_stored_under_older_rules_can_still_be_patched_into_shape(member):
    member.post("/api/v1/endpoints", json=endpoint("e1")).raise_for_status()
    with member.rt.db.session() as s:  # e.g. written before a bound existed
        ep = s.scalar(select(EndpointRow).where(EndpointRow.name == "e1"))
        ep.scaling = {"min_replicas": 1, "max_replicas": 10**6}
    r = member.patch("/api/v1/endpoints/e1", json={"scaling": {"min_replicas": 0, "max_replicas": 2}})
    assert r.status_code == 200 and r.json()["scaling"]["max_replicas"] == 2, r.text


def test_sending_a_vllm_applications_args_again_changes_nothing(member):
    member.post("/api/v1/tasks", json=llm("l")).raise_for_status()
    before = counts(member)
    again = member.patch("/api/v1/tasks/l", json={"args": {"model": "org/model"}})  # what `rota apply` sends again
    assert again.status_code == 200, again.text
    with member.rt.db.session() as s:
        assert s.scalar(select(EndpointRow.generation).where(EndpointRow.name == "l")) == 1  # no roll
    assert counts(member) == before  # no `updated` event either


def test_a_deleted_tasks_id_and_fires_never_pass_to_another_projects_task(member, clock):
    """SQLite gives a table without AUTOINCREMENT the newest deleted id again: a new task of
    another project would have inherited the deleted one's fires (its runs, its last run)."""
    theirs = member.post("/api/v1/tasks", json=task("theirs"), headers=member.other).json()
    assert member.post(f"/api/v1/tasks/{theirs['id']}/activate", headers=member.other).status_code == 200
    from datetime import timedelta

    assert process_due(member.rt.db, theirs["id"], clock.now.replace(hour=9), "schedule", timedelta(hours=1)).applied
    assert len(member.get(f"/api/v1/tasks/{theirs['id']}/runs", headers=member.other).json()) == 1
    assert member.delete(f"/api/v1/tasks/{theirs['id']}", headers=member.other).status_code == 204
    mine = member.post("/api/v1/tasks", json=task("mine"), headers=member.member).json()
    assert mine["id"] > theirs["id"]
    assert member.get(f"/api/v1/tasks/{mine['id']}/runs", headers=member.member).json() == []
    assert member.get(f"/api/v1/tasks/{mine['id']}", headers=member.member).json().get("last_run") is None
    with member.rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(RunRow)) == 0  # the deleted task's fires went with it


def test_a_custom_applications_revision_never_names_a_parent_directory(member):
    r = member.post("/api/v1/tasks", json=llm("rev", revision="main/../../x"), headers=member.member)
    assert r.status_code == 422 and r.json()["error"]["field"] == "args.revision", r.text
    assert member.post("/api/v1/tasks", json=llm("rev", revision="v1.2/rc"), headers=member.member).status_code == 201
