"""Test events are safe: asked for first, refused without a terminal unless --yes, refused with no engine,
and every message that reaches Segment says it is a test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tui_currents import config
from tui_currents.control import Control
from tui_currents.paths import Home
from tui_currents.sandbox import SandboxThread, SegmentSandbox
from tui_currents.secrets import write_key_env_var

from .test_cli import cli

pytestmark = pytest.mark.timeout(90)
TYPES = ["users.messages.email.Send", "users.messages.pushnotification.Open", "users.behaviors.Uninstall"]
KEY = "test-events-write-key-0123456789"


def add_connector(home: Home, endpoint: str | None = None, *, transform: dict | None = None) -> None:
    config.add_workspace(home, config.Workspace("prod"))
    config.add_connector(
        home,
        config.Connector(
            name="Production",
            workspace="prod",
            contact_email="ops@example.com",
            region="custom" if endpoint else "eu",
            endpoint=endpoint,
            events=TYPES,
            field_transforms=transform or {},
        ),
    )


def commands_posted(home: Home) -> int:
    if not home.store_file.exists():
        return 0
    ctl = Control(home.store_file)
    try:
        return len(ctl.take())
    finally:
        ctl.close()


def test_without_a_terminal_it_needs_yes_and_sends_nothing(home: Home) -> None:
    add_connector(home)
    result = cli(home.root, "connector", "test", "Production")
    assert result.returncode == 2
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1
    assert "'Production'" in err and "Segment EU (https://events.eu1.segmentapis.com)" in err
    assert "3 test events" in err and "--yes" in err and "Nothing was sent" in err
    assert commands_posted(home) == 0


def test_with_no_engine_running_it_says_nothing_runs(home: Home) -> None:
    add_connector(home)
    result = cli(home.root, "connector", "test", "Production", "--yes")
    assert result.returncode == 1
    assert "no engine is running" in result.stderr and "nothing was sent" in result.stderr
    # A stale heartbeat is no engine either.
    ctl = Control(home.store_file)
    ctl.beat(pid=1, started_at=0, receiver=None, demo=False)
    ctl._db.execute("UPDATE engine_presence SET heartbeat_at = heartbeat_at - 60")
    ctl.close()
    again = cli(home.root, "connector", "test", "Production", "--yes")
    assert again.returncode == 1 and "no engine is running" in again.stderr
    assert commands_posted(home) == 0


def test_every_test_message_is_marked_in_segment(home: Home) -> None:
    with SandboxThread(SegmentSandbox({KEY})) as sandbox:
        # A hashing transform must not hide the test- prefix.
        add_connector(home, sandbox.url, transform={"external_user_id": "hash"})
        env = {**os.environ, write_key_env_var("Production"): KEY}
        engine = subprocess.Popen(
            [sys.executable, "-m", "tui_currents", "--home", str(home.root), "run", "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status = cli(home.root, "status", "--json")
                if status.returncode == 0 and json.loads(status.stdout)["engine"]["running"]:
                    break
                time.sleep(0.3)
            else:
                pytest.fail("the engine did not come up")
            result = cli(home.root, "connector", "test", "Production", "--yes")
            assert result.returncode == 0, result.stderr
            assert "3 test events" in result.stdout and "test_event" in result.stdout
            assert sandbox.wait_accepted(3, timeout=20)
        finally:
            engine.terminate()
            engine.wait(timeout=30)
        messages = sandbox.sandbox.accepted
    assert sorted(m["properties"]["test_event"] for m in messages) == [True] * 3
    for message in messages:
        assert message["userId"].startswith("test-") and message["anonymousId"].startswith("test-")
