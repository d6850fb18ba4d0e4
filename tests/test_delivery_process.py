"""Delivery in its own process: the engine's process receives and commits, a child process leases and
sends; a killed child is replaced within seconds and loses nothing; write keys reach it only over its pipe."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import wait_for
from tests.test_engine import FAST, KEY, TOKEN, WORKSPACE, add_connector, known_events, post
from tui_currents.engine import Engine, EngineOptions
from tui_currents.paths import Home
from tui_currents.sandbox import SegmentSandbox
from tui_currents.secrets import Secrets, receiver_token_env_var, write_key_env_var

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes in /proc")


@pytest.fixture
async def sandbox() -> AsyncIterator[SegmentSandbox]:
    async with SegmentSandbox(write_keys={KEY}, reject_unknown_keys=True) as sb:
        yield sb


@pytest.fixture
async def engine(
    home: Home, sandbox: SegmentSandbox, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Engine]:
    monkeypatch.setenv(write_key_env_var("Marketing"), KEY)
    monkeypatch.setenv(receiver_token_env_var(WORKSPACE), TOKEN)
    add_connector(home, sandbox.url)
    eng = Engine(
        home, Secrets(home), EngineOptions(receiver_port=0, delivery_overrides=FAST, delivery_process=True)
    )
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


async def test_a_child_process_delivers_and_the_engine_holds_no_lease(
    engine: Engine, sandbox: SegmentSandbox
):
    [child] = engine.delivery_pids
    assert child in _children(os.getpid()) and child != os.getpid()
    events = known_events(200)
    for i in range(0, 200, 100):
        assert (await post(engine, events[i : i + 100])).status_code == 200
    assert await wait_for(lambda: sandbox.accepted_count >= 200)
    assert {m["messageId"] for m in sandbox.accepted} == {e["id"] for e in events}
    assert engine.store is not None and engine.store._leases == {}  # only the child leases
    assert engine.delivery_starts("Marketing") == 1


async def test_the_write_key_reaches_the_child_over_its_pipe_only(engine: Engine, sandbox: SegmentSandbox):
    [child] = engine.delivery_pids
    assert (await post(engine, known_events(10))).status_code == 200
    assert await wait_for(lambda: sandbox.accepted_count >= 10)  # it had the key
    environ = Path(f"/proc/{child}/environ").read_bytes()
    cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
    assert KEY.encode() not in environ and KEY.encode() not in cmdline
    assert TOKEN.encode() not in environ


async def test_a_killed_delivery_process_is_replaced_within_seconds_and_loses_nothing(
    engine: Engine, sandbox: SegmentSandbox
):
    events = known_events(1_000, seed=11)
    sandbox.faults.update(latency=0.05)  # keep batches in flight when the kill comes
    first = engine.delivery_pids[0]
    for i in range(0, 500, 100):
        assert (await post(engine, events[i : i + 100])).status_code == 200
    assert await wait_for(lambda: sandbox.accepted_count > 0)
    os.kill(first, signal.SIGKILL)
    killed_at = time.monotonic()
    for i in range(500, 1_000, 100):
        assert (await post(engine, events[i : i + 100])).status_code == 200
    assert await wait_for(lambda: engine.delivery_pids not in ([], [first]), timeout=10)
    assert time.monotonic() - killed_at < 5.0
    sandbox.faults.update(latency=0.0)
    assert await wait_for(lambda: {m["messageId"] for m in sandbox.accepted} >= {e["id"] for e in events}, 30)
    assert first not in _children(os.getpid())
    assert engine.delivery_starts("Marketing") == 2  # the new process took the connector over
