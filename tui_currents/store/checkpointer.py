"""Copying the store's write-ahead log into its database file in the background (SQLite's checkpoint).

Left to itself, SQLite checkpoints on the connection that commits, right after a commit that takes the log
past `wal_autocheckpoint` pages: that commit then also copies and fsyncs everything written since the last
checkpoint (16 MB of pages here) before it returns, and whoever waits on it (a Braze request, the next
batch of an import) waits for that too. A checkpoint in PASSIVE mode can run beside a writer, on a
connection of its own, and sqlite3 lets other threads run meanwhile: so a thread of the writing process
does it shortly after commits, while the next batch is mapped or committed.

The log stays bounded: once it is `BACKSTOP_PAGES` long (commits followed each other so closely that no
checkpoint ever found it wholly copied, when the next commit would start it afresh), this thread restarts
it, making writers wait the short while that takes; and the writer keeps its own autocheckpoint at that
threshold, for when this thread falls behind or cannot checkpoint (a full disk).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("tui_currents.store")

# The committing connection checkpoints by itself only past this many pages of log (64 MB of 16 KB
# pages, the size `journal_size_limit` trims the log back to).
BACKSTOP_PAGES = 4096
# After a commit, wait this long for more before copying: one checkpoint (and one fsync of the database
# file) for the commits of that time, not one per commit.
GATHER_SECONDS = 0.1
# How long a restart of the log may wait for a reader still on an old snapshot: writers wait meanwhile, so
# briefly, and the next one tries again (a reader reading for long keeps the log from restarting anyway).
RESTART_WAIT_SECONDS = 0.25
# With no commit for this long the thread ends (a store opened for one write keeps no thread).
IDLE_SECONDS = 10.0
# After a failed checkpoint (a full disk, an I/O error), try again this much later.
RETRY_SECONDS = 2.0


class Checkpointer:
    """Checkpoints the store file at `path` from a thread of its own, shortly after commits.

    `nudge()` after each commit; the thread starts at a nudge and ends after `IDLE_SECONDS` without one.
    `close()` stops it, waiting for a checkpoint under way (they are bounded by the log's size)."""

    def __init__(self, path: Path, synchronous: str):
        self.path = path
        self.synchronous = synchronous
        self._work = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._failing: str | None = None  # the last failure's text, logged once until a success

    def nudge(self) -> None:
        """A commit was made: checkpoint soon."""
        with self._start_lock:
            self._work.set()
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="store checkpoint", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop the thread (after the checkpoint under way, if any)."""
        with self._start_lock:
            self._stopping.set()
            self._work.set()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            while True:
                if not self._work.wait(IDLE_SECONDS):
                    with self._start_lock:  # no commit for a while: end, until the next one
                        if not self._work.is_set():
                            self._thread = None
                            return
                    continue
                if self._stopping.wait(GATHER_SECONDS):
                    return
                self._work.clear()
                if self._stopping.is_set():  # close() came between the two lines above: its wake-up is gone
                    return
                try:
                    if db is None:
                        db = self._connect()
                    _, log_pages, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if log_pages >= BACKSTOP_PAGES:
                        # Commits kept coming while it copied, so the log never came to an end at which
                        # the next commit could start it afresh: make one (writers wait the short
                        # while it takes to copy the last frames).
                        db.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
                except sqlite3.Error as exc:
                    self._failed(exc)
                    if db is not None:
                        db.close()
                        db = None
                    self._work.set()  # what was not copied is still to copy
                    if self._stopping.wait(RETRY_SECONDS):
                        return
                else:
                    if self._failing is not None:
                        log.info("store checkpoints work again")
                        self._failing = None
        finally:
            if db is not None:
                db.close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=RESTART_WAIT_SECONDS, isolation_level=None, check_same_thread=False
        )
        # The checkpoint's fsyncs follow the store's durability setting.
        db.execute(f"PRAGMA synchronous = {self.synchronous}")
        return db

    def _failed(self, exc: sqlite3.Error) -> None:
        text = str(exc)
        if text != self._failing:
            # Nothing is lost: the log keeps every commit, and the writer's own checkpoint bounds its size.
            log.warning(
                "could not copy the store's log into %s (%s); the log keeps everything, trying again",
                self.path.name,
                text,
            )
            self._failing = text
