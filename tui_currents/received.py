"""A batch of mapped events in the form the store writes it, worked out without the store.

`Store.commit` takes this form. Building it is pure work on the mapped events (no I/O, no store state), so
a mapping worker process can build it next to the mapping and hand the store only flat lists and bytes,
which cross a process boundary cheaply, instead of the events and their Segment messages as objects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from tui_currents.mapping import Outcome

# Positions in a tail entry (a list, so that the store can mark a duplicate in place).
TYPE, SEGMENT_EVENT, USER, FATE, REASON, MESSAGE_ID, SIZE = range(7)


@dataclass(slots=True)
class Received:
    """What the store keeps of a batch of (connector, outcome) items.

    - `tails`: per connector, one tail entry per item ([event type, Segment event, user, fate, reason,
      messageId or event id, message size]; one for the lot, or none, for an item counting filtered
      events in bulk: see `Outcome.tally`) and the message bodies of its queued entries, in order;
    - `dead`: (connector, event id, event type, reason, the record as JSON) of each rejected event;
    - `fates`: events per (connector, event type, mapping fate);
    - `filtered`: the filtered events a tail line stands for, many at a time.
    """

    items: int = 0
    tails: dict[str, tuple[list[list], list[bytes]]] = field(default_factory=dict)
    dead: list[tuple[str, str | None, str, str, bytes]] = field(default_factory=list)
    fates: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # (connector, event type, fate) -> [Segment event, reason, events] of filtered events counted in bulk
    # and shown as one tail line for the batch: the last lines of the connector's entries, in this order.
    filtered: dict[tuple[str, str, str], list] = field(default_factory=dict)

    @classmethod
    def of(cls, items: Sequence[tuple[str, Outcome]]) -> Received:
        received = cls(items=len(items))
        tails, dead, fates = received.tails, received.dead, received.fates
        for connector, outcome in items:
            event = outcome.event
            event_type = event.event_type or ""
            fate = str(outcome.fate)
            key = (connector, event_type, fate)
            tally = outcome.tally
            if tally:  # a batch's filtered events of one type, counted together
                fates[key] = fates.get(key, 0) + tally
                received.items += tally - 1
                if outcome.reason is not None:
                    shown = received.filtered.get(key)
                    if shown is None:
                        received.filtered[key] = [outcome.segment_event, outcome.reason, tally]
                    else:
                        shown[2] += tally
                continue
            fates[key] = fates.get(key, 0) + 1
            event_id = event.id
            if event_id is not None and type(event_id) is not str:
                event_id = str(event_id)
            user = event.external_user_id or event.user_id
            if user is not None and type(user) is not str:
                user = str(user)
            tail = tails.get(connector)
            if tail is None:
                tail = tails[connector] = ([], [])
            if fate == "queued":
                message_id = outcome.message["messageId"] if outcome.message else event_id
                body = outcome.encoded if outcome.encoded is not None else orjson.dumps(outcome.message)
                tail[0].append([event_type, outcome.segment_event, user, fate, None, message_id, len(body)])
                tail[1].append(body)
                continue
            if fate == "rejected":
                reason = outcome.reason or "rejected"
                dead.append((connector, event_id, event_type, reason, record_json(event.raw)))
            tail[0].append([event_type, outcome.segment_event, user, fate, outcome.reason, event_id, 0])
        received._add_filtered_lines()
        return received

    def _add_filtered_lines(self) -> None:
        """One tail line per key of `filtered`, after the connector's other lines."""
        for (connector, event_type, fate), (segment_event, reason, n) in self.filtered.items():
            tail = self.tails.get(connector)
            if tail is None:
                tail = self.tails[connector] = ([], [])
            shown = reason if n == 1 else f"{reason} ({n:,} events in this batch)"
            tail[0].append([event_type, segment_event, None, fate, shown, None, 0])

    @classmethod
    def merged(cls, batches: Iterable[Received]) -> Received:
        """Several batches as one (for one transaction), each connector's entries in batch order."""
        batches = list(batches)
        if len(batches) == 1:
            return batches[0]
        merged = cls()
        for batch in batches:
            merged.items += batch.items
            summaries = Counter(connector for connector, _, _ in batch.filtered)
            for connector, (entries, bodies) in batch.tails.items():
                if summaries[connector]:  # they come last; the merged batch counts them together
                    entries = entries[: len(entries) - summaries[connector]]
                tail = merged.tails.get(connector)
                if tail is None:
                    merged.tails[connector] = (list(entries), list(bodies))
                else:
                    tail[0].extend(entries)
                    tail[1].extend(bodies)
            merged.dead.extend(batch.dead)
            for key, n in batch.fates.items():
                merged.fates[key] = merged.fates.get(key, 0) + n
            for key, (segment_event, reason, n) in batch.filtered.items():
                shown = merged.filtered.get(key)
                if shown is None:
                    merged.filtered[key] = [segment_event, reason, n]
                else:
                    shown[2] += n
        merged._add_filtered_lines()
        return merged


def _json_default(value: object) -> object:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def record_json(raw: object) -> bytes:
    """A record as received, as JSON for its dead letter, whatever it holds."""
    try:
        return orjson.dumps(raw, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        pass
    try:
        return orjson.dumps(repr(raw))
    except RecursionError:  # nested deeper than repr can go: keep what can be told of it
        return orjson.dumps(f"<a {type(raw).__name__} nested too deeply to keep>")
