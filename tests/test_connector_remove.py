"""Removing a connector with queued events asks what becomes of them; none is orphaned unseen.

`connector remove` as a user scripts it, on a real home: without an engine in this process (the CLI's main:
what it prints, exits with and leaves), with a running engine as real subprocesses (the engine delivering
to the Segment stand-in), and the TUI's delete confirmation."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.reliability.harness import (
    CONNECTOR,
    WRITE_KEY,
    BrazeSender,
    EngineProcess,
    StandIn,
    engine_env,
    make_batches,
    make_home,
    wait_delivered,
)
from tests.reliability.harness import cli as harness_cli
from tests.support import cli_in_process as cli
from tests.test_store import C1, RULES, enqueue
from tui_currents import config
from tui_currents.paths import Home
from tui_currents.store import Store

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def queued(home: Home) -> int:
    """A connector C1 with 7 events queued (no engine runs)."""
    config.add_workspace(home, config.Workspace(name="prod"))
    config.add_connector(
        home,
        config.Connector(
            name=C1,
            workspace="prod",
            contact_email="ops@example.com",
            region="us",
            events=list(RULES.selected),
        ),
    )
    with Store(home.store_file) as store:
        enqueue(store, 7)
    return 7


def connectors(home: Home) -> list[str]:
    return [c.name for c in config.load(home).connectors]


def test_without_a_choice_and_no_terminal_nothing_is_removed_and_it_exits_2(home: Home, queued: int) -> None:
    result = cli(home.root, "connector", "remove", C1)
    assert result.returncode == 2, result
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "7 queued events" in line and "--deliver-first" in line and "--dead-letter" in line
    assert connectors(home) == [C1]
    with Store(home.store_file, readonly=True) as store:
        assert store.backlog(C1).messages == 7


def test_dead_letter_moves_the_queued_events_with_their_reason(home: Home, queued: int) -> None:
    result = cli(home.root, "connector", "remove", C1, "--dead-letter")
    assert result.returncode == 0, result.stderr
    assert "removed" in result.stdout and "7 events" in result.stdout and "dead letters" in result.stdout
    assert connectors(home) == []
    listed = cli(home.root, "dead-letters", "list", "--connector", C1, "--json")
    letters = orjson.loads(listed.stdout)
    assert len(letters) == 7 and {d["reason"] for d in letters} == {"connector removed"}
    assert all(d["can_retry"] for d in letters)
    with Store(home.store_file, readonly=True) as store:
        assert store.backlog(C1).messages == 0


def test_deliver_first_refuses_when_nothing_sends_them(home: Home, queued: int) -> None:
    result = cli(home.root, "connector", "remove", C1, "--deliver-first")
    assert result.returncode == 1, result
    assert "7 events are queued" in result.stderr and "engine is not running" in result.stderr
    assert "Nothing was removed" in result.stderr and "Traceback" not in result.stderr
    assert connectors(home) == [C1]


def test_a_connector_with_nothing_queued_is_removed_without_asking(home: Home, queued: int) -> None:
    with Store(home.store_file) as store:
        rows = store.lease(C1, max_messages=100, max_bytes=10**6, lease_seconds=60)
        store.delivered(C1, [r.seq for r in rows])
    result = cli(home.root, "connector", "remove", C1)
    assert result.returncode == 0, result.stderr
    assert connectors(home) == [] and "dead letters" not in result.stdout


async def test_with_a_running_engine_deliver_first_waits_and_dead_letter_moves(tmp_path: Path) -> None:
    standin = StandIn(tmp_path / "standin", [WRITE_KEY], seed=11).start()
    env = engine_env(keyring_file=True)
    home = make_home(tmp_path / "home", standin.url)
    engine = EngineProcess(home, env, log=tmp_path / "engine.log")
    try:
        await standin.faults(outage=True)  # Segment down: the events stay queued
        await engine.start()
        sender = BrazeSender(engine.url, seed=11)
        await sender.send(make_batches(300, seed=11), deadline=time.monotonic() + 20)
        assert sender.acked == 300

        # --deliver-first waits while the engine cannot send, then removes once it has sent everything.
        command = [
            sys.executable,
            "-m",
            "tui_currents",
            "--home",
            str(home),
            "connector",
            "remove",
            CONNECTOR,
        ]
        waiting = subprocess.Popen(
            [*command, "--deliver-first", "--wait", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        await asyncio.sleep(3.0)
        assert waiting.poll() is None, waiting.communicate()
        assert [c.name for c in config.load(Home.at(home)).connectors] == [CONNECTOR]  # not yet
        await standin.faults(reset=True)
        out, err = await asyncio.to_thread(waiting.communicate, timeout=60)
        assert waiting.returncode == 0, err
        assert "300 events queued" in out and f"Connector {CONNECTOR!r} removed." in out
        arrived = await wait_delivered(standin, sender.acked_ids, 10.0)
        assert sender.acked_ids <= arrived.keys()
        assert config.load(Home.at(home)).connectors == []
        assert orjson.loads(harness_cli(home, "dead-letters", "list", "--json", env=env).stdout) == []
        assert engine.alive()
    finally:
        await engine.stop()
        engine.close()
        standin.stop()


async def test_with_a_running_engine_dead_letter_takes_them_from_a_live_delivery(tmp_path: Path) -> None:
    standin = StandIn(tmp_path / "standin", [WRITE_KEY], seed=12).start()
    env = engine_env(keyring_file=True)
    home = make_home(tmp_path / "home", standin.url)
    engine = EngineProcess(home, env, log=tmp_path / "engine.log")
    try:
        await standin.faults(outage=True)
        await engine.start()
        sender = BrazeSender(engine.url, seed=12)
        await sender.send(make_batches(200, seed=12), deadline=time.monotonic() + 20)
        await asyncio.sleep(1.0)  # the delivery is backing off, with batches leased
        removed = await asyncio.to_thread(
            harness_cli, home, "connector", "remove", CONNECTOR, "--dead-letter", env=env
        )
        assert removed.returncode == 0, removed.stderr
        assert "200 events still queued for it were moved to the dead letters" in removed.stdout
        letters = orjson.loads(
            harness_cli(home, "dead-letters", "list", "--limit", "1000", "--json", env=env).stdout
        )
        assert {d["message_id"] for d in letters} == sender.acked_ids
        assert {d["reason"] for d in letters} == {"connector removed"}
        report = orjson.loads(harness_cli(home, "status", "--json", env=env).stdout)
        assert report["engine"]["running"] and report["connectors"] == []
        assert engine.alive()
    finally:
        await engine.stop()
        engine.close()
        standin.stop()
