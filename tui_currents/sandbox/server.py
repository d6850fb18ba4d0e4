"""The sandbox's HTTP server (aiohttp): `POST /v1/batch`, `/v1/import` and `/v1/track` answered as Segment
does, what it accepted kept, every request and breach recorded, faults injected (see the package)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
import zlib
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tui_currents.sandbox.contract import (
    MESSAGE_TYPES,
    SEGMENT_MAX_REQUEST_BYTES,
    SILENT_DROP,
    Violation,
    ViolationKind,
    is_iso8601,
    message_problem,
    parse_basic_user,
)
from tui_currents.sandbox.faults import Faults
from tui_currents.segment import MAX_BATCH_MESSAGES, MAX_MESSAGE_BYTES, MAX_MESSAGE_ID_CHARS, json_size

if TYPE_CHECKING:
    from tui_currents.sandbox.running import SandboxThread

# Raw bodies beyond this are refused by aiohttp itself (413) before being read into memory.
_RAW_BODY_CAP = 16 * 1024 * 1024

_OK_BODY = b'{"success":true}'
_JSON = "application/json"


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
        self.arrived_count = 0  # requests that reached a handler, answered or still held (latency, timeout)
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
        from tui_currents.sandbox.running import SandboxThread  # running.py imports this module

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
        self.arrived_count += 1
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
                "write key unknown to the sandbox" + SILENT_DROP,
                200,
            )
            self._drop(rec, len(batch))
            return

        if sent_at is None:
            self._violate(ViolationKind.MISSING_SENT_AT, "request has no sentAt", 200)
        elif not isinstance(sent_at, str) or not is_iso8601(sent_at):
            self._violate(ViolationKind.INVALID_SENT_AT, f"sentAt {str(sent_at)[:40]!r} is not ISO-8601", 200)

        if len(batch) > MAX_BATCH_MESSAGES:
            status = 400 if self.strict else 200
            self._violate(
                ViolationKind.TOO_MANY_MESSAGES,
                f"batch of {len(batch):,} messages is over Segment's {MAX_BATCH_MESSAGES:,}"
                + ("" if self.strict else SILENT_DROP),
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
        header_key = parse_basic_user(request.headers.get("Authorization"))
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
                    problem = message_problem(message)
                    if problem is not None:
                        self._violate(problem[0], problem[1] + SILENT_DROP, 200, mid)
                        dropped += 1
                        continue
                    assert isinstance(mid, str)  # a message _problem passes has a messageId
            else:
                self._violate(
                    ViolationKind.NOT_A_MESSAGE, "a batch item is not a JSON object" + SILENT_DROP, 200
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
