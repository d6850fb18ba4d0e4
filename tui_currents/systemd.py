"""systemd's notify protocol (`Type=notify`): a few datagrams to the socket named in $NOTIFY_SOCKET.

READY=1 once the service does its job, STOPPING=1 when it begins to stop, WATCHDOG=1 every half of
$WATCHDOG_USEC while healthy (systemd restarts it when they stop coming). Without $NOTIFY_SOCKET (not
started by systemd) every call does nothing. See sd_notify(3).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("tui_currents.systemd")


class Notifier:
    """Sends state changes to systemd; silent and harmless when not run by it."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        if address and address.startswith("@"):  # an abstract socket name
            address = "\0" + address[1:]
        self.address = address
        self._watchdog_usec = env.get("WATCHDOG_USEC")
        self._watchdog_pid = env.get("WATCHDOG_PID")
        self._failed = False

    @property
    def enabled(self) -> bool:
        """True when systemd listens (the service was started with Type=notify)."""
        return self.address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WatchdogSec=), or None when no watchdog is asked for
        this process."""
        if not self.enabled or not self._watchdog_usec:
            return None
        if self._watchdog_pid and self._watchdog_pid != str(os.getpid()):
            return None  # meant for another process (e.g. a wrapper's child)
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        return usec / 2 / 1_000_000 if usec > 0 else None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` lines in one datagram; True when sent. A failure is logged once, never raised:
        a lost notification must not stop forwarding."""
        if self.address is None:
            return False
        payload = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(payload)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning(
                    "could not notify systemd at $NOTIFY_SOCKET (%s); carrying on", exc.strerror or exc
                )
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """The service is up: the receiver listens and the store is open."""
        return self.notify("READY=1", *((f"STATUS={status}",) if status else ()))

    def stopping(self) -> bool:
        """The service has begun to stop."""
        return self.notify("STOPPING=1", "STATUS=stopping: finishing batches in flight")

    def watchdog(self) -> bool:
        """The service is healthy (send every `watchdog_interval()` seconds)."""
        return self.notify("WATCHDOG=1")
