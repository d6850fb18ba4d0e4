"""Broken and hostile input for the bad-input tests, generated with a seeded RNG from valid demo events.

`EventMaker` makes events of every malformed kind, each with the fate Braze's and Segment's rules give it
(a `Case`): delivered, a dead letter, or counted as unsupported, not selected, anonymous or duplicate.
`RequestMaker` makes requests the receiver must refuse or take. The expected fates come from those rules
(an event without an `id` cannot be deduplicated by Segment, a message over 32 KB is refused by
Segment...), never from this program's output. `post`, `all_dead_letters` and `table` are what the tests
send and read with.
"""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import orjson

from tui_currents import catalog
from tui_currents.engine import Engine
from tui_currents.sources.demo import DemoGenerator
from tui_currents.store import Store

SEED = 20240531


def fixed_clock() -> float:
    """A fixed moment for every generated event, so that a run is the same byte for byte."""
    return 1_717_171_717.0


WORKSPACE = "prod"
CONNECTOR = "Marketing"
TOKEN = "bad-input-receiver-token-0123456789abcdef"
KEY = "bad-input-write-key-0123456789"
MAX_BODY = 256 * 1024  # the receiver's limit in these tests (max_body_bytes)
BATCH_BYTES = 200 * 1024  # accepted batches stay under the limit
SEGMENT_MESSAGE_LIMIT = 32_768
FAST = {"backoff_scale": 0.01, "key_poll_seconds": 0.2, "idle_poll_seconds": 0.05, "state_interval": 0.1}
SUPPORTED = catalog.supported_types()
ADDITIONAL = [e.event_type for e in catalog.CATALOG if not e.supported and e.forwardable]
HEADERS = {"Braze-Currents-Version": "1", "Content-Type": "application/json"}

# What must become of one event of an accepted batch.
DELIVERED = "delivered"
DEAD = "dead letter"
EITHER = "delivered or dead letter"  # the rules leave it open (e.g. a property nested 500 deep)
UNSUPPORTED = "unsupported"
NOT_SELECTED = "not_selected"
ANONYMOUS = "anonymous"
DUPLICATE = "duplicate"
FILTERED = (UNSUPPORTED, NOT_SELECTED, ANONYMOUS, DUPLICATE)

# Text that trips naive code: bidi overrides, joiners, astral emoji, combining marks, BOM, non-characters,
# line separators, an escaped NUL, CJK, the last code point.
UNICODE = (
    "\u202eevil\u202c",
    "\u200d\U0001f469\u200d\U0001f4bb",
    "\U0001f600" * 3,
    "e\u0301\u0308\u0323",
    "\ufeffbom",
    "\uffff\ufffe",
    "a\u2028b\u2029c",
    "\x00nul\x00",
    "\u4e2d\u6587\u30c6\u30ad\u30b9\u30c8",
    "\U0010ffff",
    "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
)
JUNK = ("", "x", 0, -1, 3.5, True, False, None, [], {}, [1, "a"], {"k": [None]})


def canonical(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def nested(depth: int) -> bytes:
    """A JSON list nested `depth` deep, as text (orjson will not write more than 255 levels)."""
    return b"[" * depth + b"0" + b"]" * depth


# ------------------------------------------------------------------------------------------ generation


@dataclass
class Case:
    """One generated event and what must become of it."""

    kind: str
    event: object
    expect: str
    splice: dict[bytes, bytes] = field(default_factory=dict)  # placeholder -> raw JSON (deep nesting)

    @property
    def tracked_id(self) -> str | None:
        ident = self.event.get("id") if isinstance(self.event, dict) else None
        return ident if isinstance(ident, str) and ident.startswith("case-") else None


class EventMaker:
    """Valid demo events, and every way to break one."""

    def __init__(self, rng: random.Random, prefix: str = "case-"):
        self.rng = rng
        self.prefix = prefix  # ids start with "case-", so that dead letters and deliveries can be traced
        self.valid = DemoGenerator(seed=rng.randrange(2**32), clock=fixed_clock)
        self.additional = DemoGenerator(seed=rng.randrange(2**32), event_types=ADDITIONAL, clock=fixed_clock)
        self.n = 0
        self.originals: list[dict] = []  # delivered events a duplicate may copy

    def fresh(self, *, generator: DemoGenerator | None = None, anonymous: bool = False) -> dict:
        self.n += 1
        event = (generator or self.valid).event(anonymous=anonymous)
        event["id"] = f"{self.prefix}{self.n:06d}"
        for name in ("user_id", "external_user_id"):  # the user's ids live in `user` only
            event["properties"].pop(name, None)
        return event

    def junk(self, *, text: bool = True) -> object:
        choices = JUNK if text else tuple(j for j in JUNK if not isinstance(j, str) and j is not None)
        value = self.rng.choice(choices)
        return orjson.loads(orjson.dumps(value))  # a fresh copy

    # --- events that must be delivered

    def valid_event(self) -> Case:
        event = self.fresh()
        self.originals.append(event)
        return Case("valid", event, DELIVERED)

    def unicode_everywhere(self) -> Case:
        event = self.fresh()
        rng = self.rng
        event["id"] += "-" + rng.choice(("\U0001f600", "\u202e", "\x00", "\u00e9", "\u200d", "\ufeff"))
        event["user"]["external_user_id"] = rng.choice(UNICODE) + event["id"]
        for _ in range(rng.randint(1, 6)):
            event["properties"][rng.choice(UNICODE) + str(rng.random())] = rng.choice(UNICODE)
        return Case("unicode edge cases", event, DELIVERED)

    def nested_within_limits(self) -> Case:
        event = self.fresh()
        depth = self.rng.randint(2, 200)
        placeholder = f"@@nested-{self.n}@@"
        event["properties"]["deep"] = placeholder
        return Case("nested 2-200 deep", event, DELIVERED, {orjson.dumps(placeholder): nested(depth)})

    def large_but_under_32kb(self) -> Case:
        event = self.fresh()
        unit = self.rng.choice(("y", "\u00e9", "\U0001f600", "\u4e2d"))
        budget = self.rng.randint(1_000, 26_000)
        event["properties"]["blob"] = unit * (budget // len(unit.encode()))
        assert len(orjson.dumps(event)) < 28_000
        return Case("large, under 32 KB", event, DELIVERED)

    def wide_characters_near_32kb(self) -> Case:
        """Just under or just over Segment's 32 KB by its measure (UTF-8 bytes), where counting characters
        says both fit and counting \\uXXXX escapes says neither does."""
        event = self.fresh()
        unit = self.rng.choice(("\u4e2d", "\U0001f600", "\u0645"))
        over = self.rng.random() < 0.5
        target = self.rng.randint(34_000, 35_500) if over else self.rng.randint(30_000, 31_300)
        event["properties"]["blob"] = ""
        room = target - len(orjson.dumps(event))
        event["properties"]["blob"] = unit * (room // len(unit.encode()))
        size = len(orjson.dumps(event))
        assert len(json.dumps(event, ensure_ascii=False)) < 32_000 < len(json.dumps(event)) / 1.5
        if over:
            assert size > 33_500
            return Case("event over 32 KB (wide characters)", event, DEAD)
        assert size < 31_500
        return Case("wide characters, just under 32 KB", event, DELIVERED)

    def numbers_beyond_64_bits_or_a_double(self) -> Case:
        """Valid JSON numbers a 64-bit integer or a double would change: forwarded as their digits."""
        event = self.fresh()
        rng = self.rng
        text = rng.choice(
            (
                str(rng.randint(2**64, 10 ** rng.randint(20, 300))),
                str(-rng.randint(2**63 + 1, 10 ** rng.randint(19, 300))),
                f"{rng.randint(1, 9)}e{rng.randint(309, 99_999)}",
                f"-{rng.randint(1, 9)}.5E+{rng.randint(309, 999)}",
                str(rng.randint(10**4_200, 10**4_299)),
            )
        )
        placeholder = f"@@wide-{self.n}@@"
        event["properties"]["wide"] = placeholder
        return Case(
            "numbers beyond 64 bits or a double", event, DELIVERED, {orjson.dumps(placeholder): text.encode()}
        )

    def nulls_and_unknown_fields(self) -> Case:
        event = self.fresh()
        rng = self.rng
        for key in list(event["properties"])[: rng.randint(0, 5)]:
            event["properties"][key] = None
        for _ in range(rng.randint(1, 8)):
            where = rng.choice((event, event["user"], event["properties"]))
            where[f"unknown_{rng.randrange(10**6)}"] = self.junk()
        return Case("nulls and unknown fields", event, DELIVERED)

    # --- events that must be dead letters (Segment cannot take them)

    def without_id(self) -> Case:
        event = self.fresh()
        how = self.rng.choice(("missing", "null", "empty", "blank"))
        if how == "missing":
            del event["id"]
        elif how == "blank":
            event["id"] = self.rng.choice((" ", "\t", " " * 40, "\u3000", "\n\u00a0\u2028"))
        else:
            event["id"] = None if how == "null" else ""
        return Case(f"id {how}", event, DEAD)

    def id_of_wrong_type(self) -> Case:
        event = self.fresh()
        event["id"] = self.rng.choice((7, 1.5, True, False, [event["id"]], {"id": event["id"]}))
        return Case("id not text", event, DEAD)

    def id_too_long(self) -> Case:
        event = self.fresh()
        event["id"] += "-" + "x" * self.rng.randint(100, 5_000)
        return Case("id over 100 characters", event, DEAD)

    def bad_time(self) -> Case:
        event = self.fresh()
        rng = self.rng
        how = rng.choice(
            ("missing", "text", "type", "milliseconds", "out of range", "before 2000", "far ahead")
        )
        if how == "missing":
            del event["time"]
        elif how == "text":
            event["time"] = rng.choice(("soon", "", "yesterday", "NaN", "inf", "1e400", "12:00"))
        elif how == "type":
            event["time"] = rng.choice((None, True, False, [], {}, [event["time"]], {"s": 1}))
        elif how == "milliseconds":
            event["time"] = event["time"] * 1000 + rng.randint(0, 999)  # year 50,000 and more
        elif how == "before 2000":  # year 1, the epoch, a day after it, the last second of 1999
            event["time"] = rng.choice((-62135596800, 0, 86400, 946684799, "-62135596800"))
        elif how == "far ahead":  # years 2200, 3000, 9999
            event["time"] = rng.choice((7258118400, 32503680000, 253402300799.5))
        else:
            event["time"] = rng.choice((1e300, -1e300, 10**18, -(10**18)))
        return Case(f"time {how}", event, DEAD)

    def nobody(self) -> Case:
        event = self.fresh()
        how = self.rng.choice(("no user", "empty user", "user not an object", "ids null"))
        if how == "no user":
            del event["user"]
        elif how == "empty user":
            event["user"] = {"timezone": "UTC"}
        elif how == "user not an object":
            event["user"] = self.rng.choice(("u", 5, None, [event["user"]]))
        else:
            event["user"]["user_id"] = event["user"]["external_user_id"] = None
        return Case(f"user: {how}", event, DEAD)

    def user_ids_of_wrong_type(self) -> Case:
        event = self.fresh()
        name = self.rng.choice(("user_id", "external_user_id"))
        event["user"][name] = self.rng.choice(([1], {"id": 1}, True, 2.5, [None]))
        return Case(f"{name} not text", event, DEAD)

    def bad_event_type(self) -> Case:
        event = self.fresh()
        how = self.rng.choice(("missing", "null", "empty", "type"))
        if how == "missing":
            del event["event_type"]
        else:
            event["event_type"] = {"null": None, "empty": ""}.get(how, self.junk(text=False))
        return Case(f"event_type {how}", event, DEAD)

    def integer_too_long_to_read(self) -> Case:
        """An integer of more than 4,300 digits (valid JSON; beyond what the parser reads): only its own
        event may fail, never its batch."""
        event = self.fresh()
        rng = self.rng
        digits = str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=rng.randint(4_300, 6_000)))
        field = rng.choice(("properties", "time"))
        placeholder = f"@@long-{self.n}@@"
        if field == "time":
            event["time"] = placeholder
        else:
            event["properties"]["long"] = placeholder
        return Case(
            f"integer too long to read ({field})", event, DEAD, {orjson.dumps(placeholder): digits.encode()}
        )

    def not_an_object(self) -> Case:
        self.n += 1
        value = self.rng.choice(("text", f"case-{self.n}", 42, -0.5, True, None, [], [1, {"id": "x"}], {}))
        return Case("record not an object", value, DEAD)

    def over_32kb(self) -> Case:
        event = self.fresh()
        rng = self.rng
        if rng.random() < 0.7:
            unit = rng.choice(("x", "\u00e9", "\U0001f600", "\u4e2d"))
            size = rng.randint(36_000, 100_000)
            event["properties"]["blob"] = unit * (size // len(unit.encode()))
            kind = "event over 32 KB (one huge string)"
        else:
            for k in range(rng.randint(3_500, 6_000)):
                event["properties"][f"f{k}"] = k
            kind = "event over 32 KB (thousands of fields)"
        assert len(orjson.dumps(event)) > 36_000
        return Case(kind, event, DEAD)

    # --- events that are counted, not sent

    def unknown_event_type(self) -> Case:
        event = self.fresh()
        rng = self.rng
        event["event_type"] = rng.choice(
            (
                f"users.messages.hologram.Send{rng.randrange(100)}",
                rng.choice(SUPPORTED) + "\u202e",
                "\U0001f600." + rng.choice(SUPPORTED),
                "x" * rng.randint(1, 3_000),
            )
        )
        return Case("unknown event type", event, UNSUPPORTED)

    def not_selected(self) -> Case:
        return Case("event type not selected", self.fresh(generator=self.additional), NOT_SELECTED)

    def anonymous(self) -> Case:
        event = self.fresh(anonymous=True)
        if self.rng.random() < 0.5:
            del event["user"]["external_user_id"]
        return Case("anonymous user", event, ANONYMOUS)

    def duplicate(self) -> Case:
        if not self.originals:
            return self.valid_event()
        original = self.rng.choice(self.originals)
        return Case("duplicate of a valid event", orjson.loads(orjson.dumps(original)), DUPLICATE)

    # --- events the rules leave open: only that they are accounted for is checked

    def nested_beyond_the_json_writer(self) -> Case:
        event = self.fresh()
        depth = self.rng.randint(300, 700)
        placeholder = f"@@nested-{self.n}@@"
        event["properties"]["deep"] = placeholder
        return Case("nested 300-700 deep", event, EITHER, {orjson.dumps(placeholder): nested(depth)})

    def odd_but_usable(self) -> Case:
        event = self.fresh()
        rng = self.rng
        how = rng.choice(
            (
                "properties not an object",
                "device_id",
                "timezone",
                "numeric ids",
                "time as text",
                "big numbers",
            )
        )
        if how == "properties not an object":
            event["properties"] = self.junk()
        elif how in ("device_id", "timezone"):
            event["user"][how] = self.junk()
        elif how == "numeric ids":
            event["user"]["external_user_id"] = rng.randint(1, 10**12)
        elif how == "time as text":
            event["time"] = str(event["time"])
        else:
            event["properties"]["big"] = rng.choice((2**64 - 1, -(2**63), 1e308, -0.0, 5e-324))
        return Case(f"odd but usable: {how}", event, EITHER)


KINDS: tuple[tuple[str, float], ...] = (
    ("valid_event", 14),
    ("unicode_everywhere", 5),
    ("nested_within_limits", 2),
    ("large_but_under_32kb", 1.5),
    ("wide_characters_near_32kb", 1.5),
    ("numbers_beyond_64_bits_or_a_double", 2),
    ("nulls_and_unknown_fields", 5),
    ("without_id", 6),
    ("id_of_wrong_type", 6),
    ("id_too_long", 4),
    ("bad_time", 8),
    ("nobody", 6),
    ("user_ids_of_wrong_type", 6),
    ("bad_event_type", 6),
    ("integer_too_long_to_read", 1),
    ("not_an_object", 6),
    ("over_32kb", 1.5),
    ("unknown_event_type", 5),
    ("not_selected", 4),
    ("anonymous", 5),
    ("duplicate", 4),
    ("nested_beyond_the_json_writer", 1),
    ("odd_but_usable", 6),
)


def generate_cases(rng: random.Random, count: int) -> list[Case]:
    maker = EventMaker(rng)
    names = [name for name, _ in KINDS]
    weights = [w for _, w in KINDS]
    return [getattr(maker, rng.choices(names, weights)[0])() for _ in range(count)]


def batch_body(cases: list[Case]) -> bytes:
    body = orjson.dumps({"events": [c.event for c in cases]})
    for case in cases:
        for placeholder, raw in case.splice.items():
            body = body.replace(placeholder, raw, 1)
    return body


def into_batches(rng: random.Random, cases: list[Case]) -> list[list[Case]]:
    batches: list[list[Case]] = []
    current: list[Case] = []
    size = 0
    target = rng.randint(1, 150)
    for case in cases:
        cost = len(orjson.dumps(case.event)) + sum(len(raw) for raw in case.splice.values())
        if current and (len(current) >= target or size + cost > BATCH_BYTES):
            batches.append(current)
            current, size, target = [], 0, rng.randint(1, 150)
        current.append(case)
        size += cost
    if current:
        batches.append(current)
    return batches


@dataclass
class Request:
    """One HTTP request and the statuses the rules allow for it."""

    kind: str
    body: bytes
    expect: frozenset[int]
    headers: dict[str, str] = field(default_factory=dict)
    cases: list[Case] = field(default_factory=list)  # the events, when the batch must be accepted
    chunked: bool = False
    refused_ids: list[str] = field(default_factory=list)  # events that must go nowhere


def _json_is_valid(body: bytes) -> bool:
    try:
        json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return True


class RequestMaker:
    """Requests whose body is broken as a whole, and well-formed batches sent in unusual ways. Each method
    makes one request; the events a refused request carries must go nowhere."""

    NOT_A_BATCH = frozenset({400})

    def __init__(self, rng: random.Random, events: EventMaker):
        self.rng = rng
        self.events = events
        self.refused = 0

    def _batch(self) -> tuple[bytes, list[str]]:
        events = []
        for _ in range(self.rng.randint(1, 4)):
            self.refused += 1
            event = self.events.valid.event(anonymous=False)
            event["id"] = f"refused-{self.refused:06d}"
            events.append(event)
        return orjson.dumps({"events": events}), [e["id"] for e in events]

    def _broken(self, kind: str, body: bytes, ids: list[str]) -> Request:
        return Request(kind, body, self.NOT_A_BATCH, refused_ids=ids)

    def _inside_a_string(self, body: bytes) -> int:
        starts = [
            i + 1 for i in range(1, len(body) - 1) if body[i : i + 1] == b'"' and body[i - 1 : i] == b":"
        ]
        return self.rng.choice(starts)

    # --- not JSON: 400

    def truncated(self) -> Request:
        body, ids = self._batch()
        return self._broken("truncated", body[: self.rng.randint(1, len(body) - 1)], ids)

    def stray_nul(self) -> Request:
        body, ids = self._batch()
        at = self.rng.randint(0, len(body))
        return self._broken("stray NUL byte", body[:at] + b"\x00" + body[at:], ids)

    def invalid_utf8(self) -> Request:
        body, ids = self._batch()
        at = self._inside_a_string(body)
        junk = self.rng.choice(
            (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xe2\x82")
        )
        return self._broken("invalid UTF-8 (overlong, surrogate, cut)", body[:at] + junk + body[at:], ids)

    def raw_control_character(self) -> Request:
        body, ids = self._batch()
        at = self._inside_a_string(body)
        return self._broken(
            "raw control character", body[:at] + bytes([self.rng.randint(0, 31)]) + body[at:], ids
        )

    def nan_or_infinity(self) -> Request:
        # Not JSON (RFC 8259 section 6), whatever Python's json module accepts.
        body, ids = self._batch()
        literal = self.rng.choice((b"NaN", b"Infinity", b"-Infinity"))
        return self._broken(
            "NaN or Infinity", body.replace(b'"time":', b'"time":' + literal + b',"t":', 1), ids
        )

    def trailing_garbage(self) -> Request:
        body, ids = self._batch()
        return self._broken(
            "trailing garbage", body + self.rng.choice((b"x", b"}", b",", b"{}", b"\x00")), ids
        )

    def random_bytes(self) -> Request:
        while True:
            junk = self.rng.randbytes(self.rng.randint(1, 2_000))
            if junk.strip() and not _json_is_valid(junk):
                return self._broken("random bytes", junk, [])

    def form_or_multipart(self) -> Request:
        body, ids = self._batch()
        if self.rng.random() < 0.5:
            form = b"events=%5B%5D&token=x"
            return Request(
                "form or multipart body",
                form,
                self.NOT_A_BATCH,
                {"Content-Type": "application/x-www-form-urlencoded"},
            )
        parts = b'--b\r\nContent-Disposition: form-data; name="events"\r\n\r\n' + body + b"\r\n--b--\r\n"
        headers = {"Content-Type": "multipart/form-data; boundary=b"}
        return Request("form or multipart body", parts, self.NOT_A_BATCH, headers, refused_ids=ids)

    # --- JSON, but not an object with an `events` list: 400

    def not_an_object(self) -> Request:
        body, ids = self._batch()
        value = self.rng.choice((b"[]", b"[" + body + b"]", b'"events"', b"42", b"null", b"true"))
        return self._broken("top level not an object", value, ids)

    def no_events_list(self) -> Request:
        value = self.rng.choice((b"{}", b'{"evnts": []}', b'{"Events": []}', b'{"events": null}'))
        return self._broken("no events list", value, [])

    def events_not_a_list(self) -> Request:
        body, ids = self._batch()
        value = self.rng.choice((b'{"a": 1}', b'"x"', b"5", b"true", body))
        return self._broken("events not a list", b'{"events": ' + value + b"}", ids)

    # --- an empty batch: 200

    def empty_body(self) -> Request:
        return Request("empty body", self.rng.choice((b"", b" ", b"\r\n\t ")), frozenset({200}))

    def empty_events(self) -> Request:
        return Request("empty events", b'{"events": []}', frozenset({200}))

    def byte_order_mark(self) -> Request:
        # RFC 8259 lets a parser ignore a byte order mark or refuse it.
        return Request("byte order mark", b"\xef\xbb\xbf" + b'{"events": []}', frozenset({200, 400}))

    # --- a good batch sent in an unusual way: 200, every event accounted for

    def wrong_content_type(self) -> Request:
        cases = [self.events.valid_event() for _ in range(self.rng.randint(1, 5))]
        ctype = self.rng.choice(
            ("text/plain", "application/xml", "image/png", "application/json; charset=latin-1")
        )
        return Request(
            "wrong content type", batch_body(cases), frozenset({200}), {"Content-Type": ctype}, cases
        )

    def gzip_batch(self) -> Request:
        cases = [self.events.valid_event() for _ in range(self.rng.randint(1, 5))]
        body = gzip.compress(batch_body(cases))
        return Request("gzip batch", body, frozenset({200}), {"Content-Encoding": "gzip"}, cases)

    # --- over the size limit: 413; without the right token: 401

    def oversize(self) -> Request:
        body, ids = self._batch()
        padded = orjson.dumps(
            {
                "events": orjson.loads(body)["events"],
                "padding": "p" * (MAX_BODY + self.rng.randint(1, 60_000)),
            }
        )
        chunked = self.rng.random() < 0.5
        kind = "over the size limit" + (", chunked" if chunked else "")
        return Request(kind, padded, frozenset({413}), chunked=chunked, refused_ids=ids)

    def wrong_or_no_token(self) -> Request:
        body, ids = self._batch()
        if self.rng.random() < 0.6:
            return Request(
                "wrong token",
                body,
                frozenset({401}),
                {"Authorization": f"Bearer {TOKEN[:-1]}X"},
                refused_ids=ids,
            )
        return Request("no token", body, frozenset({401}), {"Authorization": ""}, refused_ids=ids)

    def make(self) -> Request:
        names = [name for name, _ in REQUEST_KINDS]
        weights = [w for _, w in REQUEST_KINDS]
        return getattr(self, self.rng.choices(names, weights)[0])()


REQUEST_KINDS: tuple[tuple[str, float], ...] = (
    ("truncated", 10),
    ("stray_nul", 6),
    ("invalid_utf8", 8),
    ("raw_control_character", 6),
    ("nan_or_infinity", 4),
    ("trailing_garbage", 5),
    ("random_bytes", 6),
    ("form_or_multipart", 3),
    ("not_an_object", 5),
    ("no_events_list", 5),
    ("events_not_a_list", 5),
    ("empty_body", 2),
    ("empty_events", 2),
    ("byte_order_mark", 1),
    ("wrong_content_type", 6),
    ("gzip_batch", 3),
    ("oversize", 4),
    ("wrong_or_no_token", 5),
)


async def post(
    client: httpx.AsyncClient,
    engine: Engine,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    chunked: bool = False,
) -> httpx.Response:
    sent = {**HEADERS, "Authorization": f"Bearer {TOKEN}", **(headers or {})}
    if not sent["Authorization"]:
        del sent["Authorization"]
    content: bytes | AsyncIterator[bytes] = body
    if chunked:

        async def pieces() -> AsyncIterator[bytes]:
            for at in range(0, len(body), 16_384):
                yield body[at : at + 16_384]

        content = pieces()
    return await client.post(f"{engine.receiver_url}/currents/{WORKSPACE}", content=content, headers=sent)


def all_dead_letters(store: Store) -> list:
    letters, before = [], None
    while True:
        page = store.dead_letters(CONNECTOR, limit=1_000, before=before)
        if not page:
            return letters
        letters += page
        before = page[-1].id


def table(title: str, rows: dict[str, Counter]) -> str:
    columns = sorted({c for counts in rows.values() for c in counts})
    lines = [title, "  ".join(["kind".ljust(40), *(c.rjust(14) for c in columns)])]
    for kind in sorted(rows):
        lines.append("  ".join([kind.ljust(40), *(str(rows[kind].get(c, 0)).rjust(14) for c in columns)]))
    return "\n".join(lines)
