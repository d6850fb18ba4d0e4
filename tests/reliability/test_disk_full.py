"""The home's disk fills up while the receiver takes batches: 503s, nothing lost, recovery by itself.

The home lives on a real small filesystem (a tmpfs mounted for the run). CI runs as root; where a tmpfs
cannot be mounted these tests FAIL, saying why: a disk-full test that quietly does not run proves nothing.
The engine (`tui-currents run`, its own process) is never restarted: once the filler file is
deleted, Braze's retries go through and every acknowledged event reaches the Segment stand-in. One run
serves the first three tests; the others fill the disk while Segment is answering a batch, and while
Segment is down.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from tests.reliability.faults import (
    fill,
    small_filesystem,
)
from tests.reliability.harness import (
    WRITE_KEY,
    BrazeSender,
    EngineProcess,
    Skip,
    StandIn,
    connector_status,
    engine_env,
    make_batches,
    make_home,
    status_json,
    table,
    wait_delivered,
    wait_until,
)
from tests.reliability.scenarios import (
    DiskRun,
    disk_full,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> DiskRun:
    try:
        result = asyncio.run(
            disk_full(tmp_path_factory.mktemp("disk-full"), events=3_000, megabytes=24, rate=1_000.0, seed=31)
        )
    except Skip as exc:
        pytest.fail(f"the disk-full run could not start: {exc}")
    print("\n" + table([result.figures]))
    return result


def test_a_full_disk_is_refused_with_503_and_the_engine_recovers_by_itself(run: DiskRun) -> None:
    # While the disk was full the receiver said 503, so Braze kept the batches and sent them again.
    assert run.refused_503 > 0, "the disk filled up but no batch was refused"
    assert run.errors_500 == 0 and not run.other_refusals, run.other_refusals
    # It recovered by itself: the same engine process, and the retries went through once space returned.
    assert run.engine_alive and run.engine_restarts == 0
    assert run.recovered_after is not None and run.recovered_after < 5.0
    # Nothing stayed stuck in the outbox once the retries had gone through.
    assert run.backlog_after == 0


def test_nothing_acknowledged_is_lost_when_the_disk_fills_up(run: DiskRun) -> None:
    figures = run.figures
    assert run.given_up == 0 and figures.acknowledged == figures.sent == 3_000
    assert run.lost_ids == set(), f"lost {len(run.lost_ids)}, e.g. {sorted(run.lost_ids)[:3]}"
    assert figures.delivered == figures.acknowledged and figures.unexpected == 0
    assert run.violations == 0


def test_a_full_disk_is_reported_in_plain_lines_not_tracebacks(run: DiskRun) -> None:
    # What an operator reads in the service's journal while the disk is full: one line per problem that
    # says what happened and what to do, not Python's tracebacks for the log file or the heartbeat.
    output = run.engine_output
    assert "disk holding it is full" in output  # the receiver's refusal, said in words
    tracebacks = len(re.findall(r"^Traceback \(most recent call last\)", output, flags=re.M))
    logging_errors = output.count("--- Logging error ---")
    assert (tracebacks, logging_errors) == (0, 0), (
        f"{tracebacks} tracebacks and {logging_errors} '--- Logging error ---' blocks in the engine's output"
    )


async def test_a_batch_segment_took_while_the_disk_was_full_does_not_stay_queued(tmp_path: Path) -> None:
    # Segment takes a batch, but the disk fills up before the engine can record it as delivered. Once
    # space returns the outbox must say so within seconds, not keep the batch "queued" (leased) for the
    # rest of its 10-minute lease and then send it again.
    try:
        with small_filesystem(tmp_path / "disk", 24) as disk:
            standin = StandIn(tmp_path / "standin", [WRITE_KEY], seed=6).start()
            engine = EngineProcess(
                make_home(disk / "home", standin.url), engine_env(), log=tmp_path / "e.log"
            )
            try:
                await standin.faults(latency=1.5)  # each batch spends 1.5 s at Segment before its answer
                await engine.start()
                sender = BrazeSender(engine.url, seed=6)
                await sender.send(make_batches(100, seed=6), deadline=time.monotonic() + 10)
                await asyncio.sleep(0.6)  # the engine has sent the batch; Segment is still on it
                filler = await asyncio.to_thread(fill, disk)
                await asyncio.sleep(2.5)  # Segment answered 200; recording it failed on the full disk
                filler.unlink()
                arrived = await wait_delivered(standin, sender.acked_ids, 10.0)
                backlog = {}

                async def emptied() -> bool:
                    backlog.update(connector_status(await status_json(engine.home, engine.env)))
                    return backlog["backlog"] == 0

                emptied_in_time = await wait_until(emptied, 10.0, 0.5)
            finally:
                await engine.stop()
                engine.close()
                standin.stop()
    except Skip as exc:
        pytest.fail(f"the disk-full run could not start: {exc}")

    assert sender.acked == 100 and sender.acked_ids <= arrived.keys()  # Segment has every event
    assert emptied_in_time, (
        f"{backlog['backlog']} events Segment already took still show as waiting 10 s after space returned"
    )


async def test_delivery_resumes_within_seconds_after_a_full_disk_during_a_segment_outage(
    tmp_path: Path,
) -> None:
    # Segment is down (503) and the disk fills up: the engine can neither record the failed attempts nor
    # give the batches back in the store. Meanwhile `status` must tell the truth (the engine runs; the
    # disk is full), and once space and Segment return, delivery must resume within seconds, not once
    # the batches' 10-minute leases run out. Nothing acknowledged may be lost.
    full_for = 8.0
    try:
        with small_filesystem(tmp_path / "disk", 24) as disk:
            standin = StandIn(tmp_path / "standin", [WRITE_KEY], seed=8).start()
            engine = EngineProcess(
                make_home(disk / "home", standin.url), engine_env(), log=tmp_path / "e.log"
            )
            filler: Path | None = None
            try:
                await standin.faults(outage=True)
                await engine.start()
                sender = BrazeSender(engine.url, seed=8)
                await sender.send(make_batches(1_000, seed=8), deadline=time.monotonic() + 15)
                await asyncio.sleep(1.5)  # a few attempts at Segment fail and are recorded
                filler = await asyncio.to_thread(fill, disk)
                full_since = time.monotonic()
                await asyncio.sleep(2.0)
                while_full = await status_json(engine.home, engine.env)
                await asyncio.sleep(max(0.0, full_for - (time.monotonic() - full_since)))
                filler.unlink()
                filler = None
                await standin.faults(reset=True)  # space and Segment are back
                back_at = time.monotonic()
                arrived = await wait_delivered(standin, sender.acked_ids, 20.0)
                resumed_after = time.monotonic() - back_at
                after: dict = {}

                async def emptied() -> bool:
                    after.update(connector_status(await status_json(engine.home, engine.env)))
                    return after["backlog"] == 0

                emptied_in_time = await wait_until(emptied, 10.0, 0.5)
                alive = engine.alive()
            finally:
                if filler is not None:
                    filler.unlink(missing_ok=True)
                await engine.stop()
                engine.close()
                standin.stop()
    except Skip as exc:
        pytest.fail(f"the disk-full run could not start: {exc}")

    print(f"\ndelivery resumed {resumed_after:.1f} s after space and Segment returned")
    # While the disk was full: the engine is shown running, and each connector says the disk is full.
    engine_view = while_full["engine"]
    assert engine_view["running"] is True and engine_view["pid"] is not None, engine_view
    assert engine_view["store_problem"] and engine_view["store_problem"].startswith("disk full"), engine_view
    held = connector_status(while_full)
    assert held["state"] == "disk full" and "cannot write the store" in held["detail"], held
    assert held["backlog"] == 1_000
    # Space and Segment back: everything acknowledged arrives within seconds, and none is lost.
    assert alive and sender.acked == 1_000
    missing = sender.acked_ids - arrived.keys()
    assert not missing, f"{len(missing)} acknowledged events never reached Segment"
    assert resumed_after < 12.0, (
        f"delivery took {resumed_after:.1f} s to resume after the disk and Segment returned"
    )
    assert emptied_in_time, after
