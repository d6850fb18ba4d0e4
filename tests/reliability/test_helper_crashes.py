"""Every process of the service may die at any moment, not only the engine: its mapping worker (and any
other process below the engine) is SIGKILLed under load, on its own every 0.3 s and mixed with engine
kills at random moments. The service must notice, replace it, answer every request (stored, or 503 with
Retry-After; never a hang), stay healthy, shut down in bounded time, and lose no acknowledged event.

Short, bounded forms here; the `soak` marker runs longer ones (`pytest -m soak tests/reliability`).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.reliability.faults import (
    DELIVERY,
    ENGINE,
    service_processes,
)
from tests.reliability.harness import (
    EngineProcess,
    StandIn,
    engine_env,
    make_home,
    running,
    table,
    wait_until,
)
from tests.reliability.scenarios import (
    crash_safety,
    helper_storm,
)
from tui_currents.delivery_process import DELIVERY_PROCESS_ENV

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes in /proc")


def _check_storm(run, kills: int, kind: str = "mapping worker") -> None:
    figures = run.figures
    print("\n" + table([figures]))
    assert figures.kills == kills and run.kills_by_kind[kind] > 0
    assert ENGINE not in run.kills_by_kind
    # Every batch was answered and in the end acknowledged: no request waited for a dead worker.
    assert run.sender_failures == {}, run.sender_failures
    assert run.given_up == 0 and figures.acknowledged == figures.sent
    assert set(run.sender_statuses) <= {200, 503}, run.sender_statuses
    # Nothing acknowledged was lost, nothing delivered that was not sent.
    assert run.lost_ids == set() and figures.delivered == figures.acknowledged and figures.unexpected == 0
    assert run.violations == 0
    # A load balancer's look always got an answer, and the service is healthy once the kills stop.
    assert run.health.answers[0] == 0 and run.health.answers[-1] == 0, run.health.answers
    assert run.healthy_after
    # SIGTERM ends it promptly and cleanly, with every helper process it had.
    assert run.exit_code == 0 and run.stop_seconds < 15.0
    assert run.leftovers == [], f"helper processes outlived the engine: {run.leftovers}"


@pytest.mark.timeout(120)
async def test_the_mapping_worker_killed_every_0_3_s_under_load_hangs_nothing(tmp_path: Path) -> None:
    run = await helper_storm(
        tmp_path, events=30_000, kills=30, every=0.3, seed=7, time_limit=60.0, kinds={"mapping worker"}
    )
    _check_storm(run, 30)


@pytest.mark.timeout(150)
async def test_the_delivery_process_killed_at_random_under_load_loses_nothing(tmp_path: Path) -> None:
    # Its leases end with it: the batches it had out are sent again by the next one, under the same
    # messageIds (the stand-in counts every acknowledged id; duplicates only under the same id).
    run = await helper_storm(
        tmp_path, events=20_000, kills=15, every=0.7, seed=13, time_limit=90.0, kinds={DELIVERY}
    )
    _check_storm(run, 15, DELIVERY)


@pytest.mark.timeout(60)
async def test_no_child_outlives_a_sigkilled_run(tmp_path: Path) -> None:
    standin = StandIn(tmp_path / "standin", ["unused"]).start()
    engine = EngineProcess(
        make_home(tmp_path / "home", standin.url),
        {**engine_env(), DELIVERY_PROCESS_ENV: "1"},
        log=tmp_path / "engine.log",
    )
    try:
        await engine.start()
        assert engine.pid is not None
        pid = engine.pid
        assert await wait_until(lambda: _has_both_helpers(pid), 20.0)
        children = [p for kind, pids in service_processes(pid).items() if kind != ENGINE for p in pids]
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        assert await wait_until(lambda: _none_running(children), 5.0), service_processes(pid)
        print(
            f"\n{len(children)} helper processes ended {time.monotonic() - killed_at:.2f} s after the SIGKILL"
        )
    finally:
        engine.close()
        standin.stop()


async def _has_both_helpers(pid: int) -> bool:
    kinds = service_processes(pid)
    return DELIVERY in kinds and "mapping worker" in kinds


async def _none_running(pids: list[int]) -> bool:
    return not any(running(p) for p in pids)


@pytest.mark.soak  # the storms of each kind above run every time; this mix with `-m soak`
@pytest.mark.timeout(120)
async def test_any_helper_process_killed_under_load_hangs_nothing(tmp_path: Path) -> None:
    # Whatever runs below the engine, each kind in turn (today only the mapping worker remains).
    run = await helper_storm(tmp_path, events=4_000, kills=12, every=0.3, seed=9, time_limit=60.0)
    _check_storm(run, 12)


@pytest.mark.timeout(120)
async def test_no_acknowledged_event_is_lost_whichever_process_of_the_service_is_killed(
    tmp_path: Path,
) -> None:
    run = await crash_safety(tmp_path, events=4_000, kills=6, seed=23, time_limit=75.0, every_kind=True)
    figures = run.figures
    print("\n" + table([figures]))

    assert figures.kills == 6
    assert run.kills_by_kind[ENGINE] >= 3 and run.kills_by_kind["mapping worker"] >= 1, run.kills_by_kind
    assert run.engine_starts == 1 + run.kills_by_kind[ENGINE]
    assert run.given_up == 0 and figures.acknowledged == figures.sent == 4_000
    assert run.lost_ids == set(), f"lost {len(run.lost_ids)} acknowledged events"
    assert figures.delivered == figures.acknowledged and figures.unexpected == 0
    assert all(status == 200 or status >= 500 for status in run.sender_statuses), run.sender_statuses
    assert run.final_status["backlog"] == 0 and run.final_status["dead_letters"] == 0
    assert run.violations == 0
    assert run.leftovers == [], f"helper processes outlived their engine: {run.leftovers}"


@pytest.mark.soak
@pytest.mark.timeout(900)
async def test_soak_helpers_and_engine_killed_at_random_for_minutes(tmp_path: Path) -> None:
    storm = await helper_storm(
        tmp_path / "storm", events=40_000, kills=150, every=0.3, seed=101, time_limit=400.0
    )
    _check_storm(storm, 150)
    run = await crash_safety(
        tmp_path / "mixed", events=60_000, kills=30, seed=103, time_limit=400.0, every_kind=True
    )
    print("\n" + table([run.figures]))
    assert run.kills_by_kind[ENGINE] >= 15 and run.kills_by_kind["mapping worker"] >= 1
    assert run.given_up == 0 and run.lost_ids == set() and run.figures.unexpected == 0
    assert run.leftovers == []
