"""Import worker processes: `python -m tui_currents.sources.import_workers FD`.

Reading an Avro file with fastavro, and mapping its records, hold Python's lock, so the importing process
alone would use one core. Workers read and map files (`avro_files.read_file`) on the other cores and hand
back each chunk in the store's form; the importing process commits, notes the resume point and counts,
and reads small files itself when no chunk is waiting (`avro_import`). A worker is handed its next file
while it reads one, so it never waits between files; a thread sends its chunks while it reads on, one
chunk waiting at most, which holds back a worker that runs ahead of the commits.

Workers start with the environment the mapping worker gets (no key, token or passphrase), load only the
reading and mapping code, and ignore Ctrl-C: the importing process decides when they end. They end when
its end of the socket closes, which also happens when it is killed: a worker then fails to send, or reads
end-of-stream, and exits."""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait

from tui_currents.child_process import start_child
from tui_currents.sources.avro_files import Chunk, FileEnd, ReadJob, read_file

WORKER_MODULE = "tui_currents.sources.import_workers"
READY = "ready"
MAX_WORKERS = 2  # the commit, in the importing process, keeps up with about two readers
JOBS_AHEAD = 2  # files handed to a worker at a time: the one it reads, and the next


class WorkerLost(Exception):
    """A worker process stopped in the middle of a file."""


def workers_wanted(total_bytes: int) -> int:
    """How many worker processes an import of this many bytes of Avro files is worth: none on one core
    or for a few megabytes (starting a worker costs about as much as reading 10,000 records)."""
    cores = os.cpu_count() or 1
    if cores < 2 or os.name != "posix" or total_bytes < 4_000_000:
        return 0
    return min(MAX_WORKERS, cores)


class _Worker:
    def __init__(self) -> None:
        # Only the worker holds its end of the pipe: its death reads here as end-of-stream.
        self.process, self.connection = start_child(WORKER_MODULE)
        self.jobs: deque[ReadJob] = deque()  # the file it reads now, then those it reads next, in order

    def close(self) -> None:
        self.connection.close()
        try:
            self.process.wait(2.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(2.0)

    def lost(self) -> WorkerLost:
        code = self.process.poll()
        how = f"it was stopped by signal {-code}" if code is not None and code < 0 else "it stopped"
        return WorkerLost(
            f"the process reading {self.jobs[0].path if self.jobs else 'a file'} was lost ({how}); what "
            "was committed is kept: run the same import again and it resumes where each file stopped"
        )


class ImportWorkers:
    """A few worker processes, each reading one file at a time, with its next file already handed over
    (so that it never waits for this process between files). Use as a context manager."""

    def __init__(self, count: int):
        self._workers: list[_Worker] = []
        try:
            for _ in range(count):
                self._workers.append(_Worker())
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> ImportWorkers:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._workers = []

    def wanting(self) -> bool:
        """Whether a worker has room for another file (the one it reads and the next)."""
        return any(len(worker.jobs) < JOBS_AHEAD for worker in self._workers)

    def busy(self) -> bool:
        return any(worker.jobs for worker in self._workers)

    def give(self, job: ReadJob) -> None:
        """Hand a file to the worker with the fewest files."""
        worker = min(self._workers, key=lambda w: len(w.jobs))
        worker.jobs.append(job)
        try:
            worker.connection.send(job)
        except OSError:
            raise worker.lost() from None

    def results(self, timeout: float | None = None) -> Iterator[tuple[ReadJob, Chunk | FileEnd]]:
        """The next chunks or file ends of the workers' files, as they come (none if nothing came within
        `timeout` seconds; None: wait for them). Raises WorkerLost."""
        by_connection = {worker.connection: worker for worker in self._workers if worker.jobs}
        for connection in wait(list(by_connection), timeout):
            worker = by_connection[connection]  # type: ignore[index]
            try:
                message = worker.connection.recv()
                while message == READY:  # said once, when its imports are done
                    message = worker.connection.recv()
            except (EOFError, OSError):
                raise worker.lost() from None
            job = worker.jobs[0]  # a worker reads its files in the order given
            if isinstance(message, FileEnd):
                worker.jobs.popleft()
            yield job, message


def _send_in_turn(connection: Connection, outgoing: queue.Queue[bytes]) -> None:
    """Send what the reading thread made ready, so that it reads on while a send waits for the importing
    process (busy committing). Exits the worker when the importing process is gone."""
    try:
        while True:
            connection.send_bytes(outgoing.get())
    except OSError:
        os._exit(0)  # nobody to read for: the reading thread may be blocked putting the next chunk


def serve(connection: Connection) -> None:
    """Read the files the importing process hands over until it goes away."""
    # What the start imported need never be collected, and what a file's chunks hold (records, messages,
    # flat lists) has no reference cycles: the collector's passes over thousands of live records would
    # cost about a tenth of the worker's time. Anything cyclic left behind is collected after each file.
    gc.freeze()
    gc.disable()
    # One chunk waits here while another is being sent: memory stays bounded when the commits lag.
    outgoing: queue.Queue[bytes] = queue.Queue(maxsize=1)
    threading.Thread(target=_send_in_turn, args=(connection, outgoing), daemon=True).start()
    put = outgoing.put
    try:
        put(_dumps(READY))
        while True:
            job: ReadJob = connection.recv()
            try:
                for message in read_file(job):
                    put(_dumps(message))
            except OSError as exc:
                put(_dumps(FileEnd(0, f"could not be read: {exc.strerror or exc}")))
            gc.collect()
    except (EOFError, OSError):
        return  # the importing process is gone, or done with this worker


def _dumps(message: object) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def main(argv: list[str]) -> int:
    # Ctrl-C in a terminal reaches the whole process group: the importing process decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(Connection(int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
