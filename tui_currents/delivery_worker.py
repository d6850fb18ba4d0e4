"""The delivery process: `python -m tui_currents.delivery_worker FD PARENT_PID`.

Started by delivery_process.DeliveryProcess with one end of a socket pair as file descriptor FD and an
environment without secrets. It opens the home's queue itself (the one place a queue is opened:
`outbox_home.open_outbox`) and runs every connector's delivery loop (lease, POST, marks, states, expiry),
as the engine tells it over the pipe; write keys come over that pipe too, never through the environment,
the command line or a file. Leases live in this process's queue object only: when it dies they end with
it, and its messages are due again for the next delivery process (at-least-once, same messageIds).

It ends when told to stop (in-flight requests finish first, bounded), when the engine's end of the pipe
closes (the engine stopped or was killed), or, on Linux, at once when the engine dies (PR_SET_PDEATHSIG).

Messages from the engine: ("start", settings), ("apply", plan), ("stop",). To the engine: ("ready",),
("failed", text), ("log", logger, level, text), ("latency", connector, [seconds]), ("alive",), ("stopped",).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import httpx

from tui_currents import __version__
from tui_currents.delivery import ConnectorDelivery
from tui_currents.metrics import TimedStore
from tui_currents.outbox import ConnectorState, Outbox, StoreUnavailable
from tui_currents.parent_death import end_with_parent
from tui_currents.paths import Home
from tui_currents.write_turns import WriteTurns

log = logging.getLogger("tui_currents.delivery_worker")

ALIVE_INTERVAL = 1.0  # seconds between "alive" messages (the engine replaces a process silent too long)
LATENCY_INTERVAL = 0.5  # seconds between batches of delivery latencies sent for the metrics


@dataclass(frozen=True)
class Settings:
    """What the engine tells the process once, at its start."""

    home_root: str
    home_data: str
    synchronous: str = "FULL"
    http_timeout: float = 30.0
    overrides: dict[str, Any] = field(default_factory=dict)  # ConnectorDelivery options (tests, benchmarks)
    timed: bool = False  # send delivery latencies back for the metrics
    write_turns: str | None = None  # the file both processes take turns at writing the store on
    # Added to this process's nice value at its start: the terminal app's in-process engine asks for a
    # lower priority, so that on busy cores the app's keys and frames go before bulk delivery.
    niceness: int = 0


@dataclass(frozen=True)
class ConnectorPlan:
    """One connector to deliver: where to, how, and with which write key."""

    url: str
    max_in_flight: int
    gzip: bool
    gzip_level: int
    retention_days: float
    key: str | None

    def signature(self) -> tuple:
        """What, when changed, needs a new delivery loop (a new key does not)."""
        return (self.url, self.max_in_flight, self.gzip, self.gzip_level, self.retention_days)


@dataclass(frozen=True)
class Plan:
    """Every connector of the config: those to deliver, and the state of those not delivering."""

    run: dict[str, ConnectorPlan]
    held: dict[str, str]  # connector -> "paused" | "disabled"
    dead_letter_caps: Any = None  # a store.DeadLetterCaps


class _Sender:
    """This process's end of the pipe, safe to send on from any thread."""

    def __init__(self, connection: Connection):
        self.connection = connection
        self._lock = threading.Lock()

    def send(self, message: tuple) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):  # the engine is gone: nobody to tell
            self.connection.send(message)


class _ToEngine(logging.Handler):
    """Log records as lines for the engine's log (which masks secrets and writes the file)."""

    def __init__(self, sender: _Sender):
        super().__init__(logging.INFO)
        self.sender = sender
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sender.send(("log", record.name, record.levelno, self.format(record)))
        except Exception:  # logging must never break delivery
            self.handleError(record)


class WriteTimes:
    """This process's writes to the queue, each in a turn shared with the engine's commits (when given;
    see write_turns.py), and how long they took, waits included: said in the log when the process stops."""

    TIMED = ("delivered", "retry_later", "release", "dead_letter", "set_state", "expire")

    def __init__(self, outbox: Outbox, turns: WriteTurns | None = None):
        self._outbox = outbox
        self._turns = turns
        self._lock = threading.Lock()
        self.count = 0
        self.total = 0.0
        self.longest = 0.0
        for name in self.TIMED:
            setattr(self, name, self._timed(getattr(outbox, name)))

    def __getattr__(self, name: str) -> Any:  # everything else is the outbox's own
        return getattr(self._outbox, name)

    def _timed(self, call: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                with self._turns.turn() if self._turns is not None else contextlib.nullcontext():
                    return call(*args, **kwargs)
            finally:
                took = time.perf_counter() - start
                with self._lock:
                    self.count += 1
                    self.total += took
                    self.longest = max(self.longest, took)

        return timed

    def summary(self) -> str:
        mean = self.total / self.count * 1000 if self.count else 0.0
        return (
            f"{self.count} writes to the queue took {self.total:.2f} s in all (mean {mean:.2f} ms, "
            f"longest {self.longest * 1000:.0f} ms, waits for the engine's commits included)"
        )


def lower_priority(niceness: int) -> None:
    """Lower this process's scheduling priority by `niceness` (0: unchanged). Raising it is not asked for,
    and a refusal (a system that forbids it) leaves the process as it is."""
    if niceness > 0 and hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(niceness)


class Worker:
    """Runs the deliveries the engine's plan asks for until told to stop or the engine goes away."""

    def __init__(self, connection: Connection, sender: _Sender):
        self.connection = connection
        self.sender = sender  # shared with the log handler: one lock for every message
        self.outbox: Outbox | None = None
        self.write_times: WriteTimes | None = None
        self.settings: Settings | None = None
        self.client: httpx.AsyncClient | None = None
        self.keys: dict[str, str | None] = {}
        self.deliveries: dict[str, tuple[ConnectorDelivery, asyncio.Task, tuple]] = {}
        self.latencies: dict[str, list[float]] = {}
        self._latency_lock = threading.Lock()
        self._background: set[asyncio.Task] = set()
        self._plans: asyncio.Queue[Plan | None] = asyncio.Queue()

    async def serve(self) -> None:
        """Read the start message, open the queue, then follow the engine's plans until stopped."""
        loop = asyncio.get_running_loop()
        first = await asyncio.to_thread(self._receive)
        if first is None or first[0] != "start":
            return
        self.settings = settings = first[1]
        lower_priority(settings.niceness)
        try:
            opened = await asyncio.to_thread(self._open, settings)
            turns = WriteTurns(Path(settings.write_turns)) if settings.write_turns else None
            self.write_times = WriteTimes(opened, turns)
            self.outbox = cast(Outbox, self.write_times)
        except StoreUnavailable as exc:
            self.sender.send(("failed", str(exc)))
            return
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.http_timeout, connect=10.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            headers={"User-Agent": f"tui-currents/{__version__}"},
        )
        reader = threading.Thread(target=self._read, args=(loop,), name="engine-pipe", daemon=True)
        reader.start()
        self.sender.send(("ready",))
        chatter = asyncio.create_task(self._chatter())
        try:
            while (plan := await self._plans.get()) is not None:
                await self._apply(plan)
        finally:
            chatter.cancel()
            await self._stop_all()
            await self.client.aclose()
            self._send_latencies()
            await asyncio.to_thread(self.outbox.close)
            if self.write_times is not None:
                log.info("delivery process: %s", self.write_times.summary())
            self.sender.send(("stopped",))

    @staticmethod
    def _open(settings: Settings) -> Outbox:
        from tui_currents.outbox_home import open_outbox

        outbox = open_outbox(Home(root=Path(settings.home_root), data=Path(settings.home_data)),
                             synchronous=settings.synchronous)  # fmt: skip
        outbox.release_leases()
        return outbox

    def _receive(self) -> tuple | None:
        try:
            return self.connection.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError):
            return None

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        """The engine's messages, handed to the loop; end-of-stream or "stop" end the process."""
        while True:
            message = self._receive()
            if message is None or message[0] == "stop":
                loop.call_soon_threadsafe(self._plans.put_nowait, None)
                return
            if message[0] == "apply":
                loop.call_soon_threadsafe(self._plans.put_nowait, message[1])

    async def _chatter(self) -> None:
        """Say this process is alive, and pass on delivery latencies for the metrics."""
        last_alive = 0.0
        while True:
            await asyncio.sleep(LATENCY_INTERVAL)
            self._send_latencies()
            now = time.monotonic()
            if now - last_alive >= ALIVE_INTERVAL:
                last_alive = now
                self.sender.send(("alive",))

    def _send_latencies(self) -> None:
        with self._latency_lock:
            batches, self.latencies = self.latencies, {}
        for connector, values in batches.items():
            self.sender.send(("latency", connector, values))

    def _observer(self, connector: str):
        def observe(seconds: float) -> None:
            with self._latency_lock:
                self.latencies.setdefault(connector, []).append(seconds)

        return observe

    # ------------------------------------------------------------------------------------- plans

    async def _apply(self, plan: Plan) -> None:
        assert self.outbox is not None
        opened = self.write_times._outbox if self.write_times is not None else self.outbox
        if plan.dead_letter_caps is not None and hasattr(opened, "dead_letter_caps"):
            opened.dead_letter_caps = plan.dead_letter_caps  # the SQLite store's; a cluster queue has none
        for name in list(self.deliveries):
            if name not in plan.run:
                await self._stop(name, state=plan.held.get(name, "removed"))
        for name, state in plan.held.items():
            if name not in self.deliveries:
                await asyncio.to_thread(
                    self.outbox.set_state, name, ConnectorState(state=state, since=time.time())
                )
        for name, wanted in plan.run.items():
            self._run(name, wanted)

    def _run(self, name: str, wanted: ConnectorPlan) -> None:
        key_changed = self.keys.get(name) != wanted.key
        self.keys[name] = wanted.key
        running = self.deliveries.get(name)
        if running and running[2] == wanted.signature():
            if key_changed:
                running[0].credentials_changed()
            return
        if running:
            # Destination or limits changed: the old loop finishes its in-flight batches, then a new one.
            task = asyncio.create_task(self._replace(name, wanted))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return
        self._start(name, wanted)

    def _start(self, name: str, wanted: ConnectorPlan) -> None:
        assert self.outbox is not None and self.settings is not None
        outbox: Outbox | TimedStore = self.outbox
        if self.settings.timed:
            outbox = TimedStore(self.outbox, self._observer(name))
        delivery = ConnectorDelivery(
            outbox,
            name,
            wanted.url,
            lambda: self.keys.get(name),
            client=self.client,
            max_in_flight=wanted.max_in_flight,
            gzip=wanted.gzip,
            gzip_level=wanted.gzip_level,
            retention_days=wanted.retention_days,
            **self.settings.overrides,
        )
        task = asyncio.create_task(delivery.run(), name=f"delivery:{name}")
        self.deliveries[name] = (delivery, task, wanted.signature())
        self.sender.send(("started", name))

    async def _replace(self, name: str, wanted: ConnectorPlan) -> None:
        await self._stop(name)
        self._start(name, wanted)

    async def _stop(self, name: str, *, state: str | None = None) -> None:
        entry = self.deliveries.pop(name, None)
        if entry is None:
            return
        delivery, task, _ = entry
        await delivery.stop()
        await asyncio.gather(task, return_exceptions=True)
        if state and self.outbox is not None:
            with contextlib.suppress(StoreUnavailable):
                await asyncio.to_thread(
                    self.outbox.set_state, name, ConnectorState(state=state, since=time.time())
                )

    async def _stop_all(self) -> None:
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*(self._stop(name) for name in list(self.deliveries)))


def main(argv: list[str]) -> int:
    # Ctrl-C in a terminal and a service manager's SIGTERM reach the whole process group: the engine
    # decides when this process ends (it says "stop", or its pipe closes).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    end_with_parent(int(argv[2]))
    connection = Connection(int(argv[1]))
    sender = _Sender(connection)
    root = logging.getLogger("tui_currents")
    root.setLevel(logging.INFO)
    root.addHandler(_ToEngine(sender))
    root.propagate = False
    asyncio.run(Worker(connection, sender).serve())
    return 0


if __name__ == "__main__":
    # Run as the module's real name, so the plans the engine pickles name the same classes.
    from tui_currents import delivery_worker

    sys.exit(delivery_worker.main(sys.argv))
