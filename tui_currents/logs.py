"""Logging: one line per notable happening, to stderr and/or a private log file in the home.

Secrets are kept out by construction (nothing logs a key); as a second line of defence every secret value the
process reads is registered here and masked should it ever reach a log record.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import sys
import threading

from tui_currents.paths import Home

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def register_secret(value: str | None) -> None:
    """Mask this value in every log line from now on (values shorter than 6 characters are not masked)."""
    if value and len(value) >= 6:
        with _secrets_lock:
            _secrets.add(value)


def mask(text: str) -> str:
    """Replace every registered secret in text with a fixed mask."""
    with _secrets_lock:
        known = tuple(_secrets)
    for value in known:
        if value in text:
            text = text.replace(value, "[secret]")
    return text


class SecretMask(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked is not message and masked != message:
            record.msg, record.args = masked, None
        return True


class LogFile(logging.handlers.RotatingFileHandler):
    """The home's log file. When it cannot be written (a full disk), say so once on stderr and carry on:
    the engine must keep forwarding, and a traceback per log line would bury the one message that matters."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._failing = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            super().emit(record)
        except Exception:
            self.handleError(record)
            return
        if self._failing and self.stream is not None:
            self._failing = False
            sys.stderr.write(f"tui-currents: the log file {self.baseFilename} can be written again\n")

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's own name
        if not self._failing:
            self._failing = True
            error = sys.exc_info()[1]
            reason = getattr(error, "strerror", None) or type(error).__name__
            sys.stderr.write(
                f"tui-currents: cannot write the log file {self.baseFilename} ({reason}); "
                "log lines are dropped until it can be written again\n"
            )
        # A half-written line may sit in the buffer: drop the stream so the next emit reopens the file.
        with contextlib.suppress(Exception):
            if self.stream is not None:
                self.stream.close()
        self.stream = None


def setup_logging(home: Home, *, verbose: bool = False, to_stderr: bool = True) -> None:
    """Log to home/tui-currents.log (0600, rotated) and, for the headless service, to stderr."""
    root = logging.getLogger("tui_currents")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    home.log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(home.log_file, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(home.log_file, 0o600)
    file_handler = LogFile(home.log_file, maxBytes=5_000_000, backupCount=3, delay=True)
    handlers: list[logging.Handler] = [file_handler]
    if to_stderr:
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(SecretMask())
        root.addHandler(handler)
    root.propagate = False
