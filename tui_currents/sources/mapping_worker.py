"""The mapping worker process: `python -m tui_currents.sources.mapping_worker FD`.

Started by intake.MappingProcess with one end of a socket pair as file descriptor FD and an environment
without secrets. It says it is ready, then answers each (workspace, connectors, body) it receives with
(True, read_batch's result) or (False, the error read_batch raised), one at a time. It ends when the
engine's end of the pipe closes: the engine stopped, was killed, or gave up on this worker.
"""

from __future__ import annotations

import gc
import pickle
import signal
import sys
from multiprocessing.connection import Connection


def _sendable(error: Exception) -> Exception:
    """The error itself when it crosses the pipe, else a plain one naming its type."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"reading the batch failed ({type(error).__name__})")
    return error


def serve(connection: Connection) -> None:
    """Answer jobs until the other end goes away."""
    from tui_currents.sources.mapping_job import READY, read_batch  # imported here: the worker's start-up

    # The worker keeps nothing between batches: what the start imported need never be collected.
    gc.freeze()
    try:
        connection.send(READY)
        while True:
            workspace, connectors, body = connection.recv()
            try:
                reply: tuple[bool, object] = (True, read_batch(workspace, connectors, body))
            except Exception as exc:
                reply = (False, _sendable(exc))
            connection.send(reply)
    except (EOFError, OSError):
        return  # the engine is gone, or done with this worker


def main(argv: list[str]) -> int:
    # Ctrl-C in a terminal reaches the whole process group: the engine decides when the worker ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(Connection(int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
