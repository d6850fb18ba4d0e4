"""Reading the config file: tomllib, then the typed model, with every problem named."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import tomllib
from pathlib import Path
from typing import Any

from tui_currents.config.model import (
    CUSTOM_REGION,
    AlertSettings,
    ClusterSettings,
    Config,
    ConfigError,
    Connector,
    DeadLetterSettings,
    LogSettings,
    MetricsSettings,
    ReceiverSettings,
    SmtpSettings,
    UiSettings,
    Workspace,
)
from tui_currents.config.validation import (
    _field_types,
    _type_problem,
    validate_config,
)
from tui_currents.paths import Home


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
        "connectors", "cluster",
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
    if "cluster" in data:
        config.cluster = _cluster_from(data["cluster"], problems)
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


def _cluster_from(table: object, problems: list[str]) -> ClusterSettings | None:
    """[cluster]: the NATS URLs as a list (or one URL as text), the file paths as paths."""
    if not isinstance(table, dict):
        problems.append(f"[cluster]: must be a table, not {type(table).__name__}")
        return None
    known = [f.name for f in dataclasses.fields(ClusterSettings)]
    ok = True
    for key in table:
        if key not in known:
            problems.append(f"[cluster]: unknown setting {key!r}{_suggest(key, known)}")
            ok = False
    nats = table.get("nats")
    if nats is None:
        problems.append('[cluster] nats: is missing; give the NATS servers, like nats = ["nats://h1:4222"]')
        ok = False
    elif isinstance(nats, str):
        nats = [nats]
    if nats is not None and not (isinstance(nats, list) and all(isinstance(u, str) for u in nats)):
        problems.append("[cluster] nats: must be a list of URLs (text)")
        ok = False
    for key, wanted, type_name in (("replicas", int, "a whole number"), ("name", str, "text")):
        value = table.get(key)
        if value is not None and (not isinstance(value, wanted) or isinstance(value, bool)):
            problems.append(f"[cluster] {key}: must be {type_name}, not {type(value).__name__}")
            ok = False
    paths: dict[str, Path | None] = {}
    for key in ("creds", "tls_ca"):
        value = table.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f"[cluster] {key}: must be a file path (text), not {type(value).__name__}")
            ok = False
        paths[key] = Path(value).expanduser() if isinstance(value, str) else None
    if not ok:
        return None
    defaults = ClusterSettings(nats=())
    return ClusterSettings(
        nats=tuple(nats or ()),
        replicas=table.get("replicas", defaults.replicas),
        creds=paths["creds"],
        tls_ca=paths["tls_ca"],
        name=table.get("name", defaults.name),
    )


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
