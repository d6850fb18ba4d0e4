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

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate

import orjson

ITEM_BITS = 20  # positions per segment: an address is seq << ITEM_BITS | position
_ITEM_MASK = (1 << ITEM_BITS) - 1
MAX_MESSAGES = 4_096  # per segment; a bigger commit is cut into several
MAX_BYTES = 4_000_000  # of bodies per segment (a lease reads a whole segment)


def address(seq: int, item: int) -> int:
    """One message's address: its segment's seq and its position there."""
    return seq << ITEM_BITS | item


def split_address(addr: int) -> tuple[int, int]:
    """(segment seq, position) of an address."""
    return addr >> ITEM_BITS, addr & _ITEM_MASK


def by_segment(addresses: Sequence[int]) -> Mapping[int, Sequence[int]]:
    """Addresses grouped by segment seq, positions in the order given. What a lease hands out (ascending
    addresses, runs of consecutive ones) is grouped a segment at a time, each run as a range."""
    addresses = list(addresses)
    if addresses != sorted(addresses):
        groups: dict[int, list[int]] = {}
        for addr in addresses:
            groups.setdefault(addr >> ITEM_BITS, []).append(addr & _ITEM_MASK)
        return groups
    out: dict[int, Sequence[int]] = {}
    start = 0
    while start < len(addresses):
        first = addresses[start]
        seq = first >> ITEM_BITS
        end = bisect_left(addresses, (seq + 1) << ITEM_BITS, start)
        last = addresses[end - 1]
        if addresses[start:end] == list(range(first, last + 1)):
            out[seq] = range(first & _ITEM_MASK, (last & _ITEM_MASK) + 1)
        else:
            out[seq] = [addr & _ITEM_MASK for addr in addresses[start:end]]
        start = end
    return out


def pack_index(entries: Sequence[tuple[str, str, int]]) -> bytes:
    """The stored index of a segment: [[messageId, event type, size], ...] as JSON."""
    return orjson.dumps(entries)


def index_ids(blob: bytes) -> list[str]:
    """The messageIds of a stored segment index, in order."""
    return [entry[0] for entry in orjson.loads(blob)]


@dataclass(slots=True)
class Segment:
    """A waiting segment, parsed: its messages as columns (messageIds, event types, sizes), where each body
    starts in `bodies` (`offsets`, one more than there are messages) and the bodies end to end.

    Columns rather than an object per message: a lease or a delivery handles hundreds of messages of a
    segment at once, and slices of columns cost a fraction of building and reading objects."""

    seq: int
    connector: str
    enqueued_at: float
    ids: Sequence[str]
    types: Sequence[str]
    sizes: Sequence[int]
    offsets: list[int]
    bodies: bytes

    @classmethod
    def of(
        cls, seq: int, connector: str, enqueued_at: float, entries: Sequence[Sequence], bodies: bytes
    ) -> Segment:
        """A segment from its index entries ([messageId, event type, size] each) and its bodies."""
        ids, types, sizes = zip(*entries, strict=True) if entries else ((), (), ())
        return cls(seq, connector, enqueued_at, ids, types, sizes, [0, *accumulate(sizes)], bodies)

    @classmethod
    def parse(cls, seq: int, connector: str, enqueued_at: float, index: bytes, bodies: bytes) -> Segment:
        """A segment from its stored row: the JSON index and the bodies."""
        return cls.of(seq, connector, enqueued_at, orjson.loads(index), bodies)

    def __len__(self) -> int:
        return len(self.ids)

    def body(self, item: int) -> bytes:
        return self.bodies[self.offsets[item] : self.offsets[item + 1]]


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


def mark(marks: int, items: Sequence[int], count: int) -> tuple[int, Sequence[int]]:
    """Add these positions (those below `count`) to the marks: (new marks, the positions that were not
    marked yet, in the order given). A run of consecutive positions, what a lease hands out, is marked
    in one step; a bit at a time costs a new big integer per position."""
    if items and items[-1] < count and items[-1] - items[0] + 1 == len(items):
        run = range(items[0], items[-1] + 1)
        mask = ((1 << len(run)) - 1) << run.start
        if not marks & mask and list(run) == list(items):
            return marks | mask, run
    new = []
    for item in items:
        if item < count and not marks >> item & 1:
            marks |= 1 << item
            new.append(item)
    return marks, new


# --------------------------------------------------------------------------------------- known ids

_EMPTY, _GONE = 0, 1  # slot values of KeySet that are not keys
_MASK64 = (1 << 64) - 1


def key_of(message_id: str) -> int:
    """The 64-bit key a messageId is remembered by: Python's keyed SipHash of the text, made unsigned.

    Two different ids share a key with a chance of about n / 2**64 for n remembered ids: below one in ten
    trillion per message for a million remembered, far under a disk's own undetected error rate. Keys are
    never stored, only rebuilt from the ids in each process, so the per-process hash key is no problem."""
    key = hash(message_id) & _MASK64
    return key if key > _GONE else key + 2


class _PackedKeys:
    """A set of 64-bit keys in one flat array (open addressing, linear probing): 16 to 32 bytes per key
    where a Python set of ints takes about 60, which matters with a million messages queued."""

    def __init__(self, capacity: int = 1024):
        self._slots = array("Q", bytes(8 * capacity))
        self._mask = capacity - 1
        self._live = 0
        self._used = 0  # live keys and the marks of removed ones: what makes probes long

    def __len__(self) -> int:
        return self._live

    def __contains__(self, key: int) -> bool:
        slots, mask = self._slots, self._mask
        i = key & mask
        while True:
            value = slots[i]
            if value == key:
                return True
            if value == _EMPTY:
                return False
            i = (i + 1) & mask

    def add(self, key: int) -> None:
        if 2 * (self._used + 1) > len(self._slots):
            self._resize()
        slots, mask = self._slots, self._mask
        i = key & mask
        free = -1
        while True:
            value = slots[i]
            if value == key:
                return
            if value == _EMPTY:
                break
            if value == _GONE and free < 0:
                free = i
            i = (i + 1) & mask
        if free < 0:
            free = i
            self._used += 1
        slots[free] = key
        self._live += 1

    def update(self, keys: Iterable[int]) -> None:
        for key in keys:
            self.add(key)

    def discard(self, key: int) -> None:
        slots, mask = self._slots, self._mask
        i = key & mask
        while True:
            value = slots[i]
            if value == key:
                slots[i] = _GONE
                self._live -= 1
                return
            if value == _EMPTY:
                return
            i = (i + 1) & mask

    def keys(self) -> Iterator[int]:
        return (value for value in self._slots if value > _GONE)

    def _resize(self) -> None:
        """Rebuild at twice to four times the live keys (growing, or shedding the marks of removed keys)."""
        capacity = _capacity_for(self._live)
        old = self._slots
        self._slots = array("Q", bytes(8 * capacity))
        self._mask = capacity - 1
        self._live = self._used = 0
        for value in old:
            if value > _GONE:
                self.add(value)


class KeySet:
    """A set of 64-bit keys: a Python set while it holds at most `small` keys (every operation then runs
    in C, about a microsecond less per queued message), a packed array (about a quarter of the memory)
    beyond that, such as with a million messages waiting; back to a set once it has shrunk well below."""

    SMALL = 300_000

    def __init__(self, small: int = SMALL):
        self.small = small
        self._set: set[int] | None = set()
        self._packed: _PackedKeys | None = None

    # Exactly one of _set and _packed holds the keys; the other is None. Each packed path says so to the
    # type checker with an assert (one comparison, on the path that is already the slower one).

    def __len__(self) -> int:
        if self._set is not None:
            return len(self._set)
        assert self._packed is not None
        return len(self._packed)

    def __contains__(self, key: int) -> bool:
        if self._set is not None:
            return key in self._set
        assert self._packed is not None
        return key in self._packed

    def among(self, keys: Iterable[int]) -> set[int]:
        """The keys of `keys` that are in this set."""
        if self._set is not None:
            return self._set.intersection(keys)
        packed = self._packed
        assert packed is not None
        return {key for key in keys if key in packed}

    def add(self, key: int) -> None:
        self.update((key,))

    def update(self, keys: Iterable[int]) -> None:
        if self._set is None:
            assert self._packed is not None
            self._packed.update(keys)
            return
        self._set.update(keys)
        if len(self._set) > self.small:
            packed = _PackedKeys(_capacity_for(len(self._set)))
            packed.update(self._set)
            self._set, self._packed = None, packed

    def discard(self, key: int) -> None:
        if self._set is not None:
            self._set.discard(key)
            return
        packed = self._packed
        assert packed is not None
        packed.discard(key)
        if len(packed) < self.small // 4:
            self._set, self._packed = set(packed.keys()), None

    @property
    def packed(self) -> bool:
        """Whether the keys are held in the packed array."""
        return self._packed is not None


def _capacity_for(keys: int) -> int:
    """Slots for a packed array holding `keys`: a power of two, two to four times as many."""
    capacity = 1024
    while capacity < 4 * (keys + 1):
        capacity *= 2
    return capacity


class KnownIds:
    """The messageIds each connector has queued, or delivered within the duplicate window, as keys.

    `upto` is the last outbox seq reflected here, and `forgotten_upto` the last row of the store's log of
    ids leaving the window (store/forgotten_log.py), so a writer can catch up with what other processes
    committed, dead-lettered or dropped."""

    def __init__(self) -> None:
        self._by_connector: dict[str, KeySet] = {}
        self.upto = 0
        self.forgotten_upto = 0

    def of(self, connector: str) -> KeySet:
        keys = self._by_connector.get(connector)
        if keys is None:
            keys = self._by_connector[connector] = KeySet()
        return keys

    def add_index(self, connector: str, blob: bytes) -> None:
        """Remember every id of a stored segment index."""
        self.of(connector).update(map(key_of, index_ids(blob)))

    def remember(self, keys: Mapping[str, Iterable[int]], upto: int) -> None:
        """Add keys per connector, and note that the outbox up to seq `upto` is reflected here."""
        for connector, new in keys.items():
            self.of(connector).update(new)
        self.upto = max(self.upto, upto)

    def forget(self, connector: str, message_ids: Iterable[str]) -> None:
        keys = self._by_connector.get(connector)
        if keys:
            for message_id in message_ids:
                keys.discard(key_of(message_id))

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._by_connector.values())
