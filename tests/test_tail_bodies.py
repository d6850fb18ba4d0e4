"""Each Segment message body is written to the store once (its outbox segment); the tail reads it there.

Also the schema upgrade from version 3 (`tail.segments`), on a real file written by the code of schema 3
(tests/fixtures/store-v3.db: two connectors, three commits, three of A's messages delivered).
"""

from __future__ import annotations

import secrets
import shutil
import sqlite3
from pathlib import Path

import orjson
import pytest

from tui_currents import catalog
from tui_currents.config import Config, Connector, Workspace
from tui_currents.segments import MAX_BYTES
from tui_currents.sources.demo import DemoGenerator
from tui_currents.sources.ingest import Ingestor
from tui_currents.store import SCHEMA_VERSION, Store, checkpointer

WORKSPACE = "w"
V3_FILE = Path(__file__).parent / "fixtures" / "store-v3.db"


def _config() -> Config:
    return Config(
        workspaces=[Workspace(name=WORKSPACE)],
        connectors=[
            Connector(
                name="A",
                workspace=WORKSPACE,
                contact_email="ops@example.com",
                events=catalog.supported_types(),
                include_anonymous=True,
            )
        ],
    )


def _large_events(n: int, seed: int, size: int = 10_000) -> tuple[list[dict], list[str]]:
    """Events whose messages are about `size` bytes, each with a marker found nowhere else."""
    gen = DemoGenerator(seed=seed)
    events, markers = [], []
    for _ in range(n):
        event = gen.event("users.messages.email.Send", anonymous=False)
        marker = "marker-" + secrets.token_hex(16)
        event["properties"]["note"] = marker + "x" * (size - 800)
        events.append(event)
        markers.append(marker)
    return events, markers


def _file_bytes(path: Path) -> bytes:
    """The store's file and its write-ahead log, as they are on disk."""
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def test_a_commit_of_10_kb_events_writes_each_body_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    events, markers = _large_events(50, seed=1)
    with Store(path) as store:
        summary = Ingestor(_config(), store).ingest(WORKSPACE, events, source="test")
        assert summary.queued == len(events)
        on_disk = _file_bytes(path)  # the WAL holds what the commit wrote
        assert [on_disk.count(m.encode()) for m in markers] == [1] * len(markers)
        stored = sum(
            n or 0
            for (n,) in sqlite3.connect(path).execute(
                "SELECT sum(length(bodies)) FROM outbox_bodies"
                " UNION ALL SELECT sum(length(bodies)) FROM outbox"
                " UNION ALL SELECT sum(length(messages)) FROM tail"
            )
        )
        assert stored == store.backlog("A").bytes


def test_the_tail_shows_each_queued_message_until_it_is_delivered(tmp_path: Path) -> None:
    # More than one segment per commit, and a duplicate in the batch: each line still gets its own message.
    events, _ = _large_events(MAX_BYTES // 9_000 + 20, seed=2)
    events.append(dict(events[3]))
    with Store(tmp_path / "s.db") as store:
        Ingestor(_config(), store).ingest(WORKSPACE, events, source="test")
        assert store._read("SELECT count(*) FROM outbox")[0][0] >= 2
        lines = store.tail(limit=10_000)
        assert len(lines) == len(events)
        queued = [line for line in lines if line.fate == "queued"]
        assert len(queued) == len(events) - 1
        assert [line.message is None for line in lines if line.fate == "duplicate"] == [True]
        rows = store.lease("A", max_messages=100_000, max_bytes=10**9, lease_seconds=60)
        leased = {row.message_id: row.body for row in rows}
        assert {line.message_id: line.message for line in queued} == leased
        for line in queued:
            assert orjson.loads(line.message)["messageId"] == line.message_id
        # Without messages, nothing of the outbox is read.
        assert all(line.message is None for line in store.tail(limit=10_000, messages=False))


def test_a_delivered_message_shows_until_the_tail_no_longer_names_its_segment(tmp_path: Path) -> None:
    events, _ = _large_events(5, seed=3, size=1_000)
    with Store(tmp_path / "s.db", tail_keep=100) as store:
        ingestor = Ingestor(_config(), store)
        ingestor.ingest(WORKSPACE, events, source="test")
        rows = store.lease("A", max_messages=100, max_bytes=10**9, lease_seconds=60)
        store.delivered("A", [row.seq for row in rows])
        received = [line for line in store.tail() if not line.update]
        assert [line.fate for line in received] == ["queued"] * 5
        assert {line.message_id: line.message for line in received} == {r.message_id: r.body for r in rows}
        first = store._read("SELECT min(seq) FROM outbox")[0][0]
        # More lines than the tail keeps: the first rows go, and with them the bodies of their segment.
        more, _ = _large_events(150, seed=4, size=1_000)
        for start in range(0, len(more), 10):
            ingestor.ingest(WORKSPACE, more[start : start + 10], source="test")
        assert store.tail(limit=10_000)[0].seq > received[-1].seq
        assert store._read("SELECT count(*) FROM outbox_bodies WHERE seq = ?", (first,)) == [(0,)]
        waiting = store._read(
            "SELECT count(*) FROM outbox JOIN outbox_bodies USING (seq) WHERE finished_at IS NULL"
        )
        assert waiting == [(15,)]  # nothing that waits loses its bodies


def test_a_schema_3_store_is_upgraded_and_its_tail_keeps_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "currents.db"
    shutil.copy(V3_FILE, path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    # A console reads a file the engine has not upgraded yet.
    with Store(path, readonly=True) as console:
        before = console.tail(limit=1000)
        waiting = {name: console.backlog(name).messages for name in ("A", "B")}
    old_messages = {line.message_id: line.message for line in before if line.fate == "queued"}
    assert len(old_messages) == 30 and all(old_messages.values())
    assert waiting == {"A": 12, "B": 15}

    events, markers = _large_events(5, seed=4)
    with Store(path) as store:
        assert store.tail(limit=1000) == before
        assert {name: store.backlog(name).messages for name in ("A", "B")} == waiting
        rows = store.lease("B", max_messages=100, max_bytes=10**9, lease_seconds=60)
        leased = {row.message_id: row.body for row in rows}
        assert leased == {m: old_messages[m] for m in leased} and len(leased) == 15
        Ingestor(_config(), store).ingest(WORKSPACE, events, source="test")
        new = [line for line in store.tail(after=before[-1].seq, limit=1000) if line.fate == "queued"]
        assert [orjson.loads(line.message)["properties"]["note"][:39] for line in new] == markers
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        assert db.execute("SELECT count(*) FROM tail WHERE messages IS NOT NULL").fetchone()[0] == 6


def test_a_segment_written_before_schema_6_is_delivered_and_its_bodies_dropped(tmp_path: Path) -> None:
    # The version-3 file's segments keep their bodies in their outbox row: read there, dropped there.
    path = tmp_path / "currents.db"
    shutil.copy(V3_FILE, path)
    with Store(path, tail_keep=100) as store:
        rows = store.lease("B", max_messages=100, max_bytes=10**9, lease_seconds=60)
        assert len(rows) == 15 and all(row.body for row in rows)
        kept_there = store._read(
            "SELECT count(*) FROM outbox WHERE bodies IS NOT NULL AND finished_at IS NULL"
        )
        assert kept_there[0][0] >= 2  # A's and B's waiting segments
        store.delivered("B", [row.seq for row in rows])
        more, _ = _large_events(150, seed=5, size=1_000)
        ingestor = Ingestor(_config(), store)
        for start in range(0, len(more), 10):
            ingestor.ingest(WORKSPACE, more[start : start + 10], source="test")
        assert store._read(
            "SELECT count(*) FROM outbox WHERE bodies IS NOT NULL AND finished_at IS NOT NULL"
        ) == [(0,)]
        assert store.backlog("A").messages == 12 + 150  # A's old segment waits, bodies and all
        leased = store.lease("A", max_messages=1000, max_bytes=10**9, lease_seconds=60)
        assert len(leased) == 162 and all(row.body for row in leased)


def test_marking_a_segment_delivered_does_not_write_its_bodies_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite writes a changed row whole: with the bodies in the outbox row, marking it finished wrote
    # every page of them again (about 1 MB here). Measured as what the mark adds to the write-ahead log,
    # with no checkpoint copying it meanwhile.
    monkeypatch.setattr(checkpointer, "CHECKPOINT_BYTES", 10**12)
    monkeypatch.setattr(checkpointer, "MAX_DELAY_SECONDS", 600.0)
    path = tmp_path / "s.db"
    log = Path(f"{path}-wal")
    events, _ = _large_events(100, seed=6)
    with Store(path, synchronous="NORMAL") as store:
        Ingestor(_config(), store).ingest(WORKSPACE, events, source="test")
        rows = store.lease("A", max_messages=1000, max_bytes=10**9, lease_seconds=60)
        body_bytes = sum(len(row.body) for row in rows)
        assert body_bytes > 900_000
        before = log.stat().st_size
        store.delivered("A", [row.seq for row in rows])
        assert log.stat().st_size - before < body_bytes / 4
