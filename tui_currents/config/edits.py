"""Changes to the config file as locked read-modify-writes: add, update, remove, pause."""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from tui_currents.config.model import (
    AlertSettings,
    ClusterSettings,
    Config,
    ConfigError,
    Connector,
    FieldError,
    Workspace,
)
from tui_currents.config.reading import (
    _problems_message,
    load,
)
from tui_currents.config.validation import (
    validate_connector,
    validate_workspace,
)
from tui_currents.config.writing import (
    _locked,
    _write,
)
from tui_currents.paths import Home


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


def _edit(
    home: Home | str | os.PathLike[str] | None,
    change: Callable[[Home, Config], None],
    *,
    shared: bool = True,
) -> Config:
    """Apply `change` (which validates, raising ConfigError to refuse) as one locked read-modify-write;
    returns the saved configuration.

    On a member of a cluster the workspaces and connectors are the cluster's: the change is made to the
    cluster's version and stored there first (compare-and-set, redone on a conflict), then here. Every
    member's mirror then brings it into its own config.toml. `shared=False`: a change of this instance's
    own settings only."""
    with _editing(home) as (home, config):
        if shared and config.cluster is not None:
            from tui_currents.cluster.shared_config import edit_shared

            config = edit_shared(home, config.cluster, config, lambda c: change(home, c))
        else:
            change(home, config)
        _write(home, config)
        return config


def _require(config: Config, kind: str, name: str) -> None:
    items = config.connectors if kind == "connector" else config.workspaces
    if not any(i.name == name for i in items):
        _missing(config, kind, name)


def add_workspace(home: Home | str | os.PathLike[str] | None, workspace: Workspace) -> Config:
    """Add a workspace; returns the saved configuration."""

    def change(home: Home, config: Config) -> None:
        if errors := validate_workspace(workspace, config):
            raise _refuse(home.config_file, f"workspace {workspace.name!r}", errors)
        config.workspaces.append(copy.deepcopy(workspace))

    return _edit(home, change)


def remove_workspace(home: Home | str | os.PathLike[str] | None, name: str) -> Config:
    """Remove a workspace no connector uses; returns the saved configuration."""

    def change(home: Home, config: Config) -> None:
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

    return _edit(home, change)


def _missing(config: Config, kind: str, name: str) -> None:
    items = config.connectors if kind == "connector" else config.workspaces
    known = ", ".join(repr(i.name) for i in items) or "none yet"
    raise ConfigError(f"There is no {kind} named {name!r} ({kind}s: {known}). Nothing was changed.")


def add_connector(home: Home | str | os.PathLike[str] | None, connector: Connector) -> Config:
    """Add a connector after validating it (fields, workspace, event types, overlap)."""

    def change(home: Home, config: Config) -> None:
        if errors := validate_connector(connector, config):
            raise _refuse(home.config_file, f"connector {connector.name!r}", errors)
        config.connectors.append(copy.deepcopy(connector))

    return _edit(home, change)


def update_connector(home: Home | str | os.PathLike[str] | None, name: str, connector: Connector) -> Config:
    """Replace connector `name` with `connector`, keeping its place in the file. A connector is never
    renamed (its name identifies its queue and write key): a different name is refused, nothing changed."""
    if connector.name != name:
        raise ConfigError(
            f"Connector {name!r} cannot be saved as {connector.name!r}: a connector cannot be renamed; add a "
            "new one and remove the old. Nothing was changed."
        )

    def change(home: Home, config: Config) -> None:
        _require(config, "connector", name)
        if errors := validate_connector(connector, config, replacing=name):
            raise _refuse(home.config_file, f"connector {connector.name!r}", errors)
        index = next(i for i, c in enumerate(config.connectors) if c.name == name)
        config.connectors[index] = copy.deepcopy(connector)

    return _edit(home, change)


def remove_connector(home: Home | str | os.PathLike[str] | None, name: str) -> Config:
    """Remove a connector (its queued events stay in the store; its write key stays in the keyring)."""

    def change(home: Home, config: Config) -> None:
        _require(config, "connector", name)
        config.connectors = [c for c in config.connectors if c.name != name]

    return _edit(home, change)


def set_paused(home: Home | str | os.PathLike[str] | None, name: str, paused: bool) -> Config:
    """Pause or resume a connector's delivery (events keep being queued while paused)."""

    def change(home: Home, config: Config) -> None:
        _require(config, "connector", name)
        config.connector(name).paused = bool(paused)

    return _edit(home, change)


def set_webhook(home: Home | str | os.PathLike[str] | None, enabled: bool) -> Config:
    """Turn the alert webhook on or off ([alerts] webhook); its URL is kept in the keyring."""

    def change(home: Home, config: Config) -> None:
        config.alerts = AlertSettings(webhook=enabled)

    return _edit(home, change, shared=False)


def set_cluster(home: Home | str | os.PathLike[str] | None, cluster: ClusterSettings | None) -> Config:
    """Make this home a member of a cluster ([cluster] written) or a single box again (None: removed)."""
    with _editing(home) as (home, config):
        config.cluster = cluster
        _write(home, config)
        return config
