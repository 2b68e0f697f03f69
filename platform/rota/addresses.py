"""Network addresses as the control plane shows and reaches them."""

from __future__ import annotations

import socket


def address_toward(host: str) -> str | None:
    """This host's own IPv4 address on the route to ``host`` (a UDP socket is connected,
    which sends nothing): what a peer there can reach a server bound to 0.0.0.0 at. None if
    it cannot be told (the name does not resolve)."""
    try:
        _, _, _, _, peer = socket.getaddrinfo(host, 9, family=socket.AF_INET, type=socket.SOCK_DGRAM)[0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(peer)
            return str(sock.getsockname()[0])
    except OSError:
        return None


def bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
