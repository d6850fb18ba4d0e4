"""The outbox's unit of storage: a segment, the queued messages of one connector from one commit.

Storing a received batch as one row (its message bodies end to end, and a small index of ids, event types
and sizes) instead of a row per message is what makes the outbox cheap: a commit appends one row per
connector, and SQLite writes it in a few sequential pages instead of updating a b-tree per message.

A message is addressed by its segment's seq and its position in the segment, packed into one integer
(`address`), which is what leases, deliveries and retries name.

`KnownIds` is the duplicate check: the messageIds a connector has queued or recently delivered, held as
64-bit keys in memory by the one process that writes (see store.py for where they are rebuilt from).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import orjson

ITEM_BITS = 20  # positions per segment: an address is seq << ITEM_BITS | position
MAX_MESSAGES = 4_096  # per segment; a bigger commit is cut into several
MAX_BYTES = 4_000_000  # of bodies per segment (a lease reads a whole segment)


def address(seq: int, item: int) -> int:
    """One message's address: its segment's seq and its position there."""
    return seq << ITEM_BITS | item


def split_address(addr: int) -> tuple[int, int]:
    """(segment seq, position) of an address."""
    return addr >> ITEM_BITS, addr & ((1 << ITEM_BITS) - 1)


def by_segment(addresses: Iterable[int]) -> dict[int, list[int]]:
    """Addresses grouped by segment seq, positions in the order given."""
    out: dict[int, list[int]] = {}
    for addr in addresses:
        seq, item = split_address(addr)
        out.setdefault(seq, []).append(item)
    return out


class Entry(NamedTuple):
    """One message of a segment: its messageId, event type and size in bytes."""

    message_id: str
    event_type: str
    size: int


def pack_index(entries: Sequence[tuple[str, str, int]]) -> bytes:
    """The stored index of a segment: [[messageId, event type, size], ...] as JSON."""
    return orjson.dumps(entries)


def unpack_index(blob: bytes) -> list[Entry]:
    return list(map(Entry._make, orjson.loads(blob)))  # a named tuple: twice as quick as a dataclass


def offsets(entries: Sequence[Entry]) -> list[int]:
    """Where each message starts in the segment's bodies, and where the last one ends."""
    out = [0]
    at = 0
    for entry in entries:
        at += entry.size
        out.append(at)
    return out


def cut(items: list, sizes: list[int]) -> Iterator[tuple[int, int]]:
    """(start, end) ranges of `items` that each fit in one segment."""
    start = 0
    while start < len(items):
        end, total = start, 0
        while (
            end < len(items)
            and end - start < MAX_MESSAGES
            and (end == start or total + sizes[end] <= MAX_BYTES)
        ):
            total += sizes[end]
            end += 1
        yield start, end
        start = end


# ---------------------------------------------------------------------------------------- done marks


def marks_from(blob: bytes | None) -> int:
    """A segment's done marks (delivered or dead-lettered positions) as a bit set."""
    return int.from_bytes(blob, "little") if blob else 0


def marks_blob(marks: int) -> bytes:
    return marks.to_bytes((marks.bit_length() + 7) // 8 or 1, "little")


# --------------------------------------------------------------------------------------- known ids


def key_of(message_id: str) -> int:
    """The 64-bit key a messageId is remembered by (Python's keyed SipHash of the text).

    Two different ids share a key with a chance of about n / 2**64 for n remembered ids: below one in ten
    trillion per message for a million remembered, far under a disk's own undetected error rate. Keys are
    never stored, only rebuilt from the ids in each process, so the per-process hash key is no problem."""
    return hash(message_id)


class KnownIds:
    """The messageIds each connector has queued, or delivered within the duplicate window, as keys.

    About 60 bytes per id. `upto` is the last outbox seq reflected here, so a writer can catch up with
    segments another process committed."""

    def __init__(self) -> None:
        self._by_connector: dict[str, set[int]] = {}
        self.upto = 0

    def of(self, connector: str) -> set[int]:
        keys = self._by_connector.get(connector)
        if keys is None:
            keys = self._by_connector[connector] = set()
        return keys

    def add_index(self, connector: str, blob: bytes) -> None:
        """Remember every id of a stored segment index."""
        self.of(connector).update(hash(entry[0]) for entry in orjson.loads(blob))

    def forget(self, connector: str, message_ids: Iterable[str]) -> None:
        keys = self._by_connector.get(connector)
        if keys:
            for message_id in message_ids:
                keys.discard(hash(message_id))

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._by_connector.values())
