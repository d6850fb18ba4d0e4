"""Counters and backlog sizes shared by every instance, kept in a JetStream KV bucket.

Each instance counts what it did in memory and writes its whole tally under its own key (`n.<instance>`)
shortly after each change; a reader sums every instance's key (its own from memory). No two instances
ever write the same key, so no compare-and-set is needed and a busy instance never waits on another.

Not transactional with the queue: a tally is written after the publish or ack it counts, so an instance
that dies in between loses those few counts (never an event). Backlog sizes are sums of +queued and
-settled across instances; a commit retried after its first publish was stored but unacknowledged is
counted as a duplicate, so the backlog can read low, which `sizes` clamps at zero.
"""

from __future__ import annotations

from collections import defaultdict

import orjson

Key = tuple[str, str, str]  # (connector, event type, counter name)


class Tally:
    """One instance's counts, and the encoding of every instance's counts in the KV bucket."""

    def __init__(self) -> None:
        self.counts: dict[Key, int] = defaultdict(int)
        self.backlog: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # connector: [messages, bytes]
        self.dirty = False

    def bump(self, counts: dict[Key, int]) -> None:
        for key, n in counts.items():
            if n:
                self.counts[key] += n
                self.dirty = True

    def queue(self, connector: str, messages: int, size: int) -> None:
        """Messages joined (positive) or left (negative) the connector's queue."""
        entry = self.backlog[connector]
        entry[0] += messages
        entry[1] += size
        self.dirty = True

    def encode(self) -> bytes:
        return orjson.dumps(
            {"c": [[*key, n] for key, n in self.counts.items() if n], "b": dict(self.backlog)}
        )

    @classmethod
    def decode(cls, data: bytes) -> Tally:
        tally = cls()
        doc = orjson.loads(data)
        for connector, event_type, name, n in doc.get("c", []):
            tally.counts[(connector, event_type, name)] = n
        for connector, (messages, size) in doc.get("b", {}).items():
            tally.backlog[connector] = [messages, size]
        return tally


def summed(tallies: list[Tally], connector: str | None = None) -> dict[str, dict[str, dict[str, int]]]:
    """{connector: {event type: {counter name: n}}} over every instance's tally."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for tally in tallies:
        for (name_of_connector, event_type, name), n in tally.counts.items():
            if connector is not None and name_of_connector != connector:
                continue
            types = out.setdefault(name_of_connector, {})
            names = types.setdefault(event_type, {})
            names[name] = names.get(name, 0) + n
    return out


def sizes(tallies: list[Tally], connector: str) -> tuple[int, int]:
    """(messages, bytes) waiting for `connector`, summed over instances, never below zero."""
    messages = sum(t.backlog[connector][0] for t in tallies if connector in t.backlog)
    size = sum(t.backlog[connector][1] for t in tallies if connector in t.backlog)
    return max(0, messages), max(0, size)
