"""Broken and hostile input at volume, through the real engine.

Ten thousand and more malformed events and requests, generated with a seeded RNG from valid demo events.
What must hold, from Braze's and Segment's rules (the reference, section 2.1, and Segment's limits):

- the receiver never crashes: it keeps answering, and /healthz says ok afterwards;
- 400 only for a body that is not a JSON object with an `events` list, 413 over the size limit, 401 for a
  wrong or missing token, and 200 for a batch with some bad events (Braze drops for good what it gets a
  400 for twice, so one bad event must never fail its batch);
- every event of an accepted batch is delivered to the Segment stand-in, a dead letter with a reason, or
  counted as unsupported, not selected, anonymous or duplicate: none vanishes and none is sent that
  should not be. The run is made against the strict stand-in (every breach of Segment's contract answered
  loudly) and the lenient one (Segment's silent 200 and drop); both measure sizes as Segment does, in
  UTF-8 bytes, and events just under and just over 32 KB that way (but not in characters) are generated.

The expected fate of each generated event comes from those rules (an event without an `id` cannot be
deduplicated by Segment, a message over 32 KB is refused by Segment...), never from this program's output.
Inputs at the edges of what the JSON parser and the decompressor take (an escaped lone surrogate, a number
beyond a double, nesting 1,000 and 10,000 deep, a body that is not what its Content-Encoding says) have
their own tests at the end. The inputs are made in `bad_input.py`; damaged Avro files are in
`test_bad_avro_files.py`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from tests.security.bad_input import (
    CONNECTOR,
    DEAD,
    DELIVERED,
    EITHER,
    FAST,
    FILTERED,
    KEY,
    MAX_BODY,
    SEED,
    SUPPORTED,
    TOKEN,
    UNICODE,
    WORKSPACE,
    EventMaker,
    Request,
    RequestMaker,
    _json_is_valid,
    all_dead_letters,
    batch_body,
    canonical,
    generate_cases,
    into_batches,
    nested,
    post,
    table,
)
from tests.support import wait_for
from tui_currents import config
from tui_currents.engine import Engine, EngineOptions
from tui_currents.paths import Home
from tui_currents.sandbox import SegmentSandbox
from tui_currents.secrets import Secrets, receiver_token_env_var, write_key_env_var

pytestmark = pytest.mark.timeout(90)


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
async def sandbox(request: pytest.FixtureRequest) -> AsyncIterator[SegmentSandbox]:
    """The Segment stand-in: strict (every breach of Segment's contract answered loudly; the default) or,
    when a test asks for it, lenient (Segment's own silent 200 where it drops a message)."""
    strict = getattr(request, "param", "strict") == "strict"
    async with SegmentSandbox(write_keys={KEY}, reject_unknown_keys=True, keep=100_000, strict=strict) as sb:
        yield sb


@pytest.fixture
async def engine(
    home: Home, sandbox: SegmentSandbox, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Engine]:
    monkeypatch.setenv(write_key_env_var(CONNECTOR), KEY)
    monkeypatch.setenv(receiver_token_env_var(WORKSPACE), TOKEN)
    config.add_workspace(home, config.Workspace(name=WORKSPACE))
    config.add_connector(
        home,
        config.Connector(
            name=CONNECTOR,
            workspace=WORKSPACE,
            contact_email="ops@example.com",
            region="custom",
            endpoint=sandbox.url,
            events=SUPPORTED,
        ),
    )
    cfg = config.load(home)
    cfg.receiver.max_body_bytes = MAX_BODY
    config.save(home, cfg)
    eng = Engine(home, Secrets(home), EngineOptions(receiver_port=0, delivery_overrides=FAST))
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()


# ---------------------------------------------------------------------------------------- the volume


@pytest.mark.parametrize(
    "sandbox", ["strict", pytest.param("lenient", marks=pytest.mark.soak)], indirect=True
)  # the lenient stand-in's run with `-m soak` (the time budget); the strict one in every run
async def test_ten_thousand_malformed_events_and_requests_are_all_accounted_for(
    engine: Engine, sandbox: SegmentSandbox
) -> None:
    """About 9,400 generated events in some 140 mixed batches and 2,800 broken or unusual requests, sent six
    at a time to the real engine: statuses by the rules, then every event traced to exactly one fate."""
    started = time.monotonic()
    rng = random.Random(SEED)
    cases = generate_cases(rng, 9_400)
    batches = into_batches(rng, cases)
    request_maker = RequestMaker(rng, EventMaker(random.Random(SEED + 7), prefix="case-r"))
    requests = [Request("batch of mixed events", batch_body(b), frozenset({200}), cases=b) for b in batches]
    requests += [request_maker.make() for _ in range(2_800)]
    rng.shuffle(requests)
    accepted_cases = [c for r in requests for c in r.cases]

    outcomes: dict[str, Counter] = {}
    wrong: list[str] = []
    gate = asyncio.Semaphore(6)
    async with httpx.AsyncClient(timeout=30.0) as client:

        async def send(request: Request) -> None:
            async with gate:
                response = await post(client, engine, request.body, request.headers, chunked=request.chunked)
            outcomes.setdefault(request.kind, Counter())[str(response.status_code)] += 1
            if response.status_code not in request.expect:
                wrong.append(f"{request.kind}: {response.status_code} {response.text[:120]}")
            elif response.status_code == 400:
                assert response.json()["error"], "a 400 must say what is wrong with the body"

        await asyncio.gather(*(send(r) for r in requests))
        assert (await client.get(f"{engine.receiver_url}/healthz")).json() == {"status": "ok"}
    posted_at = time.monotonic()
    assert not wrong, f"{len(wrong)} requests answered against the rules, e.g. {wrong[:5]}"

    expected = Counter(c.expect for c in accepted_cases)
    must_arrive = {c.tracked_id for c in accepted_cases if c.expect == DELIVERED}
    may_arrive = {c.tracked_id for c in accepted_cases if c.expect == EITHER}
    store = engine.store
    # Everything queued reaches the stand-in (or is refused by it and dead-lettered) in bounded time.
    assert await wait_for(lambda: store.backlog(CONNECTOR).messages == 0, timeout=40), store.backlog(
        CONNECTOR
    )
    arrived = set(sandbox.message_ids)
    letters = all_dead_letters(store)
    totals = store.counter_totals(CONNECTOR)

    # Nothing vanished: every event of an accepted batch has exactly one fate, and the fates add up.
    assert totals["received"] == len(accepted_cases)
    fates = (
        "queued",
        "duplicate",
        "not_selected",
        "anonymous",
        "unsupported",
        "not_forwardable",
        "dead_lettered",
    )
    assert sum(totals.get(f, 0) for f in fates) == totals["received"], totals
    for fate in FILTERED:
        assert totals.get(fate, 0) == expected[fate], (fate, totals)
    assert totals.get("delivered", 0) == sandbox.accepted_count == len(arrived)

    # The valid ones arrived, exactly once, with their ids intact; nothing else did.
    assert must_arrive <= arrived, sorted(must_arrive - arrived)[:10]
    assert arrived <= must_arrive | may_arrive, sorted(arrived - must_arrive - may_arrive)[:10]
    assert sandbox.duplicates == 0
    assert not sandbox.violations, sandbox.violations[:3]
    refused = {i for r in requests for i in r.refused_ids}
    assert not refused & arrived

    # The invalid ones are dead letters, each with a reason, and the open cases are one or the other.
    by_id = {c.tracked_id: c for c in accepted_cases if c.tracked_id}
    untracked = Counter(canonical(c.event) for c in accepted_cases if c.expect == DEAD and not c.tracked_id)
    lettered_ids: set[str] = set()
    unmatched = []
    for letter in letters:
        assert letter.reason and letter.reason.strip()
        case = by_id.get(letter.message_id) if letter.message_id else None
        if case is not None:
            assert case.expect in (DEAD, EITHER), (case.kind, letter.reason)
            assert case.tracked_id not in lettered_ids
            lettered_ids.add(case.tracked_id)
            continue
        key = canonical(orjson.loads(letter.event)) if letter.event else b""
        if untracked[key] > 0:
            untracked[key] -= 1
        else:
            unmatched.append((letter.message_id, letter.reason))
    assert not unmatched, f"dead letters for events that were not invalid: {unmatched[:5]}"
    assert +untracked == Counter(), "invalid events without a dead letter"
    assert {c.tracked_id for c in accepted_cases if c.expect == DEAD and c.tracked_id} <= lettered_ids
    assert may_arrive == (may_arrive & arrived) | (may_arrive & lettered_ids)
    assert not may_arrive & arrived & lettered_ids
    assert not refused & lettered_ids

    # A reason names what is wrong, so the user can fix it at the source.
    for letter in letters:
        case = by_id.get(letter.message_id) if letter.message_id else None
        if case is None or case.expect != DEAD:
            continue
        if case.kind.startswith("id "):
            assert "`id`" in letter.reason
        elif case.kind.startswith("time "):
            assert "`time`" in letter.reason
        elif case.kind.startswith("event over 32 KB"):
            assert "32,768" in letter.reason or "32 KB" in letter.reason
        elif case.kind.endswith("not text"):
            assert "user_id" in letter.reason
        elif case.kind.startswith("integer too long to read"):
            field = "`time`" if case.kind.endswith("(time)") else "`properties.long`"
            assert f"{field} is an integer of " in letter.reason and "4,300 digits" in letter.reason

    # Unicode arrives exactly as sent, and numbers with the digits they were sent with.
    accepted = {m["messageId"]: m for m in sandbox.accepted}
    for case in accepted_cases:
        if case.kind == "numbers beyond 64 bits or a double":
            [digits] = case.splice.values()
            assert accepted[case.tracked_id]["properties"]["wide"] == digits.decode()
        if case.kind == "unicode edge cases":
            message = accepted[case.tracked_id]
            assert message["userId"] == case.event["user"]["external_user_id"]
            for key, value in case.event["properties"].items():
                if key.startswith(UNICODE):
                    assert message["properties"][key] == value

    # Still answering: one more valid batch goes all the way through.
    last = [EventMaker(random.Random(SEED + 99), prefix="case-z").valid_event() for _ in range(3)]
    async with httpx.AsyncClient(timeout=10.0) as client:
        assert (await post(client, engine, batch_body(last))).status_code == 200
        assert (await client.get(f"{engine.receiver_url}/healthz")).status_code == 200
    assert await wait_for(lambda: {c.event["id"] for c in last} <= set(sandbox.message_ids), timeout=10)

    malformed_events = sum(1 for c in accepted_cases if c.kind not in ("valid", "duplicate of a valid event"))
    malformed_requests = sum(
        1
        for r in requests
        if r.kind not in ("batch of mixed events", "gzip batch", "empty body", "empty events")
    )
    event_fates: dict[str, Counter] = {}
    for case in accepted_cases:
        if case.expect in FILTERED:
            fate = case.expect
        elif case.tracked_id in arrived:
            fate = "delivered"
        else:
            fate = "dead letter"  # checked above: every other event is one
        event_fates.setdefault(case.kind, Counter())[fate] += 1
    print()
    print(table("events by kind -> fate", event_fates))
    print(table("requests by kind -> status", outcomes))
    print(
        f"{len(accepted_cases):,} events in accepted batches ({malformed_events:,} malformed), "
        f"{len(requests):,} requests ({malformed_requests:,} malformed); posting took "
        f"{posted_at - started:.1f} s, everything {time.monotonic() - started:.1f} s"
    )
    assert malformed_events + malformed_requests >= 10_000


# ----------------------------------------------------------------------- inputs the code gets wrong


def _one_bad_between_two_good(raw_bad_event: bytes) -> tuple[bytes, list[dict]]:
    maker = EventMaker(random.Random(SEED + 3), prefix="case-g")
    good = [maker.valid_event().event for _ in range(2)]
    first, second = (orjson.dumps(e) for e in good)
    return b'{"events": [' + first + b", " + raw_bad_event + b", " + second + b"]}", good


@pytest.mark.parametrize(
    "raw_bad_event",
    [
        pytest.param(
            b'{"event_type": "users.messages.email.Send", "id": "lone-1", "time": 1717171717,'
            b' "user": {"external_user_id": "u1"}, "properties": {"subject": "half an emoji \\ud83d"}}',
            id="lone surrogate escaped",
        ),
        pytest.param(
            b'{"event_type": "users.messages.email.Send", "id": "huge-1", "time": 1717171717,'
            b' "user": {"external_user_id": "u1"}, "properties": {"score": 1e400}}',
            id="number beyond a double",
        ),
        pytest.param(
            b'{"event_type": "users.messages.email.Send", "id": "deep-1", "time": 1717171717,'
            b' "user": {"external_user_id": "u1"}, "properties": {"deep": ' + nested(10_000) + b"}}",
            id="nested 10,000 deep",
        ),
    ],
)
async def test_one_event_the_json_parser_refuses_does_not_fail_its_batch(
    engine: Engine, sandbox: SegmentSandbox, raw_bad_event: bytes
) -> None:
    """The body is valid JSON text (RFC 8259's grammar) holding an `events` list; only one event in it is
    beyond what the parser takes. Braze drops for good a single event it gets a 400 for twice, and the
    reference says never to answer 400 for a whole batch because of one bad event: the two good events
    must be delivered, and the odd one delivered as best it can be or kept as a dead letter."""
    assert _json_is_valid(raw_bad_event) or b"[" * 10_000 in raw_bad_event
    odd_id = raw_bad_event.split(b'"id": "', 1)[1].split(b'"', 1)[0].decode()
    body, good = _one_bad_between_two_good(raw_bad_event)
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await post(client, engine, body)
        assert (await client.get(f"{engine.receiver_url}/healthz")).status_code == 200
    assert response.status_code == 200, response.text
    assert await wait_for(lambda: {e["id"] for e in good} <= set(sandbox.message_ids), timeout=10)
    assert await wait_for(lambda: engine.store.backlog(CONNECTOR).messages == 0, timeout=10)
    letters = all_dead_letters(engine.store)
    assert (odd_id in sandbox.message_ids) + len(letters) == 1
    assert all(letter.reason for letter in letters)
    assert engine.store.counter_totals(CONNECTOR)["received"] == 3


async def test_an_event_nested_a_thousand_deep_is_a_dead_letter_not_a_500(
    engine: Engine, sandbox: SegmentSandbox
) -> None:
    """Within what the JSON parser takes (1,024 levels), so the batch is parsed and mapped; keeping the
    deep event as a dead letter must not fail the whole batch with 500 (Braze would send it again forever,
    and the good events with it would never be stored)."""
    deep = (
        b'{"event_type": "users.messages.email.Send", "id": "deep-990", "time": 1717171717,'
        b' "user": {"external_user_id": "u1"}, "properties": {"deep": ' + nested(990) + b"}}"
    )
    body, good = _one_bad_between_two_good(deep)
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await post(client, engine, body)
    assert response.status_code == 200, response.text
    assert await wait_for(lambda: {e["id"] for e in good} <= set(sandbox.message_ids), timeout=10)
    [letter] = all_dead_letters(engine.store)
    assert letter.message_id == "deep-990"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_is_not_what_its_content_encoding_says_is_400(
    engine: Engine, encoding: str
) -> None:
    """A body that cannot be decompressed is not a JSON batch: 400, as for any unreadable body (a 500
    makes Braze send it again forever)."""
    body = orjson.dumps(
        {"events": [EventMaker(random.Random(SEED + 4), prefix="case-e").valid_event().event]}
    )
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await post(client, engine, body, {"Content-Encoding": encoding})
        assert (await client.get(f"{engine.receiver_url}/healthz")).status_code == 200
    assert response.status_code == 400, response.text
