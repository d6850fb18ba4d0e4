"""How the queue's data is laid out in JetStream: subjects, batch messages, de-duplication ids, row numbers.

One JetStream message carries every queued event of one commit for one connector (a "batch message"):
a JSON index line, then the Segment message bodies end to end. Publishing and acking one message per
event would cap the queue at the broker's message rate; one per commit lets a message carry hundreds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

import orjson

# A row number packs the JetStream sequence of its batch message and its position in it.
POSITION_BITS = 20
MAX_EVENTS_PER_MESSAGE = 1 << POSITION_BITS


def token(connector: str) -> str:
    """The connector's name as one subject token and KV key part (hex of UTF-8: names may hold spaces,
    dots or wildcards, which subjects and keys do not allow)."""
    return connector.encode().hex()


def connector_of(subject_token: str) -> str:
    """The connector a `token` stands for."""
    return bytes.fromhex(subject_token).decode()


def row_seq(stream_seq: int, position: int) -> int:
    """The `OutboxRow.seq` of the event at `position` in the batch message at `stream_seq`."""
    return (stream_seq << POSITION_BITS) | position


def split_seq(seq: int) -> tuple[int, int]:
    """(stream sequence, position) of an `OutboxRow.seq`."""
    return seq >> POSITION_BITS, seq & (MAX_EVENTS_PER_MESSAGE - 1)


class BatchEntry(NamedTuple):
    message_id: str
    event_type: str
    size: int


class Batch(NamedTuple):
    """A decoded batch message: when it was queued, its entries and their bodies."""

    enqueued_at: float
    entries: list[BatchEntry]
    bodies: list[bytes]


def encode_batch(enqueued_at: float, entries: Sequence[tuple[str, str]], bodies: Sequence[bytes]) -> bytes:
    """A batch message: an index line ({"at", "m": [[messageId, event type, size], ...]}), then the bodies.
    orjson never writes a raw newline, so the first newline ends the index."""
    if len(entries) >= MAX_EVENTS_PER_MESSAGE:
        raise ValueError(f"a batch message holds at most {MAX_EVENTS_PER_MESSAGE - 1} events")
    index = [
        [message_id, event_type, len(body)]
        for (message_id, event_type), body in zip(entries, bodies, strict=True)
    ]
    return orjson.dumps({"at": enqueued_at, "m": index}) + b"\n" + b"".join(bodies)


def decode_batch(data: bytes) -> Batch:
    """The batch in a message written by `encode_batch`."""
    end = data.index(b"\n")
    index = orjson.loads(data[:end])
    entries = [BatchEntry(*entry) for entry in index["m"]]
    bodies = []
    offset = end + 1
    for entry in entries:
        bodies.append(data[offset : offset + entry.size])
        offset += entry.size
    return Batch(index["at"], entries, bodies)


def chunks(sizes: Sequence[int], room: int) -> list[tuple[int, int]]:
    """(start, end) ranges of consecutive items whose sizes add up to at most `room` bytes (an item larger
    than `room` alone in its range) and at most MAX_EVENTS_PER_MESSAGE - 1 items."""
    ranges = []
    start = total = 0
    for index, size in enumerate(sizes):
        if index > start and (total + size > room or index - start >= MAX_EVENTS_PER_MESSAGE - 1):
            ranges.append((start, index))
            start, total = index, 0
        total += size
    if start < len(sizes):
        ranges.append((start, len(sizes)))
    return ranges


def batch_id(connector: str, message_ids: Sequence[str], bodies: Sequence[bytes]) -> str:
    """The `Nats-Msg-Id` of a batch: a hash of its content without the time, so a commit retried with the
    same batch (after a publish whose ack was lost) is stored once."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(connector.encode() + b"\0")
    for message_id, body in zip(message_ids, bodies, strict=True):
        digest.update(message_id.encode() + b"\0")
        digest.update(len(body).to_bytes(8, "big"))
        digest.update(body)
    return digest.hexdigest()


def content_id(*parts: bytes | str) -> str:
    """A `Nats-Msg-Id` for other records (dead letters): a hash of what makes them the same record."""
    digest = hashlib.blake2b(digest_size=20)
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()
