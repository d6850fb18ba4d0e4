"""The facade's own decisions: engine here or console, a taken receiver port, validation of a new
workspace name."""

from __future__ import annotations

import socket

import pytest

from tui_currents import config
from tui_currents.config import Connector
from tui_currents.engine import EngineOptions
from tui_currents.secrets import Secrets
from tui_currents.tui.backend import CONSOLE, IN_PROCESS, Backend

pytestmark = pytest.mark.timeout(60)


async def test_a_taken_receiver_port_still_runs_the_engine_and_says_why(home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = config.load(home)
        cfg.receiver.port = taken.getsockname()[1]
        config.save(home, cfg)
        backend = Backend(home, Secrets(home), engine_options=EngineOptions())
        await backend.start()
        try:
            assert backend.mode == IN_PROCESS
            assert "receiver could not start" in backend.engine_problem
            assert backend.engine.receiver_url is None
        finally:
            await backend.stop()


async def test_a_second_app_on_the_same_home_is_a_console(home):
    first = Backend(home, Secrets(home), engine_options=EngineOptions(start_receiver=False))
    await first.start()
    try:
        second = Backend(home, Secrets(home), engine_options=EngineOptions(start_receiver=False))
        await second.start()
        try:
            assert first.mode == IN_PROCESS and second.mode == CONSOLE
            assert second.engine is None and second.engine_problem is None
        finally:
            await second.stop()
    finally:
        await first.stop()


def test_a_new_workspace_name_is_fine_but_an_invalid_one_is_not(home):
    backend = Backend(home, Secrets(home), start_engine=False)
    connector = Connector(
        name="A", workspace="brand-new", contact_email="a@example.com", events=["users.messages.email.Send"]
    )
    assert backend.validate(connector) == []
    connector.workspace = "has space"
    assert [e.field for e in backend.validate(connector)] == ["workspace"]
    connector.workspace = ""
    assert "is empty" in backend.validate(connector)[0].message


async def test_a_cancelled_read_keeps_the_backend_until_its_thread_is_done(home) -> None:
    # A screen's read superseded by a reload is cancelled while its thread still reads: stop() must not
    # close the connection under that thread (SQLite crashes the process when it does).
    import asyncio
    import threading

    backend = Backend(home, Secrets(home), start_engine=False)
    release, finished = threading.Event(), threading.Event()

    def slow_read() -> None:
        release.wait(10)
        finished.set()

    read = asyncio.create_task(backend.run(slow_read))
    await asyncio.sleep(0.1)
    read.cancel()
    stopping = asyncio.create_task(backend.stop())
    await asyncio.sleep(0.2)
    assert not stopping.done()  # waits for the thread, cancelled caller or not
    release.set()
    await asyncio.wait_for(stopping, 10)
    assert finished.is_set() and read.cancelled()
