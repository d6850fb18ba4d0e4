"""How big a message is, as Segment counts it: the bytes of its JSON text in UTF-8 (a CJK character is 3
bytes, an emoji 4; not 1 per character, not 6 per \\uXXXX escape). The mapping, the delivery loop and the
strict Segment stand-in must agree on it at the 32 KB message limit and the 500 KB request limit.

Sizes here are worked out independently with the standard library's writer (compact, non-ASCII kept),
never taken from the code under test.
"""

from __future__ import annotations

import json

import httpx
import orjson
import pytest

from tests.fixtures.currents_events import event
from tests.security import test_bad_input as bad_input
from tests.security.test_bad_input import KEY, all_dead_letters, post
from tests.support import wait_for
from tui_currents import catalog
from tui_currents.delivery import batch_body, iso_now
from tui_currents.engine import Engine
from tui_currents.mapping import ConnectorRules, Fate, map_event, normalise
from tui_currents.sandbox import SegmentSandbox, ViolationKind
from tui_currents.segment import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES, json_size

pytestmark = pytest.mark.timeout(60)

# The real engine (receiver, store, delivery) and the strict Segment stand-in, as the bad-input run has them.
engine = bad_input.engine
sandbox = bad_input.sandbox

ALL = ConnectorRules(selected=frozenset(e.event_type for e in catalog.CATALOG))
WIDE_CHARACTERS = {"CJK": "\u4e2d", "emoji": "\U0001f600", "accented": "\u00e9"}


def utf8_size(value: object) -> int:
    """Segment's measure, by the standard library: compact JSON, characters as themselves, in UTF-8."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def record_of_size(size: int, character: str, event_id: str = "sized-1") -> dict:
    """An Email Abort event whose Segment message is `size` bytes by Segment's measure, mostly made of
    `character` (padded with ASCII to the exact size)."""
    record = event("users.messages.email.Abort")
    record["id"] = event_id
    record["properties"]["abort_log"] = ""
    empty = map_event(normalise(record), ALL)
    assert empty.fate is Fate.QUEUED, empty.reason
    room = size - utf8_size(empty.message)
    width = len(character.encode("utf-8"))
    record["properties"]["abort_log"] = character * (room // width - 1) + "x" * (room % width + width)
    return record


def test_json_size_counts_utf8_bytes_of_the_json_text() -> None:
    value = {"s": "\u4e2d\U0001f600\u00e9a", "n": [1, 2.5, None]}
    assert json_size(value) == utf8_size(value) == len('{"s":"","n":[1,2.5,null]}') + 3 + 4 + 2 + 1
    assert json_size(orjson.dumps(value)) == utf8_size(value)
    assert json_size(memoryview(orjson.dumps(value))) == utf8_size(value)
    assert json_size(value) < len(json.dumps(value, separators=(",", ":")))  # fewer than with \u escapes


@pytest.mark.parametrize("character", WIDE_CHARACTERS.values(), ids=WIDE_CHARACTERS.keys())
def test_the_mapping_takes_a_message_of_exactly_32_kb_and_refuses_one_byte_more(character: str) -> None:
    at_limit = map_event(normalise(record_of_size(MAX_MESSAGE_BYTES, character)), ALL)
    over = map_event(normalise(record_of_size(MAX_MESSAGE_BYTES + 1, character)), ALL)

    assert at_limit.fate is Fate.QUEUED, at_limit.reason
    assert utf8_size(at_limit.message) == len(at_limit.encoded) == MAX_MESSAGE_BYTES
    assert over.fate is Fate.REJECTED
    assert over.reason.startswith(f"the Segment message would be {MAX_MESSAGE_BYTES + 1:,} bytes")
    # The measure matters: counted in characters both would fit; with \u escapes neither would.
    if character != "\u00e9":
        assert len(json.dumps(over.event.raw, ensure_ascii=False)) < MAX_MESSAGE_BYTES
        assert len(json.dumps(at_limit.message)) > MAX_MESSAGE_BYTES


@pytest.mark.parametrize("character", WIDE_CHARACTERS.values(), ids=WIDE_CHARACTERS.keys())
async def test_the_strict_stand_in_agrees_with_the_mapping_at_the_message_limit(
    sandbox: SegmentSandbox, character: str
) -> None:
    message = map_event(normalise(record_of_size(MAX_MESSAGE_BYTES, character)), ALL).message
    one_more = orjson.loads(orjson.dumps(message))
    one_more["messageId"] = "sized-2"
    one_more["properties"]["abort_log"] += "y"
    assert utf8_size(one_more) == MAX_MESSAGE_BYTES + 1

    async with httpx.AsyncClient(timeout=10.0) as client:

        async def send(*messages: dict) -> httpx.Response:
            body = batch_body([orjson.dumps(m) for m in messages], KEY, iso_now(0))
            return await client.post(
                f"{sandbox.url}/v1/batch",
                content=body,
                auth=(KEY, ""),
                headers={"Content-Type": "application/json"},
            )

        assert (await send(message)).status_code == 200
        refused = await send(one_more)
    assert refused.status_code == 400
    assert sandbox.message_ids.keys() == {message["messageId"]}
    [violation] = sandbox.violations
    assert violation.kind is ViolationKind.MESSAGE_TOO_LARGE
    assert violation.reason.startswith(f"message of {MAX_MESSAGE_BYTES + 1:,} bytes")


async def test_at_the_limit_is_delivered_and_over_it_is_a_dead_letter_end_to_end(
    engine: Engine, sandbox: SegmentSandbox
) -> None:
    under = [
        record_of_size(MAX_MESSAGE_BYTES - k, c, f"under-{n}-{k}")
        for n, c in enumerate("\u4e2d\U0001f600")
        for k in (0, 1)
    ]
    over = [
        record_of_size(MAX_MESSAGE_BYTES + k, c, f"over-{n}-{k}")
        for n, c in enumerate("\u4e2d\U0001f600")
        for k in (1, 2)
    ]
    async with httpx.AsyncClient(timeout=10.0) as client:
        for record in under + over:  # one per request: the receiver's limit in these tests is 256 KB
            response = await post(client, engine, orjson.dumps({"events": [record]}))
            assert response.status_code == 200, response.text

    assert await wait_for(lambda: {r["id"] for r in under} <= set(sandbox.message_ids), timeout=10)
    assert await wait_for(lambda: engine.store.backlog(bad_input.CONNECTOR).messages == 0, timeout=10)
    assert set(sandbox.message_ids) == {r["id"] for r in under}
    letters = {letter.message_id: letter.reason for letter in all_dead_letters(engine.store)}
    assert letters.keys() == {r["id"] for r in over}
    assert all("over Segment's limit of 32,768 bytes" in reason for reason in letters.values())
    assert not sandbox.violations
    assert {utf8_size(m) for m in sandbox.accepted} == {MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES - 1}


async def test_batches_of_wide_characters_stay_within_segments_request_limit(
    engine: Engine, sandbox: SegmentSandbox
) -> None:
    records = [record_of_size(30_000, "\u4e2d", f"wide-{n:03d}") for n in range(48)]
    sandbox.faults.update(outage=True)  # a backlog builds up, so that batches fill to the byte limit
    async with httpx.AsyncClient(timeout=10.0) as client:
        for at in range(0, len(records), 6):
            response = await post(client, engine, orjson.dumps({"events": records[at : at + 6]}))
            assert response.status_code == 200, response.text
    sandbox.faults.reset()

    assert await wait_for(lambda: len(sandbox.message_ids) == len(records), timeout=20)
    assert not sandbox.violations
    sizes = [r.body_bytes for r in sandbox.requests if r.status == 200]
    assert max(sizes) <= MAX_BATCH_BYTES < MAX_REQUEST_BYTES
    assert max(sizes) > MAX_BATCH_BYTES - 2 * 30_000  # batches were filled, by bytes and not characters
