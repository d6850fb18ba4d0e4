"""Reading the dead-letter stream: one JetStream message per dead letter, its stream sequence as its id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import nats.js.errors
import orjson
from nats.js.client import JetStreamContext

from tui_currents.outbox import DeadLetter


def letter_of(seq: int, data: bytes) -> DeadLetter:
    """The dead letter in a dead-letter stream message."""
    doc = orjson.loads(data)
    return DeadLetter(
        id=seq,
        connector=doc["connector"],
        message_id=doc["message_id"],
        event_type=doc["event_type"],
        reason=doc["reason"],
        at=doc["at"],
        attempts=doc["attempts"],
        event=doc["event"].encode() if doc["event"] is not None else None,
        message=doc["message"].encode() if doc["message"] is not None else None,
    )


async def scan(
    js: JetStreamContext,
    stream: str,
    *,
    subject: str | None = None,
    ids: Iterable[int] | None = None,
    newest_first: bool = False,
    before: int | None = None,
    limit: int | None = None,
) -> AsyncIterator[DeadLetter]:
    """Dead letters of `stream` (only `subject`'s, only `ids` when given), read one by one by sequence.
    Cost grows with the sequences scanned, deleted ones included: fine for pages and exports, not for
    millions of requeued letters (a filtered consumer would be the next step)."""
    if ids is not None:
        seqs: Iterable[int] = sorted(set(ids), reverse=newest_first)
    else:
        state = (await js.stream_info(stream)).state
        if state.messages == 0:
            return
        last = state.last_seq if before is None else min(state.last_seq, before - 1)
        seqs = range(last, state.first_seq - 1, -1) if newest_first else range(state.first_seq, last + 1)
    found = 0
    for seq in seqs:
        if limit is not None and found >= limit:
            return
        try:
            msg = await js.get_msg(stream, seq=seq)
        except nats.js.errors.NotFoundError:
            continue
        if subject is not None and msg.subject != subject:
            continue
        if msg.data is None or msg.seq is None:
            continue
        found += 1
        yield letter_of(msg.seq, msg.data)
