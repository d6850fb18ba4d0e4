"""A large, fixed corpus of Currents records and connector rules, and what the mapping makes of each.

The golden record of the mapping (tests/fixtures/mapping_golden.jsonl.gz) is this corpus's `results()`
as one version of the mapping produced it; tests/test_mapping_golden.py checks that the mapping still
produces exactly the same bytes, fates and reasons. Regenerate it only for an intended change of output:
`.venv/bin/python -m tests.make_mapping_golden`.

The corpus: every fixture event (HTTP and flat shape), the rejection cases of tests/test_mapping.py,
demo-generator events with a fixed seed and clock (HTTP shape, and the flat shape read back from Avro
files as the import reads them), the extended types, bodies parsed the way the receiver parses them (big
integers, numbers beyond a double, lone surrogates), and odd inputs; each mapped under several connectors'
rules (anonymous users in or out, partial selections, name overrides, field transforms, a bad transform),
and routed as a whole through the routing table.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

import fastavro
import orjson

from tests.fixtures.currents_events import EVENTS
from tests.test_mapping import flat, with_changes
from tui_currents import catalog
from tui_currents.mapping import ConnectorRules, CurrentsEvent, NumberText, Outcome, map_event, normalise
from tui_currents.sources.avro_files import event_type_from_path
from tui_currents.sources.avro_schemas import write_export
from tui_currents.sources.batch_body import events_of
from tui_currents.sources.demo import DemoGenerator
from tui_currents.sources.ingest import route

DEMO_EVENTS = 1_500  # of each shape
EXTENDED_EVENTS = 600
START = 1_760_000_000  # the demo clock's first second (2025-10-09), long past: no "ahead of the clock" drift

EVERY_TYPE = frozenset(e.event_type for e in catalog.CATALOG)
SUPPORTED = sorted(catalog.supported_types())
EXTENDED = sorted(catalog.extended_types())

RULES: dict[str, ConnectorRules] = {
    "all": ConnectorRules(selected=EVERY_TYPE),
    "all+anonymous": ConnectorRules(selected=EVERY_TYPE, include_anonymous=True),
    "half": ConnectorRules(selected=frozenset(SUPPORTED[::2] + EXTENDED[::2]), include_anonymous=True),
    "renamed+transformed": ConnectorRules(
        selected=EVERY_TYPE,
        include_anonymous=True,
        name_overrides={
            "users.messages.email.Send": "Mail Went Out",
            "users.behaviors.CustomEvent": "Custom Thing",
            "users.behaviors.Purchase": "",
            SUPPORTED[3]: "Renamed Type",
        },
        field_transforms={
            "email_address": "hash",
            "user_id": "redact",
            "external_user_id": "hash",
            "device_id": "hash",
            "to_phone_number": "redact",
            "phone_number": "hash",
            "id": "redact",
            "time": "hash",
            "campaign_name": "redact",
            "custom_properties": "hash",
            "purchase_properties": "redact",
            "nested": "hash",
            "absent_field": "hash",
            "platform": "redact",
        },
    ),
    "bad transform": ConnectorRules(selected=EVERY_TYPE, field_transforms={"email_address": "rot13"}),
    # Overrides that are not text: not used as the name, yet a custom event's own name is not used either.
    "odd overrides": ConnectorRules(
        selected=EVERY_TYPE,
        include_anonymous=True,
        name_overrides={"users.behaviors.CustomEvent": 5, "users.messages.email.Send": ["x"]},  # type: ignore[dict-item]
    ),
}


class _Clock:
    """A demo clock that moves on a little with every event, so timestamps vary as in a real stream."""

    def __init__(self) -> None:
        self.now = float(START)

    def __call__(self) -> float:
        self.now += 0.37
        return self.now


def _demo(seed: int, n: int, **options: object) -> list[dict]:
    generator = DemoGenerator(seed=seed, clock=_Clock(), **options)  # type: ignore[arg-type]
    return [generator.event() for _ in range(n)]


def avro_records(records: list[dict]) -> list[dict]:
    """Flat records written to Braze-like Avro files and read back as the import reads them: fastavro's
    own values, with the event type taken from the file's path."""
    read: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mapping-corpus-") as folder:
        for path in write_export(Path(folder), records):
            event_type = event_type_from_path(path) or ""
            with path.open("rb") as handle:
                for record in fastavro.reader(handle):
                    assert isinstance(record, dict)
                    record["event_type"] = event_type
                    read.append(record)
    return read


_PARSED_BODIES = [
    b'{"events": [{"event_type": "users.messages.email.Send", "id": "big-1", "time": 1717171717,'
    b' "user": {"user_id": "u1", "external_user_id": "x1"},'
    b' "properties": {"wide": 123456789012345678901234567890, "neg": -98765432109876543210,'
    b' "edge": 18446744073709551615, "over": 18446744073709551616, "low": -9223372036854775808,'
    b' "huge": 1e400, "tiny": -1e400, "nested": {"list": [1, 123456789012345678901234567890, "x"]}}}]}',
    b'{"events": [{"event_type": "users.behaviors.CustomEvent", "id": "sur-1", "time": "1717171717",'
    b' "user": {"user_id": 12345678901234567890123, "external_user_id": "x\\ud800y"},'
    b' "properties": {"name": "Lone \\udc00 surrogate", "app_id": "a",'
    b' "custom_properties": {"k\\ud83d": "v", "n": 99999999999999999999999}}}]}',
    b'{"events": [{"event_type": "users.messages.sms.Delivery", "id": "12345678901234567890123",'
    b' "time": 1717171717, "user": {"external_user_id": "x"}, "properties": {}}]}',
    b'{"events": [{"event_type": "users.behaviors.Purchase", "id": "p-big", "time": 1717171717,'
    b' "user": {"external_user_id": "x"}, "properties": {"product_id": "p", "price": 1e400,'
    b' "quantity": 123456789012345678901234567890, "currency": "USD", "app_id": "a"}}]}',
]


def _odd_records() -> list[object]:
    """Inputs no generator makes: odd values and odd shapes."""
    base = EVENTS["users.messages.email.Send"]
    custom = EVENTS["users.behaviors.CustomEvent"]
    purchase = EVENTS["users.behaviors.Purchase"]

    def changed(source: dict, **properties: object) -> dict:
        record = copy.deepcopy(source)
        record["properties"].update(properties)
        return record

    records: list[object] = [
        changed(base, wide=2**70, negative_wide=-(2**70), edge=2**64 - 1, over=2**64, low=-(2**63)),
        changed(base, deep={"a": [2**65, {"b": -(2**80)}, 2**63]}, t=(1, 2**66)),
        changed(
            base, emoji="🚀 launch", cjk="日本語のテキスト", rtl="مرحبا", zero="a\u0000b", ctrl="\x1f\x7f"
        ),
        changed(base, **{"ключ": "значение", "": "empty key", "a.b": 1, " ": None}),
        changed(base, nan="NaN", inf="Infinity", neg_inf="-Infinity", null_text="null", num_text="1e400"),
        changed(base, nan_value=math.nan, inf_value=math.inf, neg_inf_value=-math.inf, neg_zero=-0.0),
        changed(base, big_float=1.7976931348623157e308, small=5e-324, third=1 / 3, exp=1e22),
        changed(base, nested={"a": {"b": {"c": [1, {"d": None}, [None, {}]]}}, "e": []}, empty={}),
        changed(base, falsy_zero=0, falsy_false=False, falsy_empty="", falsy_list=[], none=None),
        changed(base, email_address=None, campaign_name=None),
        changed(base, email_address=12345, campaign_name={"x": 1}),
        changed(base, deeply=_nested(300)),
        changed(base, fairly_deep=_nested(250)),
        changed(base, big_text="x" * 40_000),
        changed(base, near_limit="y" * 31_000),
        changed(
            base, avro_bytes=b"\x00\xffbytes", avro_decimal=Decimal("12.340"), avro_date=date(2024, 5, 1)
        ),
        changed(base, avro_time=time(12, 30, 5), avro_datetime=datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        changed(base, avro_set={3, 1, 2}, avro_frozen=frozenset({"b", "a"}), non_str_keys={1: "a", 2.5: "b"}),
        changed(base, bytearray_value=bytearray(b"abc"), memory=memoryview(b"mv")),
        changed(base, uncodable=object()),
        changed(custom, custom_properties='{"sku": "S", "app_id": "shadow", "name": "inner"}'),
        changed(custom, custom_properties="not json {"),
        changed(custom, custom_properties=b'{"from": "bytes"}', properties='{"ignored": 1}'),
        changed(custom, name="   "),
        changed(custom, name=None),
        changed(custom, name=7),
        changed(custom, braze_app_id="taken", custom_properties={"app_id": "c", "braze_app_id": "d"}),
        changed(purchase, price="9.99", quantity="3"),
        changed(purchase, price=9.99, quantity=3),
        changed(purchase, price=True, quantity=None),
        changed(purchase, price="abc", quantity=2.5),
        changed(purchase, price=Decimal("1.10"), quantity=Decimal("3")),
        changed(purchase, price=math.nan, quantity=1),
        changed(purchase, purchase_properties='{"gift": true}'),
    ]
    # Times, ids and users.
    for moment in (
        1717171717, 1717171717.4567, 1717171717.0005, "1717171717", " 1717171717 ", "1717171717.25",
        "1e9", "0x10", "", True, False, None, [1], {"t": 1}, math.inf, -math.inf, math.nan, "nan", "-inf",
        946684800, 946684799, 0, -1, 1717171717000, 1717171717000000, 10**30, -(10**30), 4102444800,
        Decimal("1717171717.5"), 1.7e308,
    ):  # fmt: skip
        records.append(with_changes(time=moment))
    for message_id in ("", " ", "\t\n", "x" * 100, "x" * 101, 12345, None, ["id"], "ok-id", "é" * 100):
        records.append(with_changes(id=message_id))
    for user in (
        {},
        {"user_id": "u"},
        {"external_user_id": "x"},
        {"user_id": "", "external_user_id": ""},
        {"user_id": 12345, "external_user_id": 67890},
        {"user_id": 1.5, "external_user_id": "x"},
        {"user_id": "u", "external_user_id": True},
        {"user_id": "u", "external_user_id": "x", "device_id": 7, "timezone": None},
        {"user_id": "u", "external_user_id": "x", "extra": "user field"},
        None,
        "user",
    ):
        records.append(with_changes(user=user))
    # Shapes: name clashes, missing parts, not objects, dict subclasses.
    clash = copy.deepcopy(base)
    clash["properties"].update({"id": "prop-id", "time": 1, "user_id": "prop-user", "event_type": "x"})
    clash["user"]["id"] = "user-id"
    clash["extra_top"] = "top"
    ordered = OrderedDict(copy.deepcopy(base))
    ordered["properties"] = OrderedDict(ordered["properties"])
    records += [
        clash,
        ordered,
        {k: v for k, v in base.items() if k != "properties"},
        {k: v for k, v in base.items() if k != "user"},
        {**base, "properties": None, "user": None},
        {**base, "properties": [1, 2]},
        {**base, "event_type": "users_campaigns_abort"},
        {**base, "event_type": "not.a.Type"},
        {**base, "event_type": catalog.CATALOG[-1].event_type},
        *[{**base, "event_type": e.event_type} for e in catalog.CATALOG if not e.forwardable],
        {**base, "event_type": 7},
        {**base, "event_type": None},
        None,
        17,
        "text",
        [base],
        {},
        {("tuple", "key"): 1},
    ]
    for body in _PARSED_BODIES:
        records += events_of(body)
    return records


def _direct_events() -> list[CurrentsEvent]:
    """Events as no normalise makes them (a source's own code might): empty and odd ids."""
    email = normalise(copy.deepcopy(EVENTS["users.messages.email.Send"]))
    events = []
    for changes in (
        {"external_user_id": ""},
        {"user_id": ""},
        {"user_id": "", "external_user_id": ""},
        {"external_user_id": "", "user_id": None},
        {"device_id": ""},
        {"device_id": 0},
        {"user_id": NumberText("123")},
        {"id": NumberText("123")},
        {"time": 1717171717.0},
        {"properties": {"device_id": "in properties", "timezone": None, "email_address": "a@b.c"}},
    ):
        events.append(dataclasses.replace(email, **changes))  # type: ignore[arg-type]
    return events


def _nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = {"n": value}
    return value


def records() -> list[tuple[str, object]]:
    """The corpus: (where the record comes from, the record)."""
    corpus: list[tuple[str, object]] = []
    for event_type, record in EVENTS.items():
        corpus.append((f"fixture {event_type}", copy.deepcopy(record)))
        corpus.append((f"fixture flat {event_type}", flat(record)))
    for case, record in enumerate(_odd_records()):
        corpus.append((f"odd {case}", record))
    for n, record in enumerate(_demo(14, DEMO_EVENTS)):
        corpus.append((f"demo {n}", record))
    for n, record in enumerate(avro_records(_demo(15, DEMO_EVENTS, flat=True))):
        corpus.append((f"avro {n}", record))
    extended = _demo(16, EXTENDED_EVENTS, event_types=EXTENDED, anonymous_share=0.3)
    for n, record in enumerate(extended):
        corpus.append((f"extended {n}", record))
    return corpus


def _outcome(outcome: Outcome, digest: bool = False) -> dict[str, object]:
    """An outcome as JSON-ready values, with the message's bytes unless `digest` (then only their
    length: the batch's digest covers them)."""
    result: dict[str, object] = {"fate": str(outcome.fate)}
    if outcome.segment_event is not None:
        result["event"] = outcome.segment_event
    if outcome.reason is not None:
        result["reason"] = outcome.reason
    if outcome.tally:
        result["tally"] = outcome.tally
    if outcome.encoded is not None:
        encoded = outcome.encoded
        result["bytes"] = len(encoded) if digest else encoded.decode("utf-8")
    if outcome.message is not None:
        # The message handed on says what its bytes say.
        result["message matches bytes"] = orjson.dumps(outcome.message) == outcome.encoded
    return result


def results() -> Iterator[dict[str, object]]:
    """What the mapping makes of the corpus, one JSON-ready line per record (and one per routed batch)."""
    corpus = records()
    for where, record in corpus:
        line: dict[str, object] = {"record": where}
        seen: dict[bytes, str] = {}
        for name, rules in RULES.items():
            # A fresh normalise per connector: the same path a source takes, and nothing shared.
            outcome = map_event(normalise(record), rules)
            result = _outcome(outcome)
            if outcome.encoded is not None:  # the same bytes as another connector's are named, not repeated
                if outcome.encoded in seen:
                    result["bytes"] = f"as {seen[outcome.encoded]}"
                else:
                    seen[outcome.encoded] = name
            line[name] = result
        yield line
    for number, event in enumerate(_direct_events()):
        yield {
            "record": f"direct {number}",
            **{name: _outcome(map_event(event, r)) for name, r in RULES.items()},
        }
    # The routing table over the same records: connectors with equal rules share one mapping, the others
    # count what they do not select in bulk.
    routes = (
        ("Everything", RULES["all+anonymous"]),
        ("Same rules", RULES["all+anonymous"]),
        ("Half", RULES["half"]),
        ("Renamed", RULES["renamed+transformed"]),
    )
    batch = [record for _, record in corpus]
    for start in range(0, len(batch), 500):
        items, summary = route("corpus", routes, batch[start : start + 500])
        every_message = hashlib.sha256(b"\n".join(outcome.encoded or b"" for _, outcome in items))
        yield {
            "route": start,
            "items": [[name, _outcome(outcome, digest=True)] for name, outcome in items],
            "messages sha256": every_message.hexdigest(),
            "by_fate": dict(sorted(summary.by_fate.items())),
        }
