"""Workspaces, connectors and settings, kept in the home's config.toml.

Read with the standard library's tomllib; written with tomlkit by merging value by value into the file as
it is on disk, so a user's comments, ordering and formatting survive every save. Writes are atomic and
0600. A file that does not parse is never overwritten. The file never holds secrets: write keys, receiver
tokens and the SMTP password live in the keyring (see secrets.py).

Every save is validated; `validate_connector` gives the same answers field by field for the editor.

The package is split by role: `model` (the dataclasses: what a config file may say), `validation` (the
problems list, the overlap rule), `reading` (tomllib), `writing` (tomlkit merge, atomic replace, the file
lock) and `edits` (locked read-modify-writes). Everything is re-exported here: `config.load(...)`,
`config.Connector`.
"""

from __future__ import annotations

from tui_currents.config.edits import (
    add_connector,
    add_workspace,
    remove_connector,
    remove_workspace,
    set_cluster,
    set_paused,
    set_webhook,
    update_connector,
)
from tui_currents.config.model import (
    CUSTOM_REGION,
    DEFAULT_MAX_BODY_BYTES,
    DUPLICATE_RULE,
    DURABILITY,
    LOG_FORMATS,
    LOOPBACK_HOSTS,
    MAX_CLUSTER_REPLICAS,
    MAX_IN_FLIGHT,
    MAX_NAME_CHARS,
    MAX_RETENTION_DAYS,
    NATS_SCHEMES,
    REGIONS,
    SMTP_SECURITY,
    TRANSFORMS,
    UNTRANSFORMABLE_FIELDS,
    AlertSettings,
    ClusterSettings,
    Config,
    ConfigError,
    Connector,
    DeadLetterSettings,
    FieldError,
    LogSettings,
    MetricsSettings,
    ReceiverSettings,
    SmtpSettings,
    UiSettings,
    Workspace,
)
from tui_currents.config.reading import (
    load,
)
from tui_currents.config.validation import (
    cluster_problems,
    email_problem,
    endpoint_problem,
    nats_url_problem,
    validate_config,
    validate_connector,
    validate_workspace,
)
from tui_currents.config.writing import (
    HEADER,
    save,
)

__all__ = [
    "AlertSettings",
    "CUSTOM_REGION",
    "ClusterSettings",
    "Config",
    "ConfigError",
    "Connector",
    "DEFAULT_MAX_BODY_BYTES",
    "DUPLICATE_RULE",
    "DURABILITY",
    "DeadLetterSettings",
    "FieldError",
    "HEADER",
    "LOG_FORMATS",
    "LOOPBACK_HOSTS",
    "LogSettings",
    "MAX_CLUSTER_REPLICAS",
    "MAX_IN_FLIGHT",
    "MAX_NAME_CHARS",
    "MAX_RETENTION_DAYS",
    "MetricsSettings",
    "NATS_SCHEMES",
    "REGIONS",
    "ReceiverSettings",
    "SMTP_SECURITY",
    "SmtpSettings",
    "TRANSFORMS",
    "UNTRANSFORMABLE_FIELDS",
    "UiSettings",
    "Workspace",
    "add_connector",
    "add_workspace",
    "cluster_problems",
    "email_problem",
    "endpoint_problem",
    "load",
    "nats_url_problem",
    "remove_connector",
    "remove_workspace",
    "save",
    "set_cluster",
    "set_paused",
    "set_webhook",
    "update_connector",
    "validate_config",
    "validate_connector",
    "validate_workspace",
]
