"""A helper process ends with the process that started it, even when that one is SIGKILLed.

On Linux the kernel sends the helper SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG); everywhere the
helper also reads end-of-stream on the pipe only its parent holds the other end of (see its module). The
kernel tracks the parent *thread* that started the helper, so the engine starts helpers from threads that
live as long as the engine (its event loop's, a watcher's).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def end_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent ends; exit now if it already did (the
    parent died between starting this process and this call)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl here: the end of the pipe still ends the helper
    if os.getppid() != parent_pid:
        os._exit(0)
