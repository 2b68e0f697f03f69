"""Webhooks of async requests: the URL a caller may give, the addresses a delivery must
not reach by default, and the signature a receiver checks. Pure: no network."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from rota.domain.errors import InvalidInput

SIGNATURE_HEADER = "x-rota-signature"  # "t=<unix time>,sha256=<hex HMAC-SHA256 of '<t>.<body>'>[,sha256=...]"


def webhook_url(value: Any) -> str:
    """An http(s) URL with a host (where it may point is checked when it is called)."""
    if not isinstance(value, str) or len(value) > 2048 or not value.isprintable():
        raise InvalidInput("'webhook_url' must be an http or https URL (at most 2048 printable characters)", field="webhook_url")
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 (a port out of range raises)
    except ValueError:
        raise InvalidInput("'webhook_url' has a port that is not a number from 1 to 65535", field="webhook_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise InvalidInput("'webhook_url' must be an http or https URL with a host and no credentials", field="webhook_url")
    return value


def private_address(address: str) -> bool:
    """Loopback, private, link-local and other addresses a webhook must not reach by default
    (the control plane's own network: Ray's dashboard, the cluster, cloud metadata)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return private_address(str(embedded))
        if ip in _NAT64 or ip in _IPV4_COMPATIBLE:  # an IPv4 address inside: whichever it is, not allowed
            return True
    return not ip.is_global or ip.is_multicast


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def signature(secrets: Sequence[str], body: bytes, at: int) -> str:
    """``t=<at>,sha256=<HMAC-SHA256 of "<at>." + body>``, one ``sha256=`` per secret (the
    current one first; after a rotation, the previous one too while its grace lasts): a
    receiver accepts the delivery if any of them matches its secret. The time is signed
    too, so a receiver can refuse an old delivery sent again (a replay)."""
    signed = f"{at}.".encode() + body
    return ",".join([f"t={at}"] + [f"sha256={hmac.new(s.encode(), signed, hashlib.sha256).hexdigest()}" for s in secrets])


def verify(secret: str, header: str, body: bytes, now: float, tolerance_s: float = 300.0) -> bool:
    """What a receiver does: the header's time is recent and one of its ``sha256=`` values
    is the HMAC of ``"<t>." + body`` with ``secret``."""
    if not header.isascii():
        return False
    parts = [p.partition("=") for p in header.split(",")]
    times = [v for k, _, v in parts if k == "t"]
    if len(times) != 1 or not times[0].isdigit() or len(times[0]) > 12 or abs(now - int(times[0])) > tolerance_s:
        return False
    want = hmac.new(secret.encode(), f"{times[0]}.".encode() + body, hashlib.sha256).hexdigest()
    return any(k == "sha256" and hmac.compare_digest(v, want) for k, _, v in parts)
