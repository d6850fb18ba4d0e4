"""One Braze Currents record -> one Segment `track` message, or the reason it is not sent.

Pure functions, no I/O, and neither function ever raises: a source hands every record it receives to
`normalise`, and `map_event` decides its fate for one connector. Per-event-type work is precomputed from the
catalog's tables at import time, so mapping an event costs a few microseconds.

Decisions this module makes (beyond the catalog's mapping tables):
- A type beyond Braze's Segment connector (catalog.EXTENDED) is forwarded when a connector selects it:
  selecting it is the user's opt-in. Its catalog rule (extended_mapping) reshapes the message. A type the
  catalog marks not forwardable is "not forwardable", selected or not, with the catalog's reason. Event
  types outside the catalog are always "unsupported".
- `device_id` is a property. Braze's Segment mapping lists no context field for it, and its rule is that
  every field without one stays in `properties`.
- `time` may be an int, a float (milliseconds kept) or text holding a number (hand-made test posts send
  that; the value is unambiguous). Booleans, NaN, infinities and values outside what a date can hold
  (milliseconds sent as seconds, typically) are rejected, and so are dates no Braze event can have: before
  2000-01-01 (year 1, the epoch: a default value, not a time), or more than a day ahead of this computer's
  clock.
- `id` must be text holding something other than whitespace: a blank messageId cannot tell two messages
  apart, so Segment could drop every event sharing it as a duplicate.
- A number JSON cannot carry exactly in a Segment message (an integer beyond 64 bits, a value beyond a
  double) is forwarded as its original digits in a string (`NumberText`), never rounded or made null.
- Null fields at the top level of the event are left out; values inside nested objects and lists are
  forwarded exactly as received.
- Field transforms apply to top-level fields by their Braze name (before renames), wherever they end up,
  including `user_id`, `external_user_id` and `device_id`. `id` and `time` are never transformed: Segment
  needs them intact to deduplicate and to date the event. A null stays null.
- Hashing takes text as its UTF-8 bytes and any other value as its JSON text.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from enum import StrEnum
from time import time as _clock

import orjson

from tui_currents import LIBRARY_NAME, __version__, catalog, extended_mapping
from tui_currents.segment import MAX_MESSAGE_BYTES, MAX_MESSAGE_ID_CHARS


@dataclass(slots=True)
class CurrentsEvent:
    """A Currents record in one shape, whichever shape (HTTP or flat Avro) it arrived in."""

    event_type: str  # canonical name ("" if missing or not text)
    # The fields below are as received (ids: a number as its text, "" as None); they should be text or None,
    # and map_event says what is wrong when they are not.
    id: object
    time: object
    user_id: object  # Braze id -> anonymousId
    external_user_id: object  # -> userId
    device_id: object
    timezone: object
    # Every other field, unknown ones kept. May be the record's own `properties` object: read it, never
    # change it.
    properties: dict[str, object]
    raw: object  # the record as received, for dead letters


@dataclass(frozen=True)
class ConnectorRules:
    """What one connector forwards, and how."""

    selected: frozenset[str]
    include_anonymous: bool = False
    name_overrides: Mapping[str, str] = field(default_factory=dict)  # event_type -> Segment event name
    field_transforms: Mapping[str, str] = field(default_factory=dict)  # field -> "redact" | "hash"


class Fate(StrEnum):
    """What happens to one event for one connector."""

    QUEUED = "queued"
    NOT_SELECTED = "not selected"
    ANONYMOUS = "anonymous"
    UNSUPPORTED = "unsupported"
    NOT_FORWARDABLE = "not forwardable"
    REJECTED = "rejected"


# Looking up an enum member (`Fate.QUEUED`) costs about 0.1 µs on Python 3.11: the hot path uses these.
_QUEUED, _NOT_SELECTED, _ANONYMOUS = Fate.QUEUED, Fate.NOT_SELECTED, Fate.ANONYMOUS
_UNSUPPORTED, _REJECTED = Fate.UNSUPPORTED, Fate.REJECTED


@dataclass(slots=True)
class Outcome:
    """The fate of one event for one connector, with the Segment message when it is queued."""

    fate: Fate
    event: CurrentsEvent
    segment_event: str | None = None
    message: dict | None = None  # the Segment track message (QUEUED only)
    encoded: bytes | None = None  # orjson bytes of message (QUEUED only), stored as-is
    reason: str | None = None  # human reason (REJECTED, and why filtered)
    # 0: the outcome of `event`. Otherwise a filtered fate counted in bulk: this many events of the batch
    # with `event`'s type had this fate for the connector (see sources/ingest.py). With a reason, the tail
    # shows one line for them all; without, they are only counted.
    tally: int = 0


REDACTED = "[REDACTED]"
TRANSFORM_KINDS = ("redact", "hash")
# Fields a field transform never touches (see the module docstring).
NEVER_TRANSFORMED = frozenset({"id", "time", "event_type"})


class NumberText(str):
    """A JSON number kept as its original text, because a 64-bit integer or a double would change it
    (`12345678901234567890123`, `1e400`). Written to Segment as a string; still "a number" in reasons."""

    __slots__ = ()


# The integers a JSON writer (and Segment's JSON) carries exactly, and the longest number read at all:
# Python's own limit for turning digits into an integer, which keeps hostile input from costing seconds.
INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1
NUMBER_DIGITS_LIMIT = 4_300

# ---------------------------------------------------------------------------------------------------------
# normalise


def _user_text(value: object) -> object:
    """Braze ids are text; a number is taken as its text, an empty string as absent. Anything else is
    kept as received so that map_event can say what is wrong with it."""
    if value is None or value == "":
        return None
    if type(value) is int:
        return str(value)
    return value


def normalise(record: object) -> CurrentsEvent:
    """Bring a Currents record into one shape. Accepts the HTTP shape (`user` and `properties` objects)
    and the flat Avro shape; unknown fields are kept as properties. Never raises: a record that is not an
    object gives an event with an empty `event_type`, which map_event rejects with the reason."""
    try:
        return _normalise(record)
    except Exception:  # a hostile record must never stop a source
        return CurrentsEvent("", None, None, None, None, None, None, {}, record)


# The usual HTTP record: the envelope and `user` hold only these fields, and `properties` none of
# _EVENT_FIELDS (the fields CurrentsEvent has an attribute for).
_ENVELOPE_FIELDS = frozenset({"event_type", "id", "time", "user", "properties"})
_USER_FIELDS = frozenset({"user_id", "external_user_id", "device_id", "timezone"})
_EVENT_FIELDS = frozenset({"event_type", "id", "time", *_USER_FIELDS})
# The canonical name of an aliased event type (catalog.canonical_name, without a call and a proxy lookup).
_ALIASES: dict[str, str] = dict(catalog.ALIASES)


def _normalise(record: object) -> CurrentsEvent:
    if not isinstance(record, dict):
        return CurrentsEvent("", None, None, None, None, None, None, {}, record)
    user = record.get("user")
    props = record.get("properties")
    user_is_object = isinstance(user, dict)
    props_is_object = isinstance(props, dict)
    if (
        type(record) is dict  # plain dicts, as JSON parsers make them
        and type(user) is dict
        and type(props) is dict
        and _ENVELOPE_FIELDS.issuperset(record)
        and _USER_FIELDS.issuperset(user)
        and _EVENT_FIELDS.isdisjoint(props)
    ):
        # The usual HTTP record: no name clash to settle, each field is read where it is, and `properties`
        # already holds exactly the other fields. Merging everything, then taking fields out (below) costs
        # more than the rest of normalise.
        event_type, event_id, time = record.get("event_type"), record.get("id"), record.get("time")
        user_id, external_user_id = user.get("user_id"), user.get("external_user_id")
        device_id, timezone = user.get("device_id"), user.get("timezone")
        fields = props
    else:
        fields = _all_fields(record, user if user_is_object else None, props if props_is_object else None)
        pop = fields.pop
        event_type, event_id, time = pop("event_type", None), pop("id", None), pop("time", None)
        user_id, external_user_id = pop("user_id", None), pop("external_user_id", None)
        device_id, timezone = pop("device_id", None), pop("timezone", None)
    return CurrentsEvent(
        _ALIASES.get(event_type, event_type) if isinstance(event_type, str) else "",
        event_id,
        time,
        _user_text(user_id),
        _user_text(external_user_id),
        _user_text(device_id),
        timezone,
        fields,
        record,
    )


def _all_fields(record: dict, user: dict | None, props: dict | None) -> dict[str, object]:
    """Every field of a record in one new dict: the flat Avro shape as it is, the HTTP shape merged (its
    `user` and `properties` objects, None when the record has none)."""
    if user is None and props is None:
        return dict(record)  # flat Avro shape
    # HTTP shape. On a name clash the envelope wins over `user`, which wins over `properties`.
    fields = dict(props) if props is not None else {}
    if user is not None:
        fields.update(user)
    for key, value in record.items():
        if (key == "user" and user is not None) or (key == "properties" and props is not None):
            continue
        fields[key] = value
    return fields


# ---------------------------------------------------------------------------------------------------------
# map_event: what to do with each event type's fields, worked out once from the catalog's tables


@dataclass(frozen=True, slots=True)
class _TypePlan:
    """The Segment name of one event type and its fields that do not stay properties under their own
    name. Kept short, so mapping checks a handful of names rather than routing every field. Applied in
    this order: dropped, renamed, traits, device."""

    segment_event: str
    dropped: tuple[str, ...]  # left out of the message
    renamed: tuple[tuple[str, str], ...]  # (field, new property name)
    traits: tuple[tuple[str, str], ...]  # (field, key in context.traits)
    device: tuple[tuple[str, str], ...]  # (field, key in context.device)
    # The type's own rule, applied last (extended_mapping); None for Braze's connector's mapping.
    rule: extended_mapping.RuleFunction | None = None


def _plan(entry: catalog.EventType) -> _TypePlan:
    event_type = entry.event_type
    dropped = sorted(catalog.OMITTED_FIELDS)
    renamed = {**catalog.COMMON_RENAMES, **catalog.TYPE_RENAMES.get(event_type, {})}
    traits = {catalog.EMAIL_TRAIT_FIELD: "email"}
    phone = catalog.PHONE_TRAIT_FIELD.get(event_type)
    if phone:
        traits[phone] = "phone"
    device = {}
    if event_type in catalog.DEVICE_MODEL_AND_TYPE or event_type in catalog.DEVICE_MODEL_ONLY:
        device["device_model"] = "model"
    if event_type in catalog.DEVICE_MODEL_AND_TYPE:
        device["platform"] = "type"
    named = [*dropped, *renamed, *traits, *device]
    if len(set(named)) != len(named):  # the tables would contradict each other
        raise ValueError(f"{event_type}: a field has more than one mapping rule")
    return _TypePlan(
        entry.segment_event,
        tuple(dropped),
        tuple(renamed.items()),
        tuple(traits.items()),
        tuple(device.items()),
        extended_mapping.RULES[entry.rule].apply if entry.rule in extended_mapping.RULES else None,
    )


_PLANS = {entry.event_type: _plan(entry) for entry in catalog.CATALOG if entry.forwardable}


def depends_on_rules(event_type: str) -> bool:
    """Whether a connector's rules decide the fate of events of this (canonical) type: false for types
    that are not forwarded at all, whose fate is the same for every connector."""
    return event_type in _PLANS


# Every message shares this one `context.library` object: it never changes, and nothing changes a message's
# nested objects once it is mapped (the store keeps `encoded`; readers decode their own copy).
_LIBRARY: dict[str, object] = {"name": LIBRARY_NAME, "version": __version__}
_EPOCH = datetime(1970, 1, 1)
# Events arrive in bursts sharing the same few seconds, and formatting a date costs more than the rest of
# the mapping: recently formatted timestamps are kept, keyed by milliseconds since the epoch.
_TIMESTAMPS: dict[int, str] = {}
_TIMESTAMPS_KEPT = 4096
# The dates a Braze event can have (see the module docstring), in milliseconds since the epoch.
EARLIEST_TIME_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
AHEAD_OF_CLOCK_MS = 86_400_000  # a day: more than any clock skew between Braze and this computer


class _Invalid(Exception):
    """An event that cannot become a valid Segment call; the message is the reason."""


def _kind(value: object) -> str:
    """How a person would call the type of a JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float, Decimal, NumberText)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _timestamp(value: object) -> str:
    """Currents `time` (UNIX seconds) as ISO-8601 UTC with milliseconds, e.g. 2016-10-26T17:26:23.000Z."""
    if type(value) is int:
        ms = value * 1000
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise _Invalid(f"`time` must be a number of UNIX seconds, not {_shown(value)}")
        ms = round(value * 1000)
    elif isinstance(value, str):
        digits = value.strip()
        try:
            ms = int(digits) * 1000
        except ValueError:
            try:
                seconds = float(digits)
            except ValueError:
                raise _Invalid(f"`time` must be a number of UNIX seconds, not {_shown(value)}") from None
            if not math.isfinite(seconds):
                raise _Invalid(f"`time` must be a number of UNIX seconds, not {_shown(value)}") from None
            ms = round(seconds * 1000)
    elif value is None:
        raise _Invalid("missing required field `time`")
    else:
        raise _Invalid(f"`time` must be a number of UNIX seconds, not {_kind(value)}")
    latest = int(_clock() * 1000) + AHEAD_OF_CLOCK_MS
    if not EARLIEST_TIME_MS <= ms <= latest:
        raise _Invalid(_implausible_time(value, ms, latest))
    text = _TIMESTAMPS.get(ms)
    if text is not None:
        return text
    text = (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds") + "Z"
    if len(_TIMESTAMPS) >= _TIMESTAMPS_KEPT:
        _TIMESTAMPS.clear()
    _TIMESTAMPS[ms] = text
    return text


def _implausible_time(value: object, ms: int, latest: int) -> str:
    """Why a `time` (as `ms` since the epoch) is not the date of a Braze event."""
    shown = _shown(value)
    if ms > latest and EARLIEST_TIME_MS <= ms // 1000 <= latest:
        return f"`time` {shown} is not a date in UNIX seconds (was it sent in milliseconds?)"
    try:
        when = (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="seconds") + "Z"
    except OverflowError:
        if ms < 0:
            return f"`time` {shown} is before year 1, not the date of a Braze event"
        return f"`time` {shown} is not a date in UNIX seconds (was it sent in milliseconds?)"
    if ms < EARLIEST_TIME_MS:
        return f"`time` {shown} is {when}, before 2000: not the date of a Braze event"
    return f"`time` {shown} is {when}, more than a day ahead of this computer's clock"


def _redact(value: object) -> object:
    return REDACTED


def _hash(value: object) -> object:
    data = value.encode("utf-8") if isinstance(value, str) else _converted_json(value)
    return hashlib.sha256(data).hexdigest()


_TRANSFORMS = {"redact": _redact, "hash": _hash}


def _json_default(value: object) -> object:
    """Values an Avro file can hold that JSON has no type for."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (date, time_of_day)):  # Avro date/time logical types; datetime is a date
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} has no JSON form")


# Plain JSON values (all that HTTP events hold) take the fast path; anything else is converted.
_PLAIN_JSON = orjson.OPT_PASSTHROUGH_DATETIME
_CONVERTED_JSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _converted_json(value: object) -> bytes:
    return orjson.dumps(value, default=_json_default, option=_CONVERTED_JSON)


def _encode_converted(message: dict) -> tuple[dict, bytes]:
    """The message and its JSON bytes when it holds values plain JSON has not (the plain case is encoded
    where the message is built). The message is rebuilt from the bytes so that both say the same."""
    encoded = _converted_json(_wide_integers_as_text(message))
    return orjson.loads(encoded), encoded


_WRITER_DEPTH = 255  # orjson writes no deeper; a deeper message is refused whatever its numbers


def _wide_integers_as_text(message: dict) -> dict:
    """A copy of the message with every integer beyond 64 bits (JSON writers refuse them) as its digits.
    Walked without recursion; containers are copied, the event's own values are never changed."""
    top = dict(message)
    stack: list[tuple[dict | list, int]] = [(top, 0)]
    while stack:
        node, depth = stack.pop()
        for key, value in list(node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(value, int) and not isinstance(value, bool):
                if not INT64_MIN <= value <= UINT64_MAX:
                    node[key] = _digits(value)
            elif depth < _WRITER_DEPTH and isinstance(value, (dict, list, tuple)):
                child = dict(value) if isinstance(value, dict) else list(value)
                node[key] = child
                stack.append((child, depth + 1))
    return top


def _digits(value: int) -> NumberText:
    try:
        return NumberText(value)
    except ValueError:  # beyond Python's limit for writing an integer's digits
        raise TypeError(f"an integer of more than {NUMBER_DIGITS_LIMIT:,} digits") from None


# A record the receiver could not parse at all carries this key with the reason (see sources/batch_body.py).
UNREADABLE = "_unreadable_event"


def _unusable_reason(event: CurrentsEvent) -> str:
    raw = getattr(event, "raw", None)
    if isinstance(raw, dict) and isinstance(raw.get(UNREADABLE), str):
        return f"the event could not be read: {raw[UNREADABLE]}"
    if raw is not None and not isinstance(raw, dict):
        return f"the record is not a JSON object (it is {_kind(raw)})"
    given = raw.get("event_type") if isinstance(raw, dict) else None
    if given is None or given == "":
        return "missing required field `event_type`"
    return f"`event_type` must be text, not {_kind(given)}"


def _rejected(event: CurrentsEvent, segment_event: str, reason: str) -> Outcome:
    return Outcome(_REJECTED, event, segment_event, reason=reason)


def map_event(event: CurrentsEvent, rules: ConnectorRules) -> Outcome:
    """Decide one event's fate for one connector and, when it is to be sent, build its Segment track
    message and the exact bytes to send. Never raises."""
    try:
        return _map_event(event, rules)
    except Exception as exc:  # a record that trips the mapper is dead-lettered, not fatal
        return Outcome(_REJECTED, event, reason=f"the event could not be mapped ({type(exc).__name__})")


def _map_event(event: CurrentsEvent, rules: ConnectorRules) -> Outcome:
    event_type = event.event_type
    if not event_type or not isinstance(event_type, str):
        return Outcome(_REJECTED, event, reason=_unusable_reason(event))
    plan = _PLANS.get(event_type)
    if plan is None:
        reason = catalog.not_forwardable_reason(event_type)
        if reason is not None:
            return Outcome(Fate.NOT_FORWARDABLE, event, reason=reason)
        return Outcome(
            _UNSUPPORTED, event, reason=f"`{event_type}` is not an event type forwarded to Segment"
        )
    override = rules.name_overrides.get(event_type)
    segment_event = override if override and isinstance(override, str) else plan.segment_event
    if event_type not in rules.selected:
        return Outcome(
            _NOT_SELECTED,
            event,
            segment_event,
            reason=f"`{event_type}` is not selected for this connector",
        )

    message_id = event.id
    if message_id is None or message_id == "":
        return _rejected(event, segment_event, "missing required field `id`")
    if not isinstance(message_id, str) or isinstance(message_id, NumberText):
        return _rejected(event, segment_event, f"`id` must be text, not {_kind(message_id)}")
    if message_id.isspace():
        return _rejected(
            event, segment_event, "`id` is blank (only whitespace), so it cannot tell messages apart"
        )
    if len(message_id) > MAX_MESSAGE_ID_CHARS:
        return _rejected(
            event,
            segment_event,
            f"`id` is {len(message_id)} characters long; Segment accepts at most {MAX_MESSAGE_ID_CHARS}",
        )
    try:
        timestamp = _timestamp(event.time)
    except _Invalid as invalid:
        return _rejected(event, segment_event, str(invalid))
    user_id = event.user_id
    external_user_id = event.external_user_id
    if user_id is not None and not isinstance(user_id, str):
        return _rejected(event, segment_event, f"`user_id` must be text, not {_kind(user_id)}")
    if external_user_id is not None and not isinstance(external_user_id, str):
        return _rejected(
            event, segment_event, f"`external_user_id` must be text, not {_kind(external_user_id)}"
        )
    if not user_id and not external_user_id:
        return _rejected(
            event,
            segment_event,
            "neither `user_id` nor `external_user_id` is set, so Segment cannot tell whose event it is",
        )
    if not external_user_id and not rules.include_anonymous:
        return Outcome(
            _ANONYMOUS,
            event,
            segment_event,
            reason="the user has no `external_user_id` and this connector leaves out anonymous users",
        )

    # The message's own copy of the fields: the event's may be the record's own object, and the event may be
    # mapped for other connectors too.
    properties = dict(event.properties)
    device_id = event.device_id
    transforms = rules.field_transforms
    if transforms:
        for name, kind in transforms.items():
            transform = _TRANSFORMS.get(kind)
            if transform is None:
                return _rejected(
                    event,
                    segment_event,
                    f"the connector's field transform for `{name}` is {kind!r}; use one of: "
                    + ", ".join(TRANSFORM_KINDS),
                )
            if name in NEVER_TRANSFORMED:
                continue
            if name == "user_id":
                user_id = transform(user_id) if user_id else user_id
            elif name == "external_user_id":
                external_user_id = transform(external_user_id) if external_user_id else external_user_id
            elif name == "device_id":
                device_id = transform(device_id) if device_id is not None else None
            elif properties.get(name) is not None:
                properties[name] = transform(properties[name])

    # Nulls are filtered out one by one only when there are any. Most events have no falsy field at all,
    # and `all()` (truthiness only) tells so more cheaply than looking for None.
    if not all(properties.values()) and None in properties.values():
        properties = {key: value for key, value in properties.items() if value is not None}
    if device_id is not None:
        properties["device_id"] = device_id
    for key in plan.dropped:
        if key in properties:
            del properties[key]
    for key, name in plan.renamed:
        if key in properties:
            value = properties.pop(key)
            # A rename never overwrites a field the event already has under the new name.
            properties[key if name in properties else name] = value
    context: extended_mapping.Context = {"library": _LIBRARY}
    for key, name in plan.traits:
        if key in properties:
            context.setdefault("traits", {})[name] = properties.pop(key)
    for key, name in plan.device:
        if key in properties:
            context.setdefault("device", {})[name] = properties.pop(key)
    if plan.rule is not None:
        try:
            named = plan.rule(properties, context)
        except extended_mapping.NotMappable as problem:
            return _rejected(event, segment_event, str(problem))
        if named is not None and not override:
            segment_event = named
    # Segment wants an absent id left out, not null.
    if external_user_id and user_id:
        message: dict[str, object] = {
            "type": "track", "event": segment_event, "messageId": message_id, "userId": external_user_id,
            "anonymousId": user_id, "timestamp": timestamp, "properties": properties, "context": context,
        }  # fmt: skip
    else:
        message = {"type": "track", "event": segment_event, "messageId": message_id}
        if external_user_id:
            message["userId"] = external_user_id
        if user_id:
            message["anonymousId"] = user_id
        message["timestamp"], message["properties"], message["context"] = timestamp, properties, context

    try:
        encoded = orjson.dumps(message, option=_PLAIN_JSON)  # plain JSON values: all HTTP events hold
    except orjson.JSONEncodeError:
        try:
            message, encoded = _encode_converted(message)
        except (orjson.JSONEncodeError, TypeError) as exc:
            return _rejected(
                event, segment_event, f"the event holds a value that cannot be written as JSON ({exc})"
            )
    size = len(encoded)  # segment.json_size of JSON bytes: their length
    if size > MAX_MESSAGE_BYTES:
        return _rejected(
            event,
            segment_event,
            f"the Segment message would be {size:,} bytes, over Segment's limit of "
            f"{MAX_MESSAGE_BYTES:,} bytes per message; a field transform can remove a large field",
        )
    return Outcome(_QUEUED, event, segment_event, message, encoded)
