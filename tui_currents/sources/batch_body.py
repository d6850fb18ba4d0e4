"""Reading a Braze Currents request body: `{"events": [...]}`, tolerant of one odd event.

Braze drops for good an event it gets a 400 for twice, so a batch is refused (400) only when the body as a
whole is not a batch. Valid JSON that the fast parser declines (a lone surrogate escape, a number beyond a
double, nesting deeper than it allows) is read again by the standard library; and where even that fails
for one element, the `events` array is split element by element without recursion, so the other events
still go through and the unreadable one becomes a dead letter with its reason.
"""

from __future__ import annotations

import json
import re

import orjson

from tui_currents.mapping import UNREADABLE  # marks a placeholder for an element no parser could read

EXCERPT_BYTES = 2_000


class NotABatch(ValueError):
    """The body is not a Currents batch; the message says why (sent back with the 400)."""


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: bytes) -> object:
    """Parse JSON: fast, else the standard library (which takes lone surrogates and huge numbers)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # JSON text is UTF-8: invalid bytes make the body unreadable (UnicodeDecodeError), as orjson says.
        return _without_lone_surrogates(json.loads(text.decode("utf-8"), parse_constant=_refuse_constant))


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str) -> str:
    # A lone surrogate cannot be stored or sent as UTF-8: it becomes U+FFFD, as a lenient decoder would.
    return _LONE_SURROGATE.sub("\ufffd", value)


def _without_lone_surrogates(document: object) -> object:
    """The same document with every string made valid UTF-8 (walked without recursion)."""
    if isinstance(document, str):
        return _text(document)
    stack = [document]
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
        document = _loads(body)
    except RecursionError:
        return _split_events(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotABatch(f"the body is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise NotABatch('the body must be a JSON object like {"events": [...]}')
    events = document.get("events")
    if events is None:
        raise NotABatch('the body has no "events" list')
    if not isinstance(events, list):
        raise NotABatch('"events" must be a list')
    return events


def _element(text: bytes) -> object:
    try:
        return _loads(text)
    except (RecursionError, ValueError, UnicodeDecodeError) as exc:
        reason = "nested too deeply to read" if isinstance(exc, RecursionError) else f"not valid JSON ({exc})"
        return {UNREADABLE: reason, "excerpt": text[:EXCERPT_BYTES].decode("utf-8", "replace")}


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
