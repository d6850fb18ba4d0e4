"""The live tail in cluster mode: best effort, on core NATS subjects (`NAME.tail.<connector>`).

Each instance publishes the lines of what it did (received events, later fates) without an ack and keeps,
in memory, the last lines it heard from every instance since it started. Lines published while it was
away, or lost during a reconnect, are not in its tail; line numbers are its own (they differ between
instances). Counters, not the tail, are the figures to trust.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from tui_currents.cluster import codec
from tui_currents.outbox import TailRow

_SEND_ERRORS = (TimeoutError, asyncio.TimeoutError, OSError, Exception)


class TailFeed:
    """Publishes this instance's tail lines and keeps the last `keep` lines heard from every instance."""

    def __init__(
        self, nc: Client, name: str, keep: int, *, on_queued: Callable[[str, list[str]], None] | None = None
    ) -> None:
        self._nc = nc
        self._on_queued = on_queued  # hears the messageIds every instance queued (duplicate checks)
        self._prefix = f"{name}.tail."
        self.keep = keep
        self._rows: list[TailRow] = []
        self.last_seq = 0

    async def listen(self) -> None:
        await self._nc.subscribe(f"{self._prefix}*", cb=self._heard)

    async def received(
        self, connector: str, at: float, lines: list[list], *, source: str, bodies: list[bytes]
    ) -> None:
        """Lines of received events (tail entries as `Received` holds them) and the queued ones' bodies."""
        doc = {
            "at": at,
            "source": source,
            "lines": lines,
            "bodies": [b.decode("utf-8", "replace") for b in bodies],
        }
        await self._send(connector, doc)

    async def updates(
        self,
        connector: str,
        at: float,
        updates: list[tuple[str, str]],
        fate: str,
        *,
        reason: str | None = None,
    ) -> None:
        """A later fate ("delivered", "dead letter", "queued" again) of (event type, messageId) pairs."""
        if updates:
            await self._send(connector, {"at": at, "fate": fate, "reason": reason, "updates": updates})

    async def _send(self, connector: str, doc: dict[str, Any]) -> None:
        # Best effort by design: a tail line is never worth failing or slowing the call that made it.
        with contextlib.suppress(*_SEND_ERRORS):
            await self._nc.publish(self._prefix + codec.token(connector), orjson.dumps(doc))

    async def _heard(self, msg: Msg) -> None:
        connector = codec.connector_of(msg.subject.rsplit(".", 1)[1])
        doc = orjson.loads(msg.data)
        at = doc["at"]
        rows: list[TailRow] = []
        if "updates" in doc:
            self.last_seq += 1  # update rows written together share one line number
            for event_type, message_id in doc["updates"]:
                rows.append(
                    TailRow(self.last_seq, at, connector, event_type, None, None, doc["fate"], doc["reason"],
                            message_id, None, True, None)
                )  # fmt: skip
        else:
            if self._on_queued is not None:
                self._on_queued(connector, [line[5] for line in doc["lines"] if line[3] == "queued"])
            bodies = iter(doc["bodies"])
            for line in doc["lines"]:
                self.last_seq += 1
                event_type, segment_event, user, fate, reason, message_id, _ = line
                body = next(bodies).encode() if fate == "queued" else None
                rows.append(
                    TailRow(self.last_seq, at, connector, event_type, segment_event, user, fate, reason,
                            message_id, doc["source"], False, body)
                )  # fmt: skip
        self._rows.extend(rows)
        if len(self._rows) > self.keep * 2:
            del self._rows[: len(self._rows) - self.keep]

    def rows(self, after: int, limit: int, connector: str | None) -> list[TailRow]:
        """Lines after line `after`, oldest first."""
        out = [r for r in self._rows if r.seq > after and (connector is None or r.connector == connector)]
        return out[:limit]
