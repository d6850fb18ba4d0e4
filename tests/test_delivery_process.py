"""Delivery in its own process: the engine's process receives and commits, a child process leases and
sends; a killed child is replaced within seconds and loses nothing; write keys reach it only over its pipe."""

from __future__ import annotations

import asyncio
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


async def test_a_write_key_the_keyring_could_not_give_is_asked_again(
    home: Home, sandbox: SegmentSandbox, monkeypatch: pytest.MonkeyPatch
):
    # As a delivery loop in the engine's process polls while it has no key: the engine reads it again
    # and sends it over the pipe, with no reload.
    monkeypatch.setenv(receiver_token_env_var(WORKSPACE), TOKEN)
    add_connector(home, sandbox.url)
    secrets = Secrets(home)
    secrets.set_write_key("Marketing", KEY)
    good = home.keyring_file.read_bytes()
    home.keyring_file.write_bytes(good[: len(good) // 2])  # cut inside an entry: unreadable
    eng = Engine(
        home, secrets, EngineOptions(receiver_port=0, delivery_overrides=FAST, delivery_process=True)
    )
    await eng.start()
    try:
        assert (await post(eng, known_events(5))).status_code in (200, 503)
        await asyncio.sleep(1.0)
        assert sandbox.accepted_count == 0
        home.keyring_file.write_bytes(good)
        assert (await post(eng, known_events(5, seed=8))).status_code == 200
        assert await wait_for(lambda: sandbox.accepted_count >= 5, timeout=20)
    finally:
        await eng.stop()


async def test_commits_and_the_delivery_process_writes_take_turns(engine: Engine, sandbox: SegmentSandbox):
    # Both processes write the store; they queue on one turn (a kernel lock that wakes the waiter at
    # once) rather than on SQLite's busy handler, which sleeps up to 100 ms between tries.
    from tui_currents.write_turns import WriteTurns, turns_file

    assert engine.store is not None
    turns = WriteTurns(turns_file(engine.store.path))
    try:
        with turns.turn():
            request = asyncio.create_task(post(engine, known_events(10)))
            await asyncio.sleep(1.0)
            assert not request.done()  # its commit waits for the turn
        assert (await request).status_code == 200
        assert await wait_for(lambda: sandbox.accepted_count >= 10)
        store = engine.store

        def state() -> str:
            return store.states()["Marketing"].state

        assert await wait_for(lambda: state() == "idle")
        sandbox.faults.update(latency=2.0)
        assert (await post(engine, known_events(10, seed=9))).status_code == 200
        assert await wait_for(lambda: state() == "running")  # leased, the request on its way
        with turns.turn():
            # Sent, but its "delivered" mark waits for the turn: still waiting in the queue meanwhile.
            assert await wait_for(lambda: sandbox.accepted_count >= 20)
            await asyncio.sleep(0.5)
            assert engine.store.backlog("Marketing").messages == 10
        assert await wait_for(lambda: engine.store.backlog("Marketing").messages == 0)
    finally:
        turns.close()


async def test_the_terminal_apps_engine_delivers_from_its_own_process_when_asked(
    home: Home, sandbox: SegmentSandbox, monkeypatch: pytest.MonkeyPatch
):
    # The TUI's in-process engine takes the same option as `run`: delivery leaves the app's event loop,
    # and a killed delivery process is replaced with nothing lost.
    from tui_currents.tui.backend import IN_PROCESS, Backend

    _app_home(home, sandbox, monkeypatch, delivery_process="1")
    backend = Backend(
        home, Secrets(home), engine_options=EngineOptions(receiver_port=0, delivery_overrides=FAST)
    )
    await backend.start()
    try:
        engine = backend.engine
        assert backend.mode == IN_PROCESS and engine is not None
        [first] = engine.delivery_pids
        assert first in _children(os.getpid())
        events = known_events(300, seed=12)
        assert (await post(engine, events[:100])).status_code == 200
        assert await wait_for(lambda: sandbox.accepted_count >= 100)
        os.kill(first, signal.SIGKILL)
        assert (await post(engine, events[100:])).status_code == 200
        assert await wait_for(lambda: engine.delivery_pids not in ([], [first]), timeout=10)
        assert await wait_for(
            lambda: {m["messageId"] for m in sandbox.accepted} >= {e["id"] for e in events}, 30
        )
        assert engine.store is not None and engine.store._leases == {}  # the app's process leases nothing
        [second] = engine.delivery_pids
    finally:
        await backend.stop()
    assert await wait_for(lambda: second not in _children(os.getpid()))  # it ends with the app


def _app_home(
    home: Home,
    sandbox: SegmentSandbox,
    monkeypatch: pytest.MonkeyPatch,
    *,
    delivery_process: str | None,
    free_port: bool = False,
) -> None:
    """The terminal app's home: one connector to the stand-in, its keys in the environment, the app's
    delivery layout asked for (`None`: the default) and, with `free_port`, its receiver on a free port
    (the app's own engine options)."""
    from tui_currents.delivery_process import DELIVERY_PROCESS_ENV

    if delivery_process is None:
        monkeypatch.delenv(DELIVERY_PROCESS_ENV, raising=False)
    else:
        monkeypatch.setenv(DELIVERY_PROCESS_ENV, delivery_process)
    monkeypatch.setenv(write_key_env_var("Marketing"), KEY)
    monkeypatch.setenv(receiver_token_env_var(WORKSPACE), TOKEN)
    if free_port:
        home.config_file.write_text("[receiver]\nport = 0\n")
    add_connector(home, sandbox.url)


def _niceness(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


@pytest.mark.skipif(os.nice(0) >= 19, reason="this process already has the lowest priority")
async def test_the_terminal_apps_delivery_process_runs_at_a_lower_priority_than_the_app(
    home: Home, sandbox: SegmentSandbox, monkeypatch: pytest.MonkeyPatch
):
    # On busy cores the scheduler then serves the app's keys and frames before bulk delivery; a replaced
    # delivery process is lowered too. The app's own process keeps its priority.
    from tui_currents.tui.backend import DELIVERY_NICENESS, IN_PROCESS, Backend

    _app_home(home, sandbox, monkeypatch, delivery_process="1", free_port=True)
    ours = _niceness(os.getpid())
    lowered = min(19, ours + DELIVERY_NICENESS)
    backend = Backend(home, Secrets(home))
    await backend.start()
    try:
        engine = backend.engine
        assert backend.mode == IN_PROCESS and engine is not None
        [first] = engine.delivery_pids
        assert await wait_for(lambda: _niceness(first) == lowered)
        assert (await post(engine, known_events(50, seed=13))).status_code == 200
        assert await wait_for(lambda: sandbox.accepted_count >= 50)  # it delivers at that priority
        os.kill(first, signal.SIGKILL)
        assert await wait_for(lambda: engine.delivery_pids not in ([], [first]), timeout=10)
        [second] = engine.delivery_pids
        assert await wait_for(lambda: _niceness(second) == lowered)
        assert _niceness(os.getpid()) == ours
    finally:
        await backend.stop()


async def test_the_services_delivery_process_keeps_the_normal_priority(
    engine: Engine, sandbox: SegmentSandbox
):
    # `tui-currents run` has no app to make way for: its delivery is not slowed.
    [child] = engine.delivery_pids
    assert (await post(engine, known_events(10, seed=14))).status_code == 200
    assert await wait_for(lambda: sandbox.accepted_count >= 10)  # started and serving
    assert _niceness(child) == _niceness(os.getpid())


@pytest.mark.skipif(
    (os.cpu_count() or 1) < 2, reason="delivery gets a process of its own only with a second core"
)
async def test_the_terminal_apps_engine_delivers_from_its_own_process_by_default_and_run_does_not(
    home: Home, sandbox: SegmentSandbox, monkeypatch: pytest.MonkeyPatch
):
    # The app's keys stay quick while its engine forwards at full speed only with delivery out of its
    # loop and below its priority; `tui-currents run` keeps delivery in the engine unless asked.
    from tui_currents.delivery_process import DELIVERY_PROCESS_ENV
    from tui_currents.tui.backend import IN_PROCESS, Backend

    _app_home(home, sandbox, monkeypatch, delivery_process=None, free_port=True)
    backend = Backend(home, Secrets(home))
    await backend.start()
    try:
        engine = backend.engine
        assert backend.mode == IN_PROCESS and engine is not None
        [child] = engine.delivery_pids
        assert child in _children(os.getpid())
        assert (await post(engine, known_events(20, seed=15))).status_code == 200
        assert await wait_for(lambda: sandbox.accepted_count >= 20)
    finally:
        await backend.stop()
    service = Engine(home, Secrets(home), EngineOptions(receiver_port=0, delivery_overrides=FAST))
    await service.start()
    try:
        assert service.delivery_pids == []
    finally:
        await service.stop()
    monkeypatch.setenv(DELIVERY_PROCESS_ENV, "0")  # the app's layout can still be turned off
    backend = Backend(home, Secrets(home))
    await backend.start()
    try:
        assert backend.engine is not None and backend.engine.delivery_pids == []
    finally:
        await backend.stop()
