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
import time
from collections import OrderedDict

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


class WarnOnce:
    """Warnings logged the first time their key is seen (a misconfigured sender repeats its request every
    few seconds), remembered per kind of warning so that one kind cannot silence another.

    Both bounds hold against a prober that makes up a new key per request: each kind remembers its
    `keys_per_kind` most recent keys (least recently seen forgotten first) and logs at most
    `lines_per_minute` new ones a minute; the rest are counted and said in one line with the next.
    """

    def __init__(self, logger: logging.Logger, *, keys_per_kind: int = 128, lines_per_minute: int = 10):
        self.logger = logger
        self.keys_per_kind = keys_per_kind
        self.lines_per_minute = lines_per_minute
        self._seen: dict[str, OrderedDict[str, None]] = {}
        self._minute: dict[str, tuple[float, int, int]] = {}  # kind: (minute began, logged, held back)
        self._lock = threading.Lock()

    def warn(self, kind: str, key: str, message: str, *args: object) -> bool:
        """Log `message % args` unless `key` of this `kind` was warned about recently; True if logged."""
        with self._lock:
            seen = self._seen.setdefault(kind, OrderedDict())
            if key in seen:
                seen.move_to_end(key)
                return False
            seen[key] = None
            if len(seen) > self.keys_per_kind:
                seen.popitem(last=False)
            now = time.monotonic()
            began, logged, held = self._minute.get(kind, (now, 0, 0))
            if now - began >= 60.0:
                began, logged, held = now, 0, held
            if logged >= self.lines_per_minute:
                self._minute[kind] = (began, logged, held + 1)
                return False
            self._minute[kind] = (began, logged + 1, 0)
        if held:
            self.logger.warning("%d more warnings like the next one were not logged (%s)", held, kind)
        self.logger.warning(message, *args)
        return True


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
