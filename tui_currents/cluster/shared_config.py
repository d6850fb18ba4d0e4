"""The cluster's shared configuration: workspaces, connectors and their secrets in one KV bucket.

Bucket `<name>_config` (see membership.config_bucket), keys:

- `config`: the workspaces and connectors, as JSON (the config model's fields). One key, so that an
  edit is one compare-and-set on its revision: a member's edit reads it, changes it, and writes it back
  only if nobody wrote in between (else reads again and redoes the change);
- `secret.write-key.<hex of the connector>` and `secret.receiver-token.<hex of the workspace>`: the
  secrets, sealed (sealing.py) with the KV key as associated data. Never in clear;
- `sealing`: the Argon2id salt and costs and the passphrase verifier;
- `init`: how far `cluster init` went ("started" or "done", and from which home).

Everything else in config.toml ([receiver], [smtp], [metrics], ...) stays per instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import socket
from collections.abc import Callable

import nats.js.errors
import orjson
from nats.js.kv import KeyValue

from tui_currents.cluster.codec import connector_of, token
from tui_currents.cluster.connection import ClusterError, config_kv, run, session
from tui_currents.cluster.membership import ClusterSettings
from tui_currents.cluster.sealing import Sealer, SealingError, SealingParameters, WrongClusterPassphrase
from tui_currents.config.model import Config, Connector, Workspace
from tui_currents.config.reading import _from_data
from tui_currents.paths import Home
from tui_currents.secrets import Secrets

CONFIG_KEY = "config"
SEALING_KEY = "sealing"
INIT_KEY = "init"
SECRET_PREFIX = "secret."
WRITE_KEY = "write-key"
RECEIVER_TOKEN = "receiver-token"
EDIT_TIMEOUT = 2.0  # per NATS request of an edit: a person waits for it (the TUI, the CLI)
EDIT_ATTEMPTS = 20  # compare-and-set rounds before an edit gives up (each loses only to another edit)

SecretName = tuple[str, str]  # (WRITE_KEY, connector) or (RECEIVER_TOKEN, workspace)


def secret_key(kind: str, name: str) -> str:
    """The KV key of a secret (names may hold characters KV keys do not allow: hex)."""
    return f"{SECRET_PREFIX}{kind}.{token(name)}"


def secret_name(key: str) -> SecretName | None:
    """The (kind, name) a KV key holds, or None for a key that is not a secret."""
    if not key.startswith(SECRET_PREFIX):
        return None
    kind, _, hexed = key[len(SECRET_PREFIX) :].partition(".")
    if kind not in (WRITE_KEY, RECEIVER_TOKEN):
        return None
    try:
        return kind, connector_of(hexed)
    except ValueError:
        return None


def encode_config(config: Config) -> bytes:
    """The shared part of a configuration (workspaces and connectors) as the `config` value."""
    return orjson.dumps(
        {
            "workspaces": [dataclasses.asdict(w) for w in config.workspaces],
            "connectors": [dataclasses.asdict(c) for c in config.connectors],
        }
    )


def decode_config(data: bytes) -> tuple[list[Workspace], list[Connector]]:
    """The workspaces and connectors of a `config` value, checked as config.toml's would be."""
    try:
        plain = orjson.loads(data)
        if not isinstance(plain, dict):
            raise ValueError("not an object")
    except (orjson.JSONDecodeError, ValueError) as error:
        raise ClusterError(
            f"The cluster's shared configuration is damaged ({error}); nothing was changed."
        ) from None
    shared, problems = _from_data({k: plain[k] for k in ("workspaces", "connectors") if k in plain})
    if problems:
        raise ClusterError(
            "The cluster's shared configuration has problems this version does not accept: "
            + "; ".join(problems)
            + ". Nothing was changed; upgrade tui-currents on this machine."
        )
    return shared.workspaces, shared.connectors


def with_shared(local: Config, workspaces: list[Workspace], connectors: list[Connector]) -> Config:
    """This instance's configuration with the cluster's workspaces and connectors."""
    merged = copy.deepcopy(local)
    merged.workspaces = copy.deepcopy(workspaces)
    merged.connectors = copy.deepcopy(connectors)
    return merged


def shared_names(config: Config) -> list[SecretName]:
    """Every secret the shared configuration can have: a write key per connector, a token per workspace."""
    return [(WRITE_KEY, c.name) for c in config.connectors] + [
        (RECEIVER_TOKEN, w.name) for w in config.workspaces
    ]


# ------------------------------------------------------------------------------------- sealing in the bucket


async def sealer_for(kv: KeyValue, passphrase: str | None) -> Sealer:
    """The cluster's sealer, unlocked with `passphrase`; ClusterError (exit 2) when it is missing or wrong."""
    if not passphrase:
        raise ClusterError(
            "No cluster passphrase: give it with --passphrase-stdin, or set TUI_CURRENTS_CLUSTER_PASSPHRASE "
            "for a service. Nothing was changed.",
            exit_code=2,
        )
    try:
        entry = await kv.get(SEALING_KEY)
    except nats.js.errors.KeyNotFoundError:
        raise ClusterError(
            "The cluster has not been initialised (no sealing parameters): run `tui-currents cluster init` "
            "on the first instance. Nothing was changed.",
            exit_code=2,
        ) from None
    try:
        parameters = SealingParameters.from_json(entry.value or b"")
        return await asyncio.to_thread(Sealer.unlock, passphrase, parameters)  # Argon2: off the loop
    except WrongClusterPassphrase:
        raise ClusterError(
            "The cluster passphrase is wrong: it does not open the cluster's secrets. Nothing was changed; "
            "give the passphrase used with `cluster init`.",
            exit_code=2,
        ) from None
    except SealingError as error:
        raise ClusterError(f"Cannot open the cluster's secrets: {error}. Nothing was changed.") from None


async def read_secrets(kv: KeyValue, sealer: Sealer) -> dict[SecretName, str]:
    """Every secret in the bucket, opened."""
    try:
        keys = await kv.keys()
    except nats.js.errors.NoKeysError:
        return {}
    found: dict[SecretName, str] = {}
    for key in keys:
        name = secret_name(key)
        if name is None:
            continue
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            continue
        found[name] = open_secret(sealer, key, entry.value or b"")
    return found


def open_secret(sealer: Sealer, key: str, sealed: bytes) -> str:
    try:
        return sealer.open(key, sealed).decode("utf-8")
    except (SealingError, UnicodeDecodeError) as error:
        raise ClusterError(
            f"A secret in the cluster cannot be opened: {error}. Nothing was changed."
        ) from None


async def put_secret(kv: KeyValue, sealer: Sealer, name: SecretName, value: str | None) -> None:
    """Store a secret sealed (None: remove it)."""
    key = secret_key(*name)
    if value is None:
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await kv.delete(key)
        return
    await kv.put(key, sealer.seal(key, value.encode("utf-8")))


# ------------------------------------------------------------------------------------ this instance's side


def local_secret(secrets: Secrets, name: SecretName) -> str | None:
    """A secret as this instance has it (its environment override, else its keyring)."""
    kind, item = name
    return secrets.get_write_key(item) if kind == WRITE_KEY else secrets.get_receiver_token(item)


def overridden(secrets: Secrets, name: SecretName) -> bool:
    """True when this instance takes the secret from its environment: its own business, never shared."""
    kind, item = name
    source = secrets.write_key_source(item) if kind == WRITE_KEY else secrets.receiver_token_source(item)
    return source == "environment"


def set_local_secret(secrets: Secrets, name: SecretName, value: str | None) -> None:
    kind, item = name
    if kind == WRITE_KEY:
        if value is None:
            secrets.delete_write_key(item)
        else:
            secrets.set_write_key(item, value)
    elif value is None:
        secrets.delete_receiver_token(item)
    else:
        secrets.set_receiver_token(item, value)


def apply_config(home: Home, workspaces: list[Workspace], connectors: list[Connector]) -> bool:
    """Make config.toml say the cluster's workspaces and connectors (its other settings kept); True when
    the file changed. Written only when different, so the engine reloads only for a real change."""
    from tui_currents.config.edits import _editing
    from tui_currents.config.writing import _write

    with _editing(home) as (home, local):
        if local.workspaces == workspaces and local.connectors == connectors:
            return False
        _write(home, with_shared(local, workspaces, connectors))
        return True


# ------------------------------------------------------------------------------ edits on a member home


def edit_shared(
    home: Home, settings: ClusterSettings, local: Config, change: Callable[[Config], None]
) -> Config:
    """Apply `change` to the cluster's configuration (as this instance sees it: its own settings and the
    cluster's workspaces and connectors) and store it in the cluster with a compare-and-set on the
    revision read; on a conflict, read again and redo. Returns the configuration written; the caller then
    writes config.toml. `change` raises ConfigError to refuse (nothing written)."""

    async def go() -> Config:
        async with session(settings, timeout=EDIT_TIMEOUT) as (_, js):
            kv = await config_kv(js, settings)
            if kv is None:
                raise ClusterError(
                    f"This home is a member of a cluster ({', '.join(settings.nats)}) that has no shared "
                    "configuration: run `tui-currents cluster init` there first, or `cluster leave`. "
                    "Nothing was changed."
                )
            for _ in range(EDIT_ATTEMPTS):
                try:
                    entry = await kv.get(CONFIG_KEY)
                    revision, data = entry.revision, entry.value or b"{}"
                except nats.js.errors.KeyNotFoundError:
                    revision, data = 0, b"{}"
                workspaces, connectors = decode_config(data)
                candidate = with_shared(local, workspaces, connectors)
                change(candidate)
                try:
                    await kv.update(CONFIG_KEY, encode_config(candidate), last=revision)
                except nats.js.errors.KeyWrongLastSequenceError:
                    continue  # another member edited in between: start again from its version
                return candidate
            raise ClusterError(
                "The cluster's configuration kept changing while this edit was saved; nothing was changed. "
                "Try again."
            )

    return run(go(), 60.0, settings, "save the change in the cluster")


def instance_label(home: Home) -> str:
    """Which home this is, for the `init` record (host and folder)."""
    return f"{socket.gethostname()}:{home.root}"
