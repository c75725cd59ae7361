"""A marketplace's webhook receiver on loopback, for the demo and the benchmarks.

It answers every delivery 200, checks each one's signature and timestamp against the
endpoint's secrets (Standard Webhooks, as a marketplace would), and keeps what arrived: the
webhook id, the event's type and sequence number, whether it verified, and when it came, so
the caller can count per type, find duplicates and what is missing, and measure the lag from
the state change (the event's timestamp) to its arrival.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Arrival:
    webhook_id: str
    type: str
    seq: int
    verified: bool
    timestamp: datetime  # the event's: when the state changed
    arrived: datetime


class Receiver:
    """``with Receiver() as r:`` serves on 127.0.0.1 at ``r.url`` until the block ends."""

    def __init__(self) -> None:
        self._secrets: list[str] = []
        self._lock = threading.Lock()
        self.arrivals: list[Arrival] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver._keep(body, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/webhooks"

    def trust(self, secret: str) -> None:
        """Verify with ``secret`` too (an endpoint's secret, shown once when it is made)."""
        with self._lock:
            self._secrets.append(secret)

    def _verified(self, body: bytes, headers: dict[str, str]) -> bool:
        for secret in list(self._secrets):
            try:
                Webhook(secret).verify(body, headers)
            # A signature that is not even base64 escapes the library as binascii.Error.
            except (WebhookVerificationError, ValueError):
                continue
            return True
        return False

    def _keep(self, body: bytes, headers: dict[str, str]) -> None:
        arrived = datetime.now(UTC)
        try:
            message = json.loads(body)
            kind, seq = str(message["type"]), int(message["seq"])
            timestamp = datetime.fromisoformat(message["timestamp"])
        except (ValueError, KeyError, TypeError):
            kind, seq, timestamp = "unreadable", -1, arrived
        arrival = Arrival(
            headers.get("webhook-id", ""),
            kind,
            seq,
            self._verified(body, headers),
            timestamp,
            arrived,
        )
        with self._lock:
            self.arrivals.append(arrival)

    def snapshot(self) -> list[Arrival]:
        with self._lock:
            return list(self.arrivals)

    def unique(self) -> dict[str, Arrival]:
        """The first arrival of each webhook id (what a receiver deduplicating by id keeps)."""
        first: dict[str, Arrival] = {}
        for arrival in self.snapshot():
            first.setdefault(arrival.webhook_id, arrival)
        return first

    def per_type(self) -> dict[str, tuple[int, int]]:
        """Per event type: how many distinct ids arrived, and how many of them verified."""
        received: Counter[str] = Counter()
        verified: Counter[str] = Counter()
        for arrival in self.unique().values():
            received[arrival.type] += 1
            verified[arrival.type] += arrival.verified
        return {t: (received[t], verified[t]) for t in sorted(received)}

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
