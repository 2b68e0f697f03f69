"""Fault tests. `make test` runs them small; `make chaos` (ROTA_CHAOS=full) at full size."""

import os

import pytest

pytestmark = pytest.mark.chaos


@pytest.fixture
def full() -> bool:
    return os.environ.get("ROTA_CHAOS") == "full"
