"""What a standby control plane knows of Ray. It runs no reconcile ticks (the leader does),
so when it must know (its /api/v1/status; on a shared cluster, the names an endpoint
created through it must avoid) it asks Ray, at most once every ``every_s`` however often
it is asked, with callers waiting for the one look under way. Kept apart from the ticks'
own view: a look that ends after this process was elected changes nothing a tick reads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rota.domain.reconcile import ObservedApp, foreign
from rota.reconciler.sharing import Known, Sharing
from rota.serve.client import RayServe


class Standby:
    def __init__(self, ray: RayServe, sharing: Sharing, known: Callable[[], Known], every_s: float = 1.0):
        self.ray, self.sharing, self.known, self.every_s = ray, sharing, known, every_s
        self.reachable: bool | None = None
        self.error: str | None = None
        self.held: dict[str, ObservedApp] = {}
        self._at = float("-inf")
        self._lock = threading.Lock()

    def look(self) -> None:
        with self._lock:
            if time.monotonic() - self._at < self.every_s:
                return
            self._at = time.monotonic()
            seen = self.ray.observe()
            self.reachable, self.error = seen.reachable, seen.error
            if seen.reachable and self.sharing.active:
                self.held = foreign(seen, self.sharing.owner or "", self.known())
