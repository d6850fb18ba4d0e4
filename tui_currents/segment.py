"""Segment's HTTP Tracking API contract in one place: endpoints, limits and what each status means."""

from __future__ import annotations

import math
import random
import time
from enum import StrEnum

import orjson

REGION_ENDPOINTS = {
    "us": "https://api.segment.io",
    "eu": "https://events.eu1.segmentapis.com",
}
BATCH_PATH = "/v1/batch"

# Segment documents 32 KB per message, 500 KB per request and 2,500 messages per batch. Over 2,500 it
# answers 200 and silently drops, so the limits are enforced here, with the same margins its SDKs keep.
# Sizes are measured by json_size, by us and by the sandbox alike.
MAX_MESSAGE_BYTES = 32_768
MAX_REQUEST_BYTES = 500_000  # Segment's own limit; batches are closed at MAX_BATCH_BYTES, below it
MAX_BATCH_BYTES = 475_000
MAX_BATCH_MESSAGES = 2_500
MAX_MESSAGE_ID_CHARS = 100

RETRY_AFTER_CAP_SECONDS = 300.0
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 60.0


class Verdict(StrEnum):
    """What a delivery loop does with a batch after Segment's answer."""

    DELIVERED = "delivered"
    RETRY = "retry"  # 408, 410, 429, 460, 5xx (not 501/505), network errors
    SPLIT = "split"  # 400, 413: one bad message may spoil the batch; bisect to isolate it
    CREDENTIALS = "credentials"  # 401, 403: keep the events until the key is changed
    REDIRECT = "redirect"  # 3xx: the endpoint is misconfigured; keep the events and back off
    REJECT = "reject"  # 404, 422, 501, 505 and other 4xx: dead-letter with the answer as the reason


def json_size(value: object) -> int:
    """The size Segment's limits count: the bytes of the JSON text in UTF-8, as it is sent (compact, every
    character as itself: a CJK character counts 3 bytes, an emoji 4; never its \\uXXXX escape, never 1 per
    character). JSON text (bytes) is measured as it is; any other value as orjson writes it, which is how
    messages and batches are sent. Used for a message (32 KB) and a request body (500 KB), by the mapping,
    the delivery loop and the sandbox alike."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return memoryview(value).nbytes
    return len(orjson.dumps(value))


def batch_url(region: str, endpoint: str | None = None) -> str:
    """The /v1/batch URL for a connector's region, or its custom endpoint (a base URL or a full path)."""
    if endpoint:
        base = endpoint.rstrip("/")
        return base if base.endswith(("/v1/batch", "/v1/import")) else base + BATCH_PATH
    return REGION_ENDPOINTS[region] + BATCH_PATH


def verdict(status: int) -> Verdict:
    """Classify an HTTP status from Segment the way Segment's own SDKs do."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if 300 <= status < 400:
        return Verdict.REDIRECT  # not followed: a POST's body must not go to an address nobody configured
    if status in (408, 410, 429, 460) or (500 <= status < 600 and status not in (501, 505)):
        return Verdict.RETRY
    if status in (400, 413):
        return Verdict.SPLIT
    if status in (401, 403):
        return Verdict.CREDENTIALS
    return Verdict.REJECT


def backoff_seconds(attempt: int, *, rng: random.Random | None = None) -> float:
    """Capped exponential backoff with full jitter: uniform in [0.5, 1] x min(0.5 s * 2^n, 60 s)."""
    ceiling: float = min(BACKOFF_BASE_SECONDS * (2 ** max(attempt, 0)), BACKOFF_CAP_SECONDS)
    return ceiling * (0.5 + 0.5 * (rng or random).random())


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a Retry-After (or X-RateLimit-Reset) header, in seconds or as an HTTP date; cap it at 300 s.

    None when absent or unusable (not a number, NaN, infinite, negative, a date already past): the caller
    then backs off as for any failed attempt, rather than trusting a wait of no length."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        from email.utils import parsedate_to_datetime  # here: the email package slows every start-up

        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment.tzinfo is None:
            return None  # HTTP dates are always GMT; one without a zone is not one
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return min(seconds, RETRY_AFTER_CAP_SECONDS)
