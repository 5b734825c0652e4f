"""A bounded HTTP load generator with almost no CPU cost of its own (the server shares the machine).

Each of ``concurrency`` workers keeps one keep-alive connection and posts prebuilt requests, one at
a time, until ``requests`` have been sent in all or ``time_limit`` has passed.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import numpy as np


def multipart_request(path: str, host: str, image: bytes, filename: str = "image.jpg") -> bytes:
    boundary = "reslabbenchboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed by the server")
    status = int(status_line.split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def summary(self) -> dict:
        done = len(self.latencies)
        return {
            "concurrency": self.concurrency, "requests": done, "seconds": self.seconds,
            "requests_per_s": done / self.seconds if self.seconds else 0.0,
            "p50_ms": 1000 * statistics.median(self.latencies) if done else None,
            "p99_ms": 1000 * float(np.percentile(self.latencies, 99)) if done else None,
            "errors": sum(n for s, n in self.statuses.items() if s != 200),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


async def run_load(host: str, port: int, requests: list[bytes], concurrency: int, total: int,
                   time_limit: float) -> LoadResult:
    sent = 0
    result = LoadResult(concurrency, 0.0)
    start = time.perf_counter()

    async def worker() -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while sent < total and time.perf_counter() - start < time_limit:
                request = requests[sent % len(requests)]
                sent += 1
                t = time.perf_counter()
                try:
                    status = await _exchange(reader, writer, request)
                except (ConnectionError, asyncio.IncompleteReadError):
                    status = 599  # counted as an error; reconnect and go on
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                result.latencies.append(time.perf_counter() - t)
                result.statuses[status] = result.statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - start
    return result
