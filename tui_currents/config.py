"""Workspaces, connectors and settings, kept in the home's config.toml.

Read with the standard library's tomllib; written with tomlkit by merging value by value into the file as
it is on disk, so a user's comments, ordering and formatting survive every save. Writes are atomic and
0600. A file that does not parse is never overwritten. The file never holds secrets: write keys, receiver
tokens and the SMTP password live in the keyring (see secrets.py).

Every save is validated; `validate_connector` gives the same answers field by field for the editor.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import tomlkit
from tomlkit.container import Container
from tomlkit.items import AoT, Comment, Item, Table, Whitespace

from tui_currents import catalog, segment
from tui_currents.paths import Home, exclusive_lock, write_private
from tui_currents.secrets import env_name_part, receiver_token_env_var, write_key_env_var

if TYPE_CHECKING:
    from tui_currents.mapping import ConnectorRules

REGIONS = ("us", "eu")
CUSTOM_REGION = "custom"
TRANSFORMS = ("redact", "hash")
UNTRANSFORMABLE_FIELDS = ("id", "time")  # Segment needs them intact to deduplicate and to date events
DURABILITY = ("full", "normal")
SMTP_SECURITY = ("starttls", "ssl", "none")
LOG_FORMATS = ("human", "json")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024  # Braze batches of 100 events stay far below this
MAX_NAME_CHARS = 64
MAX_RETENTION_DAYS = 3650
MAX_IN_FLIGHT = 64
DUPLICATE_RULE = (
    "two connectors of one workspace must not select the same event type "
    "(Segment would drop one copy as a duplicate messageId)"
)

_CONNECTOR_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 _-]*[A-Za-z0-9_-])?")
_WORKSPACE_NAME = re.compile(r"[A-Za-z0-9_-]+")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")

HEADER = (
    "tui-currents configuration. Edit it freely: comments and order are kept when the app saves changes.",
    "It never holds secrets: write keys, receiver tokens and the SMTP password are kept in the keyring.",
)


class ConfigError(Exception):
    """The config file cannot be read or a change cannot be saved; the message says why and what to do."""

    def __init__(self, message: str, *, path: Path | None = None, problems: list[str] | None = None):
        super().__init__(message)
        self.path = path
        self.problems = list(problems or [])


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field, named as the dataclass names it (for showing next to the field)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


# --------------------------------------------------------------------------------------------- model


@dataclass
class Workspace:
    """A Braze workspace: Braze posts its Currents to /currents/<name> with the workspace's token."""

    name: str

    @property
    def receiver_path(self) -> str:
        return f"/currents/{self.name}"


@dataclass
class Connector:
    """Where one workspace's selected events go in Segment (Braze calls it "a Current")."""

    name: str
    workspace: str
    contact_email: str
    region: str = "us"  # "us" | "eu" | "custom" (with `endpoint`)
    endpoint: str | None = None
    events: list[str] = field(default_factory=list)
    include_anonymous: bool = False
    enabled: bool = True
    paused: bool = False
    name_overrides: dict[str, str] = field(default_factory=dict)  # event type -> Segment event name
    field_transforms: dict[str, str] = field(default_factory=dict)  # field -> "redact" | "hash"
    retention_days: int = 30
    max_in_flight: int = 4
    gzip: bool = False

    @property
    def active(self) -> bool:
        """Enabled and not paused: its delivery loop should run."""
        return self.enabled and not self.paused

    def rules(self) -> ConnectorRules:
        """The mapping rules for this connector (event types in their canonical names)."""
        from tui_currents.mapping import ConnectorRules

        return ConnectorRules(
            selected=frozenset(catalog.canonical_name(e) for e in self.events),
            include_anonymous=self.include_anonymous,
            name_overrides={catalog.canonical_name(k): v for k, v in self.name_overrides.items()},
            field_transforms=dict(self.field_transforms),
        )

    def batch_url(self) -> str:
        """The Segment /v1/batch URL this connector posts to."""
        return segment.batch_url(self.region, self.endpoint if self.region == CUSTOM_REGION else None)

    def to_dict(self) -> dict[str, Any]:
        """A plain copy of the fields (for JSON output)."""
        return dataclasses.asdict(self)


@dataclass
class ReceiverSettings:
    """The Braze Custom HTTP Currents receiver."""

    host: str = "127.0.0.1"
    port: int = 8750  # 0 picks a free port (tests)
    tls_cert: str | None = None
    tls_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


@dataclass
class SmtpSettings:
    """Where alert emails go out (to each connector's contact email). The password is in the keyring."""

    host: str
    from_address: str
    port: int = 587
    username: str | None = None
    security: str = "starttls"  # "starttls" | "ssl" | "none" (loopback hosts only)


@dataclass
class MetricsSettings:
    """The Prometheus /metrics listener of `tui-currents run`, on its own port (never the receiver's)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9750


@dataclass
class LogSettings:
    """The service's log lines: "human" (the default) or "json" (one object per line), and the rotation
    of the home's log file."""

    format: str = "human"
    max_bytes: int = 5_000_000  # the log file is rotated past this size
    keep: int = 3  # rotated files kept beside it


@dataclass
class AlertSettings:
    """Where alerts go besides e-mail. The webhook's URL is a secret: it is kept in the keyring."""

    webhook: bool = False


@dataclass
class DeadLetterSettings:
    """Bounds on the dead letters, so that a flood of bad events cannot fill the disk. Beyond them the
    oldest dead letters are dropped (counted, and said in the log and `status`)."""

    max_per_request: int = 1_000  # dead letters one received request (or import batch) may add
    max_total: int = 100_000  # dead letters kept in all; the oldest go first
    max_event_bytes: int = 16_384  # a stored raw event larger than this is cut, with a marker


@dataclass
class UiSettings:
    theme: str = "currents-dark"
    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> keys, as Textual's set_keymap


@dataclass
class Config:
    workspaces: list[Workspace] = field(default_factory=list)
    connectors: list[Connector] = field(default_factory=list)
    receiver: ReceiverSettings = field(default_factory=ReceiverSettings)
    smtp: SmtpSettings | None = None
    ui: UiSettings = field(default_factory=UiSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    logs: LogSettings = field(default_factory=LogSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    durability: str = "full"  # "full" | "normal": SQLite's synchronous setting for the store
    dead_letters: DeadLetterSettings = field(default_factory=DeadLetterSettings)

    def connector(self, name: str) -> Connector:
        """The connector with this name; KeyError (with a readable message) if there is none."""
        for connector in self.connectors:
            if connector.name == name:
                return connector
        known = ", ".join(repr(c.name) for c in self.connectors) or "none yet"
        raise KeyError(f"no connector named {name!r} (connectors: {known})")

    def workspace(self, name: str) -> Workspace:
        """The workspace with this name; KeyError (with a readable message) if there is none."""
        for workspace in self.workspaces:
            if workspace.name == name:
                return workspace
        known = ", ".join(repr(w.name) for w in self.workspaces) or "none yet"
        raise KeyError(f"no workspace named {name!r} (workspaces: {known})")

    def connectors_of(self, workspace: str) -> list[Connector]:
        return [c for c in self.connectors if c.workspace == workspace]


# --------------------------------------------------------------------------------------------- checks


def email_problem(value: object) -> str | None:
    """Why `value` is not a plausible email address, or None. A sanity check, not RFC 5322."""
    if not isinstance(value, str) or not value.strip():
        return "is empty; give an address for alerts, like ops@example.com"
    if any(ch.isspace() for ch in value):
        return f"{value!r} contains spaces"
    if len(value) > 254:
        return "is longer than 254 characters"
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        return f"{value!r} is not an email address (expected name@example.com)"
    if "@" in local:
        return f"{value!r} has more than one @"
    if (
        len(local) > 64
        or not _EMAIL_LOCAL.fullmatch(local)
        or ".." in local
        or local[0] == "."
        or local[-1] == "."
    ):
        return f"{value!r} has an invalid part before the @"
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return f"{value!r} has an invalid domain"
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_DNS_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        return f"{value!r} has an invalid domain (expected something like example.com)"
    return None


def endpoint_problem(url: object) -> str | None:
    """Why `url` cannot be a custom Segment endpoint, or None: https, or http on a loopback host only."""
    if not isinstance(url, str) or not url.strip():
        return "is empty; give the base URL of your Segment proxy, like https://segment-proxy.example.com"
    if any(ch.isspace() for ch in url):
        return f"{url!r} contains spaces"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        return f"{url!r} must start with https:// (http:// only for 127.0.0.1, localhost or ::1)"
    if parts.username is not None or parts.password is not None:
        return "must not hold a user name or password: the config file is no place for credentials"
    host = parts.hostname
    if not host:
        return f"{url!r} has no host name"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return f"{url!r} has an invalid port"
    if scheme == "http" and host not in LOOPBACK_HOSTS:
        return (
            f"{url!r} uses plain http:// to {host}; write keys would travel unencrypted. "
            "Use https:// (http:// is only allowed to 127.0.0.1, localhost or ::1)"
        )
    if parts.query or parts.fragment:
        return f"{url!r} must not have a ?query or #fragment"
    return None


def _type_name(annotation: str) -> str:
    return {"str": "text", "int": "a whole number", "bool": "true or false"}.get(annotation, annotation)


def _type_problem(value: object, annotation: str) -> str | None:
    """Check a value against one of the simple annotations this module uses."""
    optional = annotation.endswith("| None")
    base = annotation.removesuffix("| None").strip()
    if value is None:
        return None if optional else "is missing"
    if base == "str":
        ok = isinstance(value, str)
    elif base == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base == "bool":
        ok = isinstance(value, bool)
    elif base == "list[str]":
        if not isinstance(value, list | tuple):
            return f"must be a list of text, not {type(value).__name__}"
        ok = all(isinstance(v, str) for v in value)
    elif base == "dict[str, str]":
        if not isinstance(value, Mapping):
            return f"must be a table of text values, not {type(value).__name__}"
        ok = all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    else:
        return None  # nested settings objects are checked on their own
    if ok:
        return None
    return f"must be {_type_name(base)}, not {type(value).__name__}"


def _field_types(cls: type) -> dict[str, str]:
    return {f.name: str(f.type) for f in dataclasses.fields(cls)}


def _type_errors(obj: object) -> list[FieldError]:
    return [
        FieldError(name, problem)
        for name, annotation in _field_types(type(obj)).items()
        if (problem := _type_problem(getattr(obj, name), annotation))
    ]


def _in_range(value: int, low: int, high: int, what: str) -> str | None:
    if not low <= value <= high:
        return f"must be between {low} and {high} {what}, not {value}"
    return None


def _name_list(names: list[str], limit: int = 8) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"


def _known_event(event_type: str) -> bool:
    return catalog.find(catalog.canonical_name(event_type)) is not None


def _connector_errors(connector: Connector, others: list[Connector], config: Config) -> list[FieldError]:
    errors = _type_errors(connector)
    bad = {e.field for e in errors}

    if "name" not in bad:
        name = connector.name
        if not name.strip():
            errors.append(FieldError("name", "is empty; give the connector a name"))
        elif len(name) > MAX_NAME_CHARS:
            errors.append(FieldError("name", f"is longer than {MAX_NAME_CHARS} characters"))
        elif not _CONNECTOR_NAME.fullmatch(name):
            errors.append(
                FieldError(
                    "name", f"{name!r} may only use letters, digits, spaces, - and _ (no space at the ends)"
                )
            )
        elif any(o.name == name for o in others):
            errors.append(FieldError("name", f"a connector named {name!r} already exists"))
        else:
            twin = next((o for o in others if env_name_part(o.name) == env_name_part(name)), None)
            if twin is not None:
                errors.append(
                    FieldError(
                        "name",
                        f"{name!r} is too close to connector {twin.name!r}: both would take their write key "
                        f"override from {write_key_env_var(name)}",
                    )
                )

    if "workspace" not in bad:
        names = [w.name for w in config.workspaces]
        if connector.workspace not in names:
            known = ", ".join(names) or "none yet"
            errors.append(
                FieldError(
                    "workspace",
                    f"no workspace named {connector.workspace!r}; add it first (workspaces: {known})",
                )
            )

    if "contact_email" not in bad and (problem := email_problem(connector.contact_email)):
        errors.append(FieldError("contact_email", problem))

    if "region" not in bad and "endpoint" not in bad:
        if connector.region == CUSTOM_REGION:
            if connector.endpoint is None:
                errors.append(FieldError("endpoint", "region 'custom' needs an endpoint URL"))
            elif problem := endpoint_problem(connector.endpoint):
                errors.append(FieldError("endpoint", problem))
        elif connector.region not in REGIONS:
            errors.append(FieldError("region", f"must be 'us', 'eu' or 'custom', not {connector.region!r}"))
        elif connector.endpoint is not None:
            errors.append(
                FieldError(
                    "region",
                    f"is {connector.region!r} but an endpoint is set; use region 'custom' with an endpoint, "
                    "or remove the endpoint",
                )
            )

    if "events" not in bad:
        unknown = [e for e in connector.events if not _known_event(e)]
        if not connector.events:
            errors.append(FieldError("events", "select at least one event type"))
        elif unknown:
            errors.append(
                FieldError(
                    "events", f"unknown event types: {_name_list(unknown)} (see `tui-currents events`)"
                )
            )
        elif "workspace" not in bad:
            mine = {catalog.canonical_name(e) for e in connector.events}
            for other in others:
                if other.workspace != connector.workspace or not isinstance(other.events, list | tuple):
                    continue
                theirs = {catalog.canonical_name(e) for e in other.events if isinstance(e, str)}
                overlap = [
                    e
                    for e in dict.fromkeys(catalog.canonical_name(e) for e in connector.events)
                    if e in theirs
                ]
                if overlap and mine:
                    errors.append(
                        FieldError(
                            "events",
                            f"connector {other.name!r} already forwards {_name_list(overlap)} from workspace "
                            f"{connector.workspace!r}; {DUPLICATE_RULE}",
                        )
                    )

    if "name_overrides" not in bad:
        unknown = [k for k in connector.name_overrides if not _known_event(k)]
        empty = [k for k, v in connector.name_overrides.items() if not v.strip() or v != v.strip()]
        if unknown:
            errors.append(FieldError("name_overrides", f"unknown event types: {_name_list(unknown)}"))
        elif empty:
            errors.append(
                FieldError(
                    "name_overrides",
                    f"the Segment name for {_name_list(empty)} is empty or has spaces at its ends",
                )
            )

    if "field_transforms" not in bad:
        for name, transform in connector.field_transforms.items():
            if not name.strip():
                errors.append(FieldError("field_transforms", "a field name is empty"))
            elif name in UNTRANSFORMABLE_FIELDS:
                errors.append(
                    FieldError(
                        "field_transforms",
                        f"{name!r} cannot be transformed: Segment needs it intact to deduplicate and date "
                        "events",
                    )
                )
            elif transform not in TRANSFORMS:
                errors.append(
                    FieldError("field_transforms", f"{name!r}: must be 'redact' or 'hash', not {transform!r}")
                )

    if "retention_days" not in bad and (
        problem := _in_range(connector.retention_days, 1, MAX_RETENTION_DAYS, "days")
    ):
        errors.append(FieldError("retention_days", problem))
    if "max_in_flight" not in bad and (
        problem := _in_range(connector.max_in_flight, 1, MAX_IN_FLIGHT, "requests")
    ):
        errors.append(FieldError("max_in_flight", problem))
    return errors


def validate_connector(
    connector: Connector, config: Config, *, replacing: str | None = None
) -> list[FieldError]:
    """Every problem with `connector` as it would stand in `config`, one per field problem.

    `replacing` is the name of the connector being edited (it is left out of the uniqueness and overlap
    checks, even when the edit renames it); leave it None when adding a connector. Overlap is checked
    against every connector of the workspace, paused or disabled too: turning one back on must not create
    a duplicate.
    """
    others = [c for c in config.connectors if replacing is None or c.name != replacing]
    return _connector_errors(connector, others, config)


def validate_workspace(
    workspace: Workspace, config: Config, *, replacing: str | None = None
) -> list[FieldError]:
    """Problems with a workspace's name: it is the receiver's URL path, so only letters, digits, - and _."""
    errors = _type_errors(workspace)
    if errors:
        return errors
    others = [w for w in config.workspaces if replacing is None or w.name != replacing]
    name = workspace.name
    if not name:
        errors.append(FieldError("name", "is empty; give the workspace a name, like prod"))
    elif len(name) > MAX_NAME_CHARS:
        errors.append(FieldError("name", f"is longer than {MAX_NAME_CHARS} characters"))
    elif not _WORKSPACE_NAME.fullmatch(name):
        errors.append(
            FieldError(
                "name",
                f"{name!r} may only use letters, digits, - and _ (it is the URL path /currents/<name>)",
            )
        )
    elif any(o.name == name for o in others):
        errors.append(FieldError("name", f"a workspace named {name!r} already exists"))
    elif twin := next((o for o in others if env_name_part(o.name) == env_name_part(name)), None):
        errors.append(
            FieldError(
                "name",
                f"{name!r} is too close to workspace {twin.name!r}: both would take their receiver token "
                f"override from {receiver_token_env_var(name)}",
            )
        )
    return errors


def _settings_errors(config: Config) -> list[str]:
    problems: list[str] = []
    receiver = config.receiver
    type_errors = _type_errors(receiver)
    problems += [f"[receiver] {e}" for e in type_errors]
    if not type_errors:
        if not receiver.host.strip():
            problems.append("[receiver] host: is empty; use 127.0.0.1 (this machine only) or 0.0.0.0 (all)")
        if problem := _in_range(receiver.port, 0, 65535, "(0 picks a free port)"):
            problems.append(f"[receiver] port: {problem}")
        if (receiver.tls_cert is None) != (receiver.tls_key is None):
            problems.append(
                "[receiver] tls_cert, tls_key: give both (certificate and its private key) or neither"
            )
        if problem := _in_range(receiver.max_body_bytes, 1024, 1024**3, "bytes"):
            problems.append(f"[receiver] max_body_bytes: {problem}")

    if config.smtp is not None:
        smtp = config.smtp
        type_errors = _type_errors(smtp)
        problems += [f"[smtp] {e}" for e in type_errors]
        if not type_errors:
            if not smtp.host.strip():
                problems.append("[smtp] host: is empty")
            if problem := _in_range(smtp.port, 1, 65535, ""):
                problems.append(f"[smtp] port: {problem}")
            if smtp.security not in SMTP_SECURITY:
                problems.append(
                    f"[smtp] security: must be 'starttls', 'ssl' or 'none', not {smtp.security!r}"
                )
            elif smtp.security == "none" and smtp.host not in LOOPBACK_HOSTS:
                problems.append(
                    "[smtp] security: 'none' would send the password unencrypted; it is only allowed to "
                    "127.0.0.1, localhost or ::1"
                )
            if problem := email_problem(smtp.from_address):
                problems.append(f"[smtp] from_address: {problem}")
            if smtp.username is not None and not smtp.username.strip():
                problems.append("[smtp] username: is empty; remove it to log in without a user name")

    type_errors = _type_errors(config.ui)
    problems += [f"[ui] {e}" for e in type_errors]
    if not type_errors:
        if not config.ui.theme.strip():
            problems.append("[ui] theme: is empty")
        empty = [k for k, v in config.ui.keymap.items() if not v.strip()]
        if empty:
            problems.append(f"[ui.keymap] {_name_list(empty)}: no keys given")

    problems += _ops_settings_errors(config)
    dead = config.dead_letters
    type_errors = _type_errors(dead)
    problems += [f"[dead_letters] {e}" for e in type_errors]
    if not type_errors:
        for name, low, high in (
            ("max_per_request", 1, 10_000_000),
            ("max_total", 1, 100_000_000),
            ("max_event_bytes", 256, 32 * 1024**2),
        ):
            if problem := _in_range(getattr(dead, name), low, high, ""):
                problems.append(f"[dead_letters] {name}: {problem.rstrip()}")

    if config.durability not in DURABILITY:
        problems.append(f"durability: must be 'full' or 'normal', not {config.durability!r}")
    return problems


def _ops_settings_errors(config: Config) -> list[str]:
    """[metrics], [logs] and [alerts]."""
    problems: list[str] = []
    metrics, logs = config.metrics, config.logs
    type_errors = _type_errors(metrics)
    problems += [f"[metrics] {e}" for e in type_errors]
    if not type_errors:
        if not metrics.host.strip():
            problems.append("[metrics] host: is empty; use 127.0.0.1 (this machine only) or 0.0.0.0 (all)")
        if problem := _in_range(metrics.port, 0, 65535, "(0 picks a free port)"):
            problems.append(f"[metrics] port: {problem}")
        elif metrics.enabled and metrics.port and metrics.port == config.receiver.port:
            problems.append("[metrics] port: is the receiver's port; metrics need a port of their own")
    type_errors = _type_errors(logs)
    problems += [f"[logs] {e}" for e in type_errors]
    if not type_errors:
        if logs.format not in LOG_FORMATS:
            problems.append(f"[logs] format: must be 'human' or 'json', not {logs.format!r}")
        if problem := _in_range(logs.max_bytes, 10_000, 10**10, "bytes"):
            problems.append(f"[logs] max_bytes: {problem}")
        if problem := _in_range(logs.keep, 0, 100, "files"):
            problems.append(f"[logs] keep: {problem}")
    if isinstance(config.alerts.webhook, str):
        problems.append(
            "[alerts] webhook: the webhook's URL is a secret and is not kept in this file; store it in "
            "the keyring with `tui-currents alerts webhook` (it reads the URL from stdin), which also "
            "writes webhook = true"
        )
    else:
        problems += [f"[alerts] {e}" for e in _type_errors(config.alerts)]
    return problems


def validate_config(config: Config) -> list[str]:
    """Every problem in a whole configuration, each naming where it is (connector, workspace, setting)."""
    problems = _settings_errors(config)
    for i, workspace in enumerate(config.workspaces):
        where = f"workspace {workspace.name!r}" if isinstance(workspace.name, str) else f"workspace #{i + 1}"
        earlier = Config(workspaces=config.workspaces[:i])
        problems += [f"{where}, {e}" for e in validate_workspace(workspace, earlier)]
    for i, connector in enumerate(config.connectors):
        where = f"connector {connector.name!r}" if isinstance(connector.name, str) else f"connector #{i + 1}"
        # Each pair is looked at once, from the later connector: that is the one to change.
        problems += [f"{where}, {e}" for e in _connector_errors(connector, config.connectors[:i], config)]
    return problems


# --------------------------------------------------------------------------------------------- reading


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(f"{path} could not be read: {reason}. It was left untouched.", path=path) from None


def _parse_toml(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)".
        raise ConfigError(
            f"{path} is not valid TOML: {exc}. The file was left untouched; fix it in an editor "
            "(or move it away to start afresh) and try again.",
            path=path,
        ) from None


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"


def _build(cls: type, table: object, where: str, problems: list[str]) -> Any:
    """Make a settings dataclass from one TOML table, reporting unknown, missing and mistyped keys."""
    if not isinstance(table, dict):
        problems.append(f"{where}: must be a table, not {type(table).__name__}")
        return None
    types = _field_types(cls)
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    ok = True
    for key in table:
        if key not in types:
            problems.append(f"{where}: unknown setting {key!r}{_suggest(key, list(types))}")
            ok = False
    for key in required - table.keys():
        problems.append(f"{where}, {key}: is missing")
        ok = False
    for key, value in table.items():
        if key in types and (problem := _type_problem(value, types[key])):
            problems.append(f"{where}, {key}: {problem}")
            ok = False
    if not ok:
        return None
    return cls(**copy.deepcopy(table))


def _entries(data: dict[str, Any], key: str, problems: list[str]) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        problems.append(f"{key}: must be a list of tables, written [[{key}]]")
        return []
    return value


def _from_data(data: dict[str, Any]) -> tuple[Config, list[str]]:
    problems: list[str] = []
    known = [
        "durability", "receiver", "smtp", "ui", "metrics", "logs", "alerts", "dead_letters", "workspaces",
        "connectors",
    ]  # fmt: skip
    for key in data:
        if key not in known:
            problems.append(f"unknown setting {key!r}{_suggest(key, known)}")
    config = Config()
    if "durability" in data:
        if isinstance(data["durability"], str):
            config.durability = data["durability"]
        else:
            problems.append("durability: must be text ('full' or 'normal')")
    if "receiver" in data:
        config.receiver = (
            _build(ReceiverSettings, data["receiver"], "[receiver]", problems) or ReceiverSettings()
        )
    if "smtp" in data:
        config.smtp = _build(SmtpSettings, data["smtp"], "[smtp]", problems)
    if "ui" in data:
        config.ui = _build(UiSettings, data["ui"], "[ui]", problems) or UiSettings()
    if "metrics" in data:
        config.metrics = _build(MetricsSettings, data["metrics"], "[metrics]", problems) or MetricsSettings()
    if "logs" in data:
        config.logs = _build(LogSettings, data["logs"], "[logs]", problems) or LogSettings()
    if "alerts" in data:
        alerts = data["alerts"]
        if isinstance(alerts, dict) and isinstance(alerts.get("webhook"), str):
            config.alerts = AlertSettings(webhook=alerts["webhook"])  # refused by validation, in words
        else:
            config.alerts = _build(AlertSettings, alerts, "[alerts]", problems) or AlertSettings()
    if "dead_letters" in data:
        built = _build(DeadLetterSettings, data["dead_letters"], "[dead_letters]", problems)
        config.dead_letters = built or DeadLetterSettings()
    for i, entry in enumerate(_entries(data, "workspaces", problems)):
        name = entry.get("name")
        where = f"workspace {name!r}" if isinstance(name, str) else f"workspace #{i + 1}"
        if (workspace := _build(Workspace, entry, where, problems)) is not None:
            config.workspaces.append(workspace)
    for i, entry in enumerate(_entries(data, "connectors", problems)):
        name = entry.get("name")
        where = f"connector {name!r}" if isinstance(name, str) else f"connector #{i + 1}"
        if "endpoint" in entry and "region" not in entry:
            entry = {**entry, "region": CUSTOM_REGION}  # an endpoint alone says enough
        if (connector := _build(Connector, entry, where, problems)) is not None:
            config.connectors.append(connector)
    if not problems:
        problems = validate_config(config)
    return config, problems


def _problems_message(path: Path, problems: list[str], *, saving: bool) -> str:
    if saving:
        head = f"Not saved ({path} is unchanged):"
    else:
        count = "a problem" if len(problems) == 1 else f"{len(problems)} problems"
        head = f"{path} has {count}; fix the file and try again (it was left untouched):"
    if len(problems) == 1:
        return f"{head} {problems[0]}"
    return head + "".join(f"\n  - {p}" for p in problems)


def load(home: Home | str | os.PathLike[str] | None = None) -> Config:
    """The home's configuration; a default one when there is no config file yet.

    Raises ConfigError for a file that is not valid TOML (naming the line and column) or holds invalid
    values (naming the connector or setting and the field). The file is never changed by loading.
    """
    path = Home.resolve(home).config_file
    text = _read_text(path)
    if text is None:
        return Config()
    config, problems = _from_data(_parse_toml(text, path))
    if problems:
        raise ConfigError(_problems_message(path, problems, saving=False), path=path, problems=problems)
    return config


# --------------------------------------------------------------------------------------------- writing


def _body(container: Container | Table) -> Container:
    return container if isinstance(container, Container) else container.value


def _set_value(container: Container | Table, key: str, value: Any) -> None:
    """Set one key, leaving it alone when unchanged; a new key goes after the last plain key.

    (tomlkit would append it after any comments that introduce the next table, where it looks misplaced.)
    """
    if key in container:
        current = container[key]
        plain = current.unwrap() if hasattr(current, "unwrap") else current
        if plain == value:
            return
        if isinstance(current, tomlkit.items.Array) and isinstance(value, list):
            _update_array(current, value)
            return
        container[key] = _item(value)
        return
    body = _body(container)
    positions = [i for i, (k, v) in enumerate(body.body) if k is not None and not isinstance(v, Table | AoT)]
    if positions and positions[-1] + 1 < len(body.body) and hasattr(body, "_insert_at"):
        body._insert_at(positions[-1] + 1, key, _item(value))
    else:
        container[key] = _item(value)


def _update_array(array: tomlkit.items.Array, wanted: list[Any]) -> None:
    # In place, so the comments next to the entries that stay are kept.
    for index in reversed(range(len(array))):
        if array[index] not in wanted:
            del array[index]
    present = list(array)
    for value in wanted:
        if value not in present:
            array.append(value)
    if list(array) != wanted:  # order or duplicates differ: rewrite it
        array.clear()
        array.extend(wanted)


def _item(value: Any) -> Any:
    if isinstance(value, list | tuple):
        array = tomlkit.array()
        array.extend(value)
        if len(value) > 2:
            array.multiline(True)
        return array
    return value


# tomlkit keeps the comments and blank lines that introduce a table at the end of the table before it.
# When entries are added or removed, those lines are moved so they stay in front of what they describe.


def _render_tail(container: Container) -> Container:
    """The container whose end is the last thing `container` renders (where trailing comments live)."""
    body = container.body
    if not body or body[-1][0] is None:
        return container
    last = body[-1][1]
    if isinstance(last, Table):
        return _render_tail(last.value)
    if isinstance(last, AoT) and len(last):
        return _render_tail(last[-1].value)
    return container


def _pop_trailing_trivia(container: Container) -> list[Item]:
    popped: list[Item] = []
    while True:
        body = _render_tail(container).body
        if not body or body[-1][0] is not None or not isinstance(body[-1][1], Whitespace | Comment):
            return popped
        popped.insert(0, body.pop()[1])


def _append_trivia(container: Container, items: list[Item]) -> None:
    tail = _render_tail(container)
    for item in items:
        ends_blank = bool(tail.body) and tail.body[-1][0] is None and isinstance(tail.body[-1][1], Whitespace)
        if isinstance(item, Whitespace) and ends_blank:
            continue  # one blank line is enough
        tail.append(None, item)


def _insert_trivia_before(doc: Container, key: str, items: list[Item]) -> None:
    """Put comment lines in the document body just before the top-level item `key`."""
    index = next(i for i, (k, _) in enumerate(doc.body) if k is not None and k.key == key)
    for offset, item in enumerate(items):
        doc.body.insert(index + offset, (None, item))
    # Keep tomlkit's key -> position index in step with the insertion.
    for k, v in list(doc._map.items()):
        if isinstance(v, tuple):
            doc._map[k] = tuple(i + len(items) if i >= index else i for i in v)
        elif v >= index:
            doc._map[k] = v + len(items)


def _delete_entry(doc: Container, key: str, entries: AoT, index: int) -> None:
    """Delete one [[key]] entry, keeping the comments that introduce whatever follows it."""
    trailing = _pop_trailing_trivia(entries[index].value)
    del entries[index]
    if not trailing:
        return
    if index > 0:
        _append_trivia(entries[index - 1].value, trailing)
        return
    position = next(i for i, (k, _) in enumerate(doc.body) if k is not None and k.key == key)
    before = doc.body[position - 1][1] if position > 0 else None
    if isinstance(before, Table):
        _append_trivia(before.value, trailing)
    elif isinstance(before, AoT) and len(before):
        _append_trivia(before[-1].value, trailing)
    elif hasattr(doc, "_map"):
        _insert_trivia_before(doc, key, trailing)


def _append_entry(entries: AoT, table: Table) -> None:
    """Append a new [[...]] entry after the last one, keeping that one's trailing comments after it."""
    if len(entries):
        trailing = _pop_trailing_trivia(entries[-1].value)
        entries[-1].value.append(None, tomlkit.ws("\n"))
        entries.append(table)
        _append_trivia(table.value, trailing)
    else:
        entries.append(table)


def _remove(container: Container | Table, key: str) -> None:
    if key in container:
        del container[key]


def _merge_mapping(container: Container | Table, key: str, wanted: Mapping[str, str]) -> None:
    if not wanted:
        _remove(container, key)
        return
    if key not in container:
        table = tomlkit.table()
        for k, v in wanted.items():
            table.add(k, v)
        trailing = _pop_trailing_trivia(_body(container))
        container[key] = table
        _append_trivia(table.value, trailing or [tomlkit.nl()])
        return
    current = container[key]
    for k in [k for k in current if k not in wanted]:
        del current[k]
    for k, v in wanted.items():
        _set_value(current, k, v)


def _merge_object(container: Container | Table, obj: Any, *, fresh: bool) -> None:
    """Write a dataclass's fields into a table. A fresh table gets every field; an existing one only
    changed values, and a default is not added where the user left it out."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, dict):
            _merge_mapping(container, f.name, value)
            continue
        if value is None:
            _remove(container, f.name)
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if fresh or f.name in container or value != default:
            _set_value(container, f.name, value)


def _merge_section(doc: Container, key: str, obj: Any) -> None:
    if obj is None:
        _remove(doc, key)
        return
    if key in doc:
        _merge_object(doc[key], obj, fresh=False)
    else:
        table = tomlkit.table()
        _merge_object(table, obj, fresh=True)
        table.add(tomlkit.nl())
        doc[key] = table


def _merge_entries(doc: Container, key: str, objects: list[Any], renames: Mapping[str, str]) -> None:
    """Merge a [[key]] array of tables by name: edit matching entries in place, drop the rest, append new."""
    wanted = {o.name: o for o in objects}
    if key not in doc:
        if not objects:
            return
        doc[key] = tomlkit.aot()
    entries = doc[key]
    if not isinstance(entries, AoT):
        raise ConfigError(
            f"{key} in the config file is not written as [[{key}]] tables; fix it by hand first"
        )
    back = {new: old for old, new in renames.items()}
    by_name = {}
    for index, table in enumerate(entries):
        by_name.setdefault(table.get("name"), index)
    keep: set[int] = set()
    for name, obj in wanted.items():
        index = by_name.get(back.get(name, name))
        if index is None:
            index = by_name.get(name)
        if index is not None:
            keep.add(index)
            _merge_object(entries[index], obj, fresh=False)
    for index in sorted(set(range(len(entries))) - keep, reverse=True):
        _delete_entry(doc, key, entries, index)
    present = {table.get("name") for table in entries}
    for name, obj in wanted.items():
        if name not in present:
            table = tomlkit.table()
            _merge_object(table, obj, fresh=True)
            table.add(tomlkit.nl())
            _append_entry(entries, table)
    if not objects:
        del doc[key]


def _merge(doc: tomlkit.TOMLDocument, config: Config, renames: Mapping[str, str]) -> None:
    _set_value(doc, "durability", config.durability)
    _merge_section(doc, "receiver", config.receiver)
    _merge_section(doc, "smtp", config.smtp)
    if "ui" in doc or config.ui != UiSettings():
        _merge_section(doc, "ui", config.ui)
    for key, default in (
        ("metrics", MetricsSettings()),
        ("logs", LogSettings()),
        ("alerts", AlertSettings()),
    ):
        if key in doc or getattr(config, key) != default:
            _merge_section(doc, key, getattr(config, key))
    if "dead_letters" in doc or config.dead_letters != DeadLetterSettings():
        _merge_section(doc, "dead_letters", config.dead_letters)
    _merge_entries(doc, "workspaces", config.workspaces, {})
    _merge_entries(doc, "connectors", config.connectors, renames)


def _comparable(config: Config) -> dict[str, Any]:
    plain = dataclasses.asdict(config)
    plain["workspaces"] = sorted(w["name"] for w in plain["workspaces"])
    plain["connectors"] = sorted((c for c in plain["connectors"]), key=lambda c: c["name"])
    for c in plain["connectors"]:
        c["events"] = list(c["events"])
    return plain


@contextlib.contextmanager
def _locked(home: Home) -> Iterator[None]:
    """Serialise read-modify-write of the config file between processes on one home (POSIX only)."""
    with exclusive_lock(home.root / ".config.lock"):
        yield


def _write(home: Home, config: Config, renames: Mapping[str, str] | None = None) -> None:
    path = home.config_file
    problems = validate_config(config)
    if problems:
        raise ConfigError(_problems_message(path, problems, saving=True), path=path, problems=problems)
    text = _read_text(path)
    if text is None:
        doc = tomlkit.document()
        for line in HEADER:
            doc.add(tomlkit.comment(line))
        doc.add(tomlkit.nl())
    else:
        _parse_toml(text, path)  # a file that does not parse is never overwritten
        doc = tomlkit.parse(text)
    _merge(doc, config, renames or {})
    rendered = tomlkit.dumps(doc)
    # The merged file must read back as exactly this configuration before it replaces the old one.
    written, problems = _from_data(_parse_toml(rendered, path))
    if problems or _comparable(written) != _comparable(config):
        detail = "; ".join(problems) if problems else "it would not read back as the same settings"
        raise ConfigError(
            f"Not saved ({path} is unchanged): the file's existing content could not be merged with the "
            f"change ({detail}). Fix the file by hand or move it away, then try again.",
            path=path,
            problems=problems,
        )
    write_private(path, rendered)


def save(home: Home | str | os.PathLike[str] | None, config: Config) -> None:
    """Make the config file say `config`: validated first; merged into the file so comments and order
    survive; written atomically (0600). Raises ConfigError and leaves the file as it was on any problem.

    Entries are matched by name: a connector missing from `config` is removed from the file. Interactive
    edits should prefer the mutations below, which start from the file as it is now.
    """
    home = Home.resolve(home)
    with _locked(home):
        _write(home, config)


# --------------------------------------------------------------------------------------------- mutations


def _refuse(path: Path, what: str, errors: list[FieldError]) -> ConfigError:
    problems = [f"{what}, {e}" for e in errors]
    return ConfigError(_problems_message(path, problems, saving=True), path=path, problems=problems)


@contextlib.contextmanager
def _editing(home: Home | str | os.PathLike[str] | None) -> Iterator[tuple[Home, Config]]:
    """The configuration loaded under the file lock, for the caller to change and `_write` while it holds
    the lock (a read-modify-write no other process can interleave with)."""
    home = Home.resolve(home)
    with _locked(home):
        yield home, load(home)


def _require(config: Config, kind: str, name: str) -> None:
    items = config.connectors if kind == "connector" else config.workspaces
    if not any(i.name == name for i in items):
        _missing(config, kind, name)


def add_workspace(home: Home | str | os.PathLike[str] | None, workspace: Workspace) -> Config:
    """Add a workspace; returns the saved configuration."""
    with _editing(home) as (home, config):
        if errors := validate_workspace(workspace, config):
            raise _refuse(home.config_file, f"workspace {workspace.name!r}", errors)
        config.workspaces.append(copy.deepcopy(workspace))
        _write(home, config)
        return config


def remove_workspace(home: Home | str | os.PathLike[str] | None, name: str) -> Config:
    """Remove a workspace no connector uses; returns the saved configuration."""
    with _editing(home) as (home, config):
        _require(config, "workspace", name)
        users = [c.name for c in config.connectors_of(name)]
        if users:
            raise ConfigError(
                f"Workspace {name!r} is still used by connector{'s' if len(users) > 1 else ''} "
                f"{', '.join(repr(u) for u in users)}; remove them or move them to another workspace first. "
                "Nothing was changed.",
                path=home.config_file,
            )
        config.workspaces = [w for w in config.workspaces if w.name != name]
        _write(home, config)
        return config


def _missing(config: Config, kind: str, name: str) -> None:
    items = config.connectors if kind == "connector" else config.workspaces
    known = ", ".join(repr(i.name) for i in items) or "none yet"
    raise ConfigError(f"There is no {kind} named {name!r} ({kind}s: {known}). Nothing was changed.")


def add_connector(home: Home | str | os.PathLike[str] | None, connector: Connector) -> Config:
    """Add a connector after validating it (fields, workspace, event types, overlap)."""
    with _editing(home) as (home, config):
        if errors := validate_connector(connector, config):
            raise _refuse(home.config_file, f"connector {connector.name!r}", errors)
        config.connectors.append(copy.deepcopy(connector))
        _write(home, config)
        return config


def update_connector(home: Home | str | os.PathLike[str] | None, name: str, connector: Connector) -> Config:
    """Replace connector `name` with `connector` (which may carry a new name), keeping its place in the file.

    A rename does not move the write key: call Secrets.rename_write_key as well.
    """
    with _editing(home) as (home, config):
        _require(config, "connector", name)
        if errors := validate_connector(connector, config, replacing=name):
            raise _refuse(home.config_file, f"connector {connector.name!r}", errors)
        index = next(i for i, c in enumerate(config.connectors) if c.name == name)
        config.connectors[index] = copy.deepcopy(connector)
        _write(home, config, {name: connector.name} if name != connector.name else None)
        return config


def remove_connector(home: Home | str | os.PathLike[str] | None, name: str) -> Config:
    """Remove a connector (its queued events stay in the store; its write key stays in the keyring)."""
    with _editing(home) as (home, config):
        _require(config, "connector", name)
        config.connectors = [c for c in config.connectors if c.name != name]
        _write(home, config)
        return config


def set_paused(home: Home | str | os.PathLike[str] | None, name: str, paused: bool) -> Config:
    """Pause or resume a connector's delivery (events keep being queued while paused)."""
    with _editing(home) as (home, config):
        _require(config, "connector", name)
        config.connector(name).paused = bool(paused)
        _write(home, config)
        return config


def set_webhook(home: Home | str | os.PathLike[str] | None, enabled: bool) -> Config:
    """Turn the alert webhook on or off ([alerts] webhook); its URL is kept in the keyring."""
    with _editing(home) as (home, config):
        config.alerts = AlertSettings(webhook=enabled)
        _write(home, config)
        return config
