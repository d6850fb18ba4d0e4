"""Reading a Braze Currents request body: `{"events": [...]}`, tolerant of one odd event.

Braze drops for good an event it gets a 400 for twice, so a batch is refused (400) only when the body as a
whole is not a batch. Valid JSON that the fast parser declines (a lone surrogate escape, a number beyond a
double, nesting deeper than it allows) is read again by the standard library; and where even that fails
for one element, the `events` array is split element by element without recursion, so the other events
still go through and the unreadable one becomes a dead letter with its reason.

Numbers keep their value: an integer beyond 64 bits or a number beyond a double (`1e400`) is kept as its
original text (`mapping.NumberText`), and forwarded as a string; other decimals are rounded to the nearest
double, as every JSON reader does. An integer of more than 4,300 digits is not read at all: its event
becomes a dead letter naming the field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

import orjson

from tui_currents.mapping import (  # UNREADABLE marks a placeholder for an element no parser could read
    INT64_MIN,
    NUMBER_DIGITS_LIMIT,
    UINT64_MAX,
    UNREADABLE,
    NumberText,
)

EXCERPT_BYTES = 2_000


class NotABatch(ValueError):
    """The body is not a Currents batch; the message says why (sent back with the 400)."""


class _NotJson(ValueError):
    """Text the standard library reads that JSON does not allow (NaN, Infinity)."""


def _refuse_constant(name: str) -> object:
    raise _NotJson(f"{name} is not valid JSON")


# --- numbers

# The fast parser turns, without a word, an integer beyond 64 bits into a double (a number beyond a double
# it refuses, and a decimal it rounds to the nearest double, as every JSON reader does). Such an integer is
# 19 digits or more followed by the end of the number. Looking for that costs about 1 ns per byte (digits
# made alike, and the characters that can end a number too, so that one search finds any of them); a text
# that has one is read by the standard library, which hands every number's text to _Numbers.
_ALIKE = bytes.maketrans(b"123456789}] \t\r\n", b"000000000,,,,,,")
_LONG_INTEGER = b"0" * 19 + b","
_LONG_RUN = _LONG_INTEGER[:-1]
_INTEGER_CHARACTERS = frozenset(b"0123456789-")
_BEFORE_A_VALUE = frozenset(b":,[")
_WHITESPACE = frozenset(b" \t\r\n")


_SCAN_CHUNK = 65_536  # scanned a piece at a time: the copy it needs stays small, whatever the body's size


def _may_hold_wide_integers(text: bytes) -> bool:
    """Whether the JSON text may hold an integer beyond 64 bits (never wrong when False)."""
    overlap = len(_LONG_INTEGER) - 1  # so that a long integer across two pieces is found in the first
    for start in range(0, len(text), _SCAN_CHUNK):
        alike = text[start : start + _SCAN_CHUNK + overlap].translate(_ALIKE)
        at = alike.find(_LONG_INTEGER)
        while at != -1:
            if _starts_a_value(text, start + at):
                return True
            at = alike.find(_LONG_INTEGER, at + len(_LONG_INTEGER))
    # An integer that ends the text (an element read on its own) has nothing after it.
    return text[-len(_LONG_RUN) :].translate(_ALIKE) == _LONG_RUN and _starts_a_value(text, len(text) - 1)


def _starts_a_value(text: bytes, at: int) -> bool:
    """Whether the digits through `at` are a JSON number rather than part of a string: walking back over
    digits, a minus sign and whitespace reaches `:`, `,`, `[` or the start of the text."""
    while at >= 0 and text[at] in _INTEGER_CHARACTERS:
        at -= 1
    while at >= 0 and text[at] in _WHITESPACE:
        at -= 1
    return at < 0 or text[at] in _BEFORE_A_VALUE


class _TooLong(NumberText):
    """Stands for an integer of more than NUMBER_DIGITS_LIMIT digits; its text says so."""

    __slots__ = ()


class _Numbers:
    """The standard library's number hooks for one parse: each number as an int or a float when that keeps
    its value, else as its text."""

    def __init__(self) -> None:
        self.too_long = False

    def integer(self, text: str) -> int | str:
        if len(text) < 19:
            return int(text)
        digits = len(text) - text.startswith("-")
        if digits > NUMBER_DIGITS_LIMIT:
            self.too_long = True
            return _TooLong(f"<an integer of {digits:,} digits>")
        value = int(text)
        return value if INT64_MIN <= value <= UINT64_MAX else NumberText(text)

    def real(self, text: str) -> float | str:
        value = float(text)  # (reading a decimal costs time in proportion to its length, unlike an integer)
        # Beyond a double: its text. Anything else is rounded to the nearest double, as orjson does.
        return NumberText(text) if math.isinf(value) else value


def _too_long_reason(element: object) -> str | None:
    """Why an event holding an integer too long to read is a dead letter, naming the field; None if it
    holds none. Walked without recursion."""
    stack: list[tuple[str, object]] = [("", element)]
    found: list[tuple[str, str]] = []
    while stack:
        path, node = stack.pop()
        if isinstance(node, _TooLong):
            found.append((path, node))
        elif isinstance(node, dict):
            stack.extend((f"{path}.{key}" if path else str(key), value) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", value) for i, value in enumerate(node))
    if not found:
        return None
    path, text = min(found)
    where = f"`{path}` is" if path else "the event is"
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return f"{where} {text[1:-1]}{more}; integers of more than {NUMBER_DIGITS_LIMIT:,} digits are not read"


def _placeholder(reason: str, excerpt: str, element: object = None) -> dict[str, object]:
    """What stands for an unreadable event: its reason, an excerpt, and its `id` when it could be read."""
    placeholder: dict[str, object] = {UNREADABLE: reason, "excerpt": excerpt}
    if isinstance(element, dict) and isinstance(element.get("id"), str):
        placeholder["id"] = element["id"]
    return placeholder


def _without_too_long_numbers(events: list[object]) -> list[object]:
    """The events, each one holding an integer too long to read replaced by its placeholder."""
    kept = []
    for element in events:
        reason = _too_long_reason(element)
        if reason is None:
            kept.append(element)
        else:
            try:
                excerpt = orjson.dumps(element)[:EXCERPT_BYTES].decode("utf-8", "replace")
            except orjson.JSONEncodeError:  # nested deeper than the writer goes
                excerpt = ""
            kept.append(_placeholder(reason, excerpt, element))
    return kept


# --- parsing


def _loads(text: bytes) -> tuple[object, bool]:
    """Parse JSON: fast, else the standard library (which takes lone surrogates and keeps every number's
    value). Also says whether a number was too long to read (see _Numbers)."""
    if not _may_hold_wide_integers(text):
        try:
            return orjson.loads(text), False
        except orjson.JSONDecodeError:
            pass
    # JSON text is UTF-8: invalid bytes make the body unreadable (UnicodeDecodeError), as orjson says.
    numbers = _Numbers()
    document = json.loads(
        text.decode("utf-8"),
        parse_int=numbers.integer,
        parse_float=numbers.real,
        parse_constant=_refuse_constant,
    )
    return _without_lone_surrogates(document), numbers.too_long


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str) -> str:
    # A lone surrogate cannot be stored or sent as UTF-8: it becomes U+FFFD, as a lenient decoder would.
    if _LONE_SURROGATE.search(value) is None:
        return value  # unchanged, and still a NumberText when it is one
    return _LONE_SURROGATE.sub("\ufffd", value)


def _without_lone_surrogates(document: object) -> object:
    """The same document with every string made valid UTF-8 (walked without recursion)."""
    if isinstance(document, str):
        return _text(document)
    stack = [document]
    items: Iterable[tuple[Any, object]]  # (key or index, value) of an object or a list
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in list(node):
                value = node.pop(key)
                node[_text(key) if isinstance(key, str) else key] = value
            items = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        for key, value in list(items):
            if isinstance(value, str):
                node[key] = _text(value)
            elif isinstance(value, (dict, list)):
                stack.append(value)
    return document


def events_of(body: bytes) -> list[object]:
    """The `events` list of a request body; an empty body is an empty batch. Raises NotABatch."""
    if not body.strip():
        return []
    try:
        document, too_long = _loads(body)
    except (json.JSONDecodeError, _NotJson, UnicodeDecodeError) as exc:
        raise NotABatch(f"the body is not valid JSON ({exc})") from None
    except (RecursionError, ValueError):
        # Valid JSON the parser cannot take as a whole: read each event on its own.
        return _split_events(body)
    if not isinstance(document, dict):
        raise NotABatch('the body must be a JSON object like {"events": [...]}')
    events = document.get("events")
    if events is None:
        raise NotABatch('the body has no "events" list')
    if not isinstance(events, list):
        raise NotABatch('"events" must be a list')
    return _without_too_long_numbers(events) if too_long else events


def _element(text: bytes) -> object:
    try:
        element, too_long = _loads(text)
    except (RecursionError, ValueError, UnicodeDecodeError) as exc:
        reason = "nested too deeply to read" if isinstance(exc, RecursionError) else f"not valid JSON ({exc})"
        return _placeholder(reason, text[:EXCERPT_BYTES].decode("utf-8", "replace"))
    return _without_too_long_numbers([element])[0] if too_long else element


def _split_events(body: bytes) -> list[object]:
    """Find the top-level `events` array by scanning (no recursion) and read each element on its own."""
    depth = 0
    i, n = 0, len(body)
    key: bytes | None = None
    in_events = False
    start = 0
    elements: list[bytes] = []
    found = False
    while i < n:
        c = body[i]
        if c == 0x22:  # a string: skip to its closing quote
            j = i + 1
            while j < n:
                if body[j] == 0x5C:
                    j += 2
                    continue
                if body[j] == 0x22:
                    break
                j += 1
            if depth == 1 and not in_events:
                key = body[i + 1 : j]
            i = j + 1
            continue
        if c in b"[{":
            if depth == 1 and c == 0x5B and key == b"events" and not found:
                in_events, found, start = True, True, i + 1
            depth += 1
        elif c in b"]}":
            depth -= 1
            if in_events and depth == 1:
                if body[start:i].strip():
                    elements.append(body[start:i])
                in_events = False
        elif c == 0x2C and in_events and depth == 2:
            elements.append(body[start:i])
            start = i + 1
        i += 1
    if depth != 0 or not found:
        raise NotABatch('the body is not a JSON object with an "events" list')
    return [_element(element.strip()) for element in elements]
