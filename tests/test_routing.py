"""Routing: each event is mapped only for the connectors that select its type; the other connectors' fates
are counted in bulk, with the same counters as one per event, and filtered events get one tail line per batch.

The reference for "the same figures" is the definition of a fate: `map_event` of the event for each
enabled connector of its workspace, one counter per connector.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tui_currents import catalog, config
from tui_currents.config import Config, Connector, Workspace
from tui_currents.mapping import ConnectorRules, map_event, normalise
from tui_currents.outbox import FATE_COUNTER, RECEIVED
from tui_currents.paths import Home
from tui_currents.sources.demo import DemoGenerator
from tui_currents.sources.ingest import FATE_ORDER, Ingestor, route
from tui_currents.store import Store

WORKSPACE = "w"
NO_RULES = ConnectorRules(selected=frozenset())
TYPES = catalog.supported_types()


def _split(connectors: int) -> Config:
    """One workspace whose connectors each select their own share of the supported types."""
    return Config(
        workspaces=[Workspace(name=WORKSPACE)],
        connectors=[
            Connector(
                name=f"C{i:02}",
                workspace=WORKSPACE,
                contact_email="ops@example.com",
                events=TYPES[i::connectors],
                include_anonymous=i % 2 == 0,
            )
            for i in range(connectors)
        ],
    )


def _expected_counters(cfg: Config, records: list) -> dict[str, dict[str, dict[str, int]]]:
    """The counters one outcome per event and connector gives (what the store kept before bulk counts)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    connectors = [c for c in cfg.connectors_of(WORKSPACE) if c.enabled]
    for record in records:
        event = normalise(record)
        for connector in connectors:
            fate = map_event(event, connector.rules()).fate
            per_type = out.setdefault(connector.name, {}).setdefault(event.event_type, {})
            for name in (RECEIVED, FATE_COUNTER[str(fate)]):
                per_type[name] = per_type.get(name, 0) + 1
    return out


def _mixed(seed: int) -> list:
    """Demo events of every kind, events of types no connector can forward, and invalid records."""
    gen = DemoGenerator(seed=seed)
    records: list = gen.batch(300)
    records += [gen.event(t) for t in TYPES]
    records += [gen.event("users.UserDeleteRequest"), gen.event("no.such.Type"), {"id": "x"}, 7]
    return records


def test_an_event_selected_by_one_of_fifty_connectors_is_mapped_and_stored_once(tmp_path: Path) -> None:
    cfg = _split(50)
    gen = DemoGenerator(seed=3)
    events = [gen.event(t, anonymous=False) for t in TYPES]
    with Store(tmp_path / "s.db") as store:
        ingestor = Ingestor(cfg, store)
        items, _ = ingestor.route(WORKSPACE, events)
        per_event = [(name, outcome) for name, outcome in items if not outcome.tally]
        assert len(per_event) == len(events)  # not 50 per event
        summary = ingestor.ingest(WORKSPACE, events, source="test")
        assert summary.queued == len(events)
        assert sum(store.backlog(c.name).messages for c in cfg.connectors) == len(events)
        assert store.counters() == _expected_counters(cfg, events)
        # Each event shows in the tail of the connector it goes to, and nowhere else.
        lines = store.tail(limit=10_000)
        assert len(lines) == len(events)
        owner = {t: c.name for c in cfg.connectors for t in c.events}
        assert {(line.connector, line.event_type) for line in lines} == {(owner[t], t) for t in TYPES}


def test_filtered_events_are_counted_in_bulk_with_one_tail_line_per_batch(tmp_path: Path) -> None:
    cfg = _split(50)
    cfg.connectors = [c for c in cfg.connectors if "users.messages.email.Open" not in c.events]
    gen = DemoGenerator(seed=4)
    events = [gen.event("users.messages.email.Open") for _ in range(1000)]
    with Store(tmp_path / "s.db") as store:
        summary = Ingestor(cfg, store).ingest(WORKSPACE, events, source="test")
        assert summary.by_fate == {"not selected": 1000}
        assert store.counters() == _expected_counters(cfg, events)
        lines = store.tail(limit=10_000)
        assert len(lines) == len(cfg.connectors)  # one per connector, not one per event and connector
        for line in lines:
            assert line.fate == "not selected" and line.event_type == "users.messages.email.Open"
            assert line.reason == (
                "`users.messages.email.Open` is not selected for this connector (1,000 events in this batch)"
            )


@pytest.mark.parametrize("connectors", [0, 1, 3, 50])
def test_counters_and_summary_are_those_of_one_outcome_per_event_and_connector(
    tmp_path: Path, connectors: int
) -> None:
    cfg = _split(connectors) if connectors else Config(workspaces=[Workspace(name=WORKSPACE)])
    records = _mixed(seed=connectors)
    enabled = [c.rules() for c in cfg.connectors_of(WORKSPACE)]
    expected_by_type: dict[str, Counter] = {}
    for record in records:
        event = normalise(record)
        fates = [map_event(event, rules).fate for rules in enabled] or [map_event(event, NO_RULES).fate]
        best = min(fates, key=FATE_ORDER.index)
        expected_by_type.setdefault(event.event_type, Counter())[str(best)] += 1
    with Store(tmp_path / "s.db") as store:
        summary = Ingestor(cfg, store).ingest(WORKSPACE, records, source="test")
        assert summary.events == len(records)
        assert summary.by_type == expected_by_type
        assert summary.by_fate == sum(expected_by_type.values(), Counter())
        expected = _expected_counters(cfg, records) if connectors else None
        if expected is not None:
            assert store.counters() == expected
        else:
            totals = store.counter_totals("")
            assert totals[RECEIVED] == len(records)
        # Invalid records are dead letters for every connector, as before.
        dead = store.dead_letters(None, limit=10_000)
        assert len(dead) == 2 * max(connectors, 1)


def test_merged_batches_count_their_filtered_events_together() -> None:
    from tui_currents.received import Received

    cfg = _split(3)
    routes = tuple((c.name, c.rules()) for c in cfg.connectors)
    parts = [_mixed(seed) for seed in range(3)]
    merged = Received.merged(Received.of(route(WORKSPACE, routes, part)[0]) for part in parts)
    whole = Received.of(route(WORKSPACE, routes, [r for part in parts for r in part])[0])
    assert merged == whole


def test_status_json_shows_the_not_selected_counts(home: Home) -> None:
    cfg = _split(10)
    config.save(home, cfg)
    gen = DemoGenerator(seed=5)
    events = gen.batch(500)
    with Store(home.store_file) as store:
        Ingestor(cfg, store).ingest(WORKSPACE, events, source="test")
    expected = _expected_counters(cfg, events)
    result = subprocess.run(
        [sys.executable, "-m", "tui_currents", "--home", str(home.root), "status", "--json"],
        capture_output=True, text=True, timeout=60, env=os.environ.copy(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = {c["name"]: c["counters"] for c in json.loads(result.stdout)["connectors"]}
    for name, per_type in expected.items():
        totals: Counter = sum((Counter(counts) for counts in per_type.values()), Counter())
        assert totals["not_selected"] > 0
        for counter, n in totals.items():
            assert shown[name][counter] == n, (name, counter)


def test_counters_stay_exact_while_logged_and_once_folded(tmp_path: Path) -> None:
    # A commit of a workspace with many connectors changes thousands of counters: it logs them as one row,
    # folded into the counters every FOLD_EVERY such commits; readers add what is still logged.
    from tui_currents.store.counter_log import FOLD_EVERY

    cfg = _split(50)
    gen = DemoGenerator(seed=6)
    path = tmp_path / "s.db"
    expected: dict[str, dict[str, Counter]] = {}
    logged = []
    with Store(path) as store:
        ingestor = Ingestor(cfg, store)
        for round_ in range(FOLD_EVERY + 3):
            events = gen.batch(40)
            ingestor.ingest(WORKSPACE, events, source="test")
            for name, per_type in _expected_counters(cfg, events).items():
                for event_type, counts in per_type.items():
                    expected.setdefault(name, {}).setdefault(event_type, Counter()).update(counts)
            logged.append(sqlite3.connect(path).execute("SELECT count(*) FROM counter_log").fetchone()[0])
            if round_ % 10 == 0 or round_ > FOLD_EVERY:
                with Store(path, readonly=True) as reader:
                    assert reader.counters() == expected
                    totals = reader.counter_totals("C07")
                    assert totals == sum(expected["C07"].values(), Counter())
    assert max(logged) == FOLD_EVERY - 1 and logged[FOLD_EVERY - 1] == 0  # folded, then logging again
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT count(*) FROM counters").fetchone()[0]
    assert rows == sum(len(counts) for per_type in expected.values() for counts in per_type.values())
