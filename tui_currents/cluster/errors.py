"""NATS failures in words for people: StoreUnavailable saying what happened, what was kept, what to do."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import nats.errors
import nats.js.errors

from tui_currents.outbox import StoreUnavailable

NATS_ERRORS = (TimeoutError, asyncio.TimeoutError, nats.errors.Error, OSError)

# Failures that mean "no quorum answered" (nodes down or unreachable, a leader being elected): they pass
# once most nodes are back. Any other NATS error is a refusal, which does not pass by itself.
NO_ANSWER = (
    TimeoutError,
    asyncio.TimeoutError,
    OSError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionReconnectingError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
)


def unavailable(
    error: BaseException, doing: str, kept: str, servers: Sequence[str], path: Path
) -> StoreUnavailable:
    """The StoreUnavailable for `error` met while `doing` ("save received events"); `kept` says what was
    kept ("Nothing from this batch was acknowledged; ...")."""
    detail = str(error) or type(error).__name__
    if isinstance(error, NO_ANSWER):
        urls = shown_urls(servers)
        return StoreUnavailable(
            f"Could not {doing}: the NATS cluster ({urls}) gave no answer with a quorum ({detail}). {kept} "
            "Check that most NATS nodes are running and reachable; it works again once they are.",
            cause="no quorum",
            path=path,
        )
    return StoreUnavailable(
        f"Could not {doing}: the NATS cluster refused it ({detail}). {kept} "
        "This will not pass by itself: see the NATS servers' logs.",
        cause="refused",
        path=path,
    )


UNREACHABLE = "unreachable"  # StoreUnavailable.cause: the client is connected to no server of the cluster


def not_connected(doing: str, kept: str, servers: Sequence[str], path: Path) -> StoreUnavailable:
    """The StoreUnavailable of a call not even tried: the client has lost every server (it keeps trying to
    reconnect by itself), so asking would only wait for a timeout."""
    return StoreUnavailable(
        f"Could not {doing}: no NATS server of the cluster ({shown_urls(servers)}) is reachable. {kept} "
        "Check that the NATS nodes are running; it reconnects by itself once one is back.",
        cause=UNREACHABLE,
        path=path,
    )


def shown_urls(servers: Sequence[str]) -> str:
    """The servers' URLs for a message: scheme, host and port only (a user or password in a URL is never
    shown)."""
    shown = []
    for url in servers:
        try:
            parts = urlsplit(url if "://" in url else f"nats://{url}")
            port = f":{parts.port}" if parts.port else ""
            shown.append(f"{parts.scheme}://{parts.hostname or '?'}{port}")
        except ValueError:
            shown.append("(a URL that cannot be read)")
    return ", ".join(shown)


def cannot_connect(
    error: BaseException | None,
    heard: Sequence[BaseException],
    servers: Sequence[str],
    path: Path,
    creds: Path | None,
    *,
    no_jetstream: bool = False,
) -> StoreUnavailable:
    """Why connecting to the cluster failed, in words: JetStream disabled, credentials refused, TLS, or no
    server reachable (naming the URLs tried). `heard` are the errors the client reported meanwhile."""
    urls = shown_urls(servers)
    kept = "Nothing was read or written."
    if no_jetstream:
        return StoreUnavailable(
            f"The NATS servers at {urls} run without JetStream, which the cluster queue needs. {kept} "
            "Start nats-server with -js (or `jetstream {}` in its config file) on every node.",
            cause="no jetstream",
            path=path,
        )
    texts = " ".join(str(e) for e in [*heard, error] if e is not None).lower()
    if "authorization" in texts or "authentication" in texts or "user authentication" in texts:
        which = f"the credentials file {creds}" if creds is not None else "no credentials (none configured)"
        return StoreUnavailable(
            f"The NATS servers at {urls} refused this connection's credentials ({which}). {kept} "
            "Check [cluster] creds in config.toml and that the user exists on the servers.",
            cause="credentials refused",
            path=path,
        )
    if isinstance(error, FileNotFoundError) or (creds is not None and not creds.exists()):
        return StoreUnavailable(
            f"The NATS credentials file {creds} cannot be read. {kept} Check [cluster] creds in config.toml.",
            cause="credentials refused",
            path=path,
        )
    if "ssl" in texts or "certificate" in texts or "tls" in texts:
        return StoreUnavailable(
            f"Could not set up TLS with the NATS servers at {urls} ({texts.strip()[:200]}). {kept} "
            "Check [cluster] tls_ca in config.toml and the servers' certificates.",
            cause="refused",
            path=path,
        )
    return StoreUnavailable(
        f"Could not reach any NATS server of the cluster (tried {urls}). {kept} "
        "Check that the servers run and that [cluster] nats in config.toml names them.",
        cause="no quorum",
        path=path,
    )
