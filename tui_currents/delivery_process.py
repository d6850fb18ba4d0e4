"""Delivery in a process of its own, so that the engine's process keeps its core for the receiver and the
commits (Python runs one thread at a time per process).

`DeliveryProcess` starts the delivery process (tui_currents.delivery_worker), tells it what to run (the
plan: connectors, their settings and write keys, paused and disabled ones), and supervises it:

- one socket pair, whose far end only the delivery process holds: its death reads here as end-of-stream,
  and the engine's death reads there as end-of-stream (plus, on Linux, a SIGKILL from the kernel);
- a process that dies, or says nothing for `SILENT_SECONDS`, is replaced at once (after a short, growing
  delay only while new ones keep failing to start), and the new one gets the latest plan. Nothing is lost:
  its leases ended with it, so its messages are due again (sent again under the same messageIds);
- write keys travel over the pipe only; the process gets the mapping worker's environment, which holds
  no secret;
- `stop()` is bounded: the process finishes its in-flight requests (up to the delivery's stop timeout),
  then is SIGKILLed if it has not ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from tui_currents.child_process import start_child
from tui_currents.delivery_worker import Plan, Settings
from tui_currents.paths import Home

log = logging.getLogger("tui_currents.delivery_process")

WORKER_MODULE = "tui_currents.delivery_worker"
START_SECONDS = 30.0  # a new process must say it is ready within this, or it is replaced
SILENT_SECONDS = 30.0  # a process that says nothing this long (it says "alive" every second) is replaced
STOP_SECONDS = 20.0  # after "stop": in-flight requests finish (the delivery's stop timeout), then SIGKILL
RESTART_DELAYS = (0.0, 0.1, 0.5, 2.0, 10.0, 30.0)  # after 1, 2, 3... failed starts in a row
# Off by default under `run`: on 2 shared cores it measured no faster than delivery in the engine's
# process (bench `--compare-layouts`). On by default for the terminal app's engine, at a lower priority
# (tui/backend.py): there it is what keeps keypresses under 100 ms while delivery runs at full speed
# (bench_tui.py). "1" turns it on, "0" off, whatever the default.
DELIVERY_PROCESS_ENV = "TUI_CURRENTS_DELIVERY_PROCESS"
ENABLED_BY_DEFAULT = False

LatencyCallback = Callable[[str, list[float]], None]


def delivery_process_wanted(*, default: bool = ENABLED_BY_DEFAULT) -> bool:
    """Whether delivery runs in its own process when the engine's options do not say: asked for (or not)
    in $TUI_CURRENTS_DELIVERY_PROCESS, else `default`; only with a second core for it to run on, and
    where a process can be handed its end of a socket pair."""
    asked = os.environ.get(DELIVERY_PROCESS_ENV, "").strip().lower()
    wanted = asked in ("1", "on", "yes", "true") if asked else default
    return wanted and (os.cpu_count() or 1) >= 2 and os.name == "posix"


class _Child:
    """One delivery process and this process's end of its pipe."""

    def __init__(self) -> None:
        # Only the child holds its end of the pipe: its death reads here as end-of-stream.
        self.process, self.connection = start_child(WORKER_MODULE, str(os.getpid()))
        self.pid = self.process.pid
        self.started = time.monotonic()
        self.heard = self.started
        self.ready = False
        self.stopped = False  # it said "stopped": its outbox is closed
        self.killed_because: str | None = None
        self._send_lock = threading.Lock()

    def send(self, message: tuple) -> bool:
        """Send a message; False when the child is gone."""
        with self._send_lock:
            try:
                self.connection.send(message)
            except (OSError, ValueError):
                return False
        return True

    def kill(self, reason: str) -> None:
        self.killed_because = self.killed_because or reason
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.kill()

    def why(self) -> str:
        if self.killed_because:
            return self.killed_because
        code = self.process.poll()
        if code is not None and code < 0:
            return f"it was stopped by signal {-code}"
        if code is not None:
            return f"it exited with code {code}"
        return "its pipe closed"


class DeliveryProcess:
    """The engine's handle on its delivery process: start, plans, supervision, stop."""

    def __init__(self, home: Home, settings: Settings, *, on_latency: LatencyCallback | None = None) -> None:
        self.home = home
        self.settings = settings
        self.on_latency = on_latency
        self.plan: Plan | None = None
        self.losses = 0  # processes lost since the start (diagnostics, tests)
        self.starts: dict[str, int] = {}  # connector -> delivery loops started for it (tests, diagnostics)
        self._child: _Child | None = None
        self._failed_starts = 0
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost = asyncio.Event()
        self._ready = asyncio.Event()
        self._supervisor: asyncio.Task | None = None

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None and child.process.poll() is None else None

    @property
    def ready(self) -> bool:
        child = self._child
        return child is not None and child.ready and child.process.poll() is None

    def start(self) -> None:
        """Start the process and its supervisor (on the running event loop)."""
        self._loop = asyncio.get_running_loop()
        self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="delivery-process")

    async def wait_ready(self, seconds: float) -> bool:
        """Wait up to `seconds` until the process has opened the queue; whether it has."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), seconds)
        return self._ready.is_set()

    def apply(self, plan: Plan) -> None:
        """Run this plan from now on (the process, and any that replaces it, gets it)."""
        self.plan = plan
        child = self._child
        if child is not None and child.ready:
            child.send(("apply", plan))

    async def stop(self) -> None:
        """Ask the process to stop (in-flight requests finish), bounded; SIGKILL it past the bound."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        child, self._child = self._child, None
        if child is not None:
            await asyncio.to_thread(self._end, child, "stop")

    @staticmethod
    def _end(child: _Child, how: str) -> None:
        """Let the child end ("stop", or just close the pipe), SIGKILL it if it does not in time."""
        if how == "stop":
            child.send(("stop",))
        try:
            child.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("the delivery process (pid %d) did not stop in time; stopped by force", child.pid)
            child.kill("it did not stop when asked")
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(5.0)
        with contextlib.suppress(OSError):
            child.connection.close()

    # ------------------------------------------------------------------------------ supervision

    def _spawn(self) -> None:
        # Started from the event loop's thread, which lives as long as the engine: the kernel's
        # parent-death signal follows the thread that started the child.
        try:
            child = _Child()
        except OSError as exc:
            log.error("the delivery process could not be started (%s); trying again",
                      exc.strerror or type(exc).__name__)  # fmt: skip
            self._failed_starts += 1
            self._lost.set()
            return
        self._child = child
        child.send(("start", self.settings))
        threading.Thread(target=self._read, args=(child,), name="delivery-pipe", daemon=True).start()

    def _read(self, child: _Child) -> None:
        """The child's messages, handed to the event loop; end-of-stream means the child is gone."""
        assert self._loop is not None
        while True:
            try:
                message = child.connection.recv()
            except (EOFError, OSError, pickle.UnpicklingError):
                break
            with contextlib.suppress(RuntimeError):  # the loop closed: the engine is gone
                self._loop.call_soon_threadsafe(self._heard, child, message)
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._gone, child)

    def _heard(self, child: _Child, message: tuple) -> None:
        child.heard = time.monotonic()
        kind = message[0]
        if kind == "ready":
            child.ready = True
            self._failed_starts = 0
            if self.plan is not None:
                child.send(("apply", self.plan))
            self._ready.set()
        elif kind == "log":
            _, name, level, text = message
            logging.getLogger(name).log(level, "%s", text)
        elif kind == "latency" and self.on_latency is not None:
            try:
                self.on_latency(message[1], message[2])
            except Exception:  # the metrics must not stop delivery
                log.exception("delivery latencies not recorded")
        elif kind == "started":
            self.starts[message[1]] = self.starts.get(message[1], 0) + 1
        elif kind == "failed":
            child.killed_because = message[1]
        elif kind == "stopped":
            child.stopped = True

    def _gone(self, child: _Child) -> None:
        if child is self._child and not self._stopping:
            self._lost.set()

    async def _supervise(self) -> None:
        """Replace a process that died or went silent, with the latest plan."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), 1.0)
            child = self._child
            now = time.monotonic()
            if not self._lost.is_set() and child is not None:
                if not child.ready and now - child.started > START_SECONDS:
                    child.kill(f"it did not start within {START_SECONDS:g} s")
                elif child.ready and now - child.heard > SILENT_SECONDS:
                    child.kill(f"it said nothing for {SILENT_SECONDS:g} s")
                continue
            self._lost.clear()
            if child is not None:
                self._child = None
                self.losses += 1
                # The old process must be gone before a new one leases: one holder of leases at a time.
                await asyncio.to_thread(self._end, child, "close")
                # A process that keeps failing to start is started less and less often; one killed from
                # outside (an operator, the OOM killer) is replaced at once.
                killed_outside = child.process.returncode == -signal.SIGKILL and not child.killed_because
                if not child.ready and not killed_outside:
                    self._failed_starts += 1
                log.warning(
                    "the delivery process (pid %d) was lost (%s); a new one takes over its connectors, "
                    "and its unfinished batches are sent again",
                    child.pid,
                    child.why(),
                )
            if self._failed_starts:
                await asyncio.sleep(RESTART_DELAYS[min(self._failed_starts, len(RESTART_DELAYS)) - 1])
            if not self._stopping:
                self._spawn()
