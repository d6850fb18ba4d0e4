"""Turns at writing the store, taken by the engine's process and its delivery process.

Two processes writing one SQLite file wait for each other's write lock through SQLite's busy handler,
which polls with growing sleeps (up to 100 ms): under a steady stream of commits, the delivery process's
small marks waited 42 ms on average and up to 1.2 s. A blocking `flock` on a side file is woken by the
kernel the moment the other process lets go (measured under the same load: about half the mean wait and a
third to a fifth of the p99). Each write transaction of either process is taken inside a turn; SQLite's
own lock stays the guarantee, the turn only orders the waiting. A process that dies holding its turn
gives it up with its file descriptor.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path


class WriteTurns:
    """An exclusive turn at writing, across processes (flock) and across this process's threads."""

    def __init__(self, path: Path):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        # flock belongs to the open file, which this process's threads share: they queue here first.
        self._threads = threading.Lock()

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the turn for one write transaction."""
        with self._threads:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def turns_file(store_file: Path) -> Path:
    """The side file the turns are taken on, beside the store."""
    return store_file.with_name(store_file.name + "-write-turns")
