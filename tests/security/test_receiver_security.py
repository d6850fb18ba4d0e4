"""The receiver under attack, on 127.0.0.1: forged and misplaced credentials, hostile HTTP framing, slow
clients, header floods and very long URLs, and the address it listens on by default.

The receiver faces the internet (Braze posts from its own servers), so it is tested as a prober would use
it: raw sockets where an HTTP client would tidy the request up, and volume where one request proves
little. Every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import socket
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support import wait_for
from tui_currents import catalog, config
from tui_currents.config import Connector, ReceiverSettings, Workspace
from tui_currents.engine import Engine, EngineOptions
from tui_currents.paths import Home
from tui_currents.sandbox import SegmentSandbox
from tui_currents.secrets import Secrets, receiver_token_env_var
from tui_currents.sources.demo import DemoGenerator
from tui_currents.sources.ingest import Ingestor
from tui_currents.sources.receiver import Receiver
from tui_currents.store import Store

pytestmark = pytest.mark.timeout(60)

MARKETING, OTHER = "marketing", "other"
CONNECTORS = {MARKETING: "Marketing main", OTHER: "Other main"}
TOKENS = {MARKETING: secrets.token_urlsafe(32), OTHER: secrets.token_urlsafe(32)}
SUPPORTED = catalog.supported_types()
_EVENTS = DemoGenerator(seed=7)


@dataclass
class Target:
    url: str
    port: int
    store: Store
    receiver: Receiver

    def batch(self, *ids: str) -> bytes:
        events = []
        for ident in ids:
            event = _EVENTS.event(anonymous=False)
            event["id"] = ident
            events.append(event)
        return orjson.dumps({"events": events})

    def received(self) -> int:
        return self.store.counter_totals().get("received", 0)

    def queued_ids(self, connector: str) -> set[str]:
        rows = self.store.lease(connector, max_messages=100_000, max_bytes=10**9, lease_seconds=60)
        self.store.release(connector, [r.seq for r in rows])
        return {orjson.loads(r.body)["messageId"] for r in rows}


@pytest.fixture
async def start(home: Home, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Callable[..., object]]:
    """Start a receiver on 127.0.0.1 over a real config, store file and the tokens' environment overrides
    (read through Secrets, as the engine reads them)."""
    for workspace, token in TOKENS.items():
        monkeypatch.setenv(receiver_token_env_var(workspace), token)
        config.add_workspace(home, Workspace(workspace))
        config.add_connector(
            home,
            Connector(
                name=CONNECTORS[workspace],
                workspace=workspace,
                contact_email="ops@example.com",
                events=SUPPORTED,
            ),
        )
    cfg = config.load(home)
    store = Store(home.store_file)
    ingestor = Ingestor(cfg, store)
    vault = Secrets(home)
    started: list[Receiver] = []

    async def _start(*, read_timeout: float = 5.0, **settings: object) -> Target:
        receiver = Receiver(
            lambda: ingestor,
            vault.get_receiver_token,
            ReceiverSettings(port=0, **settings),
            read_timeout=read_timeout,
        )
        url = await receiver.start("127.0.0.1", 0)
        started.append(receiver)
        return Target(url, receiver.port, store, receiver)

    yield _start
    for receiver in started:
        await receiver.stop()
    store.close()


def status_of(response: bytes) -> int | None:
    """The status code of a raw HTTP response, or None when the server closed without answering."""
    if not response.startswith(b"HTTP/"):
        return None
    return int(response.split(b" ", 2)[1])


async def exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return what the server answers until it closes or goes quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        try:
            writer.write(data)
            await writer.drain()
        except ConnectionError:  # the server gave up on the request before it was all sent
            pass
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65_536), timeout=0.3)
            except TimeoutError:
                if got:
                    break
                continue
            except ConnectionError:
                break
            if not chunk:
                break
            got += chunk
        return got
    finally:
        writer.close()


async def healthy(target: Target) -> bool:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(f"{target.url}/healthz")
    return response.status_code == 200 and response.json() == {"status": "ok"}


def request_head(
    path: str | bytes,
    *,
    token: str | bytes | None,
    length: int | None = None,
    extra: str = "",
    close: bool = False,
) -> bytes:
    """A raw request head; `path` and `token` go out byte for byte."""
    raw_path = path if isinstance(path, bytes) else path.encode()
    lines = [b"POST " + raw_path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Content-Type: application/json"]
    if token is not None:
        lines.append(b"Authorization: Bearer " + (token if isinstance(token, bytes) else token.encode()))
    if length is not None:
        lines.append(b"Content-Length: %d" % length)
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n" + extra.encode() + b"\r\n"


# ------------------------------------------------------------------------------------------ credentials


def _homoglyph(c: str) -> str:
    return {"a": "\u0430", "e": "\u0435", "o": "\u043e", "A": "\uff21"}.get(c, "\u00e9")


def wrong_credentials(token: str, others: list[str]) -> list[tuple[str, list[tuple[bytes, bytes]], str]]:
    """(kind, headers, query) for every way to almost present the token: each must be refused."""
    variants: list[tuple[str, list[tuple[bytes, bytes]], str]] = []

    def as_bearer(kind: str, value: str | bytes) -> None:
        raw = value if isinstance(value, bytes) else value.encode("utf-8")
        variants.append((kind, [(b"Authorization", b"Bearer " + raw)], ""))

    alphabet = "AZaz09-_"
    for at, char in enumerate(token):
        for other in [c for c in alphabet if c != char][:3]:
            as_bearer("one character changed", token[:at] + other + token[at + 1 :])
        if char.isalpha():
            as_bearer("one letter in the other case", token[:at] + char.swapcase() + token[at + 1 :])
        as_bearer("one character a look-alike", token[:at] + _homoglyph(char) + token[at + 1 :])
        as_bearer("shorter", token[:at])
        as_bearer("one character left out", token[:at] + token[at + 1 :])
        as_bearer("one character added", token[:at] + "x" + token[at:])
    for kind, value in (
        ("all upper case", token.upper()),
        ("all lower case", token.lower()),
        ("case swapped", token.swapcase()),
        ("longer", token + "A"),
        ("twice", token * 2),
        ("with a space inside", token[:20] + " " + token[20:]),
        ("two tokens", f"{token} {token}"),
        ("quoted", f'"{token}"'),
        ("base64 of it", base64.b64encode(token.encode()).decode()),
        ("NUL after it", token + "\x00"),
        ("NUL before it", "\x00" + token),
        ("invalid UTF-8 after it", token.encode() + b"\xff"),
    ):
        as_bearer(kind, value)
    for other in others:
        as_bearer("another workspace's token", other)
    basic = base64.b64encode(f"{token}:".encode())
    for kind, name, value in (
        ("Basic with the token", b"Authorization", b"Basic " + token.encode()),
        ("Basic with token: encoded", b"Authorization", b"Basic " + basic),
        ("other scheme", b"Authorization", b"Token " + token.encode()),
        ("no scheme", b"Authorization", token.encode()),
        ("scheme glued on", b"Authorization", b"Bearer" + token.encode()),
        ("scheme with a colon", b"Authorization", b"Bearer: " + token.encode()),
        ("empty bearer", b"Authorization", b"Bearer "),
        ("empty header", b"Authorization", b""),
        ("in another header", b"X-Auth-Token", token.encode()),
        ("as a cookie", b"Cookie", b"token=" + token.encode()),
        ("proxy credentials", b"Proxy-Authorization", b"Bearer " + token.encode()),
    ):
        variants.append((kind, [(name, value)], ""))
    for query in (f"token={token}", f"access_token={token}", f"authorization=Bearer%20{token}"):
        variants.append(("in the query string", [], query))
    return [*variants, ("no credentials", [], "")]


async def test_hundreds_of_near_miss_credentials_are_refused_alike_and_store_nothing(start) -> None:
    """Each near miss of both workspaces' tokens, on one workspace's path: one character off (changed,
    in the other case, a look-alike, left out, added), other schemes (Basic, none), other places (query,
    cookie, other headers, the body), another workspace's token. All 401, all alike, nothing stored."""
    target = await start()
    variants = wrong_credentials(TOKENS[MARKETING], [TOKENS[OTHER]]) + wrong_credentials(TOKENS[OTHER], [])
    assert len(variants) >= 700
    bodies: set[bytes] = set()
    statuses: dict[str, set[int]] = {}
    gate = asyncio.Semaphore(8)
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def probe(n: int, kind: str, headers: list[tuple[bytes, bytes]], query: str) -> None:
            body = (
                target.batch(f"forged-{n}")
                if n % 4
                else orjson.dumps({"token": TOKENS[MARKETING], "events": []})
            )
            path = f"/currents/{MARKETING}" + (f"?{query}" if query else "")
            async with gate:
                try:
                    response = await client.post(
                        target.url + path,
                        content=body,
                        headers=[(b"Content-Type", b"application/json"), *headers],
                    )
                except httpx.LocalProtocolError:
                    # A value an HTTP client will not send (NUL, bytes that are not text): send it raw.
                    extra = "".join(f"{k.decode()}: {v.decode('latin-1')}\r\n" for k, v in headers)
                    head = request_head(path, token=None, length=len(body), close=True)
                    answer = await exchange(target.port, head[:-2] + extra.encode("latin-1") + b"\r\n" + body)
                    statuses.setdefault(kind, set()).add(status_of(answer) or 0)
                    if status_of(answer) == 401:
                        bodies.add(answer.split(b"\r\n\r\n", 1)[1])
                    return
            statuses.setdefault(kind, set()).add(response.status_code)
            if response.status_code == 401:
                bodies.add(response.content)
                assert response.headers["WWW-Authenticate"].startswith("Bearer")

        await asyncio.gather(*(probe(n, *variant) for n, variant in enumerate(variants)))
        # The body of a batch cannot carry the token either, nor a token in another workspace's path.
        response = await client.post(
            f"{target.url}/currents/{OTHER}",
            content=target.batch("forged-path"),
            headers={"Authorization": f"Bearer {TOKENS[MARKETING]}"},
        )
        statuses.setdefault("this workspace's token on another's path", set()).add(response.status_code)

    # A NUL is not allowed in a header at all (RFC 9110), so that request is refused as malformed.
    malformed = {"NUL after it", "NUL before it"}
    assert {kind: codes for kind, codes in statuses.items() if codes != {401} and kind not in malformed} == {}
    assert all(statuses[kind] <= {400, 401} for kind in malformed)
    assert len(bodies) == 1  # every refusal looks the same: nothing to learn from the answer
    assert target.received() == 0
    assert await healthy(target)
    async with httpx.AsyncClient(timeout=10.0) as client:
        right = await client.post(
            f"{target.url}/currents/{MARKETING}",
            content=target.batch("the-real-one"),
            headers={"Authorization": f"Bearer {TOKENS[MARKETING]}"},
        )
    assert right.status_code == 200
    assert target.received() == 1
    print(f"\n{len(variants) + 1} forged or misplaced credentials, in {len(statuses)} kinds: all 401")


async def test_every_token_comparison_goes_through_a_constant_time_compare(
    start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behaviour, not a stopwatch: whatever the given token (right, wrong at its start or its end, shorter,
    longer), the receiver compares its SHA-256 digest with the stored token's once, through
    hmac.compare_digest (digests: the same length whatever was sent)."""
    target = await start()
    token = TOKENS[MARKETING]
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(given: object, expected: object) -> bool:
        calls.append((given, expected))
        return real(given, expected)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    cases = {
        token: 200,
        "#" + token[1:]: 401,
        token[:-1] + "#": 401,
        token[:10]: 401,
        token + "extra": 401,
        TOKENS[OTHER]: 401,
    }
    async with httpx.AsyncClient(timeout=10.0) as client:
        for given, expected_status in cases.items():
            calls.clear()
            response = await client.post(
                f"{target.url}/currents/{MARKETING}",
                content=b"",
                headers={"Authorization": f"Bearer {given}"},
            )
            assert response.status_code == expected_status
            assert calls == [
                (hashlib.sha256(given.encode()).digest(), hashlib.sha256(token.encode()).digest())
            ]


async def test_a_token_wrong_at_its_start_and_one_wrong_at_its_end_take_the_same_time(start) -> None:
    """A stopwatch over loopback cannot see a byte-by-byte comparison (nanoseconds under a millisecond of
    noise), so this only guards against gross differences: a path that does more work the more of the
    token is right. The constant-time compare itself is checked by the test above."""
    target = await start()
    token = TOKENS[MARKETING]
    first = ("A" if token[0] != "A" else "B") + token[1:]
    last = token[:-1] + ("A" if token[-1] != "A" else "B")
    samples: dict[str, list[float]] = {first: [], last: []}
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def timed(given: str) -> float:
            began = time.perf_counter()
            response = await client.post(
                f"{target.url}/currents/{MARKETING}",
                content=b"",
                headers={"Authorization": f"Bearer {given}"},
            )
            assert response.status_code == 401
            return time.perf_counter() - began

        for _ in range(30):  # warm up the connection and the caches
            await timed(first)
        for n in range(600):
            given = first if n % 2 else last
            samples[given].append(await timed(given))
    a, b = statistics.median(samples[first]), statistics.median(samples[last])
    assert abs(a - b) < max(0.000_5, 0.3 * min(a, b)), (a, b)


WORKSPACE_TIMING_TOLERANCE = 0.000_06  # seconds; reading the token in a worker thread cost 200 us to 2 ms


def _low(samples: list[float]) -> float:
    # The 20th percentile: load on the machine only ever adds time, so the low end shows the work done.
    return statistics.quantiles(samples, n=5)[0]


async def test_a_wrong_token_takes_as_long_for_a_known_workspace_as_for_an_unknown_one(start) -> None:
    """Refusals must not tell which workspaces exist. Wrong tokens for a configured workspace and for made-up
    names are sent interleaved over one connection; the low ends (20th percentiles) of the two timings must
    be within tens of microseconds. Up to five rounds of 300 pairs: a real difference shows in every round,
    a burst of load on the machine in some."""
    target = await start()
    wrong = "w" * 43
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def timed(workspace: str) -> float:
            began = time.perf_counter()
            response = await client.post(
                f"{target.url}/currents/{workspace}",
                content=b"",
                headers={"Authorization": f"Bearer {wrong}"},
            )
            elapsed = time.perf_counter() - began
            assert response.status_code == 401
            return elapsed

        for n in range(50):  # warm up the connection and the caches
            await timed(MARKETING)
            await timed(f"warm-up-{n}")
        gaps: list[float] = []
        for round_ in range(5):
            known: list[float] = []
            unknown: list[float] = []
            for n in range(300):
                name = f"nobody-{round_}-{n}"
                if n % 2:
                    known.append(await timed(MARKETING))
                    unknown.append(await timed(name))
                else:
                    unknown.append(await timed(name))
                    known.append(await timed(MARKETING))
            gaps.append(_low(known) - _low(unknown))
            if abs(gaps[-1]) < WORKSPACE_TIMING_TOLERANCE:
                break
    print(f"\nknown minus unknown (20th percentiles) per round: {[f'{g * 1e6:.0f} us' for g in gaps]}")
    assert abs(gaps[-1]) < WORKSPACE_TIMING_TOLERANCE, gaps


# -------------------------------------------------------------------------------------- HTTP framing


async def test_the_body_limit_holds_to_the_byte_however_the_size_is_told(start) -> None:
    limit = 8_192
    target = await start(max_body_bytes=limit)
    batch = target.batch("limit-1")
    exact = batch + b" " * (limit - len(batch))
    assert len(exact) == limit
    path = f"/currents/{MARKETING}"
    token = TOKENS[MARKETING]

    at_limit = await exchange(target.port, request_head(path, token=token, length=limit) + exact)
    over = await exchange(target.port, request_head(path, token=token, length=limit + 1) + exact + b" ")
    chunked_body = b"".join(
        b"%x\r\n%s\r\n" % (len(exact[i : i + 1000]), exact[i : i + 1000]) for i in range(0, limit, 1000)
    )
    chunked_over = await exchange(
        target.port,
        request_head(path, token=token, extra="Transfer-Encoding: chunked\r\n")
        + chunked_body
        + b"1\r\n \r\n0\r\n\r\n",
    )
    assert status_of(at_limit) == 200
    assert status_of(over) == 413
    assert status_of(chunked_over) == 413
    assert target.received() == 1
    assert await healthy(target)


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param("Content-Length: -1\r\n", id="negative Content-Length"),
        pytest.param("Content-Length: 12abc\r\n", id="Content-Length not a number"),
        pytest.param("Content-Length: 10\r\nContent-Length: 400\r\n", id="two Content-Lengths"),
        pytest.param("Content-Length: 40\r\nTransfer-Encoding: chunked\r\n", id="Content-Length and chunked"),
        pytest.param("Transfer-Encoding: chunked, identity\r\n", id="chunked not last"),
        pytest.param("Transfer-Encoding: chunked\r\n", id="bad chunk size"),
        pytest.param("Content-Length: 10\r\n", id="Content-Length shorter than the body"),
        pytest.param("Content-Length:\t40\r\n X-Folded: yes\r\n", id="obsolete line folding"),
    ],
)
async def test_hostile_framing_never_stores_a_smuggled_batch(start, framing: str) -> None:
    """An unauthenticated request whose framing is ambiguous carries, as its body, a complete authenticated
    request. Behind a proxy that frames it the other way, that is request smuggling: the inner request
    must never be taken as a request of its own."""
    target = await start(read_timeout=1.0)
    inner = target.batch("smuggled")
    smuggled = request_head(f"/currents/{MARKETING}", token=TOKENS[MARKETING], length=len(inner)) + inner
    body = b"zz\r\n" + smuggled if "bad chunk" in framing else b'{"events": []}' + smuggled
    head = request_head(f"/currents/{MARKETING}", token=None, extra=framing)

    answer = await exchange(target.port, head + body, timeout=3.0)

    statuses = [int(line.split(b" ", 2)[1]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.")]
    assert statuses, "the server must answer, not hang"
    assert 200 not in statuses  # neither the unauthenticated request nor what was smuggled in its body
    assert all(400 <= s < 500 for s in statuses), statuses
    assert target.received() == 0
    assert await healthy(target)


# ------------------------------------------------------------------------------------------ slow loris


async def test_a_body_trickling_in_byte_by_byte_is_cut_off_at_the_read_timeout(start) -> None:
    target = await start(read_timeout=1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
    try:
        writer.write(request_head(f"/currents/{MARKETING}", token=TOKENS[MARKETING], length=2_000))
        await writer.drain()
        began = time.monotonic()
        answer = b""
        while time.monotonic() - began < 6 and not answer:
            try:
                writer.write(b" ")  # one byte every 0.2 s: never idle, never done
                await writer.drain()
                answer = await asyncio.wait_for(reader.read(4_096), timeout=0.2)
            except TimeoutError:
                continue
            except ConnectionError:
                break
        waited = time.monotonic() - began
    finally:
        writer.close()
    assert status_of(answer) == 408
    assert 0.8 <= waited < 2.5
    assert target.received() == 0


@pytest.mark.parametrize("how", ["idle", "headers one byte at a time"])
async def test_a_connection_that_never_finishes_its_headers_is_closed_within_the_read_timeout(
    start, how: str
) -> None:
    """The classic slow loris: headers that never end hold a connection (and a file descriptor) for as long
    as the server lets them. A client that sends one byte a second is closed within the read timeout."""
    read_timeout = 1.0
    target = await start(read_timeout=read_timeout)
    reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
    closed_after = None
    try:
        if how != "idle":
            writer.write(f"POST /currents/{MARKETING} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode())
            await writer.drain()
        began = time.monotonic()
        while time.monotonic() - began < read_timeout + 2.5:
            try:
                if how != "idle":
                    writer.write(b"a")
                    await writer.drain()
                data = await asyncio.wait_for(reader.read(4_096), timeout=0.25)
            except TimeoutError:
                continue
            except ConnectionError:
                data = b""
            closed_after = time.monotonic() - began  # answered (408) or closed: either ends it
            assert data == b"" or status_of(data) in (400, 408)
            break
    finally:
        writer.close()
    assert closed_after is not None, f"still open after {read_timeout + 2.5:g} s"
    assert closed_after < read_timeout + 2


async def test_hundreds_of_slow_clients_do_not_keep_a_normal_client_waiting(start) -> None:
    target = await start(read_timeout=5.0)
    path = f"/currents/{MARKETING}"
    stop = asyncio.Event()
    opened = 0

    async def slow(body_phase: bool) -> None:
        nonlocal opened
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        except OSError:
            return
        opened += 1
        try:
            if body_phase:
                writer.write(request_head(path, token=TOKENS[MARKETING], length=50_000))
            else:
                writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode())
            while not stop.is_set():
                writer.write(b" " if body_phase else b"X")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.5)
        except ConnectionError:
            pass
        finally:
            writer.close()

    crowd = [asyncio.create_task(slow(n % 2 == 0)) for n in range(300)]
    try:
        assert await wait_for(lambda: opened >= 280, timeout=10)
        async with httpx.AsyncClient(timeout=10.0) as client:
            for n in range(10):
                began = time.monotonic()
                response = await client.post(
                    f"{target.url}{path}",
                    content=target.batch(f"meanwhile-{n}"),
                    headers={"Authorization": f"Bearer {TOKENS[MARKETING]}"},
                )
                assert response.status_code == 200
                assert time.monotonic() - began < 2.0
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*crowd, return_exceptions=True), timeout=10)
    assert target.received() == 10


# ----------------------------------------------------------------------------- header floods, long URLs


@pytest.mark.parametrize(
    "flood",
    [
        pytest.param("".join(f"X-Flood-{n}: {'v' * 40}\r\n" for n in range(500)), id="500 headers"),
        pytest.param(f"X-Big: {'v' * 64_000}\r\n", id="one 64 KB header"),
        pytest.param("".join(f"X-Flood-{n}: {'v' * 8_000}\r\n" for n in range(128)), id="1 MB of headers"),
        pytest.param(f"Cookie: {'; '.join(f'c{n}=v' for n in range(20_000))}\r\n", id="20,000 cookies"),
    ],
)
async def test_a_header_flood_is_refused_and_the_receiver_keeps_serving(start, flood: str) -> None:
    target = await start()
    head = request_head(f"/currents/{MARKETING}", token=TOKENS[MARKETING], length=2, extra=flood)

    answers = await asyncio.gather(*(exchange(target.port, head + b"{}", timeout=5.0) for _ in range(20)))

    for answer in answers:
        assert status_of(answer) in (None, 400, 413, 431)  # refused, or the connection closed
    assert target.received() == 0
    assert await healthy(target)
    # A sender with many ordinary headers is still served.
    ordinary = "".join(f"X-Ordinary-{n}: {'v' * 40}\r\n" for n in range(60))
    batch = target.batch("after-the-flood")
    answer = await exchange(
        target.port,
        request_head(f"/currents/{MARKETING}", token=TOKENS[MARKETING], length=len(batch), extra=ordinary)
        + batch,
    )
    assert status_of(answer) == 200


async def test_a_flood_of_malformed_requests_does_not_flood_the_log(start, caplog) -> None:
    """Unauthenticated garbage costs the sender nothing: it must not buy a traceback in the service's log
    for every request (an easy way to fill a disk or bury the lines that matter)."""
    target = await start()
    caplog.set_level(logging.DEBUG)
    flood = "".join(f"X-Flood-{n}: v\r\n" for n in range(500))
    garbage = [
        request_head(f"/currents/{MARKETING}", token=None, length=2, extra=flood) + b"{}",
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200),  # a TLS hello on plain HTTP
        b"POST /currents/x HTTP/9.9\r\n\r\n",
    ]
    for n in range(200):
        await exchange(target.port, garbage[n % len(garbage)], timeout=2.0)
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(noisy) <= 10, (
        f"{len(noisy)} warnings or errors, e.g. {noisy[0].name}: {noisy[0].getMessage()[:100]}"
    )
    assert await healthy(target)


async def test_long_and_odd_urls_never_reach_the_store_without_their_own_token(start, caplog) -> None:
    """Whatever a path looks like, events are stored only under the workspace the path names, and only
    with that workspace's token: dot segments, encodings, case, NUL, slashes and lengths up to the
    server's limit are tried with both workspaces' tokens."""
    target = await start()
    caplog.set_level(logging.DEBUG, logger="tui_currents")
    paths = [
        f"/currents/{MARKETING}",
        f"/currents/{OTHER}",
        f"/currents/{OTHER}/../{MARKETING}",
        f"/currents/{MARKETING}/../{OTHER}",
        f"/currents/./{MARKETING}",
        f"/currents/%2e%2e/currents/{MARKETING}",
        f"/currents/{OTHER}%2F..%2F{MARKETING}",
        f"/currents/%6D{MARKETING[1:]}",
        f"/currents/{MARKETING.upper()}",
        f"/currents/{MARKETING}%00",
        f"/currents/{MARKETING}%00{OTHER}",
        f"/currents/{MARKETING}/",
        f"//currents/{MARKETING}",
        f"/currents/{MARKETING};{OTHER}",
        f"/currents/{MARKETING}?workspace={OTHER}",
        f"/currents/{MARKETING}%20",
        f"/currents/{MARKETING}\u200b".encode(),
        f"/currents/{MARKETING}\u0130".encode(),
        b"/currents/" + MARKETING.encode() + b"\xff",
        "/currents/" + "w" * 8_000,
        "/currents/" + "w" * 20_000,
        f"/currents/{MARKETING}?" + "q" * 20_000,
        "/currents/" + "%2F" * 2_000,
    ]
    sent: dict[str, tuple[str | bytes, str, int | None]] = {}
    n = 0
    for path in paths:
        for workspace, token in TOKENS.items():
            n += 1
            ident = f"path-{n}"
            batch = target.batch(ident)
            answer = await exchange(
                target.port,
                request_head(path, token=token, length=len(batch), close=True) + batch,
                timeout=3.0,
            )
            sent[ident] = (path[:60], workspace, status_of(answer))
            assert status_of(answer) in (200, 400, 401, 404, 405, 414, 431), (path[:60], answer[:80])
    stored = {ident: name for name, connector in CONNECTORS.items() for ident in target.queued_ids(connector)}
    for ident, (path, workspace, status) in sent.items():
        if status == 200:
            assert stored.get(ident) == workspace, (path, workspace)
        else:
            assert ident not in stored, (path, workspace, status)
    # The plain paths work, so the refusals above are not a broken receiver.
    assert sent["path-1"][2] == 200 and sent["path-4"][2] == 200
    assert sent["path-2"][2] == 401 and sent["path-3"][2] == 401
    longest = max(len(r.getMessage()) for r in caplog.records) if caplog.records else 0
    assert longest < 1_000  # a long workspace name is not copied into the log whole
    assert await healthy(target)


async def test_hundreds_of_unknown_workspaces_do_not_flood_the_log(start, caplog) -> None:
    target = await start()
    caplog.set_level(logging.DEBUG, logger="tui_currents")
    async with httpx.AsyncClient(timeout=10.0) as client:
        gate = asyncio.Semaphore(8)

        async def probe(n: int) -> int:
            async with gate:
                response = await client.post(
                    f"{target.url}/currents/probe-{n}",
                    content=b"{}",
                    headers={"Authorization": f"Bearer {'t' * 43}"},
                )
            return response.status_code

        statuses = await asyncio.gather(*(probe(n) for n in range(600)))
    assert set(statuses) == {401}
    assert len(caplog.records) <= 300  # a bounded number of "unknown workspace" lines, not one per probe
    assert await healthy(target)


async def test_a_flood_of_unknown_names_does_not_silence_other_warnings(start, caplog) -> None:
    """Probes for 300 made-up workspace names are logged a few lines a minute at most, and afterwards the
    warnings of other kinds (a missing version header, a wrong token for a real workspace) still appear."""
    target = await start()
    caplog.set_level(logging.DEBUG, logger="tui_currents")
    async with httpx.AsyncClient(timeout=10.0) as client:
        for n in range(300):
            response = await client.post(
                f"{target.url}/currents/probe-{n}",
                content=b"{}",
                headers={"Authorization": f"Bearer {'t' * 43}"},
            )
            assert response.status_code == 401
        wrong = await client.post(
            f"{target.url}/currents/{MARKETING}", content=b"", headers={"Authorization": f"Bearer {'t' * 43}"}
        )
        right = await client.post(  # without the Braze-Currents-Version header
            f"{target.url}/currents/{OTHER}",
            content=b"",
            headers={"Authorization": f"Bearer {TOKENS[OTHER]}"},
        )
    assert (wrong.status_code, right.status_code) == (401, 200)
    messages = [record.getMessage() for record in caplog.records]
    probes = [m for m in messages if "not a configured workspace" in m]
    assert 1 <= len(probes) <= 20, len(probes)
    assert any("Braze-Currents-Version" in m for m in messages), messages[-3:]
    assert any(f"a request for {MARKETING!r} carried a wrong receiver token" in m for m in messages)
    assert not any(TOKENS[OTHER] in m for m in messages)


# ---------------------------------------------------------------------------------------- bound address


def _listening_sockets() -> list[tuple[str, int]]:
    """(address, port) of every TCP socket this process listens on, from /proc."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address_hex, port_hex = local.split(":")
            raw = bytes.fromhex(address_hex)
            if family == socket.AF_INET:
                address = socket.inet_ntop(family, raw[::-1])
            else:
                address = socket.inet_ntop(family, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
            found.append((address, int(port_hex, 16)))
    return found


async def test_a_default_engine_listens_on_loopback_only(home: Home) -> None:
    """The default configuration, as `tui-currents run` starts it (only the port is chosen freely here, so
    that tests never collide): every socket it listens on is on 127.0.0.1. So is the Segment stand-in's,
    with its defaults."""
    before = set(_listening_sockets())
    engine = Engine(home, Secrets(home), EngineOptions(receiver_port=0))
    await engine.start()
    try:
        ours = set(_listening_sockets()) - before
        assert config.load(home).receiver.host == "127.0.0.1"
        assert engine.receiver_url.startswith("http://127.0.0.1:")
        assert {port for _, port in ours} == {int(engine.receiver_url.rsplit(":", 1)[1])}
        assert {address for address, _ in ours} == {"127.0.0.1"}
    finally:
        await engine.stop()
    async with SegmentSandbox() as sandbox:
        ours = set(_listening_sockets()) - before
        assert ours == {("127.0.0.1", int(sandbox.url.rsplit(":", 1)[1]))}
