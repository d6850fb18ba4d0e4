"""Reading Currents request bodies in a mapping process, so that the engine's own process keeps its core
for the store and delivery.

Parsing and mapping a batch is pure CPU work and Python runs one thread at a time per process: done in
the engine's process it competes with the commits, the leases and the HTTP requests to Segment. A
`MappingProcess` hands each body to a worker process, which parses it, maps its events for the
workspace's connectors and returns the batch in the store's form (`Received`: flat lists and message
bytes, cheap to send back). Nothing is acknowledged or stored there: the engine's process commits.

When the worker cannot be started or dies (killed, out of memory), the batch is read in a thread of this
process instead, so a body is never lost to it; a new worker is started for the next batches.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import select
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from tui_currents.received import Received
from tui_currents.sources.batch_body import events_of
from tui_currents.sources.ingest import Routes, route

log = logging.getLogger("tui_currents.intake")


def read_batch(workspace: str, connectors: Routes, body: bytes) -> tuple[int, Received]:
    """(events in the body, the batch in the store's form) of a Currents request body. Raises
    batch_body.NotABatch when the body is not a batch. Runs in the mapping process."""
    events = events_of(body)
    if not events:
        return 0, Received()
    items, _ = route(workspace, connectors, events)
    return len(events), Received.of(items)


def _worker_start(engine_pid: int) -> None:
    # The worker keeps nothing between batches: what the start imported need never be collected.
    gc.freeze()
    threading.Thread(target=_exit_with, args=(engine_pid,), name="engine-watch", daemon=True).start()


def _exit_with(engine_pid: int) -> None:
    """End this worker once the engine is gone. A worker holds both ends of its own pipes, so an engine
    that was killed (SIGKILL, out of memory) would otherwise leave it, and the fork server, waiting for
    ever."""
    try:
        watch = os.pidfd_open(engine_pid)  # readable once the engine has ended; immune to pid reuse
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):  # no pidfd here: look every second
        while _alive(engine_pid):
            time.sleep(1.0)
    else:
        select.select([watch], [], [])
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def processes_wanted() -> bool:
    """Whether a mapping process pays off here: only with a second core for it to run on."""
    return (os.cpu_count() or 1) >= 2


def _context() -> multiprocessing.context.BaseContext:
    # Forking this (threaded) process is unsafe; a fork server is a clean, single-threaded process that
    # already imported the mapping code, so a worker starts in milliseconds.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


class MappingProcess:
    """Reads bodies in a worker process (or, with `use_process=False` or when it fails, a thread)."""

    def __init__(self, *, use_process: bool | None = None):
        self.use_process = processes_wanted() if use_process is None else use_process
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mapping")
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _process(self) -> Executor | None:
        with self._lock:
            if self._pool is None and self.use_process and not self._closed:
                try:
                    self._pool = ProcessPoolExecutor(
                        max_workers=1,
                        mp_context=_context(),
                        initializer=_worker_start,
                        initargs=(os.getpid(),),
                    )
                except OSError as exc:
                    log.warning("mapping: no worker process (%s); batches are read in this process", exc)
                    self.use_process = False
            return self._pool

    def _lost(self, pool: Executor) -> None:
        """Forget a broken worker (once, however many of its batches report it)."""
        with self._lock:
            if self._pool is not pool:
                return
            self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)
        log.warning("mapping: the worker process stopped; its batches are read here and a new one is started")

    def submit(self, workspace: str, connectors: Routes, body: bytes) -> Future[tuple[int, Received]]:
        """Read a body; the future holds what `read_batch` returns or raises."""
        pool = self._process()
        if pool is None:
            return self._thread.submit(read_batch, workspace, connectors, body)
        outcome: Future[tuple[int, Received]] = Future()

        def settle(done: Future) -> None:
            error = done.exception()
            if isinstance(error, BrokenProcessPool):
                self._lost(pool)
                retry = self._thread.submit(read_batch, workspace, connectors, body)
                retry.add_done_callback(lambda again: _copy(again, outcome))
            else:
                _copy(done, outcome)

        try:
            pool.submit(read_batch, workspace, connectors, body).add_done_callback(settle)
        except (BrokenProcessPool, RuntimeError):  # broken, or shut down meanwhile
            self._lost(pool)
            return self._thread.submit(read_batch, workspace, connectors, body)
        return outcome

    async def read(self, workspace: str, connectors: Routes, body: bytes) -> tuple[int, Received]:
        """`submit` for the event loop."""
        return await asyncio.wrap_future(self.submit(workspace, connectors, body))

    def close(self) -> None:
        """Finish the batches under way, then stop the worker."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._thread.shutdown(wait=True)

    @property
    def worker_pids(self) -> list[int]:
        """The worker process ids (for tests and diagnostics)."""
        pool = self._pool
        return list(getattr(pool, "_processes", {}) or {}) if pool is not None else []


def _copy(source: Future, target: Future) -> None:
    error = source.exception()
    if error is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())
