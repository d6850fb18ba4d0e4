"""CPU per /v1/batch request of a full-size body (~476 KB), for the ways delivery can send it with httpx,
and what gzip costs and saves per level. Prints figures; not a test.

Senders (all httpx, against the Segment stand-in in its own process, so only the sender's CPU counts):
- httpx.AsyncClient (what delivery uses by default), 4 requests in flight;
- httpx.Client (sync) on 4 threads;
- httpx.AsyncClient over a custom transport that sends with the standard library's http.client on
  worker threads (one kept-alive connection per thread).

    .venv/bin/python bench/bench_http_client.py [--requests N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import http.client
import os
import platform
import secrets as token_source
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from bench_delivery import StandIn, make_events, mapped_messages  # noqa: E402

from tui_currents.delivery import batch_body, iso_now  # noqa: E402
from tui_currents.segment import MAX_BATCH_BYTES  # noqa: E402

IN_FLIGHT = 4


class ThreadedHttpClientTransport(httpx.AsyncBaseTransport):
    """httpx's async interface over http.client on worker threads: one kept-alive connection each."""

    def __init__(self, threads: int = IN_FLIGHT):
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")
        self._local = threading.local()

    def _connection(self, url: httpx.URL) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(url.host, url.port, timeout=30)
        return conn

    def _send(self, method: str, url: httpx.URL, headers: list[tuple[bytes, bytes]], body: bytes):
        conn = self._connection(url)
        target = url.raw_path.decode()
        try:
            conn.request(method, target, body=body, headers={k.decode(): v.decode() for k, v in headers})
            response = conn.getresponse()
        except (OSError, http.client.HTTPException):
            conn.close()
            self._local.conn = None
            raise
        return response.status, response.getheaders(), response.read()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        status, headers, content = await asyncio.get_running_loop().run_in_executor(
            self._pool, self._send, request.method, request.url, request.headers.raw, body
        )
        return httpx.Response(status, headers=headers, content=content)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False)


def full_body(key: str) -> bytes:
    """A request body as large as Segment takes, from real mapped messages."""
    import orjson

    messages = [
        orjson.dumps({k: v for k, v in m.items() if k != "_ts"}) for m in mapped_messages(make_events(3_000))
    ]
    chosen, size = [], 100
    for m in messages:
        if size + len(m) + 1 > MAX_BATCH_BYTES - 1_000:
            break
        chosen.append(m)
        size += len(m) + 1
    return batch_body(chosen, key, iso_now(time.time()))


async def run_async(url: str, body: bytes, n: int, transport: httpx.AsyncBaseTransport | None) -> float:
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:
        headers = {"Content-Type": "application/json"}
        await client.post(url, content=body, headers=headers)  # connect outside the measure
        semaphore = asyncio.Semaphore(IN_FLIGHT)

        async def one() -> None:
            async with semaphore:
                response = await client.post(url, content=body, headers=headers)
                assert response.status_code == 200, response.text

        start = time.process_time()
        await asyncio.gather(*(one() for _ in range(n)))
        return (time.process_time() - start) / n


def run_sync_threads(url: str, body: bytes, n: int) -> float:
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=IN_FLIGHT)) as client:
        headers = {"Content-Type": "application/json"}
        client.post(url, content=body, headers=headers)

        def one(_: int) -> None:
            response = client.post(url, content=body, headers=headers)
            assert response.status_code == 200, response.text

        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            start = time.process_time()
            list(pool.map(one, range(n)))
            return (time.process_time() - start) / n


def gzip_figures(body: bytes, levels: tuple[int, ...] = (1, 5, 6, 9)) -> list[tuple[int, float, int]]:
    """(level, CPU ms per body, compressed bytes) per zlib level."""
    out = []
    for level in levels:
        start = time.process_time()
        for _ in range(20):
            packed = gzip.compress(body, level)
        out.append((level, (time.process_time() - start) / 20 * 1000, len(packed)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    key = "bench_" + token_source.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp:
        stand_in = StandIn(key, Path(tmp))
        try:
            body = full_body(key)
            url = stand_in.url + "/v1/batch"
            print(
                f"\nCPU of the sending process per request, body {len(body):,} bytes, {IN_FLIGHT} in flight"
            )
            rows: dict[str, list[float]] = {"async": [], "sync on threads": [], "http.client transport": []}
            for n in range(1, args.rounds + 1):
                rows["async"].append(asyncio.run(run_async(url, body, args.requests, None)))
                rows["sync on threads"].append(run_sync_threads(url, body, args.requests))
                rows["http.client transport"].append(
                    asyncio.run(run_async(url, body, args.requests, ThreadedHttpClientTransport()))
                )
                print(f"  round {n}: " + "; ".join(f"{k} {v[-1] * 1000:.2f} ms" for k, v in rows.items()))
            print(
                "  medians: "
                + "; ".join(f"{k} {statistics.median(v) * 1000:.2f} ms" for k, v in rows.items())
            )
            print(f"\ngzip of the same body ({len(body):,} bytes):")
            for level, ms, size in gzip_figures(body):
                print(f"  level {level}: {ms:.2f} ms CPU, {size:,} bytes ({size / len(body):.1%})")
        finally:
            stand_in.close()


if __name__ == "__main__":
    main()
