"""The store owns its file's whole schema: the engine's command and presence tables and the webhook's cursor
are created by the store (schema 3), and whoever opens them (a console's `Control`, the webhook poster)
opens the file the store's way: its page size, busy timeout and failures in words."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tui_currents.control import RELOAD, Control
from tui_currents.store import SCHEMA_VERSION, Store, StoreUnavailable, webhook_cursor
from tui_currents.store.schema import PAGE_SIZE, SCHEMA, SIDE_TABLES

SIDE = {"engine_commands", "engine_presence", "webhook_cursor"}


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_new_store_has_every_table_of_its_file(tmp_path: Path) -> None:
    path = tmp_path / "currents.db"
    Store(path).close()
    assert tables(path) >= SIDE
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6


def test_a_store_of_schema_2_opens_keeps_its_rows_and_gains_the_side_tables(tmp_path: Path) -> None:
    path = tmp_path / "currents.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA.replace(SIDE_TABLES, ""))
        db.execute("INSERT INTO connector_states VALUES ('Production', '{}', 1.0)")
        db.execute("PRAGMA user_version = 2")
    assert not SIDE & tables(path)
    Store(path).close()
    assert tables(path) >= SIDE
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT connector FROM connector_states").fetchall() == [("Production",)]
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_control_first_to_make_the_file_gives_it_the_stores_page_size(tmp_path: Path) -> None:
    path = tmp_path / "currents.db"
    ctl = Control(path)
    ctl.post(RELOAD)
    ctl.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    store = Store(path)  # and the store opens it as its own
    store.close()
    ctl = Control(path)
    assert [c.kind for c in ctl.take()] == [RELOAD]
    ctl.close()


def test_control_refuses_an_emptied_store_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "currents.db"
    path.touch()
    with pytest.raises(StoreUnavailable) as caught:
        Control(path)
    assert "empty" in str(caught.value) and "\n" not in str(caught.value)
    assert path.stat().st_size == 0  # left as it is


def test_the_webhook_cursor_refuses_an_emptied_store_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "currents.db"
    path.touch()
    with pytest.raises(StoreUnavailable):
        webhook_cursor.next_alerts(path, enabled=True, started_at=0.0, limit=10)
    assert path.stat().st_size == 0
