"""One alert per cluster: every instance's alert monitor decides alerts from the same cluster-wide figures,
so each would send the same email and webhook post. Before sending, an instance claims the alert episode
in the state bucket; only the first claim wins, the others record the alert without sending it.

Key `e.<connector>.<kind>` (both as hex tokens), value `{"phase", "episode", "by", "at"}`: the last
phase sent for that connector and kind, the episode's number and the instance that sent it. A claim is a
compare-and-set on the key's revision (`create` when absent, `update(last=revision)` otherwise), so of two
instances claiming at once exactly one wins:

- an alert is claimed when the key is absent or its last phase is a recovery (a new episode begins);
- a recovery is claimed when the last phase is the alert of the episode this instance took part in (an
  instance that lags behind cannot recover a newer episode);
- a claim this instance already won counts as won again (a record that failed after the claim is redone).
"""

from __future__ import annotations

import time
from typing import Any

import nats.js.errors
import orjson

from tui_currents.cluster import codec

ALERT = "alert"
RECOVERY = "recovery"


def claim_key(connector: str, kind: str) -> str:
    """The state bucket's key of a connector's alert kind."""
    return f"e.{codec.token(connector)}.{codec.token(kind)}"


class AlertClaims:
    """Claims of alert episodes by one instance (`instance`) in the state bucket `kv`."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self._episodes: dict[str, int] = {}  # key: the episode this instance last took part in

    async def claim(self, kv: Any, connector: str, kind: str, phase: str) -> bool:
        """Whether this instance is the one to send `phase` (ALERT or RECOVERY) of the connector's `kind`.
        NATS errors propagate (the caller decides what a claim that cannot be made means)."""
        key = claim_key(connector, kind)
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            entry = None
        last = orjson.loads(entry.value) if entry is not None and entry.value else None
        if last is None:
            episode = 1 if phase == ALERT else self._episodes.get(key, 0)
            return await self._write(kv, key, phase, episode, revision=None)
        episode = int(last.get("episode") or 0)
        mine = bool(last.get("by") == self.instance)
        if phase == ALERT:
            if last.get("phase") == ALERT:
                self._episodes[key] = episode  # another instance's episode, or this one's already
                return mine
            return await self._write(kv, key, ALERT, episode + 1, revision=entry.revision)
        joined = self._episodes.get(key)
        if joined is not None and joined != episode:
            return False  # a newer episode began elsewhere: this recovery is of one already recovered
        if last.get("phase") == RECOVERY:
            return mine
        return await self._write(kv, key, RECOVERY, episode, revision=entry.revision)

    async def _write(self, kv: Any, key: str, phase: str, episode: int, *, revision: int | None) -> bool:
        value = orjson.dumps({"phase": phase, "episode": episode, "by": self.instance, "at": time.time()})
        try:
            if revision is None:
                await kv.create(key, value)
            else:
                await kv.update(key, value, last=revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False  # another instance claimed it first
        self._episodes[key] = episode
        return True
