"""Segment misbehaving in every way it can while Braze keeps sending: nothing acknowledged is lost.

Phases against the stand-in (in its own process): steady; 10% of requests answered 500/502/503/504/460;
bursts of 429 with Retry-After; timeouts; closed connections and lost answers; reset connections; an outage
(5 s here, 2 minutes in bench/soak.py); recovery. The engine's request timeout and backoff are scaled down
here (1 s, cap 1.2 s) so the run is short; bench/soak.py runs the shipped values (30 s, cap 60 s).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.harness import (
    Request,
    gaps,
    pause_violations,
    table,
)
from tests.reliability.scenarios import (
    FaultPlan,
    credentials,
    endpoint_faults,
)

pytestmark = pytest.mark.timeout(90)


async def test_faults_lose_nothing_and_pauses_backoff_and_recovery_hold(tmp_path: Path) -> None:
    plan = FaultPlan()
    # Seeded: the stand-in draws its faults from this seed, which meets each random fault early in the run.
    run = await endpoint_faults(tmp_path, plan, seed=23)
    figures = run.figures
    print("\n" + table([figures]))
    print(
        f"faults met: {dict(run.faults_seen)}; steady {run.steady_rate:.0f} ev/s, "
        f"recovery {run.recovery_rate:.0f} ev/s, caught up {run.caught_up_after} s after the outage"
    )

    # Every fault was really met by the engine's requests.
    for fault in ("fail_rate", "next_statuses", "timeout", "drop_connection", "lose_response", "outage"):
        assert run.faults_seen[fault] > 0, f"no request met the {fault!r} fault: {dict(run.faults_seen)}"
    assert run.rate_limited >= 2  # at least two Retry-After pauses, one after the other
    # The obligation: every acknowledged event reached Segment; lost answers only repeat the same messageId.
    assert figures.acknowledged == figures.sent
    assert run.lost_ids == set(), f"lost {len(run.lost_ids)}, e.g. {sorted(run.lost_ids)[:3]}"
    assert figures.delivered == figures.acknowledged and figures.unexpected == 0
    assert run.violations == 0
    # Retry-After: nothing was sent to the connector while a 429's pause was on.
    assert run.pause_violations == []
    # Backoff grows and is capped: during the outage the waits between attempts reached the cap's range
    # (at least half of it, the jitter's floor) and never went past it (plus scheduling slack).
    assert run.outage_gaps, "no attempt at all during the outage"
    assert plan.backoff_cap * 0.5 <= max(run.outage_gaps) <= plan.backoff_cap + 0.5
    # Throughput returns: the first attempt after the outage succeeds within the cap, and the backlog the
    # outage built up is cleared soon, faster than events came in steadily.
    assert run.first_success_after_outage is not None
    assert run.first_success_after_outage <= plan.backoff_cap + 1.0
    assert run.backlog_at_outage_end >= plan.rate * plan.outage * 0.5
    assert run.caught_up_after is not None and run.caught_up_after <= plan.backoff_cap + 5.0
    assert run.recovery_rate >= run.steady_rate
    assert run.drained_after is not None


async def test_a_refused_write_key_holds_events_until_a_new_key_is_saved_with_the_cli(tmp_path: Path) -> None:
    # 401 for the first key, then 403 for its replacement; keys in the encrypted-file keyring, changed with
    # `tui-currents connector edit NAME --write-key-stdin` while the engine (its own process) runs.
    run = await credentials(tmp_path, seed=41)
    print("\n" + table([run.figures]))
    first, second = run.rounds
    assert (first.status, second.status) == (401, 403)
    for round_ in run.rounds:
        # One batch was refused, then the connector said why and sent nothing more, keeping every event.
        assert round_.refused_requests == 1, round_
        assert round_.rejected_state, (
            f"`status --json` never showed 'credentials rejected' after {round_.status}"
        )
        assert round_.sent_while_rejected == 0, round_
        assert round_.edit_exit_code == 0
        # The new key was picked up without a restart and the held events went out.
        assert round_.resumed_after is not None, f"delivery did not resume after the new key ({round_})"
    assert (first.backlog_while_rejected, second.backlog_while_rejected) == (300, 200)
    assert not run.engine_restarted
    figures = run.figures
    assert figures.acknowledged == figures.sent == 500
    assert run.lost_ids == set() and figures.delivered == 500 and figures.unexpected == 0
    # The keys stayed in the keyring: not in the config, the store, the logs or the engine's output.
    assert run.leaked_into == []


def _request(at: float, status: int = 200, sent_at: float | None = None) -> Request:
    return Request(at, status, 1, 1, 0, at if sent_at is None else sent_at, None)


def test_pause_check_flags_a_request_sent_inside_a_retry_after_window() -> None:
    requests = [_request(10.0, 429), _request(10.05), _request(11.0), _request(12.1)]
    # 10.05: on its way when the 429 was given (within the grace); 11.0: inside the 2 s pause; 12.1: after.
    problems = pause_violations(requests, retry_after=2.0, grace=0.3)
    assert len(problems) == 1 and "1.000 s after a 429" in problems[0]
    assert pause_violations([r for r in requests if r.at != 11.0], retry_after=2.0, grace=0.3) == []


def test_pause_check_uses_arrival_time_when_the_body_was_not_read() -> None:
    unread = Request(11.0, 429, 0, 0, 0, None, "next_statuses")  # answered before its body was read
    assert len(pause_violations([_request(10.0, 429), unread], retry_after=2.0, grace=0.3)) == 1


def test_gaps_are_measured_between_arrivals_inside_the_window() -> None:
    requests = [_request(1.0), _request(3.0), _request(2.0), _request(9.0), _request(20.0)]
    assert gaps(requests, 0.0, 10.0) == [1.0, 1.0, 6.0]
