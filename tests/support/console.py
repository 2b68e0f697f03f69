"""Signing in to the web console as a browser does: the sign-in form's CSRF token, then
the session cookie; pages' CSRF tokens read from the forms they serve."""

from __future__ import annotations

import html
import re

CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "the page has no form with a CSRF token"
    return html.unescape(found.group(1))


def sign_in(client, key: str, next: str = "") -> object:
    """``client``: an httpx-style client (Starlette's TestClient or httpx.Client) that
    keeps cookies. Returns the sign-in post's response."""
    client.cookies.clear()
    page = client.get("/console/sign-in")
    assert page.status_code == 200, page.text
    return client.post(
        "/console/sign-in", data={"csrf_token": csrf_of(page.text), "key": key, "next": next}, follow_redirects=False
    )


def field_error(page: str, field: str) -> str | None:
    """The message shown next to a form field (``err-<field>``), or None."""
    found = re.search(rf'id="err-{re.escape(field.replace(".", "-"))}"[^>]*>([^<]*)<', page)
    return html.unescape(found.group(1)) if found else None
