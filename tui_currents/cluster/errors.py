"""NATS failures in words for people: StoreUnavailable saying what happened, what was kept, what to do."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

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
        urls = ", ".join(servers)
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
