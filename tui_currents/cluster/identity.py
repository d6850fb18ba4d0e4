"""This home's name among the cluster's instances: made once, kept in the home, the same after restarts.

The engine of a home writes its counters and its presence under this name. Any other process of the home
that writes to the queue (a command requeueing dead letters, a console removing a connector) writes its
counters under a name of its own (`writer_key`), so that it never overwrites the engine's.
"""

from __future__ import annotations

import os
import socket
import uuid

from tui_currents.paths import Home, write_private

INSTANCE_FILE = "cluster-instance"


def instance_name(home: Home) -> str:
    """The home's instance name ("<host>-<8 hex>"), created on first use (0600 file in the home's data)."""
    path = home.data / INSTANCE_FILE
    try:
        name = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        name = ""
    if name:
        return name
    home.ensure()
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40] or "host"
    name = f"{host}-{uuid.uuid4().hex[:8]}"
    write_private(path, name + "\n")
    return name


def runs_the_engine(home: Home) -> bool:
    """Whether this process holds the home's engine lock (the engine writes its pid into the lock file
    once it has the lock; a stale pid of a dead engine never equals a live process's own)."""
    try:
        return home.lock_file.read_text(encoding="utf-8").strip() == str(os.getpid())
    except (FileNotFoundError, UnicodeDecodeError):
        return False


def writer_key(home: Home) -> str:
    """The counters' key of a process that is not the home's engine: unique to this process."""
    return f"{instance_name(home)}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
