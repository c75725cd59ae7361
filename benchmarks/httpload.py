"""An HTTP/1.1 load generator on raw asyncio streams, cheap enough not to be the bottleneck.

Requests are built as bytes before the clock starts; each connection sends one, reads the
status line, the headers and ``Content-Length`` bytes of body, and sends the next (keep-alive,
no pipelining). No HTTP library runs per request, so the client spends a few tens of
microseconds of CPU on each; ``LoadResult.client_cpu_share`` says how busy it was, so a
report can tell whether the server or the client set the pace.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    statuses: Counter[int]
    client_cpu_seconds: float

    @property
    def client_cpu_share(self) -> float:
        """Share of one core the client used while the load ran."""
        return self.client_cpu_seconds / self.seconds if self.seconds else 0.0

    def ok(self, status: int) -> bool:
        return self.statuses == Counter({status: self.requests})


def post(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _connection(host: str, port: int, queue: Iterator[bytes], statuses: Counter[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=2**24)
    try:
        for request in queue:  # shared by every connection: each takes the next request
            writer.write(request)
            statuses[await _read_response(reader)] += 1
    finally:
        writer.close()
        await writer.wait_closed()


async def _run(host: str, port: int, requests: Sequence[bytes], concurrency: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    queue = iter(requests)
    await asyncio.gather(*(_connection(host, port, queue, statuses) for _ in range(concurrency)))
    return statuses


def run_load(host: str, port: int, requests: Sequence[bytes], concurrency: int) -> LoadResult:
    """Send every request over ``concurrency`` keep-alive connections; wall and CPU time."""
    cpu = time.process_time()
    started = time.perf_counter()
    statuses = asyncio.run(_run(host, port, requests, min(concurrency, len(requests))))
    seconds = time.perf_counter() - started
    return LoadResult(len(requests), seconds, statuses, time.process_time() - cpu)
