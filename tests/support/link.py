"""A TCP link between one process and a server, that a test can cut (a partition) and mend."""

from __future__ import annotations

import contextlib
import socket
import threading

from support.procs import free_port


class Link:
    """Listens on ``port`` and forwards to ``127.0.0.1:target``. ``cut()`` closes every
    connection through it and refuses new ones until ``mend()``."""

    def __init__(self, target: int):
        self.target, self.port = target, free_port()
        self._cut = False
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            if self._cut:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            self._close(s)

    def _close(self, s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()
        with self._lock:
            self._open.discard(s)

    def cut(self) -> None:
        self._cut = True
        with self._lock:
            open_now = list(self._open)
        for s in open_now:
            self._close(s)

    def mend(self) -> None:
        self._cut = False

    def close(self) -> None:
        self.cut()
        self._server.close()
