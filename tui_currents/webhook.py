"""Alerts as JSON posts to a webhook (Slack's incoming webhooks, or anything that takes JSON), beside e-mail.

The alert monitor records every alert and recovery in the store's `alerts` table; this poster follows that
table and posts each new row once, oldest first, with a Slack-compatible `text` and the alert's fields.
How far it got is kept in the same SQLite file, so a restart neither loses nor repeats a post. A failed post
is retried with a capped exponential backoff (given up after a day, and logged); it runs as its own task
with time limits on every request, so a slow or dead webhook never holds up receiving or delivery.

The webhook's URL is a secret (Slack's carry their own credential): it lives in the keyring, and neither
logs nor errors ever show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tui_currents import __version__
from tui_currents.config import LOOPBACK_HOSTS
from tui_currents.logs import mask
from tui_currents.store import StoreUnavailable, webhook_cursor

log = logging.getLogger("tui_currents.webhook")

DAY = 86_400.0
REQUEST_TIMEOUT = 10.0
BATCH = 50  # alerts read per round
NO_URL = (
    "[alerts] webhook is on but no URL is stored in the keyring; store it with `tui-currents alerts webhook`"
)


def check_webhook_url(url: str) -> str | None:
    """Why `url` cannot be the alert webhook, or None. Never quotes the URL: it is a secret."""
    if any(ch.isspace() for ch in url):
        return "it contains spaces"
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "it must be an https:// URL (http:// only to 127.0.0.1, localhost or ::1)"
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        return "plain http:// would send alerts unencrypted; use https:// (http:// only to loopback hosts)"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "its port is not a number from 0 to 65535"
    return None


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def payload(row: tuple, host_name: str) -> dict:
    """The JSON posted for one alert row: Slack's `text` first, then the alert's fields."""
    alert_id, at, connector, kind, phase, since, subject, body = row
    lead = body.split("\n\n", 1)[0].replace("\n", " ").strip()
    return {
        "text": mask(f"{subject}\n{lead}" if lead else subject),
        "id": alert_id,
        "connector": connector,
        "kind": kind,
        "phase": phase,
        "at": _iso(at),
        "since": _iso(since),
        "subject": mask(subject),
        "body": mask(body),
        "host": host_name,
    }


class WebhookPoster:
    """Follows the store's alerts and posts each new one to the webhook; see the module docstring.

    `url_provider()` returns the URL (or None); it may be slow (the keyring), so it runs in a thread and
    its answer is kept until `url_changed()`. `enabled()` says whether [alerts] webhook is on; while off,
    the alerts recorded meanwhile are passed over (turning it on does not post old news)."""

    def __init__(
        self,
        store_path: Path | str,
        url_provider: Callable[[], str | None],
        *,
        client: httpx.AsyncClient | None = None,
        host_name: str = "",
        poll_seconds: float = 2.0,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 300.0,
        give_up_after: float = DAY,
        clock: Callable[[], float] = time.time,
    ):
        self.path = Path(store_path)
        self._url_provider = url_provider
        self._client = client
        self.host_name = host_name
        self.poll_seconds = poll_seconds
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.give_up_after = give_up_after
        self.clock = clock
        self._started_at = clock()
        self._url: str | None = None
        self._url_read = False
        self._failing: str | None = None
        self._wake = asyncio.Event()
        self.posted = 0  # posts the webhook accepted (for the curious and the tests)

    def url_changed(self) -> None:
        """The URL or the setting may have changed: read the URL again before the next post."""
        self._url_read = False
        self._wake.set()

    # ------------------------------------------------------------------ posting

    async def _current_url(self) -> str | None:
        if not self._url_read:
            try:
                self._url = await asyncio.to_thread(self._url_provider)
            except Exception as exc:  # the keyring: its type only, never a value
                log.error(
                    "alert webhook: its URL could not be read from the keyring (%s)", type(exc).__name__
                )
                self._url = None
            self._url_read = True
        return self._url

    async def _post(self, client: httpx.AsyncClient, url: str, body: dict) -> str | None:
        """Post once; None when the webhook took it, else why not (without the URL)."""
        try:
            response = await client.post(url, json=body, timeout=REQUEST_TIMEOUT)
        except httpx.TimeoutException:
            return f"no answer within {REQUEST_TIMEOUT:g} s"
        except Exception as exc:  # httpx's errors may quote the URL: only their type is said
            return f"could not reach it ({type(exc).__name__})"
        if 200 <= response.status_code < 300:
            return None
        return f"it answered HTTP {response.status_code}"

    async def _deliver(self, client: httpx.AsyncClient, row: tuple, enabled: Callable[[], bool]) -> None:
        """Post one alert until the webhook takes it, it is given up, or the webhook is turned off."""
        body = payload(row, self.host_name)
        delay = self.backoff_seconds
        while True:
            if not enabled():
                return  # turned off: the cursor passes over it at the next round
            url = await self._current_url()
            problem = NO_URL if url is None else await self._post(client, url, body)
            if problem is None:
                self.posted += 1
                if self._failing is not None:
                    self._failing = None
                    log.info("alert webhook: takes posts again")
                return
            if self.clock() - row[1] > self.give_up_after:
                log.error("alert webhook: gave up posting %r after a day: %s", body["subject"], problem)
                return
            if problem != self._failing:
                self._failing = problem
                log.warning(
                    "alert webhook: %s; retrying with backoff (alerts stay queued meanwhile)", problem
                )
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
                self._url_read = False  # woken by a change of URL or setting: read it again
            except TimeoutError:
                pass
            delay = min(delay * 2, self.max_backoff_seconds)

    async def run(self, enabled: Callable[[], bool]) -> None:
        """Post new alerts until cancelled; `enabled()` is read each round."""
        client = self._client or httpx.AsyncClient(headers={"User-Agent": f"tui-currents/{__version__}"})
        try:
            while True:
                try:
                    on = enabled()
                    rows = await asyncio.to_thread(
                        webhook_cursor.next_alerts,
                        self.path,
                        enabled=on,
                        started_at=self._started_at,
                        limit=BATCH,
                    )
                    for row in rows:
                        await self._deliver(client, row, enabled)
                        await asyncio.to_thread(webhook_cursor.advance, self.path, row[0])
                except asyncio.CancelledError:
                    raise
                except (sqlite3.Error, StoreUnavailable) as exc:
                    log.warning("alert webhook: the store cannot be read (%s); tried again shortly", exc)
                except Exception as exc:  # posting alerts must never end: the next round tries again
                    log.error("alert webhook: unexpected %s; tried again shortly", type(exc).__name__)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
        finally:
            if self._client is None:
                await client.aclose()
