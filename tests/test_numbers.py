"""What Segment cannot take as sent: numbers a 64-bit integer or a double would change, absurd times and
blank messageIds. Through the mapping (records as a source hands them over, and bodies as the reader reads
them), and through the real receiver with delivery to the strict Segment stand-in.

The rules: a number JSON cannot carry exactly in Segment's JSON is forwarded as its original digits in a
string; a `time` before 2000 or more than a day ahead of this computer's clock is not the date of a Braze
event, and an `id` of only whitespace cannot tell messages apart: both are dead letters with the reason.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from tests.fixtures.currents_events import event
from tests.security import test_bad_input as bad_input
from tests.security.test_bad_input import all_dead_letters, post
from tests.support import wait_for
from tui_currents import catalog
from tui_currents.engine import Engine
from tui_currents.mapping import ConnectorRules, Fate, NumberText, map_event, normalise
from tui_currents.sandbox import SegmentSandbox
from tui_currents.sources.batch_body import events_of

pytestmark = pytest.mark.timeout(60)

# The real engine (receiver, store, delivery) and the strict Segment stand-in, as the bad-input run has them.
engine = bad_input.engine
sandbox = bad_input.sandbox

ALL = ConnectorRules(selected=frozenset(e.event_type for e in catalog.CATALOG))
DAY = 86_400


def mapped(record: object):
    return map_event(normalise(record), ALL)


def reason_for(record: object) -> str:
    outcome = mapped(record)
    assert outcome.fate is Fate.REJECTED, outcome.message
    return outcome.reason


def email_send(**changes: object) -> dict:
    record = event("users.messages.email.Send")
    record.update(changes)
    return record


def seconds(year: int, month: int = 1, day: int = 1) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp())


# ------------------------------------------------------------------------------------------------ numbers


@pytest.mark.parametrize(
    "value", [2**64, -(2**63) - 1, 10**30, -(10**300), 7 * 10**4_000], ids=lambda v: str(v)[:12]
)
def test_an_integer_beyond_64_bits_is_forwarded_as_its_digits(value: int) -> None:
    record = email_send()
    record["properties"]["big"] = value
    record["properties"]["nested"] = {"list": [1, value, 2**64 - 1]}
    outcome = mapped(record)
    assert outcome.fate is Fate.QUEUED, outcome.reason
    sent = orjson.loads(outcome.encoded)["properties"]
    assert sent["big"] == str(value)
    assert sent["nested"] == {"list": [1, str(value), 2**64 - 1]}
    assert outcome.message["properties"]["big"] == str(value)
    assert record["properties"]["big"] == value  # the event itself is left as received


def test_an_integer_too_long_to_write_is_a_rejection_that_says_so() -> None:
    record = email_send()
    record["properties"]["big"] = 10**5_000
    reason = reason_for(record)
    assert reason.startswith("the event holds a value that cannot be written as JSON")
    assert "4,300 digits" in reason


def _through_the_reader(properties: bytes, **fields: bytes) -> dict:
    record = email_send()
    raw = orjson.dumps({**record, "properties": "@@properties@@"}).replace(b'"@@properties@@"', properties)
    for name, text in fields.items():
        raw = raw.replace(
            orjson.dumps(name) + b":" + orjson.dumps(record[name]), orjson.dumps(name) + b":" + text
        )
    [read] = events_of(b'{"events": [' + raw + b"]}")
    return read


@pytest.mark.parametrize(
    "text",
    [b"18446744073709551616", b"-9223372036854775809", b"1" + b"0" * 30, b"1e400", b"-1E400"],
)
def test_a_number_read_from_a_body_reaches_the_message_as_its_text(text: bytes) -> None:
    read = _through_the_reader(b'{"score": ' + text + b', "list": [' + text + b"]}")
    outcome = mapped(read)
    assert outcome.fate is Fate.QUEUED, outcome.reason
    sent = orjson.loads(outcome.encoded)["properties"]
    assert (sent["score"], sent["list"]) == (text.decode(), [text.decode()])


def test_a_number_read_from_a_body_is_not_text_where_text_is_required() -> None:
    read = _through_the_reader(b"{}", id=b"1" + b"0" * 30)
    assert isinstance(read["id"], NumberText)
    assert reason_for(read) == "`id` must be text, not a number"


def test_a_numeric_user_id_beyond_64_bits_is_taken_as_its_text_like_any_numeric_user_id() -> None:
    read = _through_the_reader(b"{}", user=b'{"external_user_id": 123456789012345678901234567890}')
    assert mapped(read).message["userId"] == "123456789012345678901234567890"


@pytest.mark.parametrize("text", [b"1e400", b"1" + b"0" * 40])
def test_a_time_beyond_any_date_read_from_a_body_is_a_rejection_naming_time(text: bytes) -> None:
    read = _through_the_reader(b"{}", time=text)
    assert "`time`" in reason_for(read)


# --------------------------------------------------------------------------------------------------- time

EARLY = "before 2000: not the date of a Braze event"
AHEAD = "more than a day ahead of this computer's clock"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (seconds(1), "`time` -62135596800 is 0001-01-01T00:00:00Z, " + EARLY),
        (-(10**12), "`time` -1000000000000 is before year 1, not the date of a Braze event"),
        (0, "`time` 0 is 1970-01-01T00:00:00Z, " + EARLY),
        (seconds(2000) - 1, "`time` 946684799 is 1999-12-31T23:59:59Z, " + EARLY),
        ("86400", "`time` '86400' is 1970-01-02T00:00:00Z, " + EARLY),
        (seconds(3000), "`time` 32503680000 is 3000-01-01T00:00:00Z, " + AHEAD),
        (1717171717000, "`time` 1717171717000 is not a date in UNIX seconds (was it sent in milliseconds?)"),
    ],
)  # fmt: skip
def test_a_time_no_braze_event_can_have_is_a_rejection_with_the_date(value: object, expected: str) -> None:
    assert reason_for(email_send(time=value)) == expected


def test_a_time_more_than_a_day_ahead_is_a_rejection_and_an_hour_ahead_is_not() -> None:
    now = time.time()
    reason = reason_for(email_send(time=int(now) + DAY + 120))
    assert reason.endswith("more than a day ahead of this computer's clock")
    ahead = mapped(email_send(time=now + 3_600))
    assert ahead.fate is Fate.QUEUED, ahead.reason


@pytest.mark.parametrize("value", [seconds(2000), seconds(2000) + 0.5, str(seconds(2011, 6, 1)), 1717171717])
def test_a_time_from_2000_on_is_accepted(value: object) -> None:
    outcome = mapped(email_send(time=value))
    assert outcome.fate is Fate.QUEUED, outcome.reason


# ------------------------------------------------------------------------------------------------ blank id


@pytest.mark.parametrize("blank", [" ", "   ", "\t", "\n\r", "\u3000", "\u00a0", "\u2028", " " * 150])
def test_a_blank_id_is_a_rejection(blank: str) -> None:
    assert (
        reason_for(email_send(id=blank))
        == "`id` is blank (only whitespace), so it cannot tell messages apart"
    )


@pytest.mark.parametrize("text", [" x ", "\u200b", "\ufeff", "-", "\u00a0a"])
def test_an_id_with_something_besides_whitespace_is_accepted(text: str) -> None:
    outcome = mapped(email_send(id=text))
    assert outcome.fate is Fate.QUEUED, outcome.reason
    assert outcome.message["messageId"] == text


# --------------------------------------------------------------------------------- through the receiver


async def test_absurd_times_and_blank_ids_are_dead_letters_and_the_rest_of_the_batch_arrives(
    engine: Engine, sandbox: SegmentSandbox
) -> None:
    good = email_send(id="good-1")
    later = email_send(id="good-2", time=int(time.time()) + 600)
    odd = {
        "year-1": email_send(id="year-1", time=seconds(1)),
        "epoch": email_send(id="epoch", time=0),
        "1999": email_send(id="1999", time=seconds(1999, 12, 31)),
        "far-future": email_send(id="far-future", time=int(time.time()) + 30 * DAY),
        "as-text": email_send(id="as-text", time="-62135596800"),
    }
    blank = [email_send(id=text) for text in (" ", "\t \u3000")]
    numbers = email_send(id="numbers-1")
    numbers["properties"] = "@@numbers@@"
    body = orjson.dumps({"events": [good, *odd.values(), *blank, later, numbers]}).replace(
        b'"@@numbers@@"', b'{"wide": 123456789012345678901234567890, "huge": -1e400, "fine": 2.5}'
    )

    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await post(client, engine, body)

    assert response.status_code == 200, response.text
    assert await wait_for(lambda: {"good-1", "good-2", "numbers-1"} <= set(sandbox.message_ids), timeout=10)
    assert await wait_for(lambda: engine.store.backlog(bad_input.CONNECTOR).messages == 0, timeout=10)
    assert set(sandbox.message_ids) == {"good-1", "good-2", "numbers-1"}
    [sent] = [m for m in sandbox.accepted if m["messageId"] == "numbers-1"]
    numbers = {key: sent["properties"][key] for key in ("wide", "huge", "fine")}
    assert numbers == {"wide": "123456789012345678901234567890", "huge": "-1e400", "fine": 2.5}
    letters = all_dead_letters(engine.store)
    by_id = {letter.message_id: letter.reason for letter in letters}
    assert len(letters) == len(odd) + len(blank)
    for event_id in odd:
        assert by_id[event_id].startswith("`time` ")
    assert "before 2000" in by_id["year-1"] and "0001-01-01" in by_id["year-1"]
    assert "more than a day ahead" in by_id["far-future"]
    for record in blank:
        assert by_id[record["id"]].startswith("`id` is blank")
    assert not sandbox.violations
