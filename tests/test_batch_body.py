"""Reading a Braze request body when one event holds what a JSON parser balks at, and numbers that a 64-bit
integer or a double cannot hold: through the reader itself, and through the real receiver (HTTP on
loopback) with delivery to the strict Segment stand-in.

The rules (the reference, section 2.1, and the project's number rule in docs/ARCHITECTURE.md): a batch is
refused (400) only when the body as a whole is not a batch; one event the parser cannot take becomes a
dead letter naming the field, and the others are stored; a number JSON cannot carry exactly in Segment's
JSON is forwarded as its original text in a string, never rounded, never made null.
"""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.security import test_bad_input as bad_input
from tests.security.test_bad_input import all_dead_letters, post
from tests.support import wait_for
from tui_currents.engine import Engine
from tui_currents.mapping import UNREADABLE, NumberText
from tui_currents.sandbox import SegmentSandbox
from tui_currents.sources.batch_body import NotABatch, events_of

pytestmark = pytest.mark.timeout(60)

# The real engine (receiver, store, delivery) and the strict Segment stand-in, as the bad-input run has them.
engine = bad_input.engine
sandbox = bad_input.sandbox

TIME = b"1717171717"


def raw_event(event_id: str, properties: bytes = b"{}", *, time: bytes = TIME) -> bytes:
    """One Email Send event as JSON text, with `properties` and `time` spliced in as written."""
    return (
        b'{"event_type": "users.messages.email.Send", "id": "' + event_id.encode() + b'", "time": ' + time
        + b', "user": {"external_user_id": "u-' + event_id.encode() + b'"}, "properties": ' + properties
        + b"}"
    )  # fmt: skip


def body_of(*events: bytes) -> bytes:
    return b'{"events": [' + b", ".join(events) + b"]}"


DIGITS_5000 = b"7" * 5_000  # over Python's 4,300-digit limit for reading an integer

# (JSON text of a number, what the reader must give for it)
KEPT_AS_TEXT = [
    b"18446744073709551616",  # 2**64: one past what a 64-bit integer holds
    b"-9223372036854775809",  # one below the smallest 64-bit integer
    b"1" + b"0" * 30,  # 1e30 as an integer: a double would round it
    b"123456789" * 30,  # 270 digits: within a double's range, but not exactly
    b"1" + b"0" * 400,  # beyond a double
    b"1e400",
    b"-1E+400",
    b"2.5e999999",
    b"9" * 4_300,  # the longest integer that is read
]
KEPT_AS_NUMBERS = [
    (b"18446744073709551615", 2**64 - 1),
    (b"-9223372036854775808", -(2**63)),
    (b"1717171717", 1717171717),
    (b"1.5", 1.5),
    (b"1e308", 1e308),
    (b"5e-324", 5e-324),
    (b"0.0e-500", 0.0),
    (b"1e-400", 0.0),  # too small for a double: rounded to the nearest, as every JSON reader does
    (b"-2.5e-999", -0.0),
    (b"0." + DIGITS_5000, 0.7777777777777778),  # a decimal of any length: rounded, whichever parser reads it
    (b"[1e400, 0." + DIGITS_5000 + b"]", ["1e400", 0.7777777777777778]),
    (b"-0.0", -0.0),
    (b"0.12345678901234567890123", 0.12345678901234567890123),  # more digits than a double: rounded
]


# ------------------------------------------------------------------------------------- the reader itself


@pytest.mark.parametrize(
    ("where", "event", "field"),
    [
        ("a property", raw_event("huge-1", b'{"score": ' + DIGITS_5000 + b"}"), "`properties.score`"),
        ("a list", raw_event("huge-1", b'{"l": [1, 2, -' + DIGITS_5000 + b"]}"), "`properties.l[2]`"),
        ("time", raw_event("huge-1", time=DIGITS_5000), "`time`"),
    ],
    ids=["a property", "in a list", "time"],
)  # fmt: skip
def test_an_integer_too_long_to_read_fails_only_its_own_event(where: str, event: bytes, field: str) -> None:
    body = body_of(raw_event("good-1"), event, raw_event("good-2"))

    events = events_of(body)

    assert [e["id"] for e in events] == ["good-1", "huge-1", "good-2"]
    odd = events[1]
    assert odd[UNREADABLE].startswith(field + " is an integer of 5,00")
    assert "4,300 digits" in odd[UNREADABLE]
    assert '"event_type":"users.messages.email.Send"' in odd["excerpt"]
    assert events[0] == orjson.loads(raw_event("good-1"))
    assert events[2] == orjson.loads(raw_event("good-2"))


def test_an_integer_too_long_to_read_in_an_event_nested_beyond_the_parser_fails_only_that_event() -> None:
    deep = b'{"deep": ' + b"[" * 3_000 + DIGITS_5000 + b"]" * 3_000 + b"}"
    events = events_of(body_of(raw_event("good-1"), raw_event("huge-1", deep), raw_event("good-2")))
    assert [e.get("id") for e in events] == ["good-1", None, "good-2"]
    assert events[1][UNREADABLE] == "nested too deeply to read"


def test_when_events_are_read_one_by_one_each_keeps_its_numbers_or_its_own_reason() -> None:
    """Nesting beyond the parser makes the reader take the events one at a time: the rules for numbers
    hold there too."""
    deep = b'{"deep": ' + b"[" * 3_000 + b"0" + b"]" * 3_000 + b"}"
    events = events_of(
        body_of(
            raw_event("deep-1", deep),
            raw_event("huge-1", b'{"score": ' + DIGITS_5000 + b"}"),
            raw_event("wide-1", b'{"n": 123456789012345678901234567890, "x": 1e400, "s": "\\ud83d"}'),
        )
    )
    assert events[0][UNREADABLE] == "nested too deeply to read"
    assert events[1]["id"] == "huge-1"
    assert events[1][UNREADABLE].startswith("`properties.score` is an integer of 5,000 digits")
    assert events[2]["properties"] == {"n": "123456789012345678901234567890", "x": "1e400", "s": "\ufffd"}
    assert isinstance(events[2]["properties"]["n"], NumberText)


@pytest.mark.parametrize("text", KEPT_AS_TEXT, ids=lambda t: t[:24].decode())
def test_a_number_no_64_bit_integer_or_double_can_hold_is_kept_as_its_text(text: bytes) -> None:
    [event] = events_of(body_of(raw_event("n-1", b'{"n": ' + text + b', "in_list": [' + text + b"]}")))
    for value in (event["properties"]["n"], event["properties"]["in_list"][0]):
        assert isinstance(value, NumberText)
        assert value == text.decode()


@pytest.mark.parametrize(("text", "expected"), KEPT_AS_NUMBERS, ids=lambda t: str(t)[:24])
def test_a_number_a_64_bit_integer_or_double_holds_stays_a_number(text: bytes, expected: object) -> None:
    [event] = events_of(body_of(raw_event("n-1", b'{"n": ' + text + b"}")))
    value = event["properties"]["n"]
    assert type(value) is type(expected) and value == expected
    assert orjson.dumps(value) == orjson.dumps(expected)


@pytest.mark.parametrize("shift", [-30, -21, -12, -1, 0, 1, 12, 30])
def test_a_wide_integer_anywhere_in_a_large_body_is_kept_as_its_text(shift: int) -> None:
    """The body is looked through a piece at a time; an integer across two pieces is found too."""
    wide = b"123456789012345678901234"
    head = b'{"events": [' + raw_event("n-1", b'{"pad": "')
    padding = b"x" * (65_536 + shift - len(head) - len(b'", "n": '))
    body = head + padding + b'", "n": ' + wide + b"}}]}"
    [event] = events_of(body)
    assert isinstance(event["properties"]["n"], NumberText) and event["properties"]["n"] == wide.decode()


@pytest.mark.parametrize(
    "properties",
    [
        b'{"code": "12345678901234567890123"}',
        b'{"note": "a:1234567890123456789012, b:[12345678901234567890]"}',
        b'{"note": "12345678901234567890 12345678901234567890"}',
        b'{"hex": "5e-1234-abce-0001"}',
    ],
)
def test_digits_inside_text_stay_text(properties: bytes) -> None:
    [event] = events_of(body_of(raw_event("s-1", properties)))
    assert event["properties"] == orjson.loads(properties)
    assert all(type(value) is str for value in event["properties"].values())


def test_a_lone_surrogate_and_a_wide_number_in_one_body_are_both_read() -> None:
    body = body_of(raw_event("x-1", b'{"s": "half \\ud83d", "n": 1' + b"0" * 25 + b"}"))
    [event] = events_of(body)
    assert event["properties"] == {"s": "half \ufffd", "n": "1" + "0" * 25}


@pytest.mark.parametrize(
    "body",
    [
        body_of(raw_event("a-1", b'{"n": NaN}')),
        body_of(raw_event("a-1", b'{"n": 1' + b"0" * 30 + b"}")) + b"x",
        b'{"events": [' + DIGITS_5000 + b"",
        DIGITS_5000,
    ],
)
def test_a_body_that_is_not_a_batch_is_still_refused(body: bytes) -> None:
    with pytest.raises(NotABatch):
        events_of(body)


# --------------------------------------------------------------------------------- through the receiver


async def test_an_event_with_an_integer_too_long_to_read_is_a_dead_letter_and_its_batch_is_stored(
    engine: Engine, sandbox: SegmentSandbox
) -> None:
    body = body_of(
        raw_event("good-1"), raw_event("huge-1", b'{"score": ' + DIGITS_5000 + b"}"), raw_event("good-2")
    )
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await post(client, engine, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 3}
    assert await wait_for(lambda: {"good-1", "good-2"} <= set(sandbox.message_ids), timeout=10)
    [letter] = all_dead_letters(engine.store)
    assert letter.message_id == "huge-1"
    assert "`properties.score` is an integer of 5,000 digits" in letter.reason
    assert "huge-1" not in sandbox.message_ids
    assert not sandbox.violations


async def test_numbers_beyond_64_bits_or_a_double_reach_segment_as_their_digits(
    engine: Engine, sandbox: SegmentSandbox
) -> None:
    wide = {f"wide_{i}": text for i, text in enumerate(KEPT_AS_TEXT)}
    exact = {f"exact_{i}": text for i, (text, _) in enumerate(KEPT_AS_NUMBERS)}
    properties = b"{" + b", ".join(b'"%s": %s' % (k.encode(), v) for k, v in {**wide, **exact}.items()) + b"}"
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await post(client, engine, body_of(raw_event("numbers-1", properties)))
    assert response.status_code == 200, response.text
    assert await wait_for(lambda: "numbers-1" in sandbox.message_ids, timeout=10)

    [message] = [m for m in sandbox.accepted if m["messageId"] == "numbers-1"]
    for key, text in wide.items():
        assert message["properties"][key] == text.decode()
    for (key, _), (_, expected) in zip(exact.items(), KEPT_AS_NUMBERS, strict=True):
        assert message["properties"][key] == expected and type(message["properties"][key]) is type(expected)
    assert not all_dead_letters(engine.store)
    assert not sandbox.violations
