"""Misbehaving TCP servers, for what a client does when an ML instance dies mid-request."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

Behaviour = Literal["close", "reset", "silent"]


class BadServer:
    """Accepts connections and then: closes them (`close`), resets them (`reset`, an RST),
    or reads the request and never answers (`silent`). Counts the connections it accepted."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.accepted = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.settimeout(2)
            with contextlib.suppress(OSError):
                conn.recv(65536)  # the request has reached the service
            if self.behaviour == "silent":
                self._held.append(conn)
                continue
            if self.behaviour == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self._held:
            conn.close()
        self._sock.close()


@contextmanager
def bad_server(behaviour: Behaviour) -> Iterator[BadServer]:
    server = BadServer(behaviour)
    server.start()
    try:
        yield server
    finally:
        server.stop()
