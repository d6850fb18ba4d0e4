"""The configuration mirror: a member's config.toml and keyring kept equal to the cluster's, live.

Every running instance of a member home runs `mirror_shared_config(home)` beside its engine. It watches
the configuration bucket and writes what changed into config.toml (workspaces and connectors; the
instance's own settings kept) and into the keyring (write keys, receiver tokens, opened with the cluster
passphrase). The engine's own config watch then applies the change, as for a local edit: nothing else in
the app needs to know about the cluster.

The other way: config edits on a member go to the cluster first (config/edits.py), and a secret stored in
this instance's keyring (`connector edit --write-key-stdin`, the TUI's editor) is carried to the cluster by
the mirror, which compares the keyring with what it last agreed with the cluster (a three-way check, so a
change on either side wins over the unchanged side). A secret set while no mirror ran here is carried
when one starts; a secret deleted elsewhere meanwhile comes back then (the cluster's copy wins only over
an unchanged local one).

Starting it (the engine does, on a member home):

    task = asyncio.create_task(mirror_shared_config(home, secrets=secrets))
    ...
    task.cancel()

It returns at once for a home that is not a member; it never raises for NATS trouble: it logs one line
and tries again (every RETRY_SECONDS), keeping the last configuration mirrored meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import nats.errors
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from tui_currents.cluster.connection import FAILURES, ClusterError, config_kv, connect, jetstream
from tui_currents.cluster.membership import ClusterSettings, cluster_settings
from tui_currents.cluster.sealing import Sealer
from tui_currents.cluster.shared_config import (
    CONFIG_KEY,
    SecretName,
    apply_config,
    decode_config,
    local_secret,
    open_secret,
    overridden,
    put_secret,
    sealer_for,
    secret_key,
    secret_name,
    set_local_secret,
    shared_names,
)
from tui_currents.config.model import Config, ConfigError, Connector, Workspace
from tui_currents.paths import Home
from tui_currents.secrets import Secrets, SecretsUnavailable

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
LOCAL_CHECK_SECONDS = 1.0  # how often the keyring is looked at for secrets changed here
RESYNC_SECONDS = 60.0  # the watch is started afresh this often (see _Mirror._watch)


async def mirror_shared_config(
    home: Home,
    *,
    secrets: Secrets | None = None,
    settings: ClusterSettings | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Keep this member's config.toml and keyring equal to the cluster's shared configuration, until
    cancelled. `ready` is set once the cluster's configuration was first brought here."""
    if settings is None:
        settings = await asyncio.to_thread(cluster_settings, home)
    if settings is None:
        return
    mirror = _Mirror(home, settings, secrets)
    trouble: str | None = None
    while True:
        try:
            await mirror.run(ready)
        except asyncio.CancelledError:
            raise
        except (ClusterError, ConfigError, SecretsUnavailable, *FAILURES) as error:
            if str(error) != trouble:
                trouble = str(error)
                log.warning("cluster configuration not mirrored for now (retrying): %s", error)
        except Exception:  # the mirror must outlive any single bad value
            log.exception("cluster configuration mirror: unexpected error (retrying)")
        await asyncio.sleep(RETRY_SECONDS)


class _Mirror:
    def __init__(self, home: Home, settings: ClusterSettings, secrets: Secrets | None):
        self.home = home
        self.settings = settings
        self._secrets = secrets
        self.shared: tuple[list[Workspace], list[Connector]] | None = None
        self.agreed: dict[SecretName, str | None] = {}  # what the keyring and the cluster last both held
        self._sealer: Sealer | None = None
        self._keyring_version: object = None

    @property
    def secrets(self) -> Secrets:
        if self._secrets is None:
            self._secrets = Secrets(self.home)
        return self._secrets

    async def run(self, ready: asyncio.Event | None) -> None:
        nc = await connect(self.settings, patient=True)
        try:
            js = await jetstream(nc, self.settings)
            kv = await config_kv(js, self.settings)
            if kv is None:
                raise ClusterError(
                    f"the cluster on {', '.join(self.settings.nats)} has no shared configuration yet "
                    "(`tui-currents cluster init` was not run)"
                )
            if self._sealer is None:
                passphrase = await asyncio.to_thread(self.secrets.get_cluster_passphrase)
                self._sealer = await sealer_for(kv, passphrase)
            first = True
            while True:
                await self._watch(kv, ready, force_push=first)
                first = False
        finally:
            with contextlib.suppress(*FAILURES):
                await nc.close()

    async def _watch(self, kv: KeyValue, ready: asyncio.Event | None, *, force_push: bool) -> None:
        """Watch the bucket for RESYNC_SECONDS: its current values first (applied where they differ),
        then every change as it happens. Started afresh every round, so a watch the servers dropped (a
        node restarted) costs at most one round of delay."""
        watcher = await kv.watchall()
        try:
            while (entry := await watcher.updates(timeout=30)) is not None:
                await self._heard(kv, entry)
            await self._push_local_changes(kv, force=force_push)
            if ready is not None and not ready.is_set():
                ready.set()
                log.info("cluster configuration mirrored from %s", ", ".join(self.settings.nats))
            deadline = time.monotonic() + RESYNC_SECONDS
            while time.monotonic() < deadline:
                try:
                    entry = await watcher.updates(timeout=LOCAL_CHECK_SECONDS)
                except nats.errors.TimeoutError:
                    entry = None
                if entry is not None:
                    await self._heard(kv, entry)
                await self._push_local_changes(kv)
        finally:
            with contextlib.suppress(*FAILURES):
                await watcher.stop()

    async def _heard(self, kv: KeyValue, entry: KeyValue.Entry) -> None:
        gone = entry.operation in (KV_DEL, KV_PURGE) or not entry.value
        if entry.key == CONFIG_KEY:
            if gone:
                return  # never taken for "no connectors": the cluster's configuration is only replaced
            workspaces, connectors = decode_config(entry.value or b"")
            self.shared = (workspaces, connectors)
            if await asyncio.to_thread(apply_config, self.home, workspaces, connectors):
                log.info(
                    "cluster configuration applied: %d workspace(s), %d connector(s)",
                    len(workspaces),
                    len(connectors),
                )
            return
        name = secret_name(entry.key)
        if name is None or self._sealer is None:
            return
        value = None if gone else open_secret(self._sealer, entry.key, entry.value or b"")
        self.agreed[name] = value
        if await asyncio.to_thread(overridden, self.secrets, name):
            return  # this instance's environment gives it: the keyring is not its source here
        if await asyncio.to_thread(local_secret, self.secrets, name) != value:
            await asyncio.to_thread(set_local_secret, self.secrets, name, value)
            log.info("cluster secret applied: the %s of %r", name[0].replace("-", " "), name[1])

    async def _push_local_changes(self, kv: KeyValue, *, force: bool = False) -> None:
        """Carry secrets changed in this instance's keyring to the cluster."""
        if self.shared is None or self._sealer is None:
            return
        version = self.secrets.version()
        if not force and version == self._keyring_version:
            return
        self._keyring_version = version
        names = shared_names(Config(workspaces=self.shared[0], connectors=self.shared[1]))
        for name in names:
            if await asyncio.to_thread(overridden, self.secrets, name):
                continue
            local = await asyncio.to_thread(local_secret, self.secrets, name)
            if local == self.agreed.get(name):
                continue
            await put_secret(kv, self._sealer, name, local)
            self.agreed[name] = local
            log.info(
                "secret carried to the cluster: the %s of %r (%s)",
                name[0].replace("-", " "),
                name[1],
                "removed" if local is None else secret_key(*name),
            )
