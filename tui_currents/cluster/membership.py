"""Whether a home is a member of a cluster, and the cluster's connection settings ([cluster] in config.toml).

Only the settings the queue needs to connect: which NATS servers, how many replicas, the credentials file,
the TLS CA and the prefix of the JetStream assets. Reading the table is all this module does; the
`cluster init/join/leave` commands write it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from tui_currents.config import ConfigError
from tui_currents.paths import Home


@dataclass(frozen=True)
class ClusterSettings:
    """The [cluster] table of config.toml."""

    nats: tuple[str, ...]
    replicas: int = 3
    creds: Path | None = None
    tls_ca: Path | None = None
    name: str = "tc"  # prefix of the JetStream assets


def cluster_settings(home: Home) -> ClusterSettings | None:
    """The home's [cluster] settings; None when the home is not a member of a cluster (no table, or no
    `nats` servers in it). A table that cannot be read raises ConfigError naming the field."""
    try:
        text = home.config_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        table = tomllib.loads(text).get("cluster")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{home.config_file} is not valid TOML: {exc}") from None
    if not isinstance(table, dict) or not table.get("nats"):
        return None
    nats = table["nats"]
    if isinstance(nats, str):
        nats = [part.strip() for part in nats.split(",") if part.strip()]
    if not isinstance(nats, list) or not all(isinstance(url, str) and url for url in nats):
        raise ConfigError('[cluster] nats must be a list of NATS URLs, e.g. ["nats://10.0.0.1:4222"]')
    replicas = table.get("replicas", 3)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or not 1 <= replicas <= 5:
        raise ConfigError("[cluster] replicas must be a whole number from 1 to 5 (3 for a 3-node cluster)")
    name = table.get("name", "tc")
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError("[cluster] name must be letters, digits and underscores (the JetStream prefix)")
    return ClusterSettings(
        nats=tuple(nats),
        replicas=replicas,
        creds=_path(table, "creds", home),
        tls_ca=_path(table, "tls_ca", home),
        name=name,
    )


def _path(table: dict, key: str, home: Home) -> Path | None:
    value = table.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"[cluster] {key} must be the path of a file")
    path = Path(value).expanduser()
    return path if path.is_absolute() else home.root / path
