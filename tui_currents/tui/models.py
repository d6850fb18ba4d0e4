"""The rows the screens and widgets show: plain data, filled by `tui/backend.py` from the rest of the
program, so the screens never import the store, the engine or the config."""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ConnectorRow:
    """One line of the connectors screen."""

    name: str
    workspace: str
    destination: str  # "US", "EU" or "custom: host"
    state: str
    state_kind: str  # good | warning | bad | muted
    detail: str
    events_per_second: float
    backlog: int
    delivered: int
    failed: int  # dead-lettered, all time
    dead_letters: int  # waiting in the dead letters now
    retried: int
    last_error: str | None
    paused: bool
    paused_until: float | None
    warning: str | None
    top_event_types: tuple[tuple[str, int], ...] = ()


@dataclass(slots=True)
class TailLine:
    """One event as the tail shows it. `fate` and `reason` change when a later update arrives."""

    seq: int  # increases with every line; also the key to fetch the full message
    at: float  # UNIX seconds
    connector: str
    event_type: str
    segment_event: str | None
    user: str | None
    fate: str
    reason: str | None = None
    message_id: str | None = None
    update: bool = False  # a later fate of the line with the same connector and message_id

    @property
    def key(self) -> tuple[str, str] | None:
        return (self.connector, self.message_id) if self.message_id is not None else None


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """A dead letter as the dead-letters screen shows it."""

    id: int
    connector: str
    message_id: str | None
    event_type: str
    reason: str
    at: float
    attempts: int
    event: bytes | None  # the Currents record as received (JSON), when known
    message: bytes | None  # the Segment message (JSON), when the event was mapped


# How a cluster reads from this home (ClusterSummary.reach).
CLUSTER_READ = "read"  # the figures below are current
CLUSTER_UNREACHABLE = "unreachable"  # no NATS server of the cluster answers
CLUSTER_NO_QUORUM = "quorum lost"  # a server answers, but not a quorum of the queue's replicas
CLUSTER_UNREADABLE = "cannot be read"  # any other refusal (see `problem`)


@dataclass(frozen=True, slots=True)
class ClusterInstanceRow:
    """One instance of the cluster (an engine's presence), as `cluster status` tells it."""

    name: str
    this_home: bool
    state: str  # running | stopped | gone (its heartbeat went stale)
    address: str | None  # its receiver
    version: str | None
    heartbeat_age: float  # seconds since its last heartbeat


@dataclass(frozen=True, slots=True)
class ClusterStreamRow:
    """The cluster's queue stream: its size and its replicas."""

    name: str
    messages: int
    bytes: int
    replicas: int
    leader: str | None  # None: no quorum elected one
    lagging: tuple[str, ...]  # replicas behind the leader or offline


@dataclass(frozen=True, slots=True)
class ClusterSummary:
    """What the header and the health screen show of the cluster a member home belongs to."""

    name: str
    reach: str  # CLUSTER_READ, or why the figures could not be read
    problem: str | None = None  # the one-line reason when not read
    running: int = 0  # instances with a fresh heartbeat
    instances: tuple[ClusterInstanceRow, ...] = ()
    stream: ClusterStreamRow | None = None


@dataclass
class CounterHistory:
    """Samples of two ever-growing counters (delivered, failed) with their times, for up to an hour."""

    samples: deque = field(default_factory=lambda: deque(maxlen=4000))

    def add(self, at: float, delivered: int, failed: int) -> None:
        if self.samples and at <= self.samples[-1][0]:
            return
        self.samples.append((at, delivered, failed))

    def rates(self, now: float, seconds: int, bucket: int) -> tuple[list[float], list[float]]:
        """Delivered and failed events/s in each bucket of the window ending `now`, oldest first. The
        counters are read between samples by straight lines; a bucket outside the samples reads 0."""
        count = seconds // bucket
        delivered, failed = [0.0] * count, [0.0] * count
        if len(self.samples) < 2:
            return delivered, failed
        times = [s[0] for s in self.samples]
        first, last = times[0], times[-1]
        for i in range(count):
            nominal = now - seconds + i * bucket
            start, end = max(nominal, first), min(nominal + bucket, last)
            if end <= start:  # the bucket lies before the first sample or after the last
                continue
            a, b = self._value_at(times, start), self._value_at(times, end)
            delivered[i] = max(b[0] - a[0], 0) / (end - start)
            failed[i] = max(b[1] - a[1], 0) / (end - start)
        return delivered, failed

    def _value_at(self, times: list[float], moment: float) -> tuple[float, float]:
        index = min(max(bisect.bisect_right(times, moment) - 1, 0), len(times) - 2)
        t0, d0, f0 = self.samples[index]
        t1, d1, f1 = self.samples[index + 1]
        share = (moment - t0) / (t1 - t0) if t1 > t0 else 0.0
        return d0 + (d1 - d0) * share, f0 + (f1 - f0) * share
