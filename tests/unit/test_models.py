"""Input validation: every rejection names its field."""

import pytest
from pydantic import ValidationError

from rota.domain.tasks import TaskCreate, TaskManifest, TaskUpdate


def task(**over):
    base = {
        "name": "llama-day",
        "file_path": "serve",
        "deployment_name": "app",
        "type": "daily",
        "timezone": "Europe/Paris",
        "schedule": [{"time": "09:00", "min_replicas": 1, "max_replicas": 3}],
    }
    base.update(over)
    return base


def field_of(exc: ValidationError) -> str:
    return ".".join(str(p) for p in exc.errors()[0]["loc"])


def test_valid_daily_and_one_off():
    assert TaskCreate.model_validate(task()).schedule[0].max_replicas == 3
    t = TaskCreate.model_validate(
        task(type="one_off", schedule=[{"time": "2026-11-23T09:30", "min_replicas": 0, "max_replicas": 1}])
    )
    assert t.type.value == "one_off"


@pytest.mark.parametrize(
    "over,field,text",
    [
        ({"timezone": "Mars/Base"}, "timezone", "IANA"),
        ({"schedule": [{"time": "09:00", "min_replicas": 3, "max_replicas": 1}]}, "schedule.0.max_replicas", "min_replicas"),
        (
            {"schedule": [{"time": "09:00", "min_replicas": 0, "max_replicas": 0}]},
            "schedule.0.max_replicas",
            "greater than or equal to 1",
        ),
        (
            {"schedule": [{"time": "09:00", "min_replicas": -1, "max_replicas": 1}]},
            "schedule.0.min_replicas",
            "greater than or equal to 0",
        ),
        ({"schedule": []}, "schedule", "at least 1"),
        ({"schedule": [{"time": "9h", "min_replicas": 1, "max_replicas": 1}]}, "schedule", "HH:MM"),
        (
            {
                "schedule": [
                    {"time": "09:00", "min_replicas": 1, "max_replicas": 1},
                    {"time": "09:00", "min_replicas": 2, "max_replicas": 2},
                ]
            },
            "schedule",
            "distinct",
        ),
        ({"type": "one_off"}, "schedule", "has no date"),
        (
            {"type": "one_off", "schedule": [{"time": "2026-11-23T09:30", "min_replicas": 1, "max_replicas": 1}] * 2},
            "schedule",
            "exactly one",
        ),
        ({"type": "weekly"}, "type", "one_off"),
        ({"name": "Bad_Name"}, "name", "pattern"),
        ({"name": "9lives"}, "name", "pattern"),
        ({"file_path": "../etc/passwd"}, "file_path", "pattern"),
        ({"file_path": "serve.py"}, "file_path", "pattern"),
        ({"deployment_name": "a-b"}, "deployment_name", "pattern"),
        ({"resources": {"num_cpus": 0}}, "resources.num_cpus", "greater than 0"),
        ({"replicas": 3}, "replicas", "Extra inputs"),
    ],
)
def test_rejections_name_the_field(over, field, text):
    with pytest.raises(ValidationError) as e:
        TaskCreate.model_validate(task(**over))
    assert field_of(e.value) == field
    assert text in str(e.value)


def test_update_is_partial():
    u = TaskUpdate.model_validate({"args": {"model": "x"}})
    assert u.model_dump(exclude_unset=True) == {"args": {"model": "x"}}
    with pytest.raises(ValidationError) as e:
        TaskUpdate.model_validate({"timezone": "Nowhere/Land"})
    assert field_of(e.value) == "timezone"


def test_manifest_carries_active_flag():
    m = TaskManifest.model_validate({**task(), "active": True})
    assert m.active is True and "active" not in m.to_create().model_dump()
