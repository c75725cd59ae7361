"""A real JSON-RPC proxy between a worker and anvil that can hold or cut one method's calls.

Used where the real node cannot produce the fault a test needs: "the worker died after it
signed but before the node saw the transaction" and "the node got it but the worker never
heard back".
"""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class RpcProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.hold_method: str | None = None
        self.forward_held = False  # forward the held call upstream but withhold the answer
        self.held = threading.Event()
        self.release = threading.Event()
        self.seen: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                methods = [c.get("method") for c in _calls(body)]
                proxy.seen.extend(m for m in methods if m)
                if proxy.hold_method in methods:
                    if proxy.forward_held:
                        proxy._forward(body)
                    proxy.held.set()
                    proxy.release.wait(60)
                    self.close_connection = True
                    return  # the caller never gets an answer
                answer = proxy._forward(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _forward(self, body: bytes) -> bytes:
        request = urllib.request.Request(  # noqa: S310 - the upstream is anvil on loopback
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return bytes(response.read())

    def hold(self, method: str, *, forward: bool = False) -> None:
        self.hold_method, self.forward_held = method, forward
        self.held.clear()
        self.release.clear()

    def pass_through(self) -> None:
        self.hold_method = None
        self.release.set()

    def __enter__(self) -> RpcProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _calls(body: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(body)
    except ValueError:
        return []
    return data if isinstance(data, list) else [data]
