"""One connector's delivery loop: lease a batch from the outbox, POST it to Segment, act on the answer.

What Segment's answer leads to (see segment.verdict):

- 2xx: the messages are delivered.
- Retryable (408, 429, 5xx, network errors, timeouts): the batch goes back to the outbox with a capped,
  jittered backoff, and the whole connector backs off until then (one failing batch is a sign for all).
- Any answer with Retry-After (429 typically): the connector pauses that long (at most 300 s) and sends
  nothing meanwhile; the wait is not held against the messages.
- 400/413: one bad message can spoil a batch, so the batch is cut in halves until the bad message is alone;
  it is dead-lettered with Segment's answer and the others are delivered.
- 3xx: a redirect is a configuration error (it is not followed: the batch and its write key must not go
  to an address nobody configured). The batch goes back to the outbox with a backoff, counted as an
  attempt, and the connector's state names the Location it was sent to; nothing is dead-lettered.
- A Retry-After that is not a positive number of seconds or a future HTTP date (NaN, negative, a past
  date) is treated as absent: the usual backoff, and the attempt counts.
- 401/403: the write key was refused. The connector stops sending and keeps its events until its write key
  changes (looked at again every few seconds meanwhile, and at once on `credentials_changed()`).
- Other refusals (404, 422, 501...): the batch is dead-lettered with the status and Segment's answer.

The request body is spliced from the stored message bytes, never re-encoded, with a fresh `sentAt` on every
attempt; the write key goes in the Basic auth header and the body, and nowhere else (not in errors, states
or logs).

When the store cannot record an answer (a full disk), the batch's leases are given back in memory and the
connector waits `store_retry_seconds` before trying again: the messages are sent again once the store
works, instead of staying leased for the rest of `lease_seconds`.

Several batches are in flight at once (`max_in_flight`); the next one is leased while others wait
for their answer. While requests are out, a small batch makes the next lease wait `linger_seconds`
(50 ms) first, so that a trickle of events travels in a few requests rather than many. Batches answered
while the previous "delivered" mark is being written are marked together, in one transaction.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ParamSpec, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson

from tui_currents import __version__, segment
from tui_currents.outbox import DAY, ConnectorState, Outbox, OutboxRow, StoreUnavailable
from tui_currents.outbox import ConnectorStatus as Status

if TYPE_CHECKING:
    from tui_currents.metrics import TimedStore

log = logging.getLogger("tui_currents.delivery")

WriteKeyProvider = Callable[[], "str | None | Awaitable[str | None]"]
StateCallback = Callable[[str, ConnectorState], None]

USER_AGENT = f"tui-currents/{__version__}"
EXCERPT_CHARS = 200  # of Segment's answer, kept in dead-letter reasons and errors
EXPIRE_PER_CHECK = 5_000  # expired messages moved per turn of the loop (keeps each turn short)
_P = ParamSpec("_P")
_T = TypeVar("_T")
# zlib's level for a connector that enables gzip. Measured on a full 474 KB body (bench_http_client.py):
# level 1 takes 5.0 ms of CPU for 23% of the size, level 5 9.5 ms for 20%, level 9 15 ms for 19%.
GZIP_LEVEL = 1
_SENT_AT_LEN = len("2024-01-01T00:00:00.000Z")


def iso_now(ts: float) -> str:
    """A Unix time as Segment's ISO-8601 form with milliseconds, e.g. 2024-05-01T12:00:00.000Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def batch_body(bodies: Sequence[bytes], write_key: str, sent_at: str) -> bytes:
    """The /v1/batch request body, spliced from stored message JSON without parsing it again."""
    return b"".join(
        (
            b'{"batch":[',
            b",".join(bodies),
            b'],"writeKey":',
            orjson.dumps(write_key),
            b',"sentAt":"',
            sent_at.encode(),
            b'"}',
        )
    )


def _envelope_bytes(write_key: str) -> int:
    return segment.json_size(batch_body((), write_key, "x" * _SENT_AT_LEN))


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int | None  # None: no answer (network error, timeout)
    text: str  # for people: what happened, with an excerpt of Segment's answer
    retry_after: float | None = None
    location: str | None = None  # where a 3xx pointed (redacted)


class ConnectorDelivery:
    """Delivers one connector's outbox to Segment until `stop()`; see the module docstring.

    `write_key_provider()` returns the connector's write key (or None); it is called at start, on
    `credentials_changed()`, and every `key_poll_seconds` while there is no usable key, so it may be a
    plain lookup. It may also be a coroutine function. `on_state(connector, state)` hears every recorded
    state. `client` is a shared httpx.AsyncClient (one is made, and closed, when none is given).
    `backoff_scale` multiplies segment.backoff_seconds (tests shorten it).
    """

    def __init__(
        self,
        store: Outbox | TimedStore,
        connector_name: str,
        url: str,
        write_key_provider: WriteKeyProvider,
        *,
        client: httpx.AsyncClient | None = None,
        max_in_flight: int = 4,
        gzip: bool = False,
        gzip_level: int | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_state: StateCallback | None = None,
        retention_days: float = 7.0,
        lease_seconds: float = 600.0,
        request_timeout: float = 30.0,
        backoff_scale: float = 1.0,
        key_poll_seconds: float = 5.0,
        idle_poll_seconds: float = 0.25,
        retention_check_seconds: float = 60.0,
        state_interval: float = 1.0,
        store_retry_seconds: float = 5.0,
        stop_timeout: float = 10.0,
        max_messages: int = segment.MAX_BATCH_MESSAGES,
        max_bytes: int = segment.MAX_BATCH_BYTES,
        linger_seconds: float = 0.05,
    ):
        self.store = store
        self.connector = connector_name
        self.url = url
        parts = urlsplit(url)  # for messages: host and port only, never any credentials in the URL
        self._host = f"{parts.hostname}:{parts.port}" if parts.port else (parts.hostname or "the endpoint")
        self._provider = write_key_provider
        self._client = client
        self._own_client = client is None
        self.max_in_flight = max(1, max_in_flight)
        self.gzip = gzip
        self.gzip_level = GZIP_LEVEL if gzip_level is None else gzip_level
        self._clock = clock
        self._rng = rng
        self._on_state = on_state
        self.retention_days = retention_days
        self.lease_seconds = lease_seconds
        self.request_timeout = request_timeout
        self.backoff_scale = backoff_scale
        self.key_poll_seconds = key_poll_seconds
        self.idle_poll_seconds = idle_poll_seconds
        self.retention_check_seconds = retention_check_seconds
        self.state_interval = state_interval
        self.store_retry_seconds = store_retry_seconds
        self.stop_timeout = stop_timeout
        self.max_messages = max(1, min(max_messages, segment.MAX_BATCH_MESSAGES))
        self.max_bytes = max(1, min(max_bytes, segment.MAX_BATCH_BYTES))
        self.linger_seconds = linger_seconds

        self._key: str | None = None
        self._auth = ""
        self._key_error: str | None = None
        self._rejected_key: str | None = None  # the key Segment refused; blocks sending while unchanged
        self._rejected_text = ""
        self._recheck_key = False
        self._last_key_poll = 0.0
        self._not_before = 0.0  # no request before this time (pause or backoff)
        self._hold = Status.RUNNING  # what the hold until _not_before is: PAUSED or BACKING_OFF
        self._hold_detail = ""
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._warning: str | None = None
        self._last_retention = float("-inf")
        self._tasks: set[asyncio.Task] = set()
        self._small_batch = False  # the last lease took a small batch while others were out
        # Batches Segment accepted whose "delivered" mark the store could not take (a full disk): kept here
        # and recorded first thing once it can, so they neither show as waiting nor go out again.
        self._unrecorded: list[tuple[list[int], float]] = []
        # Batches answered 200 waiting for their "delivered" mark, recorded together (see _record_delivered).
        self._to_record: list[tuple[list[int], float, asyncio.Future]] = []
        self._recorder: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._started = False
        self._done = asyncio.Event()
        self._state: ConnectorState | None = None  # latest, maybe not yet written
        self._written: ConnectorState | None = None
        self._written_at = float("-inf")
        self._state_unrecorded = False

    def __repr__(self) -> str:
        return f"<ConnectorDelivery {self.connector!r} -> {self._host}>"

    # ------------------------------------------------------------------------------------ control

    def notify(self) -> None:
        """New messages were queued: look for them now rather than at the next poll."""
        self._wake.set()

    def credentials_changed(self) -> None:
        """The write key may have changed: read it again before the next request."""
        self._recheck_key = True
        self._wake.set()

    async def stop(self) -> None:
        """Stop leasing; let requests in flight finish (up to `stop_timeout`); give back unsent batches.
        Batches whose request was cut off stay leased until their lease runs out or the engine restarts;
        sending them again is harmless: they keep their messageIds and Segment drops repeats."""
        self._stopping = True
        self._wake.set()
        if self._started:
            try:
                await asyncio.wait_for(self._done.wait(), self.stop_timeout + 5.0)
            except TimeoutError:
                log.warning("connector %r: delivery did not stop in time", self.connector)

    # --------------------------------------------------------------------------------------- loop

    async def run(self) -> None:
        """Deliver until `stop()`."""
        self._started = True
        if self._client is None:
            self._client = httpx.AsyncClient(headers={"User-Agent": USER_AGENT})
        try:
            await self._refresh_key()
            while not self._stopping:
                try:
                    await self._step()
                except Exception as exc:  # a bug must not end delivery for good: report, wait, go on
                    log.exception("connector %r: unexpected error in delivery", self.connector)
                    self._hold_for(
                        f"Unexpected error ({type(exc).__name__}); see the log", self.store_retry_seconds
                    )
        finally:
            await self._finish()

    async def _step(self) -> None:
        now = self._clock()
        if self._unrecorded and not await self._record_unrecorded():
            await self._wait(self.store_retry_seconds)
            return
        if self._recheck_key or (self._key_blocked() and now - self._last_key_poll >= self.key_poll_seconds):
            await self._refresh_key()
        await self._housekeeping(now)
        self._heed_other_instances()
        if self._key_blocked():
            self._show_key_problem()
            await self._wait(self.key_poll_seconds)
            return
        if now < self._not_before:
            self._set(self._hold, self._hold_detail, paused_until=self._not_before)
            await self._wait(self._not_before - now)
            return
        if len(self._tasks) >= self.max_in_flight:
            await asyncio.wait(self._tasks, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            return
        if self._small_batch and self._tasks:
            # Busy, and the last batch was small: let the next one fill up a little rather than send a
            # request per trickle (each request costs far more than the messages in it).
            self._small_batch = False
            await asyncio.sleep(self.linger_seconds)
            return
        try:
            # The store's lock may be held by a commit waiting on the disk: wait for it in a worker thread,
            # so the event loop (and the receiver sharing it) keeps serving meanwhile.
            rows = await self._off_loop(
                self.store.lease,
                self.connector,
                max_messages=self.max_messages,
                max_bytes=self._lease_bytes(),
                lease_seconds=self.lease_seconds,
                now=now,
            )
        except StoreUnavailable as exc:
            self._store_trouble(exc)
            return
        if not rows:
            if not self._tasks:
                self._set(Status.IDLE, "Nothing to send.")
            await self._flush()
            await self._wait(self.idle_poll_seconds)
            return
        self._set(Status.RUNNING, f"Sending to {self._host}.")
        await self._flush()
        self._small_batch = (
            4 * len(rows) < self.max_messages and 4 * sum(r.bytes for r in rows) < self.max_bytes
        )
        task = asyncio.create_task(self._deliver(rows), name=f"deliver:{self.connector}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("connector %r: delivery of a batch failed: %s", self.connector, type(exc).__name__)
        self._wake.set()

    async def _wait(self, timeout: float) -> None:
        """Sleep up to `timeout` seconds, or until woken (new messages, a finished batch, stop, a key)."""
        await self._flush()
        if not self._wake.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(timeout, 0.0))
        self._wake.clear()

    async def _finish(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.stop_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._own_client and self._client is not None:
            await self._client.aclose()
        self._set(Status.STOPPED, "Delivery stopped; waiting events stay queued.")
        await self._flush(force=True)
        self._done.set()

    # ---------------------------------------------------------------------------------- one batch

    def _lease_bytes(self) -> int:
        # The request as a whole must stay under the limit: envelope, key, sentAt and commas included.
        key = self._key or ""
        return max(1, self.max_bytes - _envelope_bytes(key) - self.max_messages)

    async def _off_loop(self, call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a store call in a worker thread. Each one may wait for the store's lock or an fsync; on the
        event loop that would stall everything sharing it (the receiver, and in-process the TUI). The
        caller awaits it, so its writes keep their order (a mark is written before the next lease)."""
        return await asyncio.to_thread(call, *args, **kwargs)

    def _blocked(self) -> bool:
        self._heed_other_instances()  # a pause another instance met holds for the parts not yet sent
        return self._stopping or self._key_blocked() or self._clock() < self._not_before

    async def _deliver(self, rows: list[OutboxRow]) -> None:
        try:
            await self._deliver_parts(rows)
        except StoreUnavailable as exc:
            # The outcome could not be recorded (a full disk): give the leases back in memory, so that the
            # messages go out again as soon as the store works (after `store_retry_seconds`), not once
            # `lease_seconds` have run out. Segment's accepted batches stay leased until their delivered
            # mark is written (`_unrecorded`): they are not sent again. Messages already recorded as done
            # or scheduled for later are not taken by a lease whatever their lease says.
            accepted = {seq for seqs, _ in self._unrecorded for seq in seqs}
            await self._off_loop(
                self.store.release, self.connector, [r.seq for r in rows if r.seq not in accepted]
            )
            self._store_trouble(exc)

    async def _record_unrecorded(self) -> bool:
        """Record the deliveries the store could not take before; True once all are recorded."""
        while self._unrecorded:
            seqs, at = self._unrecorded[0]
            try:
                await self._off_loop(self.store.delivered, self.connector, seqs, now=at)
            except StoreUnavailable as exc:
                self._store_trouble(exc)
                return False
            self._unrecorded.pop(0)
        return True

    async def _deliver_parts(self, rows: list[OutboxRow]) -> None:
        too_big = [r for r in rows if r.bytes > segment.MAX_MESSAGE_BYTES]
        if too_big:
            for row in too_big:
                await self._off_loop(
                    self.store.dead_letter,
                    self.connector,
                    [row.seq],
                    reason=f"the message is {row.bytes:,} bytes, over Segment's limit of "
                    f"{segment.MAX_MESSAGE_BYTES:,} bytes per message",
                    now=self._clock(),
                )
            rows = [r for r in rows if r.bytes <= segment.MAX_MESSAGE_BYTES]
        parts = [rows] if rows else []
        while parts:
            part = parts.pop()
            if self._blocked():
                waiting = [r.seq for p in (*parts, part) for r in p]
                retry_at = self._not_before if self._not_before > self._clock() else 0.0
                await self._off_loop(self.store.release, self.connector, waiting, retry_at=retry_at)
                return
            key = self._key or ""
            answer = await self._post(part, key)
            now = self._clock()
            seqs = [r.seq for r in part]
            if answer.retry_after:
                self._pause(now, answer)
            if answer.status is None:
                await self._retry(part, answer.text, now)
                continue
            verdict = segment.verdict(answer.status)
            if verdict is segment.Verdict.DELIVERED:
                try:
                    await self._record_delivered(seqs, now)
                except StoreUnavailable:
                    self._unrecorded.append((seqs, now))
                    raise
            elif verdict is segment.Verdict.RETRY:
                if answer.retry_after:
                    await self._off_loop(
                        self.store.retry_later,
                        self.connector,
                        seqs,
                        retry_at=self._not_before,
                        error=answer.text,
                        count_attempt=False,
                    )
                else:
                    await self._retry(part, answer.text, now)
            elif verdict is segment.Verdict.SPLIT:
                if len(part) == 1:
                    await self._off_loop(
                        self.store.dead_letter,
                        self.connector,
                        seqs,
                        reason=f"Segment rejected this message: {answer.text}",
                        now=now,
                    )
                else:
                    middle = len(part) // 2
                    parts.extend((part[middle:], part[:middle]))  # the first half is sent first
            elif verdict is segment.Verdict.REDIRECT:
                await self._retry(part, answer.text, now, redirect=answer.location or "no Location given")
            elif verdict is segment.Verdict.CREDENTIALS:
                await self._off_loop(self.store.release, self.connector, seqs)
                self._credentials_rejected(key, answer, now)
            else:
                hint = ""
                if answer.status == 404:
                    hint = " Check the connector's endpoint; requeue these dead letters once it is fixed."
                await self._off_loop(
                    self.store.dead_letter,
                    self.connector,
                    seqs,
                    reason=f"Segment refused the batch: {answer.text}.{hint}",
                    now=now,
                )

    async def _record_delivered(self, seqs: list[int], now: float) -> None:
        """Record that Segment accepted these messages. The batches answered while a recording is under way
        are recorded together by the next one: one transaction, and one wait for the store, for several."""
        done = asyncio.get_running_loop().create_future()
        self._to_record.append((seqs, now, done))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_pending(), name=f"record:{self.connector}")
        await done

    async def _record_pending(self) -> None:
        while self._to_record:
            group, self._to_record = self._to_record, []
            addresses = [addr for seqs, _, _ in group for addr in seqs]
            try:
                await self._off_loop(
                    self.store.delivered, self.connector, addresses, now=max(at for _, at, _ in group)
                )
            except Exception as exc:  # StoreUnavailable (or a bug): each batch's task deals with it
                for _, _, done in group:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, _, done in group:
                    if not done.done():
                        done.set_result(None)

    async def _post(self, part: list[OutboxRow], key: str) -> _Answer:
        body = batch_body([r.body for r in part], key, iso_now(self._clock()))
        headers = {
            "Content-Type": "application/json",
            "Authorization": self._auth,
            "User-Agent": USER_AGENT,
            "X-Retry-Count": str(max(r.attempts for r in part)),
        }
        if self.gzip:
            body = await asyncio.to_thread(gzip.compress, body, self.gzip_level)
            headers["Content-Encoding"] = "gzip"
        assert self._client is not None  # made by run() when none was given
        try:
            response = await self._client.post(
                self.url, content=body, headers=headers, timeout=self.request_timeout
            )
        except httpx.TimeoutException:
            return _Answer(None, f"no answer from {self._host} within {self.request_timeout:g} s")
        except httpx.HTTPError as exc:
            return _Answer(None, self._redact(f"could not reach {self._host}: {_describe(exc)}", key))
        status = response.status_code
        retry_after = segment.retry_after_seconds(response.headers.get("Retry-After"))
        if retry_after is None and status == 429:
            retry_after = segment.retry_after_seconds(response.headers.get("X-RateLimit-Reset"))
        text = f"{status} {response.reason_phrase}".strip()
        location = None
        if 300 <= status < 400:
            location = self._redact(response.headers.get("Location", "").strip(), key)[:EXCERPT_CHARS] or None
            retry_after = None  # a redirect's wait is the backoff of a failed attempt
            text += f" redirecting to {location or '(no Location given)'}"
        elif not 200 <= status < 300:
            excerpt = self._redact(" ".join(response.text.split()), key)[:EXCERPT_CHARS]
            if excerpt:
                text += f": {excerpt}"
        return _Answer(status, text, retry_after, location)

    def _redact(self, text: str, key: str) -> str:
        # Segment never echoes the key, but a proxy in between might: it must not reach a stored reason.
        for secret in {key, self._key, self._rejected_key}:
            if secret:
                text = text.replace(secret, "[write key]")
                text = text.replace(base64.b64encode(f"{secret}:".encode()).decode(), "[write key]")
        return text

    # ------------------------------------------------------------------------------ what happened

    async def _retry(
        self, part: list[OutboxRow], error: str, now: float, *, redirect: str | None = None
    ) -> None:
        """Back the connector off and schedule the batch again, as one more attempt. The hold is set before
        the store is written: a store that cannot take the retry must not also cancel the backoff."""
        attempt = max(r.attempts for r in part)
        delay = segment.backoff_seconds(attempt, rng=self._rng) * self.backoff_scale
        retry_at = now + delay
        self._error(error, now)
        if retry_at > self._not_before:
            self._not_before = retry_at
            self._hold = Status.BACKING_OFF
            if redirect is not None:
                self._hold_detail = (
                    f"The endpoint answered with a redirect to {redirect} ({error.split(' ', 1)[0]}); a "
                    f"redirect is not followed. Check the connector's endpoint. The events stay queued; "
                    f"trying again in {delay:.1f} s (attempt {attempt + 2})."
                )
            else:
                self._hold_detail = (
                    f"Segment delivery failed ({error}); trying again in {delay:.1f} s "
                    f"(attempt {attempt + 2})."
                )
        if redirect is not None:
            log.error(
                "connector %r: the endpoint redirects to %s (%s): check the connector's endpoint; events are "
                "kept, retrying in %.1f s",
                self.connector,
                redirect,
                error.split(" ", 1)[0],
                delay,
            )
        else:
            log.warning("connector %r: %s; retrying in %.1f s", self.connector, error, delay)
        await self._off_loop(
            self.store.retry_later, self.connector, [r.seq for r in part], retry_at=retry_at, error=error
        )

    def _pause(self, now: float, answer: _Answer) -> None:
        until = now + (answer.retry_after or 0.0)
        if until > self._not_before:
            self._not_before = until
            self._hold = Status.PAUSED
            self._hold_detail = (
                f"Segment asked to wait {answer.retry_after:g} s ({answer.status}); "
                "nothing is sent until then and the events stay queued."
            )
        if answer.status is not None and answer.status >= 300:
            self._error(answer.text, now)
        log.info("connector %r: Segment asked to wait %g s", self.connector, answer.retry_after)
        share = getattr(self.store, "share_hold", None)  # a cluster queue: every instance waits too
        if share is not None:
            share(self.connector, self._not_before, self._hold_detail)

    def _credentials_rejected(self, key: str, answer: _Answer, now: float) -> None:
        if key != self._key:
            return  # the key changed while this request was out: try the new one
        self._rejected_key = key
        self._rejected_text = answer.text
        share = getattr(self.store, "share_refused_key", None)  # a cluster queue: no instance uses it again
        if share is not None:
            share(self.connector, key)
        self._error(f"Segment refused the write key ({answer.text})", now)
        log.warning("connector %r: Segment refused the write key (%s)", self.connector, answer.status)
        self._show_key_problem()

    def _store_trouble(self, exc: StoreUnavailable) -> None:
        log.error("connector %r: %s", self.connector, exc)
        self._hold_for(str(exc), self.store_retry_seconds)

    def _hold_for(self, error: str, seconds: float) -> None:
        """Back off from everything for `seconds` after a problem that is not Segment's answer."""
        now = self._clock()
        self._error(error, now)
        if now + seconds > self._not_before:
            self._not_before = now + seconds
            self._hold = Status.BACKING_OFF
            self._hold_detail = f"{error}. Trying again in {seconds:g} s; the events stay queued."

    def _error(self, text: str, now: float) -> None:
        self._last_error = text
        self._last_error_at = now

    async def _housekeeping(self, now: float) -> None:
        """Now and then: expire messages past the retention and warn when the oldest nears it."""
        if now - self._last_retention < self.retention_check_seconds:
            return
        self._last_retention = now
        retention = self.retention_days * DAY
        try:
            expired = await self._off_loop(
                self.store.expire, self.connector, older_than=now - retention, now=now, limit=EXPIRE_PER_CHECK
            )
            oldest = (await self._off_loop(self.store.backlog, self.connector)).oldest_enqueued_at
        except StoreUnavailable as exc:
            self._store_trouble(exc)
            return
        if expired >= EXPIRE_PER_CHECK:
            self._last_retention = float("-inf")  # more to do: again at the next turn, in small steps
        if expired:
            log.warning(
                "connector %r: %d events undelivered for %g days moved to the dead letters",
                self.connector,
                expired,
                self.retention_days,
            )
        if oldest is not None and now - oldest > retention / 2:
            self._warning = (
                f"The oldest waiting event was queued {(now - oldest) / DAY:.1f} days ago; events still "
                f"undelivered after {self.retention_days:g} days move to the dead letters."
            )
        else:
            self._warning = None

    # ------------------------------------------------------------------------------- write key

    async def _refresh_key(self) -> None:
        self._recheck_key = False
        self._last_key_poll = self._clock()
        try:
            key = self._provider()
            if inspect.isawaitable(key):
                key = await key
            self._key_error = None
        except Exception as exc:  # a keyring error's text could quote anything: keep only its kind
            key = None
            self._key_error = f"the write key could not be read ({type(exc).__name__})"
        key = key.strip() if isinstance(key, str) else None
        key = key or None
        if key != self._key:
            self._key = key
            self._auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode() if key else ""
        if key is not None and self._rejected_key is not None and key != self._rejected_key:
            log.info("connector %r: the write key changed; sending again", self.connector)
            self._rejected_key = None
            self._wake.set()

    def _heed_other_instances(self) -> None:
        """On a cluster queue, what another instance learnt holds here too: a pause Segment asked for, and
        a write key Segment refused (a new key resumes every instance). In-memory reads of the queue."""
        hold = getattr(self.store, "shared_hold", None)
        held = hold(self.connector) if hold is not None else None
        if held is not None and held.until > self._not_before:
            self._not_before, self._hold, self._hold_detail = held.until, Status.PAUSED, held.detail
        refused = getattr(self.store, "key_refused", None)
        key = self._key
        if refused is not None and key and key != self._rejected_key and refused(self.connector, key):
            self._rejected_key = key
            self._rejected_text = "refused when another instance sent with it"

    def _key_blocked(self) -> bool:
        return self._key is None or self._key == self._rejected_key

    def _show_key_problem(self) -> None:
        if self._key is None:
            why = self._key_error or "no write key is set for this connector"
            self._set(
                Status.NO_WRITE_KEY,
                f"Not sending: {why}. Events are kept and sending starts once the write key is set.",
            )
        else:
            self._set(
                Status.CREDENTIALS_REJECTED,
                f"Segment refused the write key ({self._rejected_text}). Events are kept; sending resumes "
                "by itself once the connector's write key is changed.",
            )

    # ----------------------------------------------------------------------------------- states

    def _set(self, status: Status, detail: str, *, paused_until: float | None = None) -> None:
        previous = self._state
        since = previous.since if previous is not None and previous.state == status else self._clock()
        self._state = ConnectorState(
            state=str(status),
            detail=detail,
            since=since,
            last_error=self._last_error,
            last_error_at=self._last_error_at,
            paused_until=paused_until,
            warning=self._warning,
        )

    async def _flush(self, *, force: bool = False) -> None:
        """Write the latest state: at once when the state itself changed, else at most once a second."""
        state = self._state
        if state is None or state == self._written:
            return
        changed = self._written is None or self._written.state != state.state
        now = time.monotonic()
        due = now - self._written_at >= self.state_interval
        if not (force or due or (changed and not self._state_unrecorded)):
            return
        try:
            await self._off_loop(self.store.set_state, self.connector, state)
        except StoreUnavailable as exc:
            if not self._state_unrecorded:  # said once, not on every turn of the loop
                log.error("connector %r: state not recorded: %s", self.connector, exc)
            self._state_unrecorded = True
            self._written_at = now  # try again after state_interval
            return
        self._state_unrecorded = False
        self._written = state
        self._written_at = now
        if self._on_state is not None:
            try:
                self._on_state(self.connector, state)
            except Exception:  # a listener's bug must not stop delivery
                log.exception("connector %r: state listener failed", self.connector)

    @property
    def state(self) -> ConnectorState | None:
        """The latest state (also recorded in the store)."""
        return self._state


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
