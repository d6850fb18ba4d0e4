"""Child processes of the service (the mapping worker, the delivery process, import workers), started one
way: over a socket pair whose far end only the child holds (its death reads as end-of-stream here), with an
environment that carries no secret. Light on purpose: an import worker's parent need not load asyncio."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from multiprocessing.connection import Connection

WORKER_MODULE = "tui_currents.sources.mapping_worker"
# The environment a worker gets: what Python and the C library need to start and to decode text. Nothing
# else, so no key, token or passphrase of the engine's environment reaches it.
WORKER_ENVIRONMENT = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSAFEPATH",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONPYCACHEPREFIX",
    "PYTHONUTF8",
    "SYSTEMROOT",
)


def worker_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The part of `environ` (this process's by default) a mapping worker gets."""
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in WORKER_ENVIRONMENT if name in environ}


def start_child(module: str, *args: str) -> tuple[subprocess.Popen, Connection]:
    """`python -m module FD *args` with the allowlisted environment; returns the process and this side's
    end of its socket pair (the child is handed its end as FD)."""
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", module, str(theirs.fileno()), *args],
            pass_fds=(theirs.fileno(),),
            env=worker_environment(),
            stdin=subprocess.DEVNULL,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()  # only the child holds its end
    return process, Connection(ours.detach())
