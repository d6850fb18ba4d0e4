"""Reading Currents request bodies in a mapping worker process, so that the engine's own process keeps its
core for the store and delivery.

Parsing and mapping a batch is pure CPU work and Python runs one thread at a time per process: done in
the engine's process it competes with the commits, the leases and the HTTP requests to Segment. A
`MappingProcess` hands each body to a worker process (tui_currents.sources.mapping_worker), which parses
it, maps its events for the workspace's connectors and returns the batch in the store's form (`Received`:
flat lists and message bytes, cheap to send back). Nothing is acknowledged or stored there: the engine's
process commits.

The worker may die at any moment (killed, out of memory) or stop answering. The design cannot wedge on it:

- one socket pair per worker, and this process keeps no copy of the worker's end, so a worker that dies,
  even half-way through writing a result, shows up here as the end of the stream, never as a wait;
- every exchange has a deadline; a watcher thread kills a worker that overruns it (which ends the
  exchange the same way) and notices a worker that died while idle;
- a batch whose worker is lost, or that arrives while a new worker is starting, is read in a thread of
  this process instead, so no body is lost to it and no request waits for a worker;
- the worker gets only the environment it needs (no secret), and ends when this process goes away (its
  end of the pipe reads end-of-stream).
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
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

from tui_currents.child_process import start_child
from tui_currents.received import Received
from tui_currents.sources.ingest import Routes
from tui_currents.sources.mapping_job import READY, read_batch

log = logging.getLogger("tui_currents.intake")

WORKER_MODULE = "tui_currents.sources.mapping_worker"
# The worker's answer to a job: (True, what read_batch returned) or (False, the error it raised).
WorkerAnswer = tuple[Literal[True], tuple[int, Received]] | tuple[Literal[False], Exception]
BASE_SECONDS = 10.0  # a worker's answer is due within this, plus PER_MEGABYTE_SECONDS per MB of body
PER_MEGABYTE_SECONDS = 2.0
START_SECONDS = 30.0  # a new worker must be ready within this, or it is replaced
WATCH_INTERVAL = 0.2  # seconds between the watcher's looks at the worker
RESTART_DELAYS = (0.0, 0.1, 0.5, 2.0, 10.0, 30.0)  # after 1, 2, 3... failed starts in a row
# Mapping processes of a receiver. Two even on two cores: with one, concurrent requests queue behind each
# exchange (send, map, send back, unpickle), and the worker waits idle while this process hands back its
# answer; with two, one maps while the other's answer is handed over (measured through the receiver with
# delivery running: 1.1-2.0x the events/s of one, less CPU per event in the engine's process).
RECEIVER_WORKERS = 2


def answer_seconds(body: bytes) -> float:
    """How long a worker may take to read this body before it is taken for hung."""
    return BASE_SECONDS + PER_MEGABYTE_SECONDS * len(body) / 1_000_000


def processes_wanted() -> bool:
    """Whether a mapping process pays off here: only with a second core for it to run on, and where a
    process can be handed its end of a socket pair."""
    return (os.cpu_count() or 1) >= 2 and os.name == "posix"


class WorkerLost(Exception):
    """The worker died or gave no answer in time; the message says which."""


class _Worker:
    """One worker process and this process's end of its socket pair."""

    def __init__(self) -> None:
        # Only the worker holds its end of the pipe: its death reads here as end-of-stream.
        self.process, self.connection = start_child(WORKER_MODULE)
        self.pid = self.process.pid
        self.started = time.monotonic()
        self.ready = False
        self.due: float | None = None  # when the exchange under way must be over
        self.killed_because: str | None = None
        # Held while this process talks to the worker: the pipe is closed only once nobody uses it.
        self.using = threading.Lock()

    def check_ready(self) -> bool:
        """Whether the worker finished starting (without waiting); call holding `using`. Raises
        WorkerLost if it died."""
        if not self.ready:
            try:
                if not self.connection.poll(0):
                    return False
                said = self.connection.recv()
            except (EOFError, OSError, pickle.UnpicklingError):
                raise WorkerLost(self._why("it stopped while starting")) from None
            if said != READY:
                self.kill("it said something unexpected while starting")
                raise WorkerLost(self._why("it said something unexpected while starting"))
            self.ready = True
        return True

    def exchange(self, job: tuple[str, Routes, bytes], seconds: float) -> WorkerAnswer:
        """Send a job and return the worker's (ok, result or error); call holding `using`. Raises
        WorkerLost."""
        self.due = time.monotonic() + seconds
        try:
            self.connection.send(job)
            if not self.connection.poll(seconds):
                self.kill(f"it gave no answer within {seconds:g} s")
                raise WorkerLost(self._why("no answer"))
            return self.connection.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError, pickle.UnpicklingError):
            raise WorkerLost(self._why("it stopped")) from None
        finally:
            self.due = None

    def _why(self, fallback: str) -> str:
        if self.killed_because:
            return self.killed_because
        code = self.process.poll()
        if code is not None and code < 0:
            return f"it was stopped by signal {-code}"
        if code is not None:
            return f"it exited with code {code}"
        return fallback

    def overdue(self, now: float) -> str | None:
        """Why the worker should be given up on now, or None."""
        if not self.ready and now - self.started > START_SECONDS:
            return f"it did not start within {START_SECONDS:g} s"
        due = self.due
        if due is not None and now > due + WATCH_INTERVAL:  # poll() times out first; this catches a
            return "it stopped answering in the middle of an exchange"  # send or a receive that hangs
        return None

    def exited(self) -> bool:
        return self.process.poll() is not None

    def kill(self, reason: str) -> None:
        """SIGKILL: whatever this process is waiting for from the worker then ends."""
        self.killed_because = self.killed_because or reason
        if self.process.poll() is None:
            with contextlib.suppress(OSError):  # it ended meanwhile
                self.process.kill()

    def close(self, wait: float = 2.0) -> None:
        """Let the worker end (its pipe reads end-of-stream), SIGKILL it if it does not."""
        with self.using:
            self.connection.close()
        try:
            self.process.wait(wait)
        except subprocess.TimeoutExpired:
            self.kill("it did not end when asked")
            with contextlib.suppress(subprocess.TimeoutExpired):  # stuck in the kernel: reaped later
                self.process.wait(wait)


class MappingProcess:
    """Reads bodies in a worker process (or, with `use_process=False`, while none is ready or when it
    fails, in a thread of this process)."""

    def __init__(self, *, use_process: bool | None = None):
        self.use_process = processes_wanted() if use_process is None else use_process
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mapping")
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        self._losses = 0  # workers lost in a row, none of them ready (a start that keeps failing)
        self._next_start = 0.0
        self._closed = threading.Event()
        self.worker_losses = 0  # since the start (diagnostics)
        self._watcher: threading.Thread | None = None
        if self.use_process:
            self._ensure_worker()
            self._watcher = threading.Thread(target=self._watch, name="mapping-watch", daemon=True)
            self._watcher.start()

    # ------------------------------------------------------------------ the worker's life

    def _ensure_worker(self) -> _Worker | None:
        """The current worker, a new one if none runs and a start is due, or None."""
        with self._lock:
            if self._worker is not None or not self.use_process or self._closed.is_set():
                return self._worker
            if time.monotonic() < self._next_start:
                return None
            try:
                self._worker = _Worker()
            except OSError as exc:
                self._next_start = time.monotonic() + RESTART_DELAYS[-1]
                log.warning("mapping: no worker process could be started (%s); batches are read in this "
                            "process meanwhile", exc.strerror or type(exc).__name__)  # fmt: skip
            return self._worker

    def _lost(self, worker: _Worker, reason: str) -> None:
        """Forget a worker that died or hung (once, however many callers report it); a new one starts
        after a short delay that grows while workers keep dying."""
        with self._lock:
            if self._worker is not worker:
                return
            self._worker = None
            self.worker_losses += 1
            # A worker that keeps failing to start is started less and less often; one killed from
            # outside (an operator, the OOM killer) is replaced at once.
            if not worker.ready and worker.process.poll() != -signal.SIGKILL:
                self._next_start = (
                    time.monotonic() + RESTART_DELAYS[min(self._losses, len(RESTART_DELAYS) - 1)]
                )
                self._losses += 1
        worker.kill(reason)
        threading.Thread(target=worker.close, args=(5.0,), name="mapping-reap", daemon=True).start()
        log.warning("mapping: the worker process (pid %d) was lost (%s); its batches are read in this "
                    "process and a new worker is started", worker.pid, reason)  # fmt: skip

    def _check_ready(self, worker: _Worker) -> bool:
        if worker.ready:
            return True
        if worker.check_ready():
            self._losses = 0  # it started: restarts need no delay
            return True
        return False

    def _watch(self) -> None:
        """Kill a worker that hangs, forget one that died while idle, start the next one."""
        while not self._closed.wait(WATCH_INTERVAL):
            worker = self._worker
            if worker is None:
                self._ensure_worker()
                continue
            reason = worker.overdue(time.monotonic())
            if reason is not None:
                self._lost(worker, reason)  # an exchange under way then ends (end-of-stream)
            elif worker.exited():
                self._lost(worker, worker._why("it stopped"))
            elif not worker.ready and worker.using.acquire(blocking=False):
                try:  # a worker that started while no batch came is ready all the same
                    self._check_ready(worker)
                except WorkerLost as exc:
                    self._lost(worker, str(exc))
                finally:
                    worker.using.release()

    # ------------------------------------------------------------------ reading bodies

    def _read(self, workspace: str, connectors: Routes, body: bytes) -> tuple[int, Received]:
        worker = self._ensure_worker()
        if worker is not None:
            with worker.using:
                try:
                    if not worker.connection.closed and self._check_ready(worker):
                        answer = worker.exchange((workspace, connectors, body), answer_seconds(body))
                        if answer[0]:
                            return answer[1]
                        raise answer[1]  # what read_batch raised (NotABatch...)
                except WorkerLost as exc:
                    reason: str | None = str(exc)
                else:
                    reason = None
            if reason is not None:
                self._lost(worker, reason)
        return read_batch(workspace, connectors, body)  # here: no worker ready, or it was lost

    def submit(self, workspace: str, connectors: Routes, body: bytes) -> Future[tuple[int, Received]]:
        """Read a body; the future holds what `read_batch` returns or raises."""
        return self._io.submit(self._read, workspace, connectors, body)

    async def read(self, workspace: str, connectors: Routes, body: bytes) -> tuple[int, Received]:
        """`submit` for the event loop."""
        return await asyncio.wrap_future(self.submit(workspace, connectors, body))

    def close(self) -> None:
        """Finish the batches under way (each is bounded by its deadline), then stop the worker."""
        self._io.shutdown(wait=True)
        self._closed.set()
        if self._watcher is not None:
            self._watcher.join()
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()

    @property
    def worker_pids(self) -> list[int]:
        """The worker process ids (for tests and diagnostics)."""
        worker = self._worker
        return [worker.pid] if worker is not None else []

    @property
    def worker_ready(self) -> bool:
        """Whether a worker is up and has finished starting."""
        worker = self._worker
        return worker is not None and worker.ready

    def wait_ready(self, seconds: float = START_SECONDS) -> bool:
        """Wait until a worker is ready (for benchmarks and tests: requests never wait for one)."""
        deadline = time.monotonic() + seconds
        while not self.worker_ready and self.use_process and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.worker_ready


class MappingPool:
    """Several `MappingProcess`es (each one worker, its deadlines and fallback, replaced when lost), a body
    going to the one with the fewest bodies under way. Used from one event loop."""

    def __init__(self, *, use_process: bool | None = None, workers: int = RECEIVER_WORKERS):
        first = MappingProcess(use_process=use_process)
        # Without processes, bodies are read in this process: more threads would only take turns.
        count = max(1, workers) if first.use_process else 1
        self.parts = [first, *(MappingProcess(use_process=True) for _ in range(count - 1))]
        self._under_way = [0] * len(self.parts)

    async def read(self, workspace: str, connectors: Routes, body: bytes) -> tuple[int, Received]:
        """What `read_batch` returns or raises for this body."""
        index = min(range(len(self.parts)), key=self._under_way.__getitem__)
        self._under_way[index] += 1
        try:
            return await self.parts[index].read(workspace, connectors, body)
        finally:
            self._under_way[index] -= 1

    def close(self) -> None:
        """Finish the batches under way, then stop the workers."""
        for part in self.parts:
            part.close()

    @property
    def worker_pids(self) -> list[int]:
        """The worker process ids (for tests and diagnostics)."""
        return [pid for part in self.parts for pid in part.worker_pids]

    def wait_ready(self, seconds: float = START_SECONDS) -> bool:
        """Wait until every worker is ready (for benchmarks and tests: requests never wait for one)."""
        deadline = time.monotonic() + seconds
        return all(part.wait_ready(max(0.0, deadline - time.monotonic())) for part in self.parts)
