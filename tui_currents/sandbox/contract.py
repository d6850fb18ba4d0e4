"""Segment's contract, message by message: what Segment would silently drop, and how a write key and a
sentAt are read. Pure: the server (`server.py`) records what these find and answers as Segment does."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from tui_currents.segment import MAX_BATCH_BYTES, MAX_MESSAGE_ID_CHARS, MAX_REQUEST_BYTES

# Segment's own request limit. Clients keep a margin below it (segment.MAX_BATCH_BYTES); the sandbox
# enforces the real limit so a client that keeps its margin never meets it. Sizes are measured as Segment
# does and as our client does (segment.json_size: UTF-8 bytes of the JSON text).
SEGMENT_MAX_REQUEST_BYTES = MAX_REQUEST_BYTES
assert MAX_BATCH_BYTES < SEGMENT_MAX_REQUEST_BYTES


MESSAGE_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})


class ViolationKind(StrEnum):
    """The ways a client can break Segment's contract; each is recorded, whatever the answer was."""

    BAD_GZIP = "bad gzip"
    BODY_TOO_LARGE = "body too large"
    INVALID_JSON = "invalid json"
    NOT_A_BATCH = "not a batch"
    MISSING_WRITE_KEY = "missing write key"
    UNKNOWN_WRITE_KEY = "unknown write key"
    WRITE_KEY_MISMATCH = "write key mismatch"
    CONTENT_TYPE = "content type"
    MISSING_SENT_AT = "missing sentAt"
    INVALID_SENT_AT = "invalid sentAt"
    TOO_MANY_MESSAGES = "too many messages"
    MESSAGE_TOO_LARGE = "message too large"
    NOT_A_MESSAGE = "not a message"
    MISSING_TYPE = "missing type"
    UNKNOWN_TYPE = "unknown type"
    MISSING_EVENT = "missing event"
    MISSING_USER = "missing userId and anonymousId"
    MISSING_MESSAGE_ID = "missing messageId"
    MESSAGE_ID_TOO_LONG = "messageId too long"


@dataclass(frozen=True, slots=True)
class Violation:
    """One breach of the contract: what, why, which message (if one), and what the sandbox answered."""

    at: float
    kind: ViolationKind
    reason: str
    status: int
    message_id: str | None = None


def parse_basic_user(header: str | None) -> str | None:
    """The user name of an HTTP Basic Authorization header (Segment's write key), or None."""
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, _password = decoded.partition(":")
    return user or None


def present(value: object) -> bool:
    """Given and not empty, as Segment reads a field."""
    return value is not None and value != ""


SILENT_DROP = ": answered 200 and dropped, as Segment does"


def message_problem(message: dict[str, Any]) -> tuple[ViolationKind, str] | None:
    """Why Segment would silently drop this message, or None if it would keep it."""
    kind = message.get("type")
    mid = message.get("messageId")
    if not kind:
        return ViolationKind.MISSING_TYPE, "message has no type"
    if kind not in MESSAGE_TYPES:
        return ViolationKind.UNKNOWN_TYPE, f"message type {str(kind)[:40]!r} is not a Segment type"
    if kind == "track" and not present(message.get("event")):
        return ViolationKind.MISSING_EVENT, "track message has no event"
    if not (present(message.get("userId")) or present(message.get("anonymousId"))):
        return ViolationKind.MISSING_USER, "message has neither userId nor anonymousId"
    if not isinstance(mid, str) or not mid:
        return ViolationKind.MISSING_MESSAGE_ID, "message has no messageId (a retry could duplicate it)"
    if len(mid) > MAX_MESSAGE_ID_CHARS:
        return (
            ViolationKind.MESSAGE_ID_TOO_LONG,
            f"messageId of {len(mid)} characters is over Segment's {MAX_MESSAGE_ID_CHARS}",
        )
    return None


def is_iso8601(value: str) -> bool:
    """Whether `value` reads as an ISO-8601 time (sentAt)."""
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return False
    return True
