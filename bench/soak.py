"""The reliability scenarios at full size; prints a table of figures (Markdown, for the README).

- crash safety: `tui-currents run` killed with SIGKILL at 20 random moments while a Braze-like sender pushes
  100,000 events in batches of 100 (retrying whatever was not answered 2xx, with the same event ids);
  restarted each time. Then the same with an operator running `tui-currents status --json` every second.
- endpoint faults: 10% 500/502/503/504/460, bursts of 429 with Retry-After, 30 s timeouts, closed and
  reset connections, a 2-minute outage, with the shipped request timeout (30 s) and backoff cap (60 s).
- disk full: the home on a small tmpfs that fills up while the receiver takes batches (needs root).
- credentials: 401, then 403, until a new write key is saved with `tui-currents connector edit`.

Every acknowledged event is an obligation: "lost" counts acknowledged events that never reached the
Segment stand-in and must be 0; "duplicates" are repeats of a messageId the stand-in already had (which
Segment drops). Each run is bounded in time; the whole takes about 8 minutes on 2 cores.

    .venv/bin/python bench/soak.py [--only crash,console,faults,disk,credentials] [--seed 7] [--quick]

`--quick` runs the sizes the test suite uses. The exit code is 1 when any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.reliability

from tests.reliability import harness, scenarios  # noqa: E402
from tests.reliability.harness import Figures, Skip  # noqa: E402
from tests.reliability.scenarios import FULL_FAULT_PLAN, FaultPlan  # noqa: E402

SCENARIOS = ("crash", "console", "faults", "disk", "credentials")


def _common(figures: Figures, lost: set[str]) -> list[str]:
    problems = []
    if lost:
        problems.append(f"{len(lost)} acknowledged events lost")
    if figures.unexpected:
        problems.append(f"{figures.unexpected} messageIds at the stand-in that were never sent")
    if figures.acknowledged != figures.sent:
        problems.append(f"only {figures.acknowledged:,} of {figures.sent:,} events acknowledged in time")
    return problems


async def crash(workdir: Path, seed: int, quick: bool) -> tuple[Figures, list[str]]:
    events, kills = (5_000, 5) if quick else (100_000, 20)
    run = await scenarios.crash_safety(workdir, events=events, kills=kills, seed=seed, time_limit=300.0)
    problems = _common(run.figures, run.lost_ids)
    if run.figures.kills != kills:
        problems.append(f"{run.figures.kills} kills instead of {kills}")
    if run.final_status["backlog"] or run.final_status["dead_letters"]:
        problems.append(
            f"left behind: {run.final_status['backlog']} queued, {run.final_status['dead_letters']} dead"
        )
    return run.figures, problems


async def console(workdir: Path, seed: int, quick: bool) -> tuple[Figures, list[str]]:
    events, kills = (5_000, 5) if quick else (30_000, 8)
    run = await scenarios.crash_safety(
        workdir, events=events, kills=kills, seed=seed + 1, time_limit=180.0, console_every=1.0
    )
    return run.figures, _common(run.figures, run.lost_ids)


async def faults(workdir: Path, seed: int, quick: bool) -> tuple[Figures, list[str]]:
    plan = FaultPlan() if quick else FULL_FAULT_PLAN
    run = await scenarios.endpoint_faults(workdir, plan, seed=seed)
    problems = _common(run.figures, run.lost_ids)
    if run.pause_violations:
        problems.append(f"{len(run.pause_violations)} requests sent during a Retry-After pause")
    longest = max(run.outage_gaps, default=0.0)
    if longest > plan.backoff_cap + 1.0:
        problems.append(f"a wait of {longest:.1f} s between attempts, over the {plan.backoff_cap:g} s cap")
    if run.first_success_after_outage is None or run.first_success_after_outage > plan.backoff_cap + 1.0:
        problems.append(f"first success {run.first_success_after_outage} s after the outage")
    if run.caught_up_after is None or run.caught_up_after > plan.backoff_cap + 15.0:
        problems.append(f"the outage's backlog was cleared {run.caught_up_after} s after it ended")
    if run.recovery_rate < run.steady_rate:
        problems.append(
            f"recovery at {run.recovery_rate:.0f} ev/s, below the steady {run.steady_rate:.0f} ev/s"
        )
    run.figures.notes["steady / recovery"] = f"{run.steady_rate:.0f} / {run.recovery_rate:.0f} ev/s"
    print(f"  faults met (requests): {dict(run.faults_seen)}", flush=True)
    print(f"  phases: {', '.join(f'{k} {b - a:.0f} s' for k, (a, b) in run.phases.items())}", flush=True)
    return run.figures, problems


async def disk(workdir: Path, seed: int, quick: bool) -> tuple[Figures, list[str]]:
    if quick:
        run = await scenarios.disk_full(workdir, seed=seed)
    else:
        run = await scenarios.disk_full(
            workdir, events=20_000, megabytes=64, rate=2_000.0, hold=10.0, seed=seed, time_limit=120.0
        )
    problems = _common(run.figures, run.lost_ids)
    if not run.refused_503:
        problems.append("no 503 while the disk was full")
    if run.errors_500 or run.other_refusals:
        problems.append(f"other refusals: {dict(run.other_refusals)}")
    if not run.engine_alive or run.engine_restarts:
        problems.append("the engine did not recover by itself")
    if run.backlog_after:
        problems.append(f"{run.backlog_after} events still queued after recovery")
    return run.figures, problems


async def credentials(workdir: Path, seed: int, quick: bool) -> tuple[Figures, list[str]]:
    run = await scenarios.credentials(workdir, seed=seed)
    problems = _common(run.figures, run.lost_ids)
    for r in run.rounds:
        if (
            r.refused_requests != 1
            or not r.rejected_state
            or r.sent_while_rejected
            or r.resumed_after is None
        ):
            problems.append(f"{r.status}: {r}")
    if run.engine_restarted:
        problems.append("the engine restarted")
    if run.leaked_into:
        problems.append(f"write keys found in {run.leaked_into}")
    return run.figures, problems


RUNNERS: dict[str, Callable] = {
    "crash": crash,
    "console": console,
    "faults": faults,
    "disk": disk,
    "credentials": credentials,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated, from: {', '.join(SCENARIOS)}")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="the test suite's sizes")
    args = parser.parse_args()
    # The endpoint-fault run hosts the engine in this process: its warnings belong in no terminal here.
    logging.getLogger("tui_currents").addHandler(logging.NullHandler())
    chosen = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [name for name in chosen if name not in RUNNERS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    rows: list[Figures] = []
    failures: list[str] = []
    started = time.monotonic()
    print(f"seed {args.seed}; {'quick' if args.quick else 'full'} sizes", flush=True)
    for name in chosen:
        with tempfile.TemporaryDirectory(prefix=f"soak-{name}-") as folder:
            try:
                figures, problems = asyncio.run(RUNNERS[name](Path(folder), args.seed, args.quick))
            except Skip as exc:
                print(f"{name}: skipped: {exc}", flush=True)
                continue
        rows.append(figures)
        verdict = "ok" if not problems else "FAILED: " + "; ".join(problems)
        print(f"{name}: {verdict} ({figures.seconds:.0f} s)", flush=True)
        failures += [f"{name}: {p}" for p in problems]
    print()
    print(harness.table(rows))
    print(f"\ntotal {time.monotonic() - started:.0f} s; {'all checks passed' if not failures else 'FAILED'}")
    for failure in failures:
        print(f"  - {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
