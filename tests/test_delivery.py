"""A connector's delivery loop against a real HTTP server on loopback: the Segment sandbox (which enforces
Segment's contract and injects faults) and, where headers must be seen, a small recording server."""

from __future__ import annotations

import asyncio
import base64
import gzip
import logging
import random
import time
import uuid
import zlib
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web

from tui_currents import __version__, segment
from tui_currents.delivery import ConnectorDelivery
from tui_currents.mapping import ConnectorRules, Fate, Outcome, map_event, normalise
from tui_currents.sandbox import SegmentSandbox
from tui_currents.store import ConnectorState, Store

pytestmark = pytest.mark.timeout(60)

EMAIL_SEND = "users.messages.email.Send"
RULES = ConnectorRules(selected=frozenset({EMAIL_SEND}))
C1 = "Production"
KEY = "wk_Live_7d1f0c9a2b4e6f8a1c3e5d7b"
NEW_KEY = "wk_Live_new_0a1b2c3d4e5f6a7b8c9d"


def outcome(event_id: str, *, padding: int = 0) -> Outcome:
    rec = {
        "event_type": EMAIL_SEND,
        "id": event_id,
        "time": 1_700_000_000,
        "user": {"user_id": "5f1e0000aaaa", "external_user_id": "user-1"},
        "properties": {"campaign_name": "Winter sale", "email_address": "someone@example.com"},
    }
    if padding:
        rec["properties"]["notes"] = "x" * padding
    result = map_event(normalise(rec), RULES)
    assert result.fate == Fate.QUEUED, result.reason
    return result


def tiny(event_id: str) -> Outcome:
    """A valid, minimal track message (about 100 bytes), so that 2,500 of them fit in a request."""
    result = outcome(event_id)
    result.message = {"type": "track", "event": "Email Sent", "messageId": event_id, "userId": "user-1"}
    result.encoded = orjson.dumps(result.message)
    return result


def enqueue(
    store: Store, n: int, *, padding: int = 0, make: Callable[[str], Outcome] | None = None
) -> list[str]:
    make = make or (lambda event_id: outcome(event_id, padding=padding))
    ids = [str(uuid.uuid4()) for _ in range(n)]
    for start in range(0, n, 1000):
        store.commit([(C1, make(i)) for i in ids[start : start + 1000]], source="test")
    return ids


async def until(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "currents.db", synchronous="NORMAL")
    yield s
    s.close()


@pytest.fixture
async def sandbox():
    async with SegmentSandbox({KEY}, reject_unknown_keys=True) as sb:
        yield sb


@asynccontextmanager
async def delivering(store: Store, base_url: str, key: Callable[[], str | None] = lambda: KEY, **options):
    """Run a delivery loop for C1 for the duration of the block; yields it and the states it reported."""
    states: list[ConnectorState] = []
    options.setdefault("backoff_scale", 0.1)
    options.setdefault("idle_poll_seconds", 0.02)
    options.setdefault("request_timeout", 5.0)
    async with httpx.AsyncClient() as client:
        delivery = ConnectorDelivery(
            store,
            C1,
            segment.batch_url("us", base_url),
            key,
            client=client,
            on_state=lambda name, state: states.append(state),
            **options,
        )
        task = asyncio.create_task(delivery.run())
        try:
            yield delivery, states
        finally:
            await delivery.stop()
            await asyncio.wait_for(task, 15)


def state_of(delivery: ConnectorDelivery) -> ConnectorState:
    return delivery.state or ConnectorState(state="")


def delivered_all(store: Store) -> Callable[[], bool]:
    return lambda: store.backlog(C1).messages == 0


# ----------------------------------------------------------------------------------- happy path


async def test_delivers_every_message_once_within_the_contract(store: Store, sandbox: SegmentSandbox):
    ids = enqueue(store, 300)
    started = time.time()
    async with delivering(store, sandbox.url) as (delivery, states):
        await until(delivered_all(store), what="delivery")
        await until(lambda: state_of(delivery).state == "idle", what="idle")
    finished = time.time()

    assert sandbox.message_ids == dict.fromkeys(ids, 1)
    assert sandbox.violation_count == 0, sandbox.violations
    assert {r.status for r in sandbox.requests} == {200}
    for request in sandbox.requests:
        assert request.retry_count == 0
        assert not request.gzip
        sent_at = datetime.fromisoformat(request.sent_at.replace("Z", "+00:00")).timestamp()
        assert started - 1 <= sent_at <= finished + 1
    assert [m["messageId"] for m in sandbox.accepted] == ids  # in queue order, bodies intact
    assert sandbox.accepted[0] == orjson.loads(outcome(ids[0]).encoded)
    assert store.counter_totals(C1)["delivered"] == 300
    assert [s.state for s in states][:1] == ["running"]
    assert store.states()[C1].state == "stopped"


class Recorder:
    """A real HTTP server that records each request (time, headers, body) and answers 200, or the
    statuses queued in `answers` first (a status, or a status and headers), or `always` when set."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, dict, bytes]] = []
        self.answers: list[int | tuple[int, dict[str, str]]] = []
        self.always: tuple[int, dict[str, str]] | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _batch(self, request: web.Request) -> web.Response:
        self.seen.append((time.time(), dict(request.headers), await request.read()))
        answer = self.answers.pop(0) if self.answers else (self.always or 200)
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return web.json_response({"success": status == 200}, status=status, headers=headers)

    async def __aenter__(self) -> Recorder:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/v1/batch", self._batch)
        self._runner = web.AppRunner(app, auto_decompress=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._runner.cleanup()


@pytest.fixture
async def recorder():
    async with Recorder() as server:
        yield server


@pytest.mark.parametrize("use_gzip", [False, True])
async def test_request_headers_auth_and_body(store: Store, recorder: Recorder, use_gzip: bool):
    ids = enqueue(store, 5)
    async with delivering(store, recorder.url, gzip=use_gzip):
        await until(delivered_all(store), what="delivery")
    [(_, headers, raw)] = recorder.seen
    assert headers["Authorization"] == "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"tui-currents/{__version__}"
    assert headers["X-Retry-Count"] == "0"
    if use_gzip:
        assert headers["Content-Encoding"] == "gzip"
        body = gzip.decompress(raw)
        assert len(raw) < len(body)
    else:
        assert "Content-Encoding" not in headers
        body = raw
    payload = orjson.loads(body)
    assert payload["writeKey"] == KEY
    assert [m["messageId"] for m in payload["batch"]] == ids
    assert payload["batch"][0] == orjson.loads(outcome(ids[0]).encoded)


async def test_gzip_uses_zlib_level_1(store: Store, recorder: Recorder):
    # Level 1 costs half the CPU of level 5 for a few points of size (bench/bench_http_client.py).
    enqueue(store, 50)
    async with delivering(store, recorder.url, gzip=True):
        await until(delivered_all(store), what="delivery")
    [(_, _, raw)] = recorder.seen
    body = gzip.decompress(raw)
    assert raw[8] == 4  # the gzip header's XFL byte: the fastest level
    deflate = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert raw[10:-8] == deflate.compress(body) + deflate.flush()


async def test_gzip_bodies_are_accepted_by_the_sandbox(store: Store, sandbox: SegmentSandbox):
    ids = enqueue(store, 200)
    async with delivering(store, sandbox.url, gzip=True):
        await until(delivered_all(store), what="delivery")
    assert set(sandbox.message_ids) == set(ids)
    assert sandbox.violation_count == 0
    assert all(r.gzip and r.bytes < r.body_bytes for r in sandbox.requests)


async def test_batches_stay_within_segment_limits(store: Store, sandbox: SegmentSandbox):
    small = enqueue(store, 6000, make=tiny)  # the count limit binds first
    large = enqueue(store, 60, padding=20_000)  # about 20 KB each: the byte limit binds first
    async with delivering(store, sandbox.url):
        await until(delivered_all(store), what="delivery")
    assert set(sandbox.message_ids) == set(small + large)
    assert sandbox.violation_count == 0, sandbox.violations
    assert all(r.messages <= segment.MAX_BATCH_MESSAGES for r in sandbox.requests)
    assert all(r.body_bytes <= segment.MAX_BATCH_BYTES for r in sandbox.requests)
    assert max(r.messages for r in sandbox.requests) == segment.MAX_BATCH_MESSAGES
    assert max(r.body_bytes for r in sandbox.requests) > segment.MAX_BATCH_BYTES * 0.9  # batches fill up


async def test_batches_overlap_up_to_max_in_flight(store: Store, sandbox: SegmentSandbox):
    enqueue(store, 80)
    sandbox.faults.update(latency=0.3)
    started = time.monotonic()
    async with delivering(store, sandbox.url, max_in_flight=4, max_messages=10):
        await until(delivered_all(store), what="delivery")
    elapsed = time.monotonic() - started
    assert sandbox.request_count == 8
    assert elapsed < 8 * 0.3 * 0.75  # one at a time would take 2.4 s; four at a time about 0.6 s


async def test_batches_answered_together_are_recorded_in_one_transaction(
    store: Store, sandbox: SegmentSandbox, monkeypatch
):
    """While one "delivered" mark is being recorded, the batches answered meanwhile wait and are recorded
    together: fewer transactions (and waits for the store) than batches, each message counted once."""
    enqueue(store, 400)
    recorded: list[int] = []
    real_delivered = store.delivered

    def slow_delivered(connector, seqs, *, now=None):  # the real method, made slow like a busy store
        recorded.append(len(seqs))
        time.sleep(0.2)
        return real_delivered(connector, seqs, now=now)

    monkeypatch.setattr(store, "delivered", slow_delivered)
    async with delivering(store, sandbox.url, max_in_flight=4, max_messages=25):
        await until(delivered_all(store), what="delivery")
    assert sandbox.request_count == 16
    assert sum(recorded) == 400 and len(recorded) < sandbox.request_count
    assert store.counter_totals(C1)["delivered"] == 400
    assert sandbox.accepted_count == 400


# ---------------------------------------------------------------------------------------- retries


async def test_server_errors_back_off_then_deliver(store: Store, sandbox: SegmentSandbox):
    ids = enqueue(store, 10)
    sandbox.faults.update(next_statuses=[503, 500])
    async with delivering(store, sandbox.url, backoff_scale=0.4, rng=random.Random(7)) as (_, states):
        await until(delivered_all(store), what="delivery")
    records = list(sandbox.requests)
    assert [r.status for r in records] == [503, 500, 200]
    assert [r.retry_count for r in records] == [0, 1, 2]  # X-Retry-Count: attempts so far
    # Capped exponential backoff with jitter: [0.5, 1] x 0.5 s x 2^n, scaled by 0.4 here.
    assert 0.1 <= records[1].at - records[0].at <= 0.2 + 0.4  # (+ slack for a busy machine)
    assert 0.2 <= records[2].at - records[1].at <= 0.4 + 0.4
    assert set(sandbox.message_ids) == set(ids)
    assert store.counter_totals(C1)["retried"] == 20
    backing_off = [s for s in states if s.state == "backing off"]
    assert backing_off and "503" in backing_off[0].last_error
    assert backing_off[0].paused_until is not None


async def test_every_attempt_has_a_fresh_sent_at_and_its_retry_count(store: Store, recorder: Recorder):
    ids = enqueue(store, 3)
    recorder.answers = [503, 502]
    async with delivering(store, recorder.url, backoff_scale=0.2):
        await until(delivered_all(store), what="delivery")
    assert len(recorder.seen) == 3
    bodies = [orjson.loads(body) for _, _, body in recorder.seen]
    assert all([m["messageId"] for m in b["batch"]] == ids for b in bodies)  # the same messages, same ids
    sent = [datetime.fromisoformat(b["sentAt"].replace("Z", "+00:00")).timestamp() for b in bodies]
    assert sent[0] < sent[1] < sent[2]
    assert all(abs(s - at) < 0.5 for s, (at, _, _) in zip(sent, recorder.seen, strict=True))
    assert [h["X-Retry-Count"] for _, h, _ in recorder.seen] == ["0", "1", "2"]


async def test_retry_after_pauses_the_whole_connector(store: Store, sandbox: SegmentSandbox):
    enqueue(store, 30)
    sandbox.faults.update(next_statuses=[429], retry_after=0.8)
    async with delivering(store, sandbox.url, max_messages=10, max_in_flight=1) as (_, states):
        await until(delivered_all(store), what="delivery")
    records = list(sandbox.requests)
    assert [r.status for r in records] == [429, 200, 200, 200]
    assert records[1].at - records[0].at >= 0.75  # nothing at all was sent during the pause
    assert all(r.retry_count == 0 for r in records)  # a pause is not an attempt
    paused = [s for s in states if s.state == "paused"]
    assert paused and paused[0].paused_until is not None
    assert 0.7 <= paused[0].paused_until - records[0].at <= 1.5


@pytest.mark.parametrize("value", ["nan", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", "soon"])
def test_a_malformed_retry_after_reads_as_absent(value: str):
    assert segment.retry_after_seconds(value) is None
    assert segment.retry_after_seconds("2") == 2.0
    future = time.time() + 30
    http_date = datetime.fromtimestamp(future, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 25 <= segment.retry_after_seconds(http_date) <= 30  # a date to come is honoured


@pytest.mark.parametrize("value", ["nan", "-5", "Wed, 21 Oct 2015 07:28:00 GMT"])
async def test_a_429_with_a_malformed_retry_after_backs_off_and_counts_the_attempt(
    store: Store, recorder: Recorder, value: str
):
    enqueue(store, 3)
    recorder.always = (429, {"Retry-After": value})
    async with delivering(store, recorder.url, backoff_scale=1.0, rng=random.Random(3)) as (delivery, _):
        await asyncio.sleep(2.0)
        state = state_of(delivery)
        recorder.always = None
        await until(delivered_all(store), timeout=15, what="delivery once Segment accepts")
    counts = [int(h["X-Retry-Count"]) for _, h, _ in recorder.seen]
    # The normal backoff (0.25-0.5 s, 0.5-1 s, 1-2 s...), not a request per turn of the loop.
    assert len(counts) <= 6, f"{len(counts)} requests: no backoff"
    assert counts == list(range(len(counts)))  # every attempt counted
    gaps = [b[0] - a[0] for a, b in zip(recorder.seen, recorder.seen[1:], strict=False)]
    assert all(gap >= 0.24 for gap in gaps), gaps
    assert state.state == "backing off" and "429" in (state.last_error or "")


async def test_a_redirect_backs_off_naming_the_location_and_dead_letters_nothing(
    store: Store, recorder: Recorder
):
    ids = enqueue(store, 4)
    elsewhere = "https://api.example.net/v1/batch"
    recorder.answers = [(301, {"Location": elsewhere}), (308, {"Location": elsewhere})]
    async with delivering(store, recorder.url, backoff_scale=1.0, rng=random.Random(5)) as (delivery, states):
        await until(delivered_all(store), timeout=15, what="delivery after the redirects")
    assert store.dead_letters(C1) == [] and store.counter_totals(C1).get("dead_lettered", 0) == 0
    assert [h["X-Retry-Count"] for _, h, _ in recorder.seen] == ["0", "1", "2"]
    held = [s for s in states if s.state == "backing off"]
    assert held and elsewhere in held[0].detail and "endpoint" in held[0].detail
    assert "301" in held[0].last_error and elsewhere in held[0].last_error
    sent = orjson.loads(recorder.seen[-1][2])
    assert [m["messageId"] for m in sent["batch"]] == ids


async def test_a_pause_also_holds_the_halves_of_a_split_batch(store: Store, sandbox: SegmentSandbox):
    ids = enqueue(store, 8)
    # The whole batch is refused (400), then its first half meets a rate limit: the second half must
    # wait for the pause like everything else.
    sandbox.faults.update(next_statuses=[400, 429], retry_after=0.6)
    async with delivering(store, sandbox.url, max_in_flight=1):
        await until(delivered_all(store), what="delivery")
    records = list(sandbox.requests)
    assert [r.status for r in records[:2]] == [400, 429]
    assert all(r.at - records[1].at >= 0.55 for r in records[2:])
    assert set(sandbox.message_ids) == set(ids)
    assert store.dead_letters(C1) == []


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"timeout": 3.0}, "no answer"),
        ({"drop_connection_rate": 1.0}, "could not reach"),
        ({"lose_response_rate": 1.0}, "could not reach"),
    ],
)
async def test_timeouts_and_dropped_connections_are_retried(
    store: Store, sandbox: SegmentSandbox, fault: dict, error: str
):
    ids = enqueue(store, 20)
    sandbox.faults.update(**fault)
    async with delivering(store, sandbox.url, request_timeout=0.3) as (delivery, _):
        await until(lambda: error in (state_of(delivery).last_error or ""), what="the failure")
        sandbox.faults.reset()
        await until(delivered_all(store), what="delivery")
    assert sandbox.accepted_count == len(ids)  # each message kept exactly once...
    assert set(sandbox.message_ids) == set(ids)
    if "lose_response_rate" in fault:
        assert sandbox.duplicates >= len(ids)  # ...the resend after a lost answer was deduplicated
    assert store.counter_totals(C1)["delivered"] == len(ids)


# -------------------------------------------------------------------------------------- refusals


async def test_one_bad_message_is_isolated_and_the_rest_delivered(store: Store, sandbox: SegmentSandbox):
    ids = enqueue(store, 37)
    bad = ids[23]
    sandbox.faults.update(reject_message_ids=[bad])
    async with delivering(store, sandbox.url):
        await until(delivered_all(store), what="delivery")
    assert set(sandbox.message_ids) == set(ids) - {bad}
    [letter] = store.dead_letters(C1)
    assert letter.message_id == bad
    assert letter.reason.startswith("Segment rejected this message: 400")
    assert "invalid_message" in letter.reason  # an excerpt of Segment's answer
    assert orjson.loads(letter.message)["messageId"] == bad  # kept whole, to requeue after a fix
    assert sandbox.request_count <= 2 * 6 + 1  # bisecting, not one request per message
    assert store.counter_totals(C1)["delivered"] == 36


async def test_413_splits_the_batch(store: Store, sandbox: SegmentSandbox):
    ids = enqueue(store, 10)
    sandbox.faults.update(next_statuses=[413])
    async with delivering(store, sandbox.url):
        await until(delivered_all(store), what="delivery")
    assert [(r.status, r.messages) for r in sandbox.requests] == [(413, 0), (200, 5), (200, 5)]
    assert set(sandbox.message_ids) == set(ids)
    assert store.dead_letters(C1) == []


async def test_other_refusals_dead_letter_the_batch_with_the_answer(store: Store, sandbox: SegmentSandbox):
    ids = enqueue(store, 4)
    sandbox.faults.update(next_statuses=[404])
    async with delivering(store, sandbox.url):
        await until(delivered_all(store), what="dead letters")
    letters = store.dead_letters(C1)
    assert sorted(d.message_id for d in letters) == sorted(ids)
    assert all(d.reason.startswith("Segment refused the batch: 404") for d in letters)
    assert "endpoint" in letters[0].reason
    assert sandbox.request_count == 1  # not retried


async def test_an_oversized_message_is_dead_lettered_without_sending(store: Store, sandbox: SegmentSandbox):
    small = outcome("small-one")
    big = outcome("too-big")
    big.message["properties"]["notes"] = "x" * 40_000  # as a message from an older version could be
    big.encoded = orjson.dumps(big.message)
    store.commit([(C1, small), (C1, big)], source="test")
    async with delivering(store, sandbox.url):
        await until(delivered_all(store), what="delivery")
    assert list(sandbox.message_ids) == ["small-one"]
    [letter] = store.dead_letters(C1)
    assert letter.message_id == "too-big" and "over Segment's limit" in letter.reason
    assert sandbox.violation_count == 0


# ------------------------------------------------------------------------------------ write keys


@pytest.mark.parametrize("told", [True, False], ids=["credentials_changed", "polled"])
async def test_a_refused_key_holds_events_until_the_key_changes(store: Store, told: bool):
    async with SegmentSandbox({NEW_KEY}, reject_unknown_keys=True) as sandbox:
        keys = {"current": KEY}
        ids = enqueue(store, 20)
        async with delivering(
            store, sandbox.url, key=lambda: keys["current"], key_poll_seconds=0.2 if not told else 60
        ) as (delivery, states):
            await until(lambda: state_of(delivery).state == "credentials rejected", what="refusal")
            refused = sandbox.request_count
            await asyncio.sleep(0.4)
            assert sandbox.request_count == refused  # nothing is sent with a refused key
            assert store.backlog(C1).messages == 20  # and nothing is lost
            assert "401" in delivery.state.detail
            keys["current"] = NEW_KEY
            if told:
                delivery.credentials_changed()
            await until(delivered_all(store), timeout=5, what="delivery with the new key")
        assert set(sandbox.message_ids) == set(ids)
        assert store.dead_letters(C1) == []
        assert "credentials rejected" in [s.state for s in states]


async def test_without_a_write_key_nothing_is_sent_until_one_is_set(store: Store, sandbox: SegmentSandbox):
    keys: dict[str, str | None] = {"current": None}
    ids = enqueue(store, 5)
    async with delivering(store, sandbox.url, key=lambda: keys["current"], key_poll_seconds=0.1) as (
        delivery,
        _,
    ):
        await until(lambda: state_of(delivery).state == "no write key")
        await asyncio.sleep(0.2)
        assert sandbox.request_count == 0
        keys["current"] = KEY
        await until(delivered_all(store), what="delivery")
    assert set(sandbox.message_ids) == set(ids)


async def test_the_write_key_never_reaches_errors_states_or_logs(store: Store, caplog):
    """A proxy that echoes the request in its 400 answer must not get the key into a dead letter."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(status=400, text=f"bad: {request.headers.get('Authorization')} {body.decode()}")

    app = web.Application()
    app.router.add_post("/v1/batch", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    caplog.set_level(logging.DEBUG)
    try:
        enqueue(store, 2)
        async with delivering(store, f"http://127.0.0.1:{runner.addresses[0][1]}") as (delivery, states):
            await until(delivered_all(store), what="dead letters")
    finally:
        await runner.cleanup()
    letters = store.dead_letters(C1)
    assert len(letters) == 2
    encoded = base64.b64encode(f"{KEY}:".encode()).decode()
    texts = [d.reason for d in letters] + [s.to_json() for s in states] + [caplog.text]
    texts += [s.to_json() for s in store.states().values()]
    assert "[write key]" in letters[0].reason
    for text in texts:
        assert KEY not in text and encoded not in text
    assert KEY not in repr(delivery)


async def test_a_store_that_cannot_be_written_holds_delivery_and_says_why(
    store: Store, sandbox: SegmentSandbox, caplog
):
    enqueue(store, 5)
    caplog.set_level(logging.ERROR, logger="tui_currents.delivery")
    readonly = Store(store.path, readonly=True)
    try:
        async with delivering(readonly, sandbox.url, store_retry_seconds=0.1) as (delivery, _):
            await until(lambda: state_of(delivery).state == "backing off", what="backing off")
            await asyncio.sleep(0.5)  # several retries of the store, none of them sent anything
            assert "read-only" in state_of(delivery).last_error
            assert "events stay queued" in state_of(delivery).detail
    finally:
        readonly.close()
    assert sandbox.request_count == 0
    assert store.backlog(C1).messages == 5
    assert caplog.text.count("state not recorded") == 1  # said once, not on every turn


# ------------------------------------------------------------------------------ stop, retention


async def test_stop_lets_requests_in_flight_finish_and_leases_nothing_new(
    store: Store, sandbox: SegmentSandbox
):
    ids = enqueue(store, 10)
    sandbox.faults.update(latency=0.5)
    async with delivering(store, sandbox.url) as (delivery, _):
        await until(lambda: state_of(delivery).state == "running")
        await asyncio.sleep(0.1)  # the request is out, the answer not yet in
    # stop() returned only after the answer was recorded.
    assert store.backlog(C1).messages == 0
    assert set(sandbox.message_ids) == set(ids)
    assert store.states()[C1].state == "stopped"
    enqueue(store, 3)
    await asyncio.sleep(0.2)
    assert sandbox.request_count == 1


async def test_stop_does_not_wait_forever_for_a_slow_answer(store: Store, sandbox: SegmentSandbox):
    enqueue(store, 10)
    sandbox.faults.update(latency=3.0)
    started = time.monotonic()
    async with delivering(store, sandbox.url, stop_timeout=0.2) as (delivery, _):
        await until(lambda: state_of(delivery).state == "running")
        # A batch is in flight (leased, held by the latency) before the stop is asked for.
        await until(lambda: sandbox.arrived_count >= 1, what="a batch in flight")
    assert time.monotonic() - started < 2.0
    # The cut-off batch stays leased (it is sent again after a restart, same messageIds).
    assert store.backlog(C1).messages == 10
    assert store.lease(C1, max_messages=100, max_bytes=10**6, lease_seconds=1) == []
    assert store.release_leases() == 10


async def test_undeliverable_events_expire_into_dead_letters(store: Store, sandbox: SegmentSandbox):
    sandbox.faults.update(outage=True)
    ids = enqueue(store, 5)
    retention_days = 0.6 / 86_400  # 0.6 s
    async with delivering(
        store, sandbox.url, retention_days=retention_days, retention_check_seconds=0.05, backoff_scale=0.05
    ) as (delivery, states):
        await until(lambda: store.backlog(C1).dead_letters == 5, what="expiry")
    letters = store.dead_letters(C1)
    assert sorted(d.message_id for d in letters) == sorted(ids)
    assert all(d.reason.startswith("expired: undeliverable for") for d in letters)
    assert any(s.warning and "dead letters" in s.warning for s in states)
    assert store.counter_totals(C1)["expired"] == 5
    assert sandbox.accepted_count == 0


@pytest.mark.soak
@pytest.mark.timeout(300)
async def test_throughput_to_the_sandbox(store: Store):
    """100,000 events through one connector (max_in_flight=4) to the sandbox; prints the rate."""
    ids = enqueue(store, 100_000)
    async with SegmentSandbox({KEY}, keep=10) as sandbox:
        started = time.perf_counter()
        async with delivering(store, sandbox.url):
            await until(delivered_all(store), timeout=240, what="delivery")
        rate = len(ids) / (time.perf_counter() - started)
        assert sandbox.accepted_count == len(ids)
        assert sandbox.violation_count == 0
    print(f"\ndelivered {len(ids):,} events at {rate:,.0f}/s in {sandbox.request_count} requests")
    assert rate > 3_000


# ------------------------------------------------------------------------------------------ linger


async def test_a_trickle_while_requests_are_out_travels_in_few_requests(tmp_path):
    """Events queued one by one while Segment takes a moment to answer: with the linger, the next batch
    waits a little to fill up; without it, nearly every event is a request of its own."""

    async def requests_for_a_trickle(linger: float, folder) -> int:
        store = Store(folder / "currents.db", synchronous="NORMAL")
        try:
            async with SegmentSandbox({KEY}, reject_unknown_keys=True) as sandbox:
                sandbox.faults.update(latency=0.02)
                async with delivering(store, sandbox.url, linger_seconds=linger) as (delivery, _):
                    for _ in range(60):
                        enqueue(store, 1)
                        delivery.notify()
                        await asyncio.sleep(0.005)
                    await until(delivered_all(store), what="delivery")
                assert sandbox.accepted_count == 60
                return sandbox.request_count
        finally:
            store.close()

    (tmp_path / "with").mkdir()
    (tmp_path / "without").mkdir()
    with_linger = await requests_for_a_trickle(0.05, tmp_path / "with")
    without = await requests_for_a_trickle(0.0, tmp_path / "without")
    assert with_linger * 2 < without, (with_linger, without)
