"""What ``--wait`` decides from the API's answers: done, failed or keep waiting; phase times."""

import pytest

from rota.cli.follow import Goal, phase_times, since_change, verdict


def ep(status, converged=True, desired="running", error_code=None, message=None, running=1, low=1):
    return {
        "status": status,
        "converged": converged,
        "desired": desired,
        "error_code": error_code,
        "message": message,
        "replicas": {"running": running, "min": low},
    }


@pytest.mark.parametrize(
    "goal,answer,ok",
    [
        (Goal.READY, ep("RUNNING"), True),
        (Goal.READY, ep("SLEEPING"), True),
        (Goal.READY, ep("PENDING"), True),
        (Goal.READY, ep("INITIALIZING"), None),
        (Goal.READY, ep("UPDATING"), None),
        (Goal.READY, ep("RUNNING", converged=False), None),  # older settings' status
        (Goal.READY, ep("RUNNING", running=1, low=3), None),  # serving, but not yet at the size asked for
        (Goal.READY, ep("SLEEPING", running=0, low=0), True),
        (Goal.READY, ep("FAILED", error_code="CONFIG_REJECTED", message="route clash"), False),
        (Goal.READY, ep("FAILED", converged=False), None),  # a failure of the model it replaces
        (Goal.READY, ep("FAILED", error_code="MODEL_DOWNLOAD_FAILED", message="gone"), False),
        (Goal.READY, ep("RUNNING", error_code="INVALID_ARGUMENT", message="bad flag"), False),  # the roll failed
        (Goal.READY, ep("STOPPING", desired="stopped", converged=False), False),  # someone stopped it
        (Goal.READY, None, False),
        (Goal.STOPPED, ep("STOPPING", desired="stopped", converged=False), None),
        (Goal.STOPPED, ep("STOPPED", desired="stopped"), True),
        (Goal.STOPPED, ep("RUNNING"), False),
        (Goal.GONE, ep("TERMINATING", desired="deleted", converged=False), None),
        (Goal.GONE, None, True),
    ],
)
def test_verdict(goal, answer, ok):
    v = verdict(goal, answer)
    assert (v.ok if v else None) is ok


def test_a_failure_names_the_code_and_the_message():
    v = verdict(Goal.READY, ep("FAILED", error_code="MODEL_DOWNLOAD_FAILED", message="/x does not exist"))
    assert "MODEL_DOWNLOAD_FAILED" in v.text and "/x does not exist" in v.text


def status(at, to, phase=None, kind="status"):
    at = f"2026-11-23T08:00:{at:02d}Z"  # as the API writes it
    return {"kind": kind, "at": at, "data": {"to": to, "phase": phase}, "message": ""}


def test_phase_times_come_from_the_status_events_since_the_last_change():
    events = [
        status(0, "RUNNING", "READY"),
        status(1, "", kind="updated"),
        status(2, "UPDATING", "REQUESTING_RESOURCES"),
        status(3, "", kind="deploying"),
        status(5, "UPDATING", "ENGINE_INITIALIZING"),
        status(15, "UPDATING", "WAITING_FOR_ROUTE"),
        status(16, "RUNNING", "READY"),
    ]
    recent = since_change(events)
    assert recent[0]["kind"] == "updated"
    assert phase_times(recent) == [("REQUESTING_RESOURCES", 3.0), ("ENGINE_INITIALIZING", 10.0), ("WAITING_FOR_ROUTE", 1.0)]
