"""A local stand-in for Segment's HTTP Tracking API that enforces its contract, for the demo and the tests.

It answers `POST /v1/batch` (and its alias `/v1/import`, plus `/v1/track`) the way Segment does, keeps what
it accepted so the demo can show it, and records every request and every breach of the contract so tests
can assert that a client behaved. Faults (errors, rate limits, latency, dropped connections, outages) can
be injected at run time, in process through `sandbox.faults` or from another process through
`POST /_sandbox/faults`.

Where Segment is silent about a mistake (it answers 200 and drops), the sandbox does the same by default
but always records a `Violation`; two switches make it loud instead:

- `reject_unknown_keys=True` answers 401 to a write key it was not given (Segment answers 200 and drops
  the events later). The demo and the tests use it.
- `strict=True` (the default) answers 400 to a batch of more than 2,500 messages (Segment answers 200 and
  drops the whole batch).

Run it in another process with `python -m tui_currents.sandbox --write-key-file FILE`; it prints its
base URL on the first line of standard output. Write keys are never taken on the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import os
import random
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from aiohttp import web

from tui_currents.sandbox_options import WRITE_KEYS_ENV, add_arguments
from tui_currents.segment import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_ID_CHARS,
    MAX_REQUEST_BYTES,
    json_size,
)

# Segment's own request limit. Clients keep a margin below it (segment.MAX_BATCH_BYTES); the sandbox
# enforces the real limit so a client that keeps its margin never meets it. Sizes are measured as Segment
# does and as our client does (segment.json_size: UTF-8 bytes of the JSON text).
SEGMENT_MAX_REQUEST_BYTES = MAX_REQUEST_BYTES
assert MAX_BATCH_BYTES < SEGMENT_MAX_REQUEST_BYTES

# Raw bodies beyond this are refused by aiohttp itself (413) before being read into memory.
_RAW_BODY_CAP = 16 * 1024 * 1024


MESSAGE_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
_OK_BODY = b'{"success":true}'
_JSON = "application/json"


class ViolationKind(StrEnum):
    """The ways a client can break Segment's contract; each is recorded, whatever the answer was."""

    BAD_GZIP = "bad gzip"
    BODY_TOO_LARGE = "body too large"
    INVALID_JSON = "invalid json"
    NOT_A_BATCH = "not a batch"
    MISSING_WRITE_KEY = "missing write key"
    UNKNOWN_WRITE_KEY = "unknown write key"
    WRITE_KEY_MISMATCH = "write key mismatch"
    CONTENT_TYPE = "content type"
    MISSING_SENT_AT = "missing sentAt"
    INVALID_SENT_AT = "invalid sentAt"
    TOO_MANY_MESSAGES = "too many messages"
    MESSAGE_TOO_LARGE = "message too large"
    NOT_A_MESSAGE = "not a message"
    MISSING_TYPE = "missing type"
    UNKNOWN_TYPE = "unknown type"
    MISSING_EVENT = "missing event"
    MISSING_USER = "missing userId and anonymousId"
    MISSING_MESSAGE_ID = "missing messageId"
    MESSAGE_ID_TOO_LONG = "messageId too long"


@dataclass(frozen=True, slots=True)
class Violation:
    """One breach of the contract: what, why, which message (if one), and what the sandbox answered."""

    at: float
    kind: ViolationKind
    reason: str
    status: int
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the sandbox saw it. `status` 0 means the connection was closed without an answer."""

    at: float
    path: str
    status: int
    messages: int  # messages in the batch (0 when the body could not be read as a batch)
    accepted: int  # new messages kept
    duplicates: int  # messages whose messageId had been accepted before
    dropped: int  # messages answered 200 but thrown away (contract violations, unknown key)
    bytes: int  # body bytes as received (compressed when gzip)
    body_bytes: int  # body bytes after gunzip
    gzip: bool
    retry_count: int | None  # X-Retry-Count header
    sent_at: str | None
    fault: str | None  # the injected fault that decided the answer, if any


def _check_rate(name: str, value: object) -> float:
    rate = float(value)  # type: ignore[arg-type]
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, not {value!r}")
    return rate


def _check_seconds(name: str, value: object, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    seconds = float(value)  # type: ignore[arg-type]
    if seconds < 0:
        raise ValueError(f"{name} must be zero or more seconds, not {value!r}")
    return seconds


def _check_status(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 200 <= value <= 599:
        raise ValueError(f"an HTTP status must be an integer from 200 to 599, not {value!r}")
    return value


@dataclass
class Faults:
    """Faults to inject, changeable at any time (also from another thread or, as JSON, another process).

    - `fail_rate`: share of requests answered with a status drawn from `fail_statuses`.
    - `next_statuses`: statuses to answer to the next requests, one each, before anything else.
    - `retry_after`: seconds put in `Retry-After` and `X-RateLimit-Reset` on injected 429 and 503 answers.
    - `latency`: seconds to wait before handling each request.
    - `drop_connection_rate`: share of requests whose connection is closed before anything is accepted.
    - `lose_response_rate`: share of requests whose messages are accepted but whose answer is lost
      (the connection is closed instead), so the client must retry and Segment deduplicates.
    - `timeout`: seconds to hold each request before answering; if the client has gone by then, nothing
      is accepted.
    - `outage`: every request fails, with 503 or (with `outage_reset`) a connection reset.
    - `reject_message_ids`: a batch holding one of these messageIds gets 400, as a bad message would.
    - `status_for_keys`: answer this status to requests made with this write key (e.g. 401, 403).
    - `seed`: seeds the random draws, for repeatable tests.
    """

    fail_rate: float = 0.0
    fail_statuses: list[int] = field(default_factory=lambda: [500, 503])
    next_statuses: deque[int] = field(default_factory=deque)
    retry_after: float | None = None
    latency: float = 0.0
    drop_connection_rate: float = 0.0
    lose_response_rate: float = 0.0
    timeout: float = 0.0
    outage: bool = False
    outage_reset: bool = False
    reject_message_ids: set[str] = field(default_factory=set)
    status_for_keys: dict[str, int] = field(default_factory=dict, repr=False)  # keys are secrets
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.rng.seed(self.seed)

    def update(self, **changes: Any) -> None:
        """Change some knobs, checking every value first; a ValueError leaves all knobs unchanged."""
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name in ("fail_rate", "drop_connection_rate", "lose_response_rate"):
                checked[name] = _check_rate(name, value)
            elif name in ("latency", "timeout"):
                checked[name] = _check_seconds(name, value)
            elif name == "retry_after":
                checked[name] = _check_seconds(name, value, allow_none=True)
            elif name == "fail_statuses":
                statuses = [_check_status(s) for s in value]
                if not statuses:
                    raise ValueError("fail_statuses needs at least one status")
                checked[name] = statuses
            elif name == "next_statuses":
                checked[name] = deque(_check_status(s) for s in value)
            elif name in ("outage", "outage_reset"):
                checked[name] = bool(value)
            elif name == "reject_message_ids":
                checked[name] = {str(v) for v in value}
            elif name == "status_for_keys":
                checked[name] = {str(k): _check_status(v) for k, v in dict(value).items()}
            elif name == "seed":
                checked[name] = None if value is None else int(value)
            else:
                raise ValueError(f"unknown fault {name!r}")
        for name, value in checked.items():
            setattr(self, name, value)
        if "seed" in checked:
            self.rng.seed(self.seed)

    def reset(self) -> None:
        """Turn every fault off."""
        fresh = Faults()
        for name in self.public():
            setattr(self, name, getattr(fresh, name))
        self.rng.seed(None)

    def public(self) -> dict[str, Any]:
        """The knobs as JSON-ready data, without write keys (only how many keys have a status)."""
        return {
            "fail_rate": self.fail_rate,
            "fail_statuses": list(self.fail_statuses),
            "next_statuses": list(self.next_statuses),
            "retry_after": self.retry_after,
            "latency": self.latency,
            "drop_connection_rate": self.drop_connection_rate,
            "lose_response_rate": self.lose_response_rate,
            "timeout": self.timeout,
            "outage": self.outage,
            "outage_reset": self.outage_reset,
            "reject_message_ids": sorted(self.reject_message_ids),
            "status_for_keys": len(self.status_for_keys),
            "seed": self.seed,
        }


class _Answer(Exception):
    """Raised inside request handling to answer at once with a status (and optional headers)."""

    def __init__(self, status: int, body: bytes, content_type: str, fault: str | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.fault = fault
        self.headers: dict[str, str] = {}


def _error(status: int, code: str, message: str) -> _Answer:
    return _Answer(status, orjson.dumps({"code": code, "message": message}), _JSON)


def _seconds_header(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _parse_basic_user(header: str | None) -> str | None:
    """The user name of an HTTP Basic Authorization header (Segment's write key), or None."""
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, _password = decoded.partition(":")
    return user or None


def _present(value: object) -> bool:
    return value is not None and value != ""


_SILENT_DROP = ": answered 200 and dropped, as Segment does"


def _problem(message: dict[str, Any]) -> tuple[ViolationKind, str] | None:
    """Why Segment would silently drop this message, or None if it would keep it."""
    kind = message.get("type")
    mid = message.get("messageId")
    if not kind:
        return ViolationKind.MISSING_TYPE, "message has no type"
    if kind not in MESSAGE_TYPES:
        return ViolationKind.UNKNOWN_TYPE, f"message type {str(kind)[:40]!r} is not a Segment type"
    if kind == "track" and not _present(message.get("event")):
        return ViolationKind.MISSING_EVENT, "track message has no event"
    if not (_present(message.get("userId")) or _present(message.get("anonymousId"))):
        return ViolationKind.MISSING_USER, "message has neither userId nor anonymousId"
    if not isinstance(mid, str) or not mid:
        return ViolationKind.MISSING_MESSAGE_ID, "message has no messageId (a retry could duplicate it)"
    if len(mid) > MAX_MESSAGE_ID_CHARS:
        return (
            ViolationKind.MESSAGE_ID_TOO_LONG,
            f"messageId of {len(mid)} characters is over Segment's {MAX_MESSAGE_ID_CHARS}",
        )
    return None


class SegmentSandbox:
    """A Segment HTTP Tracking API stand-in on loopback: `async with SegmentSandbox({key}) as sb: sb.url`.

    `write_keys=None` accepts any non-empty key; `reject_unknown_keys` answers 401 to other keys instead
    of Segment's silent 200; `strict` answers 400 to batches over 2,500 messages instead of Segment's
    silent 200. What was accepted is in `accepted` (the `keep` most recent); `accepted_count` and
    `message_ids` (every messageId ever accepted, with how many times it arrived) are exact;
    `duplicates`, `dropped`, `requests` and `violations` record the rest. `control=False` leaves out the
    `/_sandbox/*` endpoints (stats, recent, faults, reset).
    """

    def __init__(
        self,
        write_keys: Iterable[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        keep: int = 10_000,
        reject_unknown_keys: bool = False,
        strict: bool = True,
        control: bool = True,
        faults: Faults | None = None,
    ) -> None:
        self.write_keys: set[str] | None = None if write_keys is None else set(write_keys)
        self.host = host
        self.port = port
        self.keep = keep
        self.reject_unknown_keys = reject_unknown_keys
        self.strict = strict
        self.control = control
        self.faults = faults or Faults()
        self.max_violations = 10_000
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self.reset()

    def __repr__(self) -> str:
        keys = "any" if self.write_keys is None else len(self.write_keys)
        return f"<SegmentSandbox {self.url if self._runner else 'stopped'} keys={keys}>"

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget everything received (the faults stay as they are)."""
        self._kept: deque[bytes] = deque(maxlen=self.keep)
        self.accepted_count = 0
        self.message_ids: dict[str, int] = {}
        self.duplicates = 0
        self.dropped = 0
        self.received = 0  # messages in every batch read, whatever happened to them
        self.requests: deque[RequestRecord] = deque(maxlen=self.keep)
        self.request_count = 0
        self.statuses: Counter[int] = Counter()
        self.violations: list[Violation] = []
        self.violation_count = 0
        self.violation_kinds: Counter[str] = Counter()
        self._accepted_per_key: Counter[str] = Counter()

    def accepted_for(self, write_key: str) -> int:
        """How many new messages were accepted under this write key."""
        return self._accepted_per_key[write_key]

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """The `keep` most recently accepted messages (unique by messageId), oldest first."""
        return [orjson.loads(data) for data in list(self._kept)]

    def recent(self, n: int = 100) -> list[dict[str, Any]]:
        """The last `n` accepted messages, oldest first (never a write key)."""
        if n <= 0:
            return []
        messages = [orjson.loads(data) for data in list(self._kept)[-n:]]
        for message in messages:
            message.pop("writeKey", None)
        return messages

    def stats(self) -> dict[str, Any]:
        """Counts as JSON-ready data (no write keys)."""
        return {
            "requests": self.request_count,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "received": self.received,
            "accepted": self.accepted_count,
            "unique_message_ids": len(self.message_ids),
            "duplicates": self.duplicates,
            "dropped": self.dropped,
            "violations": self.violation_count,
            "violation_kinds": dict(self.violation_kinds),
            "faults": self.faults.public(),
        }

    async def wait_accepted(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least `count` messages have been accepted; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while self.accepted_count < count:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def _violate(self, kind: ViolationKind, reason: str, status: int, message_id: object = None) -> None:
        self.violation_count += 1
        self.violation_kinds[kind.value] += 1
        if len(self.violations) < self.max_violations:
            mid = message_id if isinstance(message_id, str) else None
            self.violations.append(Violation(time.time(), kind, reason, status, mid))

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:54321 (a connector's custom endpoint)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=_RAW_BODY_CAP)
        app.router.add_post("/v1/batch", self._batch)
        app.router.add_post("/v1/import", self._batch)
        app.router.add_post("/v1/track", self._track)
        if self.control:
            app.router.add_get("/_sandbox/stats", self._get_stats)
            app.router.add_get("/_sandbox/recent", self._get_recent)
            app.router.add_post("/_sandbox/faults", self._post_faults)
            app.router.add_post("/_sandbox/reset", self._post_reset)
        return app

    async def start(self) -> str:
        """Start listening (on a free port when port is 0); returns the base URL."""
        if self._runner is not None:
            return self.url
        self._stopping = asyncio.Event()
        # auto_decompress off: gzip is undone here, bounded, so an oversized body is a 400 as at Segment.
        runner = web.AppRunner(self._app(), access_log=None, auto_decompress=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        return self.url

    async def stop(self) -> None:
        """Stop listening; requests being held by a `timeout` fault are let go."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._stopping is not None:
            self._stopping.set()
        await runner.cleanup()

    async def __aenter__(self) -> SegmentSandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def run_in_thread(self) -> SandboxThread:
        """Start the sandbox on its own event loop in a background thread (for synchronous code)."""
        return SandboxThread(self)

    # ------------------------------------------------------------------ control endpoints

    async def _get_stats(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.stats()), content_type=_JSON)

    async def _get_recent(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            raise web.HTTPBadRequest(text="limit must be a whole number") from None
        limit = max(0, min(limit, self.keep))
        body = orjson.dumps({"messages": self.recent(limit), "accepted": self.accepted_count})
        return web.Response(body=body, content_type=_JSON)

    async def _post_faults(self, request: web.Request) -> web.Response:
        try:
            changes = orjson.loads(await request.read())
            if not isinstance(changes, dict):
                raise ValueError("send a JSON object of fault settings")
            if changes.pop("reset", False):
                self.faults.reset()
            self.faults.update(**changes)
        except (ValueError, TypeError) as exc:
            return web.Response(status=400, body=orjson.dumps({"error": str(exc)}), content_type=_JSON)
        return web.Response(body=orjson.dumps(self.faults.public()), content_type=_JSON)

    async def _post_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(body=orjson.dumps(self.stats()), content_type=_JSON)

    # ------------------------------------------------------------------ Segment endpoints

    async def _batch(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, single=False)

    async def _track(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, single=True)

    async def _handle(self, request: web.Request, *, single: bool) -> web.StreamResponse:
        at = time.time()
        faults = self.faults
        rng = faults.rng
        gzip = "gzip" in request.headers.get("Content-Encoding", "").lower()
        retry_header = request.headers.get("X-Retry-Count")
        try:
            retry_count: int | None = int(retry_header) if retry_header is not None else None
        except ValueError:
            retry_count = None
        rec = _Tally()

        def record(status: int, fault: str | None = None) -> None:
            self.request_count += 1
            self.statuses[status] += 1
            self.requests.append(
                RequestRecord(
                    at, request.path, status, rec.messages, rec.accepted, rec.duplicates, rec.dropped,
                    rec.raw_bytes, rec.body_bytes, gzip, retry_count, rec.sent_at, fault,
                )
            )  # fmt: skip

        if faults.outage:
            if faults.outage_reset:
                return self._hang_up(request, record, "outage", reset=True)
            return self._answer(self._injected(503, "outage"), record)
        if faults.latency:
            await asyncio.sleep(faults.latency)
        if faults.timeout:
            await self._hold(faults.timeout)
            if request.transport is None or request.transport.is_closing():
                record(0, "timeout")
                return web.Response(status=408)  # nobody is listening any more
        raw = await request.read()
        rec.raw_bytes = len(raw)
        if faults.drop_connection_rate and rng.random() < faults.drop_connection_rate:
            return self._hang_up(request, record, "drop_connection")
        if faults.next_statuses:
            with contextlib.suppress(IndexError):  # another thread may have emptied it
                return self._answer(self._injected(faults.next_statuses.popleft(), "next_statuses"), record)
        if faults.fail_rate and rng.random() < faults.fail_rate:
            return self._answer(self._injected(rng.choice(faults.fail_statuses), "fail_rate"), record)
        try:
            self._receive(request, raw, gzip, single, rec)
        except _Answer as answer:
            return self._answer(answer, record)
        if faults.lose_response_rate and rng.random() < faults.lose_response_rate:
            return self._hang_up(request, record, "lose_response")
        record(200)
        return web.Response(body=_OK_BODY, content_type=_JSON)

    def _injected(self, status: int, fault: str) -> _Answer:
        answer = _Answer(status, f"{status} injected by the sandbox ({fault})".encode(), "text/plain", fault)
        retry_after = self.faults.retry_after
        if retry_after is not None and status in (429, 503):
            value = _seconds_header(retry_after)
            answer.headers = {"Retry-After": value, "X-RateLimit-Reset": value}
        return answer

    def _answer(self, answer: _Answer, record: Any) -> web.Response:
        record(answer.status, answer.fault)
        return web.Response(
            status=answer.status, body=answer.body, content_type=answer.content_type, headers=answer.headers
        )

    def _hang_up(self, request: web.Request, record: Any, fault: str, *, reset: bool = False) -> web.Response:
        """Close the connection without answering: a FIN, or with `reset` an RST (connection reset)."""
        record(0, fault)
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if reset and sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            else:
                transport.close()
        return web.Response(status=503)  # never reaches the client: the transport is gone

    async def _hold(self, seconds: float) -> None:
        stopping = self._stopping
        if stopping is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), seconds)

    def _receive(self, request: web.Request, raw: bytes, gzip: bool, single: bool, rec: _Tally) -> None:
        """Check one request against Segment's contract and keep its messages; raise _Answer to refuse."""
        body = self._gunzip(raw) if gzip else raw
        rec.body_bytes = size = json_size(body)
        if size > SEGMENT_MAX_REQUEST_BYTES:
            self._violate(
                ViolationKind.BODY_TOO_LARGE,
                f"request body of {size:,} bytes is over Segment's {SEGMENT_MAX_REQUEST_BYTES:,}",
                400,
            )
            raise _error(400, "request_too_large", "Request body exceeds 500KB")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            self._violate(ViolationKind.INVALID_JSON, "request body is not valid JSON", 400)
            raise _Answer(400, b"Bad Request", "text/plain") from None
        if not isinstance(payload, dict):
            self._violate(ViolationKind.NOT_A_BATCH, "request body is not a JSON object", 400)
            raise _Answer(400, b"Bad Request", "text/plain")
        if single:
            batch: Any = [{k: v for k, v in payload.items() if k not in ("writeKey", "sentAt")}]
        else:
            batch = payload.get("batch")
            if not isinstance(batch, list):
                self._violate(ViolationKind.NOT_A_BATCH, 'request body has no "batch" array', 400)
                raise _error(400, "invalid_request", 'Expected a "batch" array')
        rec.messages = len(batch)
        self.received += len(batch)

        sent_at = payload.get("sentAt")
        rec.sent_at = sent_at if isinstance(sent_at, str) else None
        content_type = request.headers.get("Content-Type", "")
        if not content_type.lower().startswith(_JSON):
            self._violate(ViolationKind.CONTENT_TYPE, "Content-Type is not application/json", 200)

        key = self._authenticate(request, payload)
        if key in self.faults.status_for_keys:
            raise self._injected(self.faults.status_for_keys[key], "status_for_keys")
        if self.write_keys is not None and key not in self.write_keys:
            if self.reject_unknown_keys:
                self._violate(ViolationKind.UNKNOWN_WRITE_KEY, "write key unknown to the sandbox", 401)
                raise _error(401, "unauthorized", "Invalid write key")
            self._violate(
                ViolationKind.UNKNOWN_WRITE_KEY,
                "write key unknown to the sandbox" + _SILENT_DROP,
                200,
            )
            self._drop(rec, len(batch))
            return

        if sent_at is None:
            self._violate(ViolationKind.MISSING_SENT_AT, "request has no sentAt", 200)
        elif not isinstance(sent_at, str) or not _is_iso8601(sent_at):
            self._violate(ViolationKind.INVALID_SENT_AT, f"sentAt {str(sent_at)[:40]!r} is not ISO-8601", 200)

        if len(batch) > MAX_BATCH_MESSAGES:
            status = 400 if self.strict else 200
            self._violate(
                ViolationKind.TOO_MANY_MESSAGES,
                f"batch of {len(batch):,} messages is over Segment's {MAX_BATCH_MESSAGES:,}"
                + ("" if self.strict else _SILENT_DROP),
                status,
            )
            if self.strict:
                raise _error(400, "too_many_messages", f"A batch holds at most {MAX_BATCH_MESSAGES} messages")
            self._drop(rec, len(batch))
            return

        # Each message is encoded once: to measure it, and to keep it as bytes (kept dicts would make
        # every garbage collection walk thousands of them, which halves the sandbox's throughput).
        dumps = orjson.dumps
        encoded = [dumps(message) for message in batch]
        if size > MAX_MESSAGE_BYTES:  # otherwise no message can be over the limit
            for message, data in zip(batch, encoded, strict=True):
                message_size = json_size(data)
                if message_size > MAX_MESSAGE_BYTES:
                    mid = message.get("messageId") if isinstance(message, dict) else None
                    self._violate(
                        ViolationKind.MESSAGE_TOO_LARGE,
                        f"message of {message_size:,} bytes is over Segment's {MAX_MESSAGE_BYTES:,}",
                        400,
                        mid,
                    )
                    raise _error(400, "message_too_large", "A message exceeds 32KB")

        rejected = self.faults.reject_message_ids
        if rejected:
            for message in batch:
                if isinstance(message, dict) and message.get("messageId") in rejected:
                    answer = _error(400, "invalid_message", "The batch holds a message Segment refused")
                    answer.fault = "reject_message_ids"
                    raise answer

        self._keep(batch, encoded, key, rec)

    def _gunzip(self, raw: bytes) -> bytes:
        # Bounded: a body that inflates past the limit is refused without inflating all of it.
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(raw, SEGMENT_MAX_REQUEST_BYTES + 1)
        except zlib.error:
            self._violate(ViolationKind.BAD_GZIP, "Content-Encoding is gzip but the body is not", 400)
            raise _Answer(400, b"Bad Request", "text/plain") from None
        if len(body) <= SEGMENT_MAX_REQUEST_BYTES and not inflater.eof:
            self._violate(ViolationKind.BAD_GZIP, "gzip body is truncated", 400)
            raise _Answer(400, b"Bad Request", "text/plain")
        return body

    def _authenticate(self, request: web.Request, payload: dict[str, Any]) -> str:
        header_key = _parse_basic_user(request.headers.get("Authorization"))
        body_key = payload.get("writeKey")
        body_key = body_key if isinstance(body_key, str) and body_key else None
        key = header_key or body_key
        if not key:
            self._violate(
                ViolationKind.MISSING_WRITE_KEY, "no write key in Authorization nor in the body", 400
            )
            raise _error(400, "missing_write_key", "A write key is required")
        if header_key and body_key and header_key != body_key:
            self._violate(
                ViolationKind.WRITE_KEY_MISMATCH,
                "the body's writeKey differs from the Authorization one",
                200,
            )
        return key

    def _drop(self, rec: _Tally, count: int) -> None:
        rec.dropped += count
        self.dropped += count

    def _keep(self, batch: list[Any], encoded: list[bytes], key: str, rec: _Tally) -> None:
        """Validate each message as Segment does (bad ones: 200 and dropped), deduplicate, keep the rest."""
        ids = self.message_ids
        keep = self._kept.append
        new = dup = dropped = 0
        for message, data in zip(batch, encoded, strict=True):
            # The common case in one test; anything unusual is sorted out by _problem.
            if type(message) is dict:
                get = message.get
                mid = get("messageId")
                kind = get("type")
                if not (
                    (get("event") if kind == "track" else kind in MESSAGE_TYPES)
                    and (get("userId") or get("anonymousId"))
                    and type(mid) is str
                    and 0 < len(mid) <= MAX_MESSAGE_ID_CHARS
                ):
                    problem = _problem(message)
                    if problem is not None:
                        self._violate(problem[0], problem[1] + _SILENT_DROP, 200, mid)
                        dropped += 1
                        continue
                    assert isinstance(mid, str)  # a message _problem passes has a messageId
            else:
                self._violate(
                    ViolationKind.NOT_A_MESSAGE, "a batch item is not a JSON object" + _SILENT_DROP, 200
                )
                dropped += 1
                continue
            seen = ids.get(mid)
            if seen:
                ids[mid] = seen + 1
                dup += 1
                continue
            ids[mid] = 1
            keep(data)
            new += 1
        rec.accepted, rec.duplicates = new, dup
        self._drop(rec, dropped)
        self.accepted_count += new
        self.duplicates += dup
        self._accepted_per_key[key] += new


@dataclass(slots=True)
class _Tally:
    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    dropped: int = 0
    raw_bytes: int = 0
    body_bytes: int = 0
    sent_at: str | None = None


def _is_iso8601(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return False
    return True


class SandboxThread:
    """A sandbox running on its own event loop in a daemon thread: `url`, `sandbox`, `stop()`."""

    def __init__(self, sandbox: SegmentSandbox, *, start_timeout: float = 10.0) -> None:
        self.sandbox = sandbox
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="segment-sandbox", daemon=True)
        self._thread.start()
        if not self._started.wait(start_timeout):
            raise RuntimeError(f"the Segment sandbox did not start within {start_timeout:g} s")
        if self._error is not None:
            raise RuntimeError(f"the Segment sandbox could not start: {self._error}") from self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.sandbox.start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._started.set()
            self._loop.close()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.sandbox.stop())
        self._loop.close()

    @property
    def url(self) -> str:
        return self.sandbox.url

    def wait_accepted(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least `count` messages were accepted; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while self.sandbox.accepted_count < count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the sandbox and its thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> SandboxThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ---------------------------------------------------------------------- separate process


def read_write_keys(path: str | None, environ: Mapping[str, str] = os.environ) -> set[str] | None:
    """Write keys from a file (one a line, # comments) or the environment variable; None if neither."""
    text: str | None = None
    if path:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    elif environ.get(WRITE_KEYS_ENV):
        text = environ[WRITE_KEYS_ENV].replace(",", "\n")
    if text is None:
        return None
    keys = {line.strip() for line in text.splitlines()}
    return {k for k in keys if k and not k.startswith("#")}


async def _serve(sandbox: SegmentSandbox, *, report_every: float | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with sandbox:
        print(sandbox.url, flush=True)
        if report_every is None:
            await stop.wait()
            return
        reported = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), report_every)
            if sandbox.accepted_count != reported:
                print(accepted_line(sandbox, sandbox.accepted_count - reported), flush=True)
                reported = sandbox.accepted_count


def accepted_line(sandbox: SegmentSandbox, new: int) -> str:
    """One line saying what arrived since the last line: how many, and of which events."""
    recent = sandbox.recent(min(new, 1000))
    names = Counter(str(m.get("event", m.get("type", "?"))) for m in recent)
    top = ", ".join(f"{name} {n}" for name, n in names.most_common(3))
    return (
        f"accepted {new:,} message{'s' if new != 1 else ''} ({sandbox.accepted_count:,} in all;"
        f" {sandbox.duplicates:,} duplicates): {top}"
    )


def serve(args: argparse.Namespace, *, report_every: float | None = None) -> int:
    """Serve until SIGINT/SIGTERM (the base URL printed first); with `report_every`, a line of what was
    accepted at most that often."""
    try:
        keys = read_write_keys(args.write_key_file)
    except OSError as exc:
        print(f"could not read the write key file: {exc.strerror}", file=sys.stderr)
        return 2
    if keys is not None and not keys:
        print("the write key file holds no key; add one key per line", file=sys.stderr)
        return 2
    sandbox = SegmentSandbox(
        keys,
        host=args.host,
        port=args.port,
        keep=args.keep,
        reject_unknown_keys=args.reject_unknown_keys,
        strict=not args.lenient,
        faults=Faults(seed=args.seed),
    )
    try:
        asyncio.run(_serve(sandbox, report_every=report_every))
    except OSError as exc:
        print(f"could not listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m tui_currents.sandbox`: serve until SIGINT/SIGTERM; prints the base URL first."""
    parser = argparse.ArgumentParser(
        prog="python -m tui_currents.sandbox",
        description="A local stand-in for Segment's HTTP Tracking API (prints its base URL, then serves).",
    )
    add_arguments(parser)
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
