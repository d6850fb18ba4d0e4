"""A damaged, empty or read-only store, as the command line meets it: one line saying what is wrong, what
was kept and what to do; exit 1; never a traceback. Real subprocesses on a real home."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli import cli
from tui_currents.paths import Home
from tui_currents.store import Store

COMMANDS = {
    "status": ("status",),
    "run": ("run", "--host", "127.0.0.1", "--port", "0"),
    "dead-letters list": ("dead-letters", "list"),
}


def _one_clear_line(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("tui-currents: ")]
    assert len(lines) == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_damaged_store_is_one_line_and_exit_1(home: Home, command: str) -> None:
    Store(home.store_file).close()
    data = home.store_file.read_bytes()
    home.store_file.write_bytes(b"this is not a database " * 400)  # overwritten by something else
    for suffix in ("-wal", "-shm"):
        Path(f"{home.store_file}{suffix}").unlink(missing_ok=True)
    line = _one_clear_line(cli(home.root, *COMMANDS[command], timeout=30), str(home.store_file))
    assert "not a tui-currents store" in line and "kept" in line and "Move it aside" in line
    assert home.store_file.read_bytes() != data and home.store_file.stat().st_size == 23 * 400  # left as is


@pytest.mark.parametrize("command", COMMANDS)
def test_an_empty_store_is_one_line_and_exit_1(home: Home, command: str) -> None:
    Store(home.store_file).close()
    home.store_file.write_bytes(b"")  # truncated
    for suffix in ("-wal", "-shm"):
        Path(f"{home.store_file}{suffix}").unlink(missing_ok=True)
    line = _one_clear_line(cli(home.root, *COMMANDS[command], timeout=30), str(home.store_file))
    assert "empty (0 bytes)" in line and "left as it is" in line and "Move it aside" in line
    assert home.store_file.stat().st_size == 0  # not silently made a fresh store


@pytest.fixture
def read_only_home(tmp_path: Path) -> Iterator[Path]:
    """A home whose store is on a filesystem remounted read-only (a tmpfs: CI runs as root; where it cannot
    be mounted the test fails, saying why). Root ignores file modes, so a mode alone would prove nothing."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the read-only store test (root): {mounted.stderr.strip()}")
    try:
        Home.at(folder).ensure()
        Store(folder / "currents.db").close()
        remounted = subprocess.run(
            ["mount", "-o", "remount,ro", str(folder)], capture_output=True, text=True, check=False
        )
        if remounted.returncode != 0:
            pytest.fail(f"cannot remount the tmpfs read-only: {remounted.stderr.strip()}")
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_store_is_one_line_and_exit_1(read_only_home: Path, command: str) -> None:
    before = (read_only_home / "currents.db").read_bytes()
    line = _one_clear_line(cli(read_only_home, *COMMANDS[command], timeout=30), str(read_only_home))
    assert "read-only" in line.lower() and "Nothing was changed" in line and "writable" in line
    assert (read_only_home / "currents.db").read_bytes() == before


def test_status_before_any_engine_ran_twice_is_not_an_error(home: Home) -> None:
    # `status` leaves the engine's command table in a store file no engine has created yet: the next
    # `status` must not read it as a damaged store.
    for _ in range(2):
        result = cli(home.root, "status", timeout=30)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


def test_a_live_engine_whose_heartbeat_is_stale_shows_as_running_and_says_why(home: Home) -> None:
    # A full disk stops the heartbeat, not the engine: the engine's lock (held while it lives) tells.
    import json
    import sqlite3

    from tui_currents.control import Control
    from tui_currents.engine import EngineLock

    Store(home.store_file).close()
    ctl = Control(home.store_file)
    ctl.beat(pid=os.getpid(), started_at=1.0, receiver="http://127.0.0.1:8750", demo=False)
    ctl.close()
    with sqlite3.connect(home.store_file) as db:
        db.execute("UPDATE engine_presence SET heartbeat_at = heartbeat_at - 60")
    lock = EngineLock(home.lock_file)
    lock.acquire()
    try:
        held = json.loads(cli(home.root, "status", "--json").stdout)
        text = cli(home.root, "status").stdout
    finally:
        lock.release()
    released = json.loads(cli(home.root, "status", "--json").stdout)
    assert held["engine"]["running"] is True and held["engine"]["pid"] == os.getpid()
    assert "has not written to the store for 6" in held["engine"]["store_problem"]
    assert "Engine: running" in text and "Store: the engine has not written to the store" in text
    # Without the lock the stale heartbeat is a stopped engine, as before.
    assert released["engine"]["running"] is False and released["engine"]["store_problem"] is None


def test_an_engine_that_is_starting_is_running_with_no_problem(home: Home) -> None:
    # The lock is taken before the first heartbeat: no heartbeat yet is no fault.
    import json

    from tui_currents.engine import EngineLock

    Store(home.store_file).close()
    lock = EngineLock(home.lock_file)
    lock.acquire()
    try:
        report = json.loads(cli(home.root, "status", "--json").stdout)
    finally:
        lock.release()
    assert report["engine"]["running"] is True and report["engine"]["pid"] == os.getpid()
    assert report["engine"]["store_problem"] is None
