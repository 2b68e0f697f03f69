"""Write a store and the Serve config as Rota 0.1 (commit 0848a8c) leaves them.

Run from a checkout of that commit (its tests/support helpers): python make_store.py OUT
"""
import json, shutil, sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fastapi.testclient import TestClient
from sqlalchemy import text
from rota.api.app import create_app
from rota.config import Settings
from rota.runtime import Runtime
from rota.services.fires import process_due
from support.fake_ray import FakeRay
from support.procs import TEST_APPS
from support.endpoints import TEST_TEMPLATES

out = Path(sys.argv[1]); shutil.rmtree(out, ignore_errors=True); out.mkdir(parents=True)
home = out / "home"
now = [datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)]
clock = lambda: now[0]
s = Settings(home=home, serve_apps_path=str(TEST_APPS), ray_address="http://127.0.0.1:9", templates_path=TEST_TEMPLATES)
ray = FakeRay()
rt = Runtime(s, ray=ray)
for svc in (rt.tasks, rt.endpoints, rt.auth):
    svc.clock = clock
rt.reconciler.clock = clock
GRACE = timedelta(hours=1)
with TestClient(create_app(s, runtime=rt)) as c:
    rt.reconciler.stop(); rt.scheduler.shutdown()
    c.headers["Authorization"] = f"Bearer {s.admin_key_path.read_text().strip()}"
    ok = lambda r: (r.raise_for_status(), r.json())[1]
    tick = rt.reconciler.tick
    ok(c.post("/api/v1/endpoints", json={"name": "chat", "template": "echo-chat", "routing_key": "chat",
        "scaling": {"min_replicas": 1, "max_replicas": 2}, "env": {"HF_TOKEN": "hf_secret"}}))
    ok(c.post("/api/v1/endpoints", json={"name": "parked", "template": "echo-chat", "routing_key": "parked"}))
    tick()
    ok(c.post("/api/v1/endpoints/parked/stop")); tick()
    ok(c.post("/api/v1/tasks", json={"name": "nightly", "file_path": "echo", "deployment_name": "app", "type": "daily",
        "timezone": "Europe/Paris", "args": {"greeting": "bonsoir"}, "resources": {"num_cpus": 0.1},
        "schedule": [{"time": "09:30", "min_replicas": 1, "max_replicas": 1}, {"time": "18:00", "min_replicas": 2, "max_replicas": 3}]}))
    t = ok(c.post("/api/v1/tasks/nightly/activate"))
    ok(c.post("/api/v1/tasks", json={"name": "peak", "endpoint": "chat", "type": "daily", "timezone": "UTC",
        "schedule": [{"time": "08:30", "min_replicas": 2, "max_replicas": 2}]}))
    p = ok(c.post("/api/v1/tasks/peak/activate"))
    ok(c.post("/api/v1/tasks", json={"name": "launch", "file_path": "echo", "deployment_name": "app", "type": "one_off",
        "timezone": "UTC", "schedule": [{"time": "2026-11-23T08:10", "min_replicas": 1, "max_replicas": 1}]}))
    ok(c.post("/api/v1/tasks/launch/activate"))
    b = ok(c.post("/api/v1/keys", json={"name": "ci", "project": "team-b"}))
    hb = {"Authorization": f"Bearer {b['key']}"}
    ok(c.post("/api/v1/tasks", headers=hb, json={"name": "etl", "file_path": "echo", "deployment_name": "app", "type": "daily",
        "timezone": "UTC", "schedule": [{"time": "08:20", "min_replicas": 1, "max_replicas": 1}]}))
    e = ok(c.post("/api/v1/tasks/etl/activate", headers=hb))
    now[0] = datetime(2026, 11, 23, 8, 35, tzinfo=timezone.utc)   # 09:35 Paris: nightly's 09:30 due; peak 08:30 due; etl due
    for tid in (t["id"], p["id"], e["id"]):
        process_due(rt.db, tid, now[0], "schedule", GRACE)
    now[0] = datetime(2026, 11, 23, 9, 40, tzinfo=timezone.utc)   # launch's one-off missed (past the 1 h grace)
    process_due(rt.db, 3, now[0], "catch_up", GRACE)
    tick(); tick()
    with rt.db.engine.begin() as conn:   # what a create race left behind before names were unique
        conn.execute(text("INSERT INTO endpoints (project_id, name, routing_key, template, flavor, gpu_type, gpu_count, model, "
            "file_path, deployment_name, ingress, engine, args, resources, scaling, env, desired, generation, status, replica_ids, "
            "created_at, updated_at) SELECT project_id, name, 'parked-dup', template, flavor, gpu_type, gpu_count, model, file_path, "
            "deployment_name, ingress, engine, args, resources, scaling, env, desired, generation, status, replica_ids, created_at, "
            "updated_at FROM endpoints WHERE name = 'parked'"))
    apps = {n: a["config"] for n, a in ray.apps.items()}
    replicas = {n: a["replicas"] for n, a in ray.apps.items()}
    print(json.dumps({n: (a["route_prefix"], replicas[n]) for n, a in apps.items()}, indent=1))
rt.db.dispose()
shutil.copy(home / "rota.db", out / "store-v0.1.db")
(out / "serve-config-v0.1.json").write_text(json.dumps({"applications": apps, "replicas": replicas}, indent=1, sort_keys=True))
(out / "internal_token").write_text(s.internal_token_path.read_text())
