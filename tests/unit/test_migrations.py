"""The migrations build exactly the schema the ORM expects, are idempotent, and carry a
store written by the previous version over with nothing lost."""

import json
import shutil
import sqlite3
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from rota.config import Settings
from rota.crypto import Cipher
from rota.runtime import Runtime
from rota.store import async_tables, leader_tables  # noqa: F401 (their rows are in the metadata compared below)
from rota.store.db import Database
from rota.store.tables import Base, EndpointRow, TaskRow
from support.fake_ray import FakeRay
from support.leading import lead
from support.procs import REPO, TEST_APPS

V01 = REPO / "tests" / "data" / "v0.1"


def cipher(tmp_path: Path) -> Cipher:
    return Cipher.load(None, tmp_path / "secret_key")


def test_migrations_match_the_orm(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate(cipher(tmp_path))
    db.migrate(cipher(tmp_path))  # a restart: nothing to do, nothing lost
    with db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diffs == [], diffs
        assert MigrationContext.configure(conn).get_current_revision() == "0018"
    uniques = {tuple(u["column_names"]) for u in inspect(db.engine).get_unique_constraints("endpoints")}
    assert {("project_id", "name"), ("project_id", "routing_key"), ("app_name",), ("route_prefix",)} <= uniques
    assert (tmp_path / "m.db").stat().st_mode & 0o777 == 0o600
    # A table rebuilt on SQLite (batch_alter_table) loses AUTOINCREMENT unless told: ids
    # of deleted rows would be given again.
    sql = dict(rows(db, "SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    for table in Base.metadata.sorted_tables:
        if table.kwargs.get("sqlite_autoincrement"):
            assert "AUTOINCREMENT" in sql[table.name], table.name
    db.dispose()


def rows(db: Database, sql: str) -> list[tuple]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql)).all()]


def test_a_v01_store_upgrades_with_nothing_lost_and_nothing_redeployed(tmp_path):
    shutil.copy(V01 / "store-v0.1.db", tmp_path / "rota.db")
    before = sqlite3.connect(tmp_path / "rota.db")
    old_events = before.execute("SELECT id, task_id, endpoint_id, kind, message, at FROM events ORDER BY id").fetchall()
    old_runs = before.execute("SELECT * FROM runs ORDER BY id").fetchall()
    before.close()
    (tmp_path / "internal_token").write_text((V01 / "internal_token").read_text())  # the same home
    settings = Settings(
        home=tmp_path,
        serve_apps_path=str(TEST_APPS),
        ray_address="http://127.0.0.1:9",
        templates_path=REPO / "tests" / "apps" / "templates.yaml",
    )
    ray = FakeRay()
    old = json.loads((V01 / "serve-config-v0.1.json").read_text())
    ray.apps = {
        n: {"config": c, "target": len(old["replicas"][n]), "replicas": list(old["replicas"][n])}
        for n, c in old["applications"].items()
    }
    rt = Runtime(settings, ray=ray)
    rt.db.migrate(rt.cipher)
    lead(rt, scheduler=False)  # the first tick below, not a catch-up at today's date
    db = rt.db

    # Tasks: schedules only, each with its endpoint; statuses are the schedule's.
    assert rows(db, "SELECT id, name, project_id, endpoint_id, status FROM tasks ORDER BY id") == [
        (1, "nightly", 1, 4, "active"),
        (2, "peak", 1, 1, "active"),
        (3, "launch", 1, 5, "missed"),
        (4, "etl", 2, 6, "active"),
    ]
    # Old runs keep every column; the new ones (ready_by windows) are empty.
    assert rows(db, "SELECT * FROM runs ORDER BY id") == [(*r, None, None, None) for r in old_runs]
    # Endpoints: the three there were (a duplicate name renamed) and one per task's own application.
    eps = {
        r[0]: r[1:]
        for r in rows(
            db,
            "SELECT id, name, kind, owner_task_id, app_name, route_prefix, status, desired, "
            "scheduled_min, scheduled_max, token_arg FROM endpoints",
        )
    }
    assert eps == {
        1: ("chat", "template", None, "ep-1", "/ep/1", "RUNNING", "running", 2, 2, "api_key"),
        2: ("parked", "template", None, "ep-2", "/ep/2", "STOPPED", "stopped", None, None, "api_key"),
        3: ("parked-3", "template", None, "ep-3", "/ep/3", "STOPPED", "stopped", None, None, "api_key"),
        4: ("nightly", "application", 1, "nightly", "/nightly", "RUNNING", "running", 1, 1, None),
        5: ("launch", "application", 3, "launch", "/launch", "PENDING", "running", None, None, None),
        6: ("etl", "application", 4, "p2-etl", "/p2-etl", "RUNNING", "running", 1, 1, None),
    }
    raw_env = rows(db, "SELECT env FROM endpoints WHERE id = 1")[0][0]
    assert "hf_secret" not in raw_env  # encrypted at rest
    with db.session() as s:
        chat = s.get(EndpointRow, 1)
        assert rt.cipher.decrypt_map(chat.env) == {"HF_TOKEN": "hf_secret"} and chat.args["model_source"] == "hub"
        nightly = s.get(EndpointRow, 4)
        assert nightly.replica_ids == old["replicas"]["nightly"] and nightly.args == {"greeting": "bonsoir"}
        assert s.scalar(select(TaskRow.status_reason).where(TaskRow.name == "launch")).startswith("missed")
    # Every event is still there (app events of tasks now also on their endpoint; legacy kinds as `status`).
    events = rows(db, "SELECT id, task_id, endpoint_id, kind, message, at, data FROM events ORDER BY id")
    assert [e[0] for e in events[: len(old_events)]] == [e[0] for e in old_events]
    assert [(e[4], e[5]) for e in events[: len(old_events)]] == [(e[4], e[5]) for e in old_events]
    moved = [e for e in events if e[1] == 1 and e[3] in ("deploying", "status")]
    assert moved and all(e[2] == 4 for e in moved) and json.loads(moved[-1][6])["legacy_kind"] == "running"
    assert events[-1][2:4] == (3, "updated") and "renamed from 'parked'" in events[-1][4]

    # The first tick: the tasks' own applications are untouched (same config, same replicas);
    # model endpoints roll once for their own tokens and new routes; stopped ones stay stopped.
    rt.reconciler.tick()
    for name in ("nightly", "p2-etl"):
        assert ray.apps[name]["config"] == old["applications"][name] and ray.apps[name]["replicas"] == old["replicas"][name]
    chat_cfg = ray.apps["ep-1"]["config"]
    assert chat_cfg["route_prefix"] == "/ep/1" and chat_cfg["args"]["api_key"] != (V01 / "internal_token").read_text().strip()
    kept = {k: v for k, v in chat_cfg["args"].items() if k not in ("api_key", "model_source")}
    assert kept == {k: v for k, v in old["applications"]["ep-1"]["args"].items() if k != "api_key"}
    assert set(ray.apps) == {"rota-gateway", "ep-1", "nightly", "p2-etl"}
    rt.db.dispose()


def test_upgrading_a_0001_store_keeps_its_tasks_and_events(tmp_path):
    from alembic import command
    from alembic.config import Config

    import rota.store.db as dbmod

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(dbmod.__file__).parent / "migrations"))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(
            text(
                "INSERT INTO tasks (name, file_path, deployment_name, ingress, type, timezone, schedule, args, env, resources, "
                "status, created_at, updated_at, app_status, app_replica_ids) VALUES ('old', 'echo', 'app', 'Echo', 'daily', 'UTC', "
                "'[]', '{}', '{}', '{}', 'active', '2026-01-01 00:00:00', '2026-01-01 00:00:00', 'RUNNING', '[]')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO events (task_id, task_name, kind, message, data, at) VALUES (1, 'old', 'created', 'x', '{}', '2026-01-01 00:00:00')"
            )
        )
    db.migrate(cipher(tmp_path))
    assert rows(db, "SELECT name, project_id, endpoint_id, status FROM tasks") == [("old", 1, 1, "active")]
    assert rows(db, "SELECT name, kind, owner_task_id, app_name FROM endpoints") == [("old", "application", 1, "old")]
    assert rows(db, "SELECT task_name, project_id FROM events") == [("old", 1)]
    assert rows(db, "SELECT id, name FROM projects") == [(1, "default")]
    db.dispose()


def test_a_task_whose_endpoint_was_already_gone_is_deleted_with_an_event(tmp_path):
    shutil.copy(V01 / "store-v0.1.db", tmp_path / "rota.db")
    old = sqlite3.connect(tmp_path / "rota.db")
    old.execute("DELETE FROM endpoints WHERE name = 'chat'")  # what a 0.1 race could leave: 'peak' drove it
    old.commit()
    old.close()
    db = Database(f"sqlite:///{tmp_path / 'rota.db'}")
    db.migrate(cipher(tmp_path))
    assert [r[0] for r in rows(db, "SELECT name FROM tasks ORDER BY id")] == ["nightly", "launch", "etl"]
    assert rows(db, "SELECT task_name, kind FROM events ORDER BY id DESC LIMIT 1") == [("peak", "deleted")]
    db.dispose()


def test_odd_v01_rows_are_brought_within_todays_rules(tmp_path):
    shutil.copy(V01 / "store-v0.1.db", tmp_path / "rota.db")
    con = sqlite3.connect(tmp_path / "rota.db")
    cols = (
        "project_id, template, flavor, gpu_type, gpu_count, model, file_path, deployment_name, ingress, engine, args, "
        "resources, scaling, env, desired, generation, status, replica_ids, created_at, updated_at"
    )
    # A name the renaming of a duplicate would pick, and a vLLM task with values 0.1 accepted.
    con.execute(
        f"INSERT INTO endpoints (name, routing_key, {cols}) SELECT 'parked-3', 'parked-3b', {cols} FROM endpoints WHERE id = 2"
    )
    resources = {"num_cpus": 5000, "num_gpus": -1, "accelerator_type": "A100 --flag", "memory": 1}
    args = {"model": "org/m", "api_key": "old-token"}
    con.execute(
        "UPDATE tasks SET file_path = 'serve', resources = ?, args = ? WHERE name = 'etl'",
        (json.dumps(resources), json.dumps(args)),
    )
    con.commit()
    con.close()
    db = Database(f"sqlite:///{tmp_path / 'rota.db'}")
    db.migrate(cipher(tmp_path))
    names = [r[0] for r in rows(db, "SELECT name FROM endpoints WHERE owner_task_id IS NULL ORDER BY id")]
    assert names == ["chat", "parked", "parked-3", "parked-3-4"]
    etl = rows(db, "SELECT args, resources FROM endpoints WHERE name = 'etl'")[0]
    assert json.loads(etl[0]) == {"model": "org/m", "model_source": "hub", "served_model_name": "etl"}
    assert json.loads(etl[1]) == {"num_cpus": 1024}
    owned = rows(db, "SELECT count(*) FROM endpoints WHERE owner_task_id IS NOT NULL AND scaling IS NULL")
    assert owned == [(3,)]  # SQL NULL, not the JSON text 'null'
    db.dispose()


def test_a_store_that_gave_a_deleted_tasks_id_again_is_mended(tmp_path):
    """Before 0018, SQLite could give a new task the id of the newest deleted one, which
    then read that task's fires as its own. After it: those runs are gone, the task's own
    stay, and no id a task ever had (its events remember it) is given again."""
    from datetime import datetime, timezone

    from rota.store.tables import EventRow, RunRow

    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate(cipher(tmp_path), to="0017")
    at = lambda h: datetime(2026, 11, 20, h, tzinfo=timezone.utc)
    run = lambda task_id, h: RunRow(
        task_id=task_id, scheduled_at=at(h), fired_at=at(h), entry=0, min_replicas=1, max_replicas=1, trigger="schedule"
    )
    with db.session() as s:
        mine = {"project_id": 1, "name": "mine", "endpoint_id": 1, "type": "daily", "timezone": "UTC", "schedule": []}
        s.add(TaskRow(id=1, status="active", created_at=at(10), updated_at=at(10), **mine))
        s.add_all([run(1, 9), run(1, 11), run(9, 8)])  # 9:00 was an earlier task 1's; task 9 is gone
        s.add(EventRow(project_id=2, task_id=7, task_name="gone", kind="deleted", message="deleted", at=at(8)))
    db.migrate(cipher(tmp_path))
    with db.session() as s:
        assert [(r.task_id, r.fired_at.hour) for r in s.scalars(select(RunRow))] == [(1, 11)]
        new = TaskRow(project_id=1, name="next", endpoint_id=1, type="daily", timezone="UTC", schedule=[], status="idle")
        s.add(new)
        s.flush()
        assert new.id == 10  # past task 9 (only its run remembered it) and task 7 (its event)
    db.dispose()
