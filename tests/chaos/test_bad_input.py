"""Bad input: the whole control-plane OpenAPI schema driven by schemathesis, in process
(real SQLite, the in-memory Ray boundary). No request may be a server error; every
rejection is a 4xx that says what is wrong, and leaves the store as it was."""

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from sqlalchemy import func, select

from rota.api.app import create_app
from rota.config import Settings
from rota.runtime import Runtime
from rota.store.tables import ApiKeyRow, EndpointRow, EventRow, ProjectRow, RunRow, TaskRow
from support.endpoints import TEST_TEMPLATES
from support.fake_ray import FakeRay
from support.procs import TEST_APPS

TABLES = (TaskRow, EndpointRow, EventRow, RunRow, ApiKeyRow, ProjectRow)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    home = tmp_path_factory.mktemp("schemathesis")
    s = Settings(home=home, serve_apps_path=str(TEST_APPS), ray_address="http://127.0.0.1:9", templates_path=TEST_TEMPLATES)
    rt = Runtime(s, ray=FakeRay())
    with TestClient(create_app(s, runtime=rt)) as c:
        rt.reconciler.stop()  # only requests change the store
        c.rt = rt
        c.headers["Authorization"] = f"Bearer {s.admin_key_path.read_text().strip()}"
        yield c


def counts(rt) -> tuple[int, ...]:
    with rt.db.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in TABLES)


def operations(client):
    schema = schemathesis.openapi.from_dict(client.app.openapi())
    return [r.ok() for r in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.NEGATIVE, GenerationMode.POSITIVE])
def test_every_operation_rejects_cleanly(client, mode, full):
    """Schemathesis's pytest plugin does not load with this pytest: its strategies are
    driven with Hypothesis directly, one property per operation."""
    ops = operations(client)
    assert len(ops) >= 20, [op.label for op in ops]
    exercised = []
    for op in ops:

        @given(case=op.as_strategy(generation_mode=mode))
        @hsettings(max_examples=60 if full else 15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def property_(case):
            before = counts(client.rt)
            kw = case.as_transport_kwargs(base_url="http://testserver", headers=dict(client.headers))
            response = client.request(**{k: v for k, v in kw.items() if k in ("method", "url", "headers", "params", "json", "content", "cookies")})
            where = (op.label, response.status_code, response.text[:300])
            assert response.status_code < 500, where
            if response.status_code >= 400:
                err = response.json().get("error", {})
                assert err.get("message") and err.get("code"), where
                assert counts(client.rt) == before, where

        try:
            property_()
            exercised.append(op.label)
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, op.label  # nothing to get wrong in, e.g., GET /healthz
    assert len(exercised) >= (20 if mode is GenerationMode.POSITIVE else 10), exercised
