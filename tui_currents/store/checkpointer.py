"""Copying the store's write-ahead log into its database file in the background (SQLite's checkpoint).

Left to itself, SQLite checkpoints on the connection that commits, right after a commit that takes the log
past `wal_autocheckpoint` pages: that commit then also copies and fsyncs everything written since the last
checkpoint (16 MB of pages here) before it returns, and whoever waits on it (a Braze request, the next
batch of an import) waits for that too. A checkpoint in PASSIVE mode can run beside a writer, on a
connection of its own, and sqlite3 lets other threads run meanwhile: so a thread of the writing process
does it, while the next batch is mapped or committed.

It copies about as much at a time as SQLite would (`CHECKPOINT_BYTES` committed, or what there is after
`MAX_DELAY_SECONDS`): each checkpoint writes again the pages every commit changes (the b-trees' upper
pages, counters) and fsyncs the database file, so many small ones would cost more than they save
(measured through the receiver with a checkpoint every 0.1 s: more CPU per event and slower commits).

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
# Copy once about this much has been committed (half of what SQLite's own threshold lets pile up)...
CHECKPOINT_BYTES = 8_000_000
# ...or once the first commit not copied yet is this old.
MAX_DELAY_SECONDS = 1.0
# What a commit that says nothing of its size counts for (a page or two: marks, states).
SMALL_COMMIT_BYTES = 32_768
# How long a restart of the log may wait for a reader still on an old snapshot: writers wait meanwhile, so
# briefly, and the next one tries again (a reader reading for long keeps the log from restarting anyway).
RESTART_WAIT_SECONDS = 0.25
# With no commit for this long the thread ends (a store opened for one write keeps no thread).
IDLE_SECONDS = 10.0
# After a failed checkpoint (a full disk, an I/O error), try again this much later.
RETRY_SECONDS = 2.0


class Checkpointer:
    """Checkpoints the store file at `path` from a thread of its own, after commits.

    `nudge(size)` after each commit; the thread starts at a nudge and ends after `IDLE_SECONDS` without one.
    `close()` stops it, waiting for a checkpoint under way (they are bounded by the log's size)."""

    def __init__(self, path: Path, synchronous: str):
        self.path = path
        self.synchronous = synchronous
        self._lock = threading.Lock()  # the thread's start and end, the pending size, the stop
        self._work = threading.Event()  # something was committed since the last checkpoint
        self._enough = threading.Event()  # enough to copy now (or: stop)
        self._stopping = threading.Event()
        self._pending = 0  # bytes committed since the last checkpoint began (about)
        self._thread: threading.Thread | None = None
        self._failing: str | None = None  # the last failure's text, logged once until a success

    def nudge(self, size: int = SMALL_COMMIT_BYTES) -> None:
        """A commit of about `size` bytes was made."""
        with self._lock:
            self._pending += size
            self._work.set()
            if self._pending >= CHECKPOINT_BYTES:
                self._enough.set()
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="store checkpoint", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop the thread (after the checkpoint under way, if any)."""
        with self._lock:
            self._stopping.set()
            self._work.set()
            self._enough.set()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            while True:
                if not self._work.wait(IDLE_SECONDS):
                    with self._lock:  # no commit for a while: end, until the next one
                        if not self._work.is_set():
                            self._thread = None
                            return
                    continue
                self._enough.wait(MAX_DELAY_SECONDS)
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self._work.clear()
                    self._enough.clear()
                    self._pending = 0
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
