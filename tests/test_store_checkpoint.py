"""The store's log is copied into its database file beside the commits (store/checkpointer.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.test_store import C1, queued
from tui_currents.store import Store, checkpointer
from tui_currents.store.checkpointer import BACKSTOP_PAGES, CHECKPOINT_BYTES
from tui_currents.store.schema import PAGE_SIZE


def _commit_padded(store: Store, n: int, padding: int) -> None:
    store.commit([(C1, queued(padding=padding)) for _ in range(n)], source="test")


def _checkpoint_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "store checkpoint"}


def test_a_commit_reaches_the_database_file_without_another_commit(tmp_path: Path):
    # 1.5 MB is far below the log size at which SQLite would checkpoint on the committing connection: only
    # a checkpoint of its own copies it into the database file while nothing else is written.
    path = tmp_path / "currents.db"
    with Store(path, synchronous="FULL") as store:
        _commit_padded(store, 300, 5_000)
        deadline = time.monotonic() + 10
        while path.stat().st_size < 1_500_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size >= 1_500_000, "the log was not copied into the database file"
        assert len(store.lease(C1, max_messages=500, max_bytes=10**7, lease_seconds=60)) == 300


def test_the_log_stays_bounded_while_commits_follow_each_other(tmp_path: Path):
    path = tmp_path / "currents.db"
    wal = Path(f"{path}-wal")
    commit_bytes = 200 * 10_000
    largest = 0
    with Store(path, synchronous="NORMAL") as store:
        for _ in range(60):  # about 120 MB, back to back
            _commit_padded(store, 200, 10_000)
            largest = max(largest, wal.stat().st_size)
        assert len(store.lease(C1, max_messages=20_000, max_bytes=10**9, lease_seconds=60)) == 12_000
    # At most: the size that makes the thread restart the log, what it lets pile up before it looks, and
    # the commits made while it restarts.
    assert largest <= BACKSTOP_PAGES * PAGE_SIZE + CHECKPOINT_BYTES + 3 * commit_bytes


def test_closing_the_store_ends_its_checkpoint_thread(tmp_path: Path):
    before = _checkpoint_threads()
    store = Store(tmp_path / "currents.db", synchronous="NORMAL")
    _commit_padded(store, 10, 100)
    started = _checkpoint_threads() - before
    assert started, "a commit starts the checkpoint thread"
    store.close()
    assert not any(t.is_alive() for t in started)


def test_a_read_only_store_checkpoints_nothing(tmp_path: Path):
    path = tmp_path / "currents.db"
    with Store(path, synchronous="NORMAL") as writer:
        _commit_padded(writer, 10, 100)
        before = _checkpoint_threads()
        with Store(path, readonly=True) as reader:
            assert reader.backlog(C1).messages == 10
        assert _checkpoint_threads() - before == set()


def test_the_thread_ends_when_no_commit_comes_and_starts_again_with_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(checkpointer, "IDLE_SECONDS", 0.3)
    path = tmp_path / "currents.db"
    with Store(path, synchronous="NORMAL") as store:
        before = _checkpoint_threads()
        _commit_padded(store, 10, 100)
        first = _checkpoint_threads() - before
        assert first
        deadline = time.monotonic() + 10
        while any(t.is_alive() for t in first) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(t.is_alive() for t in first), "an idle checkpoint thread stays"
        size = path.stat().st_size
        _commit_padded(store, 300, 5_000)
        assert _checkpoint_threads() - before - first, "the next commit starts one again"
        deadline = time.monotonic() + 10
        while path.stat().st_size < size + 1_500_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size >= size + 1_500_000
