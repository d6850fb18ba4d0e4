"""Whether a home is a member of a cluster, and how to reach its NATS servers.

A home is a member when its config.toml has a `[cluster]` table (written by `tui-currents cluster init` or
`join`, removed by `leave`); otherwise it is a single box with its own SQLite queue. This module is what
the rest of the app asks: `cluster_settings(home)`, and `connect_options(settings)` for nats-py.
"""

from __future__ import annotations

import ssl
from typing import Any

from tui_currents import config
from tui_currents.config.model import ClusterSettings
from tui_currents.paths import Home
from tui_currents.secrets import CLUSTER_PASSPHRASE_ENV as PASSPHRASE_ENV

__all__ = ["PASSPHRASE_ENV", "ClusterSettings", "cluster_settings", "config_bucket", "connect_options"]


def cluster_settings(home: Home) -> ClusterSettings | None:
    """The home's [cluster] settings; None when it is not a member (a single box).

    Raises config.ConfigError when config.toml cannot be read (the message names the problem)."""
    return config.load(home).cluster


def config_bucket(settings: ClusterSettings) -> str:
    """The KV bucket holding the cluster's shared configuration and sealed secrets."""
    return f"{settings.name}_config"


def connect_options(settings: ClusterSettings, *, timeout: float = 5.0) -> dict[str, Any]:
    """Keyword arguments for `nats.connect` that reach this cluster: its servers, the user credentials
    file and the CA to trust, when given. Reconnects forever: a cluster member outlives NATS restarts."""
    options: dict[str, Any] = {
        "servers": list(settings.nats),
        "connect_timeout": timeout,
        "reconnect_time_wait": 0.5,
        "max_reconnect_attempts": -1,
        "allow_reconnect": True,
    }
    if settings.creds is not None:
        options["user_credentials"] = str(settings.creds)
    if settings.tls_ca is not None:
        options["tls"] = ssl.create_default_context(cafile=str(settings.tls_ca))
    return options
