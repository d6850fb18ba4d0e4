"""Faults the sandbox injects: errors, rate limits, latency, dropped connections, outages."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any


def _check_rate(name: str, value: object) -> float:
    rate = float(value)  # type: ignore[arg-type]
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, not {value!r}")
    return rate


def _check_seconds(name: str, value: object, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    seconds = float(value)  # type: ignore[arg-type]
    if seconds < 0:
        raise ValueError(f"{name} must be zero or more seconds, not {value!r}")
    return seconds


def _check_status(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 200 <= value <= 599:
        raise ValueError(f"an HTTP status must be an integer from 200 to 599, not {value!r}")
    return value


@dataclass
class Faults:
    """Faults to inject, changeable at any time (also from another thread or, as JSON, another process).

    - `fail_rate`: share of requests answered with a status drawn from `fail_statuses`.
    - `next_statuses`: statuses to answer to the next requests, one each, before anything else.
    - `retry_after`: seconds put in `Retry-After` and `X-RateLimit-Reset` on injected 429 and 503 answers.
    - `latency`: seconds to wait before handling each request.
    - `drop_connection_rate`: share of requests whose connection is closed before anything is accepted.
    - `lose_response_rate`: share of requests whose messages are accepted but whose answer is lost
      (the connection is closed instead), so the client must retry and Segment deduplicates.
    - `timeout`: seconds to hold each request before answering; if the client has gone by then, nothing
      is accepted.
    - `outage`: every request fails, with 503 or (with `outage_reset`) a connection reset.
    - `reject_message_ids`: a batch holding one of these messageIds gets 400, as a bad message would.
    - `status_for_keys`: answer this status to requests made with this write key (e.g. 401, 403).
    - `seed`: seeds the random draws, for repeatable tests.
    """

    fail_rate: float = 0.0
    fail_statuses: list[int] = field(default_factory=lambda: [500, 503])
    next_statuses: deque[int] = field(default_factory=deque)
    retry_after: float | None = None
    latency: float = 0.0
    drop_connection_rate: float = 0.0
    lose_response_rate: float = 0.0
    timeout: float = 0.0
    outage: bool = False
    outage_reset: bool = False
    reject_message_ids: set[str] = field(default_factory=set)
    status_for_keys: dict[str, int] = field(default_factory=dict, repr=False)  # keys are secrets
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.rng.seed(self.seed)

    def update(self, **changes: Any) -> None:
        """Change some knobs, checking every value first; a ValueError leaves all knobs unchanged."""
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name in ("fail_rate", "drop_connection_rate", "lose_response_rate"):
                checked[name] = _check_rate(name, value)
            elif name in ("latency", "timeout"):
                checked[name] = _check_seconds(name, value)
            elif name == "retry_after":
                checked[name] = _check_seconds(name, value, allow_none=True)
            elif name == "fail_statuses":
                statuses = [_check_status(s) for s in value]
                if not statuses:
                    raise ValueError("fail_statuses needs at least one status")
                checked[name] = statuses
            elif name == "next_statuses":
                checked[name] = deque(_check_status(s) for s in value)
            elif name in ("outage", "outage_reset"):
                checked[name] = bool(value)
            elif name == "reject_message_ids":
                checked[name] = {str(v) for v in value}
            elif name == "status_for_keys":
                checked[name] = {str(k): _check_status(v) for k, v in dict(value).items()}
            elif name == "seed":
                checked[name] = None if value is None else int(value)
            else:
                raise ValueError(f"unknown fault {name!r}")
        for name, value in checked.items():
            setattr(self, name, value)
        if "seed" in checked:
            self.rng.seed(self.seed)

    def reset(self) -> None:
        """Turn every fault off."""
        fresh = Faults()
        for name in self.public():
            setattr(self, name, getattr(fresh, name))
        self.rng.seed(None)

    def public(self) -> dict[str, Any]:
        """The knobs as JSON-ready data, without write keys (only how many keys have a status)."""
        return {
            "fail_rate": self.fail_rate,
            "fail_statuses": list(self.fail_statuses),
            "next_statuses": list(self.next_statuses),
            "retry_after": self.retry_after,
            "latency": self.latency,
            "drop_connection_rate": self.drop_connection_rate,
            "lose_response_rate": self.lose_response_rate,
            "timeout": self.timeout,
            "outage": self.outage,
            "outage_reset": self.outage_reset,
            "reject_message_ids": sorted(self.reject_message_ids),
            "status_for_keys": len(self.status_for_keys),
            "seed": self.seed,
        }
