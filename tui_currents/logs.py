"""Logging: one line per notable happening, to stderr and/or a private log file in the home.

Secrets are kept out by construction (nothing logs a key); as a second line of defence every secret value the
process reads is registered here and masked should it ever reach a log record.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from tui_currents.paths import Home

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FORMATS = ("human", "json")
DEFAULT_MAX_BYTES = 5_000_000
DEFAULT_KEEP = 3


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

    def _open(self):  # noqa: ANN202 - logging's own hook
        # Files made at rotation are private too, whatever the process's umask.
        fd = os.open(self.baseFilename, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)  # noqa: SIM115

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


class MaskedFormatter(logging.Formatter):
    """The human format, with every registered secret masked in the whole line (tracebacks included)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


# A %-placeholder of a log message, and the words before and after it that say what its value is.
_PLACEHOLDER = re.compile(r"%(?:\(\w+\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?([diouxXeEfFgGcrsa%])")
_NAMED_BEFORE = re.compile(r"\b(connector|workspace)\s*$", re.IGNORECASE)
_COUNT_AFTER = re.compile(r"^\s+(?:[a-z-]+\s+){0,2}(events?|messages?|dead letters?)\b", re.IGNORECASE)


def message_fields(record: logging.LogRecord) -> dict[str, object]:
    """The connector, workspace and event count a log line names, as fields: from `extra=` when given,
    else read from the message's own wording ("connector %r", "%d events")."""
    fields: dict[str, object] = {}
    args = record.args if isinstance(record.args, tuple) else ()
    if args and isinstance(record.msg, str):
        index = 0
        for match in _PLACEHOLDER.finditer(record.msg):
            if match.group(1) == "%":
                continue
            if index >= len(args):
                break
            value = args[index]
            index += 1
            named = _NAMED_BEFORE.search(record.msg, 0, match.start())
            if named and isinstance(value, str):
                fields.setdefault(named.group(1).lower(), value)
            elif (
                isinstance(value, int)
                and not isinstance(value, bool)
                and _COUNT_AFTER.match(record.msg[match.end() :])
            ):
                fields.setdefault("events", value)
    for key in ("connector", "workspace", "events"):
        if key in record.__dict__:
            fields[key] = record.__dict__[key]
    return fields


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: time (ISO-8601, UTC), level, logger, message, and the connector, workspace
    and event count when the line names them; every registered secret masked in every value."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message: dict) -> None:
        super().add_fields(log_data, record, message)
        log_data.update(message_fields(record))

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: _masked(value) for key, value in log_data.items()}

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))  # a second line of defence, over the encoded line


def formatter_for(log_format: str) -> logging.Formatter:
    """The formatter of "human" or "json" log lines."""
    if log_format == "json":
        return JsonLineFormatter()
    if log_format == "human":
        return MaskedFormatter(FORMAT)
    raise ValueError(f"the log format must be 'human' or 'json', not {log_format!r}")


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


def setup_logging(
    home: Home,
    *,
    verbose: bool = False,
    to_stderr: bool = True,
    log_format: str = "human",
    max_bytes: int = DEFAULT_MAX_BYTES,
    keep: int = DEFAULT_KEEP,
) -> None:
    """Log to home/tui-currents.log (0600, rotated past `max_bytes`, `keep` old files kept) and, for the
    headless service, to stderr; as human lines or JSON objects (`log_format`)."""
    formatter = formatter_for(log_format)
    root = logging.getLogger("tui_currents")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    home.log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(home.log_file, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(home.log_file, 0o600)
    file_handler = LogFile(home.log_file, maxBytes=max_bytes, backupCount=keep, delay=True)
    handlers: list[logging.Handler] = [file_handler]
    if to_stderr:
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(SecretMask())
        root.addHandler(handler)
    root.propagate = False
