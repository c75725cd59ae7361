"""A real HTTP receiver on loopback for webhook tests: it records every request (headers and
body) and answers as the test says: a status, a Retry-After, or holding the request open
until the test lets it go (a receiver that hangs while a worker is killed)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from payouts.client import WebhookEvent, verify_webhook


@dataclass(frozen=True)
class Request:
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> WebhookEvent:
        return verify_webhook(self.body, self.headers, secret)


# What to answer: (status, extra headers).
Answer = tuple[int, dict[str, str]]


@dataclass
class Receiver:
    answer: Callable[[Request], Answer] = lambda _: (200, {})
    requests: list[Request] = field(default_factory=list)
    payload: bytes = b'{"ok": true}'  # the body of every answer
    hold: bool = False  # hold each request open until release is set
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def received(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def ids(self) -> list[str]:
        return [r.id for r in self.received()]

    def events(self, secret: str) -> list[WebhookEvent]:
        return [r.verify(secret) for r in self.received()]

    def unique(self, secret: str) -> list[WebhookEvent]:
        """The events after deduplication by id, in the order first received."""
        seen: dict[str, WebhookEvent] = {}
        for event in self.events(secret):
            seen.setdefault(event.id, event)
        return list(seen.values())

    def _handle(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
        if self.hold:
            self.held.set()
            self.release.wait(60)
        return self.answer(request)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra = receiver._handle(Request(headers, body))
            payload = receiver.payload
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(payload)

        def log_message(self, *_: Any) -> None:
            return

    return Handler


@contextlib.contextmanager
def receiving(receiver: Receiver | None = None) -> Iterator[Receiver]:
    receiver = receiver or Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
