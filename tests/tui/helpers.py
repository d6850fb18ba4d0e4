"""Helpers for the TUI tests: a real home (config file, store, keyring file) filled with seeded data.

The store is filled through the real path (demo generator -> ingest routing -> Store.commit, then leases,
deliveries and dead letters) with a fixed clock, so screens and snapshots show the same thing every run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from tui_currents import catalog, config
from tui_currents.config import Connector, Workspace
from tui_currents.paths import Home
from tui_currents.secrets import Secrets, write_key_env_var
from tui_currents.sources.demo import DemoGenerator
from tui_currents.sources.ingest import Ingestor
from tui_currents.store import ConnectorState, Store
from tui_currents.tui.app import CurrentsApp
from tui_currents.tui.backend import Backend

FIXED_NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
WORKSPACE = "marketing"
EMAIL_AND_PUSH = [
    e.event_type for e in catalog.CATALOG if e.group in ("Email", "Push notification") and e.supported
]
SMS_TYPES = [e.event_type for e in catalog.CATALOG if e.group == "SMS"]


def fixed_clock() -> float:
    return FIXED_NOW


@dataclass
class Seeded:
    """What the seeded home holds, for assertions."""

    home: Home
    dead_letter_ids: list[int]
    delivered: int
    queued: int


def make_app(
    home: Home, *, start_engine: bool = False, secrets: Secrets | None = None, **backend_args
) -> CurrentsApp:
    """The real app on a real home; no engine unless asked (console mode, deterministic)."""
    backend = Backend(
        home, secrets or Secrets(home), start_engine=start_engine, clock=fixed_clock, **backend_args
    )
    return CurrentsApp(backend, clock=fixed_clock, poll_interval=0.1, refresh_interval=0.5)


async def wait_until(pilot, condition, *, timeout: float = 5.0, step: float = 0.02) -> None:
    """Pump the app until `condition()` holds; fail the test after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {getattr(condition, '__name__', condition)}"
            )
        await pilot.pause(step)


async def editor_open(pilot) -> None:
    """Wait for the connector editor to be shown with its fields: the screen is current a moment before
    its fields are mounted, and a query in between finds none."""
    from tui_currents.tui.screens.editor import EditorScreen

    app = pilot.app
    await wait_until(
        pilot, lambda: isinstance(app.screen, EditorScreen) and bool(app.screen.query("#contact_email"))
    )


async def ready(pilot) -> None:
    """Wait for the backend and the first load of the screen."""
    await wait_until(pilot, lambda: pilot.app.backend_ready)
    await pilot.pause(0.05)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.05)


def write_connectors(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two connectors of one workspace and a paused one of another; write keys by environment override
    (the encrypted keyring file costs most of a second per write, and these tests are not about it)."""
    config.add_workspace(home, Workspace(WORKSPACE))
    config.add_workspace(home, Workspace("eu-brand"))
    config.add_connector(
        home,
        Connector(
            name="Production",
            workspace=WORKSPACE,
            contact_email="ops@example.com",
            region="us",
            events=EMAIL_AND_PUSH,
        ),
    )
    config.add_connector(
        home,
        Connector(
            name="SMS to EU",
            workspace=WORKSPACE,
            contact_email="sms@example.com",
            region="eu",
            events=SMS_TYPES,
            include_anonymous=True,
        ),
    )
    config.add_connector(
        home,
        Connector(
            name="Brand archive",
            workspace="eu-brand",
            contact_email="archive@example.com",
            region="custom",
            endpoint="https://segment-proxy.example.com",
            events=["users.messages.email.Send"],
            paused=True,
        ),
    )
    for name in ("Production", "SMS to EU", "Brand archive"):
        monkeypatch.setenv(write_key_env_var(name), f"wk_{name.replace(' ', '_').lower()}_0123456789abcd")


def fill_store(home: Home, *, events: int = 400, seed: int = 7) -> Seeded:
    """Demo events through the real routing into the store, some delivered, some dead-lettered."""
    cfg = config.load(home)
    store = Store(home.store_file)
    try:
        ingestor = Ingestor(cfg, store)
        generator = DemoGenerator(seed=seed, clock=fixed_clock)
        records = generator.batch(events)
        items, _ = ingestor.route(WORKSPACE, records)
        store.commit(items, source="demo", now=FIXED_NOW - 60)
        delivered = 0
        for name in ("Production", "SMS to EU"):
            rows = store.lease(
                name, max_messages=10_000, max_bytes=10**9, lease_seconds=30, now=FIXED_NOW - 30
            )
            keep = rows[: len(rows) * 3 // 4]
            store.delivered(name, [r.seq for r in keep], now=FIXED_NOW - 20)
            delivered += len(keep)
            rest = rows[len(keep) :]
            if name == "Production":
                store.dead_letter(
                    name,
                    [r.seq for r in rest[:3]],
                    reason="Segment answered 400: invalid timestamp",
                    now=FIXED_NOW - 10,
                )
                store.release(name, [r.seq for r in rest[3:]])
            else:
                store.release(name, [r.seq for r in rest])
        store.set_state(
            "Production",
            ConnectorState(
                state="backing off",
                detail="Segment answered 503; next try in 8 s",
                since=FIXED_NOW - 5,
                last_error="HTTP 503 Service Unavailable",
                last_error_at=FIXED_NOW - 5,
                paused_until=FIXED_NOW + 8,
            ),
        )
        store.set_state("SMS to EU", ConnectorState(state="running", since=FIXED_NOW - 3600))
        dead = [d.id for d in store.dead_letters(limit=100)]
        backlog = sum(store.backlog(n).messages for n in ("Production", "SMS to EU"))
        return Seeded(home=home, dead_letter_ids=dead, delivered=delivered, queued=backlog)
    finally:
        store.close()
