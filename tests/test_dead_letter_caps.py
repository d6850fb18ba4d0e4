"""Dead letters are bounded: per request, in total (oldest first) and in the size of each stored raw event;
every drop is counted, logged and shown by `status`. Real SQLite files, real config files, the real CLI."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import orjson
import pytest

from tests.test_cli import cli
from tests.test_store import C1, RULES, enqueue, record
from tui_currents import config
from tui_currents.config import DeadLetterSettings
from tui_currents.mapping import Fate, map_event, normalise
from tui_currents.paths import Home
from tui_currents.received import Received
from tui_currents.store import DEAD_LETTERS_DROPPED, DeadLetterCaps, Store


def rejected(event_id: str, **changes):
    outcome = map_event(normalise(record(event_id, time=None, **changes)), RULES)
    assert outcome.fate == Fate.REJECTED
    return outcome


def test_a_flood_of_bad_events_in_one_request_keeps_only_the_cap(tmp_path: Path, caplog) -> None:
    # The shape of a 400 KB body of `1,` elements: 200,000 events, each rejected.
    caplog.set_level(logging.WARNING, logger="tui_currents.store")
    store = Store(tmp_path / "currents.db", synchronous="NORMAL")
    try:
        items = [(C1, map_event(normalise(1), RULES)) for _ in range(200_000)]
        assert items[0][1].fate == Fate.REJECTED
        received = Received.of(items)
        started = time.monotonic()
        result = store.commit(received, source="receiver")
        took = time.monotonic() - started
        assert result.dead_lettered == 200_000  # all rejected, as before: only their keeping is bounded
        assert store.backlog(C1).dead_letters == 1_000 == len(store.dead_letters(C1, limit=5_000))
        totals = store.counter_totals(C1)
        assert totals["dead_lettered"] == 200_000 and totals[DEAD_LETTERS_DROPPED] == 199_000
        assert "199000 rejected events of one batch were not kept" in caplog.text
        assert "max_per_request" in caplog.text
        with sqlite3.connect(tmp_path / "currents.db") as db:
            kept_bytes = db.execute(
                "SELECT sum(length(event) + length(reason)) FROM dead_letters"
            ).fetchone()[0]
        assert kept_bytes < 200_000, kept_bytes  # was 70 MB of dead letters for such a body
        print(f"\n200,000 rejected events committed in {took:.2f} s; 1,000 kept")
    finally:
        store.close()


def test_the_oldest_dead_letters_go_first_beyond_the_total_cap(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="tui_currents.store")
    store = Store(tmp_path / "currents.db", dead_letter_caps=DeadLetterCaps(per_request=100, total=25))
    try:
        for batch in range(3):
            store.commit([(C1, rejected(f"bad-{batch}-{i}")) for i in range(10)], source="test")
        kept = store.dead_letters(C1, limit=100)
        assert sorted(d.message_id for d in kept) == sorted(
            [f"bad-0-{i}" for i in range(5, 10)] + [f"bad-{b}-{i}" for b in (1, 2) for i in range(10)]
        )
        assert store.backlog(C1).dead_letters == 25
        assert store.counter_totals(C1)[DEAD_LETTERS_DROPPED] == 5
        assert "5 oldest dead letters dropped" in caplog.text and "max_total" in caplog.text
        # Messages dead-lettered by delivery count against the same cap.
        ids = enqueue(store, 4)
        rows = store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60)
        assert store.dead_letter(C1, [r.seq for r in rows], reason="Segment refused the batch: 422") == 4
        kept = store.dead_letters(C1, limit=100)
        assert len(kept) == 25 and set(ids) <= {d.message_id for d in kept}
        assert [d.message_id for d in kept if d.message_id.startswith("bad-0-")] == [
            "bad-0-9"
        ]  # 4 oldest gone
        assert store.counter_totals(C1)[DEAD_LETTERS_DROPPED] == 9
        assert store.backlog(C1).dead_letters == 25
    finally:
        store.close()


def test_a_large_raw_event_is_cut_with_a_marker_and_stays_json(tmp_path: Path) -> None:
    store = Store(tmp_path / "currents.db", dead_letter_caps=DeadLetterCaps(event_bytes=2_000))
    try:
        big = rejected("bad-big", properties={"notes": 'é"x' * 50_000})
        small = rejected("bad-small")
        store.commit([(C1, big), (C1, small)], source="test")
        letters = {d.message_id: d for d in store.dead_letters(C1)}
        cut = letters["bad-big"].event
        assert len(cut) <= 2_000
        marked = orjson.loads(cut)
        assert marked["truncated"] is True and marked["original_bytes"] > 100_000
        assert marked["head"].startswith('{"event_type"')
        assert orjson.loads(letters["bad-small"].event)["id"] == "bad-small"  # small ones stay as received
        assert store.export_dead_letters(tmp_path / "out.jsonl") == 2
        exported = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
        assert {e["message_id"] for e in exported} == {"bad-big", "bad-small"}
    finally:
        store.close()


def test_the_caps_are_read_from_config_toml_and_checked(home: Home) -> None:
    assert config.load(home).dead_letters == DeadLetterSettings()
    defaults = DeadLetterCaps()  # the config's defaults are the store's
    assert (defaults.per_request, defaults.total, defaults.event_bytes) == (
        DeadLetterSettings().max_per_request,
        DeadLetterSettings().max_total,
        DeadLetterSettings().max_event_bytes,
    )
    home.config_file.write_text("[dead_letters]\nmax_per_request = 50\nmax_total = 2000\n")
    assert config.load(home).dead_letters == DeadLetterSettings(max_per_request=50, max_total=2000)
    home.config_file.write_text("[dead_letters]\nmax_total = 0\n")
    with pytest.raises(config.ConfigError, match=r"\[dead_letters\] max_total"):
        config.load(home)


def test_status_shows_the_dropped_dead_letters(home: Home) -> None:
    config.add_workspace(home, config.Workspace(name="prod"))
    config.add_connector(
        home,
        config.Connector(
            name=C1, workspace="prod", contact_email="ops@example.com", region="us", events=[RULES_EVENT]
        ),
    )
    store = Store(home.store_file, dead_letter_caps=DeadLetterCaps(per_request=3))
    try:
        store.commit([(C1, rejected(f"bad-{i}")) for i in range(10)], source="test")
    finally:
        store.close()
    result = cli(home.root, "status", "--json")
    assert result.returncode == 0, result.stderr
    [entry] = orjson.loads(result.stdout)["connectors"]
    assert entry["dead_letters"] == 3 and entry["dead_letters_dropped"] == 7
    assert "7 dead letters were dropped" in entry["warning"]
    text = cli(home.root, "status")
    assert "7 dead letters were dropped" in text.stdout, text.stdout


RULES_EVENT = next(iter(RULES.selected))
