"""A real TCP proxy that can swallow responses (the server did the work, the client never
hears back: how a test makes a client retry a request that already succeeded) or play dead
(every connection is dropped at once: a node that went away)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class CuttingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cut_responses = 0  # how many upcoming responses to swallow (closing the socket)
        self.cut = 0
        self.down = False  # drop every connection without reaching the upstream (go_down)
        self._live: set[socket.socket] = set()
        self.connections = 0  # how many connections clients opened (a measure of hammering)
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    def go_down(self) -> None:
        """From now on the node is gone: open connections are cut, new ones reset."""
        self.down = True
        with self._lock:
            live, self._live = list(self._live), set()
        for s in live:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def come_back(self) -> None:
        self.down = False

    def _take_cut(self) -> bool:
        with self._lock:
            if self.cut_responses > 0:
                self.cut_responses -= 1
                self.cut += 1
                return True
            return False

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.down:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()  # a reset: the client sees the node gone
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._live.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, responses: bool = False) -> None:
        try:
            while data := src.recv(65536):
                if responses and self._take_cut():
                    break  # the server answered; the client will never see it
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
