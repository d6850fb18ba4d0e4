"""A damaged, empty or read-only store, as the command line meets it: one line saying what is wrong, what
was kept and what to do; exit 1; never a traceback. Real subprocesses on a real home."""

from __future__ import annotations

import os
import shutil
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
def read_only_store(home: Home) -> Iterator[Path]:
    """The store made read-only for this user. Root ignores file modes: the file is made immutable
    (chattr +i) instead; where that is impossible the test fails, saying why."""
    Store(home.store_file).close()
    if os.geteuid() != 0:
        pytest.fail("the read-only store test needs root (CI runs as root) to make the file immutable")
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.fail("chattr is needed to make the store read-only for root (e2fsprogs)")
    done = subprocess.run([chattr, "+i", str(home.store_file)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"cannot make the store immutable here: {done.stderr.strip()}")
    try:
        yield home.store_file
    finally:
        subprocess.run([chattr, "-i", str(home.store_file)], check=False)


@pytest.mark.parametrize("command", ["status", "run"])
def test_a_read_only_store_is_one_line_and_exit_1(home: Home, read_only_store: Path, command: str) -> None:
    line = _one_clear_line(cli(home.root, *COMMANDS[command], timeout=30), str(read_only_store))
    assert "read-only" in line and "Nothing was changed" in line and "writable" in line


def test_a_read_only_store_can_still_be_listed(home: Home, read_only_store: Path) -> None:
    # Listing only reads: a store that cannot be written still shows its dead letters.
    result = cli(home.root, "dead-letters", "list", timeout=30)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stdout.strip() == "No dead letters."


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
