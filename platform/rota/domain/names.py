"""Names, ids and the strict base every input schema derives from."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

# DNS-label style: tasks, endpoints, projects, keys.
NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
# A Python identifier: a script in serve_apps/ and the attribute it exposes.
IDENT_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,99}$"
# The `model` clients send; unique in a project.
ROUTING_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,94}$"
MAX_ID = 2**63 - 1  # ids are 64-bit integers in every store
_ID = re.compile(r"^[0-9]{1,19}$")


def by_id_or_name(ref: str | int) -> tuple[int | None, str]:
    """A path reference: an id when it is all ASCII digits and fits an id, else a name."""
    text = str(ref)
    if _ID.match(text) and int(text) <= MAX_ID:
        return int(text), text
    return None, text


class Strict(BaseModel):
    """Unknown fields are errors; so are NaN and infinities."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())
