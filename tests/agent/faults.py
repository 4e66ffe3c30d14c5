"""A real HTTP server on 127.0.0.1 for failures that cannot otherwise be produced.

`FaultProxy` forwards every request to a real upstream server (the API server under test)
unless its `fault` hook says otherwise: answer with a status (5xx, 429 + Retry-After…), drop
the connection, or delay. Without an upstream it answers only what the hook returns. It
records every request it saw (method, path, body) for assertions. `web_page` is a server that
answers with an HTML page, as a URL that is not the API's would.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


@dataclass
class Reply:
    """What the proxy does instead of (or before) forwarding."""

    status: int = 0  # 0 = forward to the upstream
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without an answer
    delay: float = 0.0  # seconds to wait before forwarding


@dataclass
class Seen:
    method: str
    path: str
    body: bytes


Hook = Callable[[int, Seen], Reply | None]


class FaultProxy:
    def __init__(self, upstream: str | None = None, hook: Hook | None = None) -> None:
        self.upstream = upstream
        self.hook: Hook = hook or (lambda _n, _r: None)
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=upstream or "http://127.0.0.1", timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                seen = Seen(self.command, self.path, self.rfile.read(length) if length else b"")
                with proxy._lock:
                    proxy.seen.append(seen)
                    number = len(proxy.seen)
                reply = proxy.hook(number, seen) or Reply()
                if reply.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.status:
                    payload = json.dumps(reply.body or {"error": "injected"}).encode()
                    self._answer(reply.status, payload, reply.headers)
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                upstream = proxy._client.request(
                    self.command, self.path, content=seen.body, headers=headers
                )
                self._answer(upstream.status_code, upstream.content, {})

            def _answer(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def posts(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == "POST" and s.path == path]

    @contextmanager
    def running(self) -> Iterator[FaultProxy]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            self._client.close()


@contextmanager
def web_page(page: bytes) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 answering every GET and POST with an HTML page."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        do_POST = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
