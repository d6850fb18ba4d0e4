"""Reaching the cluster's NATS servers for configuration work, with every failure said in one line.

The commands (`cluster init/join/leave`), config edits on a member home and the configuration mirror
connect here. A failure is a ClusterError whose message names what happened (servers unreachable, with
the URLs tried; credentials refused; JetStream not enabled), what was kept and what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue

from tui_currents.cluster.loop import LoopThread
from tui_currents.cluster.membership import ClusterSettings, config_bucket, connect_options
from tui_currents.config.model import ConfigError

T = TypeVar("T")

# What a nats-py call raises when the cluster cannot do it (connection, timeouts, server refusals).
FAILURES = (TimeoutError, asyncio.TimeoutError, nats.errors.Error, OSError)


class ClusterError(ConfigError):
    """A cluster operation could not be done; the message says what happened, what was kept, what to do.
    `exit_code`: 1 for a failure of the cluster or the network, 2 for a refusal (wrong passphrase,
    already initialised). A ConfigError: a config edit on a member fails with it, and every caller of the
    edits already shows a ConfigError's message."""

    def __init__(self, message: str, *, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def _urls(settings: ClusterSettings) -> str:
    return ", ".join(settings.nats)


def failure(error: BaseException, settings: ClusterSettings, doing: str, kept: str) -> ClusterError:
    """`error`, met while `doing`, as a ClusterError in words."""
    if isinstance(error, ClusterError):
        return error
    if _refused(error):
        return ClusterError(
            f"Could not {doing}: the NATS servers ({_urls(settings)}) refused this instance's credentials. "
            f"{kept} Check the creds file in [cluster] (and that the NATS user may use JetStream)."
        )
    if isinstance(error, nats.js.errors.ServiceUnavailableError | nats.errors.NoRespondersError):
        return ClusterError(
            f"Could not {doing}: JetStream is not enabled on the NATS servers ({_urls(settings)}), or "
            f"has no quorum. {kept} Start nats-server with -js (or a jetstream {{}} block) on every node."
        )
    detail = str(error) or type(error).__name__
    return ClusterError(
        f"Could not {doing}: the NATS cluster ({_urls(settings)}) gave no answer ({detail}). {kept} "
        "Check that the NATS servers are running and reachable from here, then try again."
    )


async def connect(settings: ClusterSettings, *, timeout: float = 5.0, patient: bool = False) -> Client:
    """A connection to the cluster. `patient=False` (commands): each server is tried twice, then a
    ClusterError names the URLs tried. `patient=True` (a running mirror): reconnects forever once
    connected, but the first connection still fails within its bound."""
    seen: list[BaseException] = []

    async def note(error: Exception) -> None:
        seen.append(error)

    options = connect_options(settings, timeout=timeout)
    options["max_reconnect_attempts"] = options["max_reconnect_attempts"] if patient else 1
    options["reconnect_time_wait"] = 0.2
    bound = timeout * (2 * len(settings.nats) + 1)
    connecting = nats.connect(**options, error_cb=note, disconnected_cb=_nothing, reconnected_cb=_nothing)
    try:
        nc = await asyncio.wait_for(connecting, bound)
    except FAILURES as error:
        refused = [e for e in [*seen, error] if _refused(e)]
        cause: BaseException = refused[0] if refused else (seen[-1] if seen else error)
        if refused:
            raise failure(cause, settings, "connect", "Nothing was changed.") from None
        detail = str(cause) or type(cause).__name__
        raise ClusterError(
            f"Could not reach the NATS cluster: tried {_urls(settings)} ({detail}). Nothing was changed. "
            "Check that the NATS servers are running and reachable from here, then try again."
        ) from None
    return nc


async def jetstream(nc: Client, settings: ClusterSettings, *, timeout: float = 5.0) -> JetStreamContext:
    """The JetStream context, once the servers said JetStream is enabled for this account."""
    js = nc.jetstream(timeout=timeout)
    try:
        await js.account_info()
    except FAILURES as error:
        raise failure(error, settings, "use JetStream", "Nothing was changed.") from None
    return js


async def config_kv(
    js: JetStreamContext, settings: ClusterSettings, *, create: bool = False
) -> KeyValue | None:
    """The bucket of the shared configuration; None when the cluster was never initialised (and `create`
    is False)."""
    bucket = config_bucket(settings)
    try:
        return await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        if not create:
            return None
    return await js.create_key_value(
        bucket=bucket, history=5, replicas=settings.replicas, storage=api.StorageType.FILE
    )


@contextlib.asynccontextmanager
async def session(
    settings: ClusterSettings, *, timeout: float = 5.0
) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    """A connection and its JetStream context for one piece of work, closed at the end."""
    nc = await connect(settings, timeout=timeout)
    try:
        yield nc, await jetstream(nc, settings, timeout=timeout)
    finally:
        with contextlib.suppress(*FAILURES):
            await nc.close()


def run(
    coro: Coroutine[Any, Any, T],
    timeout: float,
    settings: ClusterSettings,
    doing: str,
    kept: str = "Nothing was changed.",
) -> T:
    """Run `coro` from synchronous code on a private loop (a caller may itself be inside an event loop,
    like the TUI's), waiting at most `timeout` seconds; a NATS failure (or no answer in time) becomes a
    ClusterError saying what was `doing` and what was `kept`."""
    loop = LoopThread(name="nats-config")
    try:
        return loop.call(coro, timeout)
    except FAILURES as error:
        raise failure(error, settings, doing, kept) from None
    finally:
        loop.stop()


def _refused(error: BaseException) -> bool:
    """The servers refused the credentials (nats-py raises a plain Error naming "Authorization Violation"
    on a first connection, AuthorizationError later)."""
    text = str(error).lower()
    return (
        isinstance(error, nats.errors.AuthorizationError)
        or "authorization" in text
        or "authentication" in text
    )


async def _nothing() -> None:
    return None
