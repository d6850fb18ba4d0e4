"""The configuration's typed model: the only declaration of what a config file may say."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_currents import catalog, segment

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


NATS_SCHEMES = ("nats", "tls")
MAX_CLUSTER_REPLICAS = 5  # JetStream keeps at most 5 copies of a stream


@dataclass(frozen=True)
class ClusterSettings:
    """The [cluster] table: this home is a member of a cluster on these NATS servers (see
    tui_currents.cluster.membership). Absent: a single box with its own SQLite queue."""

    nats: tuple[str, ...]  # ("nats://h1:4222", ...)
    replicas: int = 3
    creds: Path | None = None  # NATS user credentials file
    tls_ca: Path | None = None
    name: str = "tc"  # the prefix of the JetStream assets


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
    cluster: ClusterSettings | None = None

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
