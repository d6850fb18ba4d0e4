"""`tui-currents cluster init | join | leave`, the work: a home becomes a member, or a single box again.

- `init` creates the cluster's JetStream assets and carries this home into it: its workspaces and
  connectors (KV), their secrets (sealed), its queued events (the cluster's queue), then writes [cluster].
  Each step can be done again, so a run stopped half-way (a crash, NATS gone) is finished by running the
  same command again. A cluster already initialised (from another home, or to the end) is refused, exit 2.
- `join` checks the passphrase against the cluster's verifier before writing anything (wrong: exit 2),
  then brings the shared configuration and secrets here and writes [cluster].
- `leave` removes [cluster]: the home keeps the configuration and secrets it last mirrored.

Exit codes: 0 done; 1 the cluster or this home could not be used (NATS unreachable, naming the URLs
tried; JetStream disabled; credentials refused; an engine running here); 2 a refusal (wrong passphrase,
already initialised, a bad argument). Messages are one line each and never hold a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import nats.js.errors
import orjson

from tui_currents import config
from tui_currents.cluster.connection import ClusterError, config_kv, run, session
from tui_currents.cluster.membership import ClusterSettings
from tui_currents.cluster.migration import carry_events, crash_point, local_waiting
from tui_currents.cluster.sealing import Sealer
from tui_currents.cluster.shared_config import (
    CONFIG_KEY,
    INIT_KEY,
    SEALING_KEY,
    decode_config,
    encode_config,
    instance_label,
    local_secret,
    put_secret,
    read_secrets,
    sealer_for,
    set_local_secret,
    shared_names,
    with_shared,
)
from tui_currents.outbox import StoreUnavailable
from tui_currents.paths import Home
from tui_currents.secrets import (
    CLUSTER_PASSPHRASE_ENV,
    Secrets,
    SecretsUnavailable,
    read_secret_from_stdin,
)

MIN_PASSPHRASE_CHARS = 12
STARTED, DONE = "started", "done"
AGAIN = "This home is unchanged and still a single box; run the same command again to continue."
COMMAND_SECONDS = 120.0  # the bound of one step's NATS work (a cluster with quorum answers in moments)


def run_action(args: argparse.Namespace) -> int:
    """Run one `cluster` action; prints one line per failure and returns the exit code."""
    home = Home.resolve(args.home)
    try:
        if args.action == "leave":
            return leave(home)
        if args.action == "status":
            return _print_status(home, as_json=args.json)
        settings = _settings(args)
        passphrase = _passphrase(args)
        if args.action == "init":
            return init(home, settings, passphrase)
        return join(home, settings, passphrase)
    except ClusterError as error:
        print(f"tui-currents: {error}", file=sys.stderr)
        return error.exit_code
    except (StoreUnavailable, SecretsUnavailable) as error:
        print(f"tui-currents: {error}", file=sys.stderr)
        return 1


def _print_status(home: Home, *, as_json: bool) -> int:
    from tui_currents.cluster.status import NotAMember, cluster_status, format_cluster_status

    try:
        status = cluster_status(home)
    except NotAMember as error:
        print(f"tui-currents: {error}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
    else:
        print(format_cluster_status(status))
    return 0


def _settings(args: argparse.Namespace) -> ClusterSettings:
    urls = tuple(u.strip() for u in args.nats.split(",") if u.strip())
    settings = ClusterSettings(
        nats=urls,
        replicas=getattr(args, "replicas", 3),
        creds=Path(args.creds).expanduser() if args.creds else None,
        tls_ca=Path(args.tls_ca).expanduser() if args.tls_ca else None,
        name=args.name,
    )
    if problems := config.cluster_problems(settings):
        raise ClusterError("; ".join(problems) + ". Nothing was changed.", exit_code=2)
    return settings


def _passphrase(args: argparse.Namespace) -> str:
    if args.passphrase_stdin:
        try:
            return read_secret_from_stdin()
        except ValueError as error:
            raise ClusterError(f"cluster passphrase: {error}. Nothing was changed.", exit_code=2) from None
    given = os.environ.get(CLUSTER_PASSPHRASE_ENV)
    if not given:
        raise ClusterError(
            f"Give the cluster passphrase with --passphrase-stdin (or {CLUSTER_PASSPHRASE_ENV}). "
            "Nothing was changed.",
            exit_code=2,
        )
    return given


def _no_engine_here(home: Home, doing: str) -> None:
    from tui_currents.control import engine_lock_holder

    pid = engine_lock_holder(home.lock_file)
    if pid is not None:
        raise ClusterError(
            f"An engine runs on this home (pid {pid}); stop it (and its console) before {doing}, then start "
            "it again. Nothing was changed."
        )


def _keep_passphrase(secrets: Secrets, passphrase: str) -> None:
    """The passphrase in this instance's keyring, unless the environment gives it (a service)."""
    if os.environ.get(CLUSTER_PASSPHRASE_ENV) != passphrase:
        secrets.set_cluster_passphrase(passphrase)


# ------------------------------------------------------------------------------------------------- init


def init(home: Home, settings: ClusterSettings, passphrase: str) -> int:
    """Create the cluster from this home (or finish a run that stopped half-way)."""
    _no_engine_here(home, "making it a cluster")
    local = config.load(home)
    if local.cluster is not None:
        raise ClusterError(
            f"This home is already a member of a cluster ({', '.join(local.cluster.nats)}). Nothing was "
            "changed; `tui-currents cluster leave` first to start another.",
            exit_code=2,
        )
    if len(passphrase) < MIN_PASSPHRASE_CHARS:  # a resumed init's passphrase passed this check too
        raise ClusterError(
            f"The cluster passphrase is too short: use at least {MIN_PASSPHRASE_CHARS} characters. "
            "Nothing was changed.",
            exit_code=2,
        )
    secrets = Secrets(home)
    label = instance_label(home)
    carried = {name: local_secret(secrets, name) for name in shared_names(local)}
    state = run(
        _start_init(settings, passphrase, label), COMMAND_SECONDS, settings, "initialise the cluster", AGAIN
    )
    if state != DONE:
        run(
            _carry_configuration(settings, passphrase, local, carried),
            COMMAND_SECONDS,
            settings,
            "carry the configuration into the cluster",
            AGAIN,
        )
        crash_point("config")
        print(
            f"Configuration carried: {len(local.workspaces)} workspace(s), {len(local.connectors)} "
            f"connector(s), {sum(v is not None for v in carried.values())} secret(s), sealed."
        )
        try:
            moved = carry_events(home, settings, [c.name for c in local.connectors], instance=f"init-{label}")
        except StoreUnavailable as error:
            raise ClusterError(
                f"Could not carry the queued events into the cluster ({error.cause}): those not carried yet "
                f"are still in this home's queue. {AGAIN}"
            ) from None
        print(f"Queued events carried: {moved}.")
        run(_finish_init(settings, label), COMMAND_SECONDS, settings, "finish the initialisation", AGAIN)
    _keep_passphrase(secrets, passphrase)
    config.set_cluster(home, settings)
    print(
        f"This home is now the first member of the cluster on {', '.join(settings.nats)}. Start "
        "`tui-currents run`; on the other instances run `tui-currents cluster join`."
    )
    return 0


async def _start_init(settings: ClusterSettings, passphrase: str, label: str) -> str:
    """Claim the cluster for this home's init: "new" (claimed now), "started" (a run from this home
    stopped half-way: continue) or "done" (it ended, only config.toml is left to write). The claim (the
    `init` record) is written before the sealing parameters, so a run stopped between them is continued."""
    async with session(settings) as (_, js):
        kv = await config_kv(js, settings, create=True)
        assert kv is not None
        record = await _init_record(kv)
        if record is not None and record.get("by") != label:
            raise ClusterError(
                f"The cluster on {', '.join(settings.nats)} is already initialised (from "
                f"{record.get('by')}). Nothing was changed; use `tui-currents cluster join` to add this "
                "home.",
                exit_code=2,
            )
        try:
            await kv.get(SEALING_KEY)
            sealed = True
        except nats.js.errors.KeyNotFoundError:
            sealed = False
        if sealed:
            await sealer_for(kv, passphrase)  # a wrong passphrase is refused before anything is written
            return str(record.get("state")) if record is not None else STARTED
        try:
            if record is None:
                await kv.create(INIT_KEY, _record(STARTED, label, settings))
            sealer = await asyncio.to_thread(Sealer.create, passphrase)
            crash_point("claimed")
            await kv.create(SEALING_KEY, sealer.parameters.to_json())
        except nats.js.errors.KeyWrongLastSequenceError:
            raise ClusterError(
                "Another home initialised this cluster at the same moment. Nothing was changed here; use "
                "`tui-currents cluster join`.",
                exit_code=2,
            ) from None
        return "new"


async def _init_record(kv: Any) -> dict[str, Any] | None:
    try:
        entry = await kv.get(INIT_KEY)
    except nats.js.errors.KeyNotFoundError:
        return None
    record = orjson.loads(entry.value or b"{}")
    return record if isinstance(record, dict) else {}


def _record(state: str, label: str, settings: ClusterSettings) -> bytes:
    return orjson.dumps({"state": state, "by": label, "replicas": settings.replicas})


async def _carry_configuration(
    settings: ClusterSettings,
    passphrase: str,
    local: config.Config,
    carried: dict[tuple[str, str], str | None],
) -> None:
    async with session(settings) as (_, js):
        kv = await config_kv(js, settings)
        assert kv is not None
        sealer = await sealer_for(kv, passphrase)
        for name, value in carried.items():
            if value is not None:
                await put_secret(kv, sealer, name, value)
        crash_point("secrets")
        await kv.put(CONFIG_KEY, encode_config(local))


async def _finish_init(settings: ClusterSettings, label: str) -> None:
    async with session(settings) as (_, js):
        kv = await config_kv(js, settings)
        assert kv is not None
        await kv.put(INIT_KEY, _record(DONE, label, settings))


# ------------------------------------------------------------------------------------------------- join


def join(home: Home, settings: ClusterSettings, passphrase: str) -> int:
    """Make this home a member: passphrase checked first; then the shared configuration and secrets."""
    _no_engine_here(home, "joining a cluster")
    local = config.load(home)
    if local.cluster is not None:
        raise ClusterError(
            f"This home is already a member of a cluster ({', '.join(local.cluster.nats)}). Nothing was "
            "changed.",
            exit_code=2,
        )
    waiting = local_waiting(home, [c.name for c in local.connectors])
    if waiting:
        raise ClusterError(
            f"This home has {waiting} event(s) waiting in its own queue, which a member would not send. "
            "Nothing was changed; let them be delivered first (or make this home the first member with "
            "`cluster init`, which carries them)."
        )
    replicas, workspaces, connectors, shared_secrets = run(
        _read_cluster(settings, passphrase), COMMAND_SECONDS, settings, "read the cluster's configuration"
    )
    secrets = Secrets(home)
    settings = ClusterSettings(
        nats=settings.nats,
        replicas=replicas,
        creds=settings.creds,
        tls_ca=settings.tls_ca,
        name=settings.name,
    )
    joined = with_shared(local, workspaces, connectors)
    joined.cluster = settings
    if problems := config.validate_config(joined):
        raise ClusterError(
            "The cluster's configuration does not fit this home's own settings: "
            + "; ".join(problems)
            + ". Nothing was changed.",
            exit_code=2,
        )
    _keep_passphrase(secrets, passphrase)
    for name, value in shared_secrets.items():
        set_local_secret(secrets, name, value)
    from tui_currents.config.edits import _editing
    from tui_currents.config.writing import _write

    with _editing(home) as (home, now):
        merged = with_shared(now, workspaces, connectors)
        merged.cluster = settings
        _write(home, merged)
    print(
        f"This home is now a member of the cluster on {', '.join(settings.nats)}: {len(workspaces)} "
        f"workspace(s), {len(connectors)} connector(s), {len(shared_secrets)} secret(s). Start "
        "`tui-currents run`."
    )
    return 0


async def _read_cluster(
    settings: ClusterSettings, passphrase: str
) -> tuple[int, list[config.Workspace], list[config.Connector], dict[tuple[str, str], str]]:
    async with session(settings) as (_, js):
        kv = await config_kv(js, settings)
        record = await _init_record(kv) if kv is not None else None
        if kv is None or record is None:
            raise ClusterError(
                f"No cluster has been initialised on {', '.join(settings.nats)}: run `tui-currents cluster "
                "init` on the first instance. Nothing was changed.",
                exit_code=2,
            )
        sealer = await sealer_for(kv, passphrase)
        if record.get("state") != DONE:
            raise ClusterError(
                f"The cluster's initialisation (from {record.get('by')}) has not finished: run the same "
                "`tui-currents cluster init` there again. Nothing was changed.",
            )
        try:
            data = (await kv.get(CONFIG_KEY)).value or b"{}"
        except nats.js.errors.KeyNotFoundError:
            data = b"{}"
        workspaces, connectors = decode_config(data)
        shared_secrets = await read_secrets(kv, sealer)
        return int(record.get("replicas", settings.replicas)), workspaces, connectors, shared_secrets


# ------------------------------------------------------------------------------------------------ leave


def leave(home: Home) -> int:
    """Remove [cluster]: a single box again, with the configuration and secrets last mirrored here."""
    _no_engine_here(home, "leaving the cluster")
    local = config.load(home)
    if local.cluster is None:
        print("This home is not a member of a cluster; nothing to do.")
        return 0
    config.set_cluster(home, None)
    with contextlib.suppress(SecretsUnavailable):  # no keyring: the passphrase came from the environment
        Secrets(home).delete_cluster_passphrase()
    print(
        f"This home left the cluster on {', '.join(local.cluster.nats)}: it is a single box again, with "
        f"{len(local.workspaces)} workspace(s) and {len(local.connectors)} connector(s). Events queued in "
        "the cluster stay there for its other members."
    )
    return 0
