"""The engine killed with SIGKILL while Braze pushes: every acknowledged event still reaches Segment.

A short, bounded form of bench/soak.py's run (5 kills, 5,000 events here; 20 kills, 100,000 events there).
The engine is `tui-currents run` in its own process; the Segment stand-in runs in another and outlives it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.reliability.harness import (
    WRITE_KEY,
    BrazeSender,
    EngineProcess,
    Figures,
    StandIn,
    connector_status,
    engine_env,
    make_batches,
    make_home,
    status_json,
    table,
    tally,
    wait_delivered,
)
from tests.reliability.scenarios import (
    crash_safety,
)

pytestmark = pytest.mark.timeout(90)


async def test_no_acknowledged_event_is_lost_across_sigkills(tmp_path: Path) -> None:
    run = await crash_safety(tmp_path, events=5_000, kills=5, seed=11, time_limit=60.0)
    figures = run.figures
    print("\n" + table([figures]))

    assert figures.kills == 5 and run.engine_starts == 6
    # Braze's side kept sending until every batch was acknowledged, through every kill.
    assert run.given_up == 0
    assert figures.acknowledged == figures.sent == 5_000
    # The obligation: every acknowledged event reached Segment, and nothing else did.
    assert run.lost_ids == set(), (
        f"lost {len(run.lost_ids)} acknowledged events, e.g. {sorted(run.lost_ids)[:3]}"
    )
    assert figures.lost == 0 and figures.delivered == figures.acknowledged
    assert figures.unexpected == 0
    # The kills really interrupted work: the sender met closed connections and sent batches again.
    assert sum(run.sender_failures.values()) > 0
    # Only statuses Braze retries or takes as done: no 4xx that would make it drop events.
    assert all(status == 200 or status >= 500 for status in run.sender_statuses), run.sender_statuses
    # Nothing left behind: the last engine's outbox is empty and nothing was dead-lettered.
    assert run.final_status["backlog"] == 0
    assert run.final_status["dead_letters"] == 0
    assert run.violations == 0


async def test_a_console_looking_at_the_engine_costs_no_event_at_the_next_crash(tmp_path: Path) -> None:
    # An operator runs `tui-currents status --json` while the engine works, as monitoring does. What the
    # engine acknowledges afterwards must still be in its store when it is killed and restarted.
    standin = StandIn(tmp_path / "standin", [WRITE_KEY], seed=5).start()
    engine = EngineProcess(
        make_home(tmp_path / "home", standin.url), engine_env(), log=tmp_path / "engine.log"
    )
    try:
        await standin.faults(outage=True)  # Segment down: every event stays in the outbox
        await engine.start()
        batches = make_batches(300, seed=5)
        sender = BrazeSender(engine.url, seed=5)
        await sender.send(batches[:1], deadline=time.monotonic() + 15)
        await status_json(engine.home, engine.env)  # the look
        await sender.send(batches[1:], deadline=time.monotonic() + 15)
        assert sender.acked == 300
        seen = await status_json(engine.home, engine.env)
        engine.kill()
        await engine.start()
        await standin.faults(outage=False)
        arrived = await wait_delivered(standin, sender.acked_ids, 10.0)
    finally:
        await engine.stop()
        engine.close()
        standin.stop()

    lost = sender.acked_ids - arrived.keys()
    assert not lost, f"{len(lost)} of {sender.acked} acknowledged events were lost across the kill"
    # The console saw the engine and its whole outbox, not a stale copy.
    assert seen["engine"]["running"] is True
    assert connector_status(seen)["backlog"] == 300


def test_the_tally_counts_losses_duplicates_and_strangers() -> None:
    # The accounting the runs rely on, on a case worked out by hand.
    figures = Figures("check")
    sent = {"a", "b", "c", "d"}
    acked = {"a", "b", "c"}
    arrived = {"a": 1, "b": 3, "x": 1}  # c never arrived; b came three times; x was never sent

    lost = tally(figures, sent, acked, arrived)

    assert lost == {"c"}
    assert (figures.sent, figures.acknowledged, figures.delivered, figures.lost) == (4, 3, 2, 1)
    assert figures.duplicates == 2
    assert figures.unexpected == 1
