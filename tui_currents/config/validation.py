"""Checks of a configuration: every problem in words (field by field for the editor), the overlap rule."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from tui_currents import catalog
from tui_currents.config.model import (
    CUSTOM_REGION,
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
    ClusterSettings,
    Config,
    Connector,
    FieldError,
    Workspace,
)
from tui_currents.secrets import env_name_part, receiver_token_env_var, write_key_env_var

_CONNECTOR_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 _-]*[A-Za-z0-9_-])?")
_WORKSPACE_NAME = re.compile(r"[A-Za-z0-9_-]+")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ASSET_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")  # JetStream stream and bucket names allow these


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
    checks); leave it None when adding a connector. Overlap is checked
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


def nats_url_problem(url: object) -> str | None:
    """Why `url` cannot be a NATS server address, or None: nats:// or tls://, a host, an optional port,
    no user name or password (those belong in the credentials file, never in config.toml)."""
    if not isinstance(url, str) or not url.strip():
        return "is empty; give a NATS server URL, like nats://nats1.example.com:4222"
    if any(ch.isspace() for ch in url):
        return f"{url!r} contains spaces"
    parts = urlsplit(url)
    if parts.scheme.lower() not in NATS_SCHEMES:
        return f"{url!r} must start with nats:// or tls://"
    if parts.username is not None or parts.password is not None:
        return (
            f"{parts.scheme}://{parts.hostname}... must not hold a user name, password or token: give a "
            "credentials file as creds instead"
        )
    if not parts.hostname:
        return f"{url!r} has no host name"
    try:
        port = parts.port
    except ValueError:
        return f"{url!r} has an invalid port (expected a number from 1 to 65535)"
    if port == 0:
        return f"{url!r} has an invalid port (expected a number from 1 to 65535)"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"{url!r} must be only scheme, host and port (like nats://h1:4222)"
    return None


def cluster_problems(cluster: ClusterSettings) -> list[str]:
    """Every problem of a [cluster] table, each naming its setting."""
    problems: list[str] = []
    if not cluster.nats:
        problems.append('[cluster] nats: is empty; give the NATS servers, like nats = ["nats://h1:4222"]')
    for url in cluster.nats:
        if problem := nats_url_problem(url):
            problems.append(f"[cluster] nats: {problem}")
    if problem := _in_range(cluster.replicas, 1, MAX_CLUSTER_REPLICAS, "copies (3 survives one node down)"):
        problems.append(f"[cluster] replicas: {problem}")
    if not _ASSET_PREFIX.fullmatch(cluster.name):
        problems.append(
            f"[cluster] name: {cluster.name!r} must be 1 to 32 letters, digits, '-' or '_', starting with a "
            "letter or digit"
        )
    for key, what in (("creds", "NATS credentials file"), ("tls_ca", "CA certificate file")):
        path = getattr(cluster, key)
        if path is None:
            continue
        if not path.is_absolute():
            problems.append(f"[cluster] {key}: {str(path)!r} must be an absolute path (or start with ~)")
        elif not path.is_file():
            problems.append(f"[cluster] {key}: the {what} {str(path)!r} does not exist or is not a file")
    return problems


def validate_config(config: Config) -> list[str]:
    """Every problem in a whole configuration, each naming where it is (connector, workspace, setting)."""
    problems = _settings_errors(config)
    if config.cluster is not None:
        problems += cluster_problems(config.cluster)
    for i, workspace in enumerate(config.workspaces):
        where = f"workspace {workspace.name!r}" if isinstance(workspace.name, str) else f"workspace #{i + 1}"
        earlier = Config(workspaces=config.workspaces[:i])
        problems += [f"{where}, {e}" for e in validate_workspace(workspace, earlier)]
    for i, connector in enumerate(config.connectors):
        where = f"connector {connector.name!r}" if isinstance(connector.name, str) else f"connector #{i + 1}"
        # Each pair is looked at once, from the later connector: that is the one to change.
        problems += [f"{where}, {e}" for e in _connector_errors(connector, config.connectors[:i], config)]
    return problems
