"""Prometheus metrics of the headless service, served on a listener of their own (never the receiver's).

The counters, backlog and states are read from the store at each scrape, through the same reading that
`tui-currents status --json` shows (status.connector_status): one source of truth, so the two always agree
and survive restarts. Only what the store does not keep is counted in this process: the time from enqueue
to Segment's 2xx (a histogram) and the receiver's requests by status code.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from wsgiref.simple_server import WSGIServer

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from tui_currents import __version__
from tui_currents.outbox import ConnectorStatus, Outbox, OutboxRow
from tui_currents.paths import Home
from tui_currents.status import connector_status

log = logging.getLogger("tui_currents.metrics")

PREFIX = "tui_currents"
# Counters of the store exported per connector: (store name, metric name, help).
EVENT_COUNTERS = (
    (
        "received",
        "received_events",
        "Events received for the connector (each event counts once per connector).",
    ),
    ("queued", "queued_events", "Events queued in the connector's outbox."),
    ("delivered", "delivered_events", "Events Segment accepted (2xx)."),
    ("retried", "retried_events", "Send attempts that will be retried (counted per event)."),
    ("dead_lettered", "dead_lettered_events", "Events moved to the dead letters (expired ones included)."),
    ("expired", "expired_events", "Events dead-lettered because they waited past the retention."),
)
# Why an event was not sent, as the store counts it: label `reason` of the filtered counter.
FILTER_REASONS = ("not_selected", "anonymous", "unsupported", "duplicate")
NOT_RUNNING = "not running"
STATES = (*(s.value for s in ConnectorStatus), "removed", NOT_RUNNING)
# Enqueue to Segment's 2xx: from well under a second (live) to hours (a backlog after an outage).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


class StoreCollector(Collector):
    """Per connector and over all connectors: the store's counters, backlog and state, read at scrape."""

    def __init__(self, home: Home):
        self.home = home

    def collect(self) -> Iterator[Metric]:
        view = connector_status(self.home)
        names = sorted(view)
        for key, metric, text in EVENT_COUNTERS:
            family = CounterMetricFamily(f"{PREFIX}_{metric}", text, labels=["connector"])
            total = CounterMetricFamily(
                f"{PREFIX}_all_{metric}", f"{text} Summed over every connector.", labels=[]
            )
            for name in names:
                family.add_metric([name], view[name]["counters"].get(key, 0))
            total.add_metric([], sum(view[name]["counters"].get(key, 0) for name in names))
            yield family
            yield total
        filtered = CounterMetricFamily(
            f"{PREFIX}_filtered_events",
            "Events not sent to Segment, by reason (not selected, anonymous, unsupported, duplicate).",
            labels=["connector", "reason"],
        )
        all_filtered = CounterMetricFamily(
            f"{PREFIX}_all_filtered_events",
            "Events not sent, by reason, over every connector.",
            labels=["reason"],
        )
        for reason in FILTER_REASONS:
            for name in names:
                filtered.add_metric([name, reason], view[name]["counters"].get(reason, 0))
            all_filtered.add_metric([reason], sum(view[n]["counters"].get(reason, 0) for n in names))
        yield filtered
        yield all_filtered
        yield from self._gauges(view, names)

    def _gauges(self, view: dict[str, dict], names: list[str]) -> Iterator[Metric]:
        backlog = GaugeMetricFamily(
            f"{PREFIX}_backlog_events", "Events waiting in the outbox.", labels=["connector"]
        )
        size = GaugeMetricFamily(
            f"{PREFIX}_backlog_bytes", "Bytes of the waiting events.", labels=["connector"]
        )
        oldest = GaugeMetricFamily(
            f"{PREFIX}_oldest_waiting_seconds",
            "Age of the oldest waiting event (0 when none waits).",
            labels=["connector"],
        )
        dead = GaugeMetricFamily(
            f"{PREFIX}_dead_letters", "Dead letters kept (until retried or removed).", labels=["connector"]
        )
        state = GaugeMetricFamily(
            f"{PREFIX}_connector_state",
            "1 for the connector's current delivery state, 0 for the others.",
            labels=["connector", "state"],
        )
        for name in names:
            entry = view[name]
            backlog.add_metric([name], entry["backlog"])
            size.add_metric([name], entry["backlog_bytes"])
            oldest.add_metric([name], entry["oldest_age_seconds"] or 0.0)
            dead.add_metric([name], entry["dead_letters"])
            current = entry["state"]
            for known in (*STATES, *(() if current in STATES else (current,))):
                state.add_metric([name, known], 1.0 if known == current else 0.0)
        yield from (backlog, size, oldest, dead, state)
        all_backlog = GaugeMetricFamily(
            f"{PREFIX}_all_backlog_events", "Events waiting, over every connector."
        )
        all_backlog.add_metric([], sum(view[n]["backlog"] for n in names))
        all_oldest = GaugeMetricFamily(
            f"{PREFIX}_all_oldest_waiting_seconds", "Age of the oldest waiting event of any connector."
        )
        all_oldest.add_metric([], max((view[n]["oldest_age_seconds"] or 0.0 for n in names), default=0.0))
        all_dead = GaugeMetricFamily(f"{PREFIX}_all_dead_letters", "Dead letters kept, over every connector.")
        all_dead.add_metric([], sum(view[n]["dead_letters"] for n in names))
        info = GaugeMetricFamily(
            f"{PREFIX}_build_info", "The running version (always 1).", labels=["version"]
        )
        info.add_metric([__version__], 1.0)
        yield from (all_backlog, all_oldest, all_dead, info)


class TimedStore:
    """The store as one connector's delivery sees it, timing each message from enqueue to Segment's 2xx.

    Leases note each message's enqueue time; `delivered` observes the latency of those it names; any other
    outcome (retry, release, dead letter) forgets them until they are leased again. Everything else is the
    store itself."""

    def __init__(self, store: Outbox, observe: Callable[[float], None]):
        self._store = store
        self._observe = observe
        self._enqueued: dict[int, float] = {}
        self._lock = threading.Lock()  # deliveries are recorded from worker threads

    def __getattr__(self, name: str) -> Any:  # everything else is the store's own
        return getattr(self._store, name)

    def lease(
        self,
        connector: str,
        *,
        max_messages: int,
        max_bytes: int,
        lease_seconds: float,
        now: float | None = None,
    ) -> list[OutboxRow]:
        rows = self._store.lease(
            connector, max_messages=max_messages, max_bytes=max_bytes, lease_seconds=lease_seconds, now=now
        )
        with self._lock:
            for row in rows:
                self._enqueued[row.seq] = row.enqueued_at
        return rows

    def delivered(self, connector: str, seqs: Sequence[int], *, now: float | None = None) -> int:
        done = self._store.delivered(connector, seqs, now=now)
        at = now if now is not None else time.time()
        with self._lock:
            for seq in seqs:
                enqueued = self._enqueued.pop(seq, None)
                if enqueued is not None:
                    self._observe(max(0.0, at - enqueued))
        return done

    def _forget(self, seqs: Sequence[int]) -> None:
        with self._lock:
            for seq in seqs:
                self._enqueued.pop(seq, None)

    def retry_later(
        self, connector: str, seqs: Sequence[int], *, retry_at: float, error: str, count_attempt: bool = True
    ) -> None:
        self._forget(seqs)
        self._store.retry_later(connector, seqs, retry_at=retry_at, error=error, count_attempt=count_attempt)

    def release(self, connector: str, seqs: Sequence[int], *, retry_at: float = 0.0) -> None:
        self._forget(seqs)
        self._store.release(connector, seqs, retry_at=retry_at)

    def dead_letter(
        self, connector: str, seqs: Sequence[int], *, reason: str, now: float | None = None
    ) -> int:
        self._forget(seqs)
        return self._store.dead_letter(connector, seqs, reason=reason, now=now)


class ServiceMetrics:
    """The service's registry: the store's readings plus what this process alone sees."""

    def __init__(self, home: Home):
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(StoreCollector(home))
        ProcessCollector(registry=self.registry)
        self.latency = Histogram(
            f"{PREFIX}_delivery_latency_seconds",
            "Time from an event's enqueue to Segment's 2xx for it.",
            ["connector"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.receiver_requests = Counter(
            f"{PREFIX}_receiver_requests",
            "Requests to the Currents receiver, by HTTP status code answered.",
            ["code"],
            registry=self.registry,
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url: str | None = None

    def timed(self, store: Outbox, connector: str) -> TimedStore:
        """The store for one connector's delivery, timing its deliveries."""
        return TimedStore(store, self.latency.labels(connector).observe)

    def receiver_middleware(self) -> Middleware:
        """An aiohttp middleware counting the receiver's answers by status code."""
        requests = self.receiver_requests

        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                requests.labels(str(exc.status)).inc()
                raise
            except asyncio.CancelledError:
                raise
            except Exception:
                requests.labels("500").inc()
                raise
            requests.labels(str(response.status)).inc()
            return response

        return count

    def serve(self, host: str, port: int) -> str:
        """Serve /metrics on host:port (port 0: a free one) in a thread; returns its URL. OSError with a
        one-line reason when the port cannot be had."""
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"the metrics listener could not listen on {host}:{port} ({exc.strerror or exc}); choose "
                "another port (run --metrics-port, or [metrics] port in the config) or disable it "
                "([metrics] enabled = false)",
            ) from None
        bound = self._server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound}/metrics"
        log.info("metrics served on %s", self.url)
        return self.url

    def stop(self) -> None:
        """Stop the listener (if serving) and release its port."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
