"""The reliability scenarios, at any size: the tests run them small, bench/soak.py full.

`crash_safety`, `helper_storm`, `endpoint_faults` (phases as in a `FaultPlan`), `disk_full` and
`credentials` each return a `Figures` row plus what its checks found. Every acknowledged event is an
obligation: it must reach the stand-in. The processes and traffic are in `harness.py`, the faults in
`faults.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from tests.reliability.faults import (
    ENGINE,
    HealthWatch,
    environment,
    fill,
    healthy,
    kill_helper,
    small_filesystem,
)
from tests.reliability.harness import (
    _JSON,
    BATCH,
    CONNECTOR,
    KEYRING_PASSPHRASE,
    TOKEN,
    WORKSPACE,
    WRITE_KEY,
    BrazeSender,
    EngineProcess,
    Figures,
    Request,
    StandIn,
    cli,
    connector_status,
    descendants,
    engine_env,
    gaps,
    make_batches,
    make_home,
    pause_violations,
    running,
    status_json,
    tally,
    wait_delivered,
    wait_until,
)
from tui_currents import segment
from tui_currents.delivery_process import DELIVERY_PROCESS_ENV
from tui_currents.paths import Home
from tui_currents.secrets import (
    Secrets,
    receiver_token_env_var,
    write_key_env_var,
)

# ------------------------------------------------------------------------------------------ crash safety


@dataclass
class CrashRun:
    figures: Figures
    lost_ids: set[str]
    engine_starts: int
    sender_statuses: Counter[int]
    sender_failures: Counter[str]
    given_up: int
    final_status: dict
    violations: int
    kills_by_kind: Counter[str] = field(default_factory=Counter)
    leftovers: list[int] = field(default_factory=list)  # helper processes still running after the stop


async def crash_safety(
    workdir: Path,
    *,
    events: int = 5_000,
    kills: int = 5,
    seed: int = 1,
    latency: float = 0.05,
    concurrency: int = 4,
    time_limit: float = 60.0,
    console_every: float | None = None,
    every_kind: bool = False,
) -> CrashRun:
    """Kill the engine with SIGKILL `kills` times while a Braze-like sender pushes `events` events, restart
    it each time, and account for every acknowledged event at the stand-in. With `every_kind`, half the
    kills (in a random order) hit a process below the engine instead (its mapping worker, or any other
    kind there is, each kind in turn), which the engine must replace by itself.

    Kills come at random moments: each when the acknowledged count passes a random point of the run, after
    a random further 0-0.4 s. The stand-in answers after `latency` seconds so kills also land while
    batches are on their way to it. With `console_every`, an operator runs `tui-currents status --json`
    that often (seconds) while it all happens, as a monitoring check would.
    """
    rng = random.Random(seed)
    started = time.monotonic()
    deadline = started + time_limit
    figures = Figures(
        ("crash safety (SIGKILL of any process)" if every_kind else "crash safety (SIGKILL)")
        + (f", status --json every {console_every:g} s" if console_every else "")
    )
    killed: Counter[str] = Counter()
    helpers_seen: set[int] = set()
    standin = StandIn(workdir / "standin", [WRITE_KEY], seed=seed).start()
    engine: EngineProcess | None = None
    try:
        await standin.faults(latency=latency)
        home = make_home(workdir / "home", standin.url)
        engine = EngineProcess(home, engine_env(), log=workdir / "engine.log")
        await engine.start()
        batches = make_batches(events, seed)
        sender = BrazeSender(engine.url, concurrency=concurrency, seed=seed)
        points = sorted(rng.sample(range(events // 20, events - events // 20), kills))
        victims = [ENGINE if not every_kind or n % 2 else "helper" for n in range(kills)]
        rng.shuffle(victims)

        async def killer() -> None:
            for point, victim in zip(points, victims, strict=True):
                while sender.acked < point and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(rng.uniform(0.0, 0.4))
                if victim != ENGINE and await kill_helper(engine, rng, killed, helpers_seen):
                    continue
                helpers_seen.update(descendants(engine.pid or 0))
                engine.kill()
                killed[ENGINE] += 1
                await asyncio.sleep(rng.uniform(0.0, 0.3))  # down for a moment: the sender meets a refusal
                await engine.start()

        async def console() -> None:
            while console_every:
                await asyncio.sleep(console_every)
                with contextlib.suppress(RuntimeError):  # a look while the engine restarts may fail
                    await status_json(home, engine.env)

        kill_task = asyncio.create_task(killer())
        console_task = asyncio.create_task(console())
        try:
            await sender.send(batches, deadline=deadline)
            await kill_task
        finally:
            console_task.cancel()
            await asyncio.gather(console_task, return_exceptions=True)
        arrived = await wait_delivered(standin, sender.acked_ids, max(5.0, deadline - time.monotonic()))
        lost = tally(figures, sender.sent_ids, sender.acked_ids, arrived)
        figures.kills = sum(killed.values())
        if every_kind:
            figures.notes["kills by kind"] = ", ".join(f"{k} {n}" for k, n in sorted(killed.items()))
        # The engine records a delivery just after the stand-in's answer: give it a moment to catch up.
        final: dict = {}

        async def settled() -> bool:
            final.update(connector_status(await status_json(home, engine.env)))
            return final["backlog"] == 0

        await wait_until(settled, 10.0, 0.5)
        stats = await standin.stats()
        figures.seconds = time.monotonic() - started
        figures.notes["sender retries"] = sender.requests - len(batches)
        figures.notes["backlog after"] = final["backlog"]
        helpers_seen.update(descendants(engine.pid or 0))
        await engine.stop()
        return CrashRun(
            figures,
            lost,
            engine.starts,
            sender.statuses,
            sender.failures,
            len(sender.given_up),
            final,
            stats["violations"],
            killed,
            await leftovers(helpers_seen),
        )
    finally:
        if engine is not None:
            await engine.stop()
            engine.close()
        standin.stop()


async def leftovers(pids: set[int], wait: float = 5.0) -> list[int]:
    """The processes of `pids` still running after `wait` seconds (a helper must end with its engine)."""
    deadline = time.monotonic() + wait
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return sorted(pid for pid in pids if running(pid))


# ------------------------------------------------------------------------------------------ helper storm


@dataclass
class StormRun:
    figures: Figures
    lost_ids: set[str]
    kills_by_kind: Counter[str]
    sender_statuses: Counter[int]
    sender_failures: Counter[str]
    given_up: int
    health: HealthWatch
    healthy_after: bool
    stop_seconds: float
    exit_code: int | None
    leftovers: list[int]
    violations: int


async def helper_storm(
    workdir: Path,
    *,
    events: int = 4_000,
    kills: int = 30,
    every: float = 0.3,
    seed: int = 1,
    concurrency: int = 4,
    time_limit: float = 60.0,
    kinds: Collection[str] | None = None,
) -> StormRun:
    """SIGKILL a process below the engine (of `kinds`, or any kind in turn) every `every` seconds, `kills`
    times, while `concurrency` senders post 100-event batches spread over that time; the
    engine itself keeps running. Then: is /healthz 200 again, does every acknowledged event reach the
    stand-in, and does SIGTERM end the engine (and every helper) in bounded time?"""
    rng = random.Random(seed)
    started = time.monotonic()
    deadline = started + time_limit
    figures = Figures(f"helper processes SIGKILLed every {every:g} s")
    standin = StandIn(workdir / "standin", [WRITE_KEY], seed=seed).start()
    engine: EngineProcess | None = None
    health: HealthWatch | None = None
    try:
        home = make_home(workdir / "home", standin.url)
        # Both helper processes run: the mapping worker, and delivery in its own process (asked for).
        engine = EngineProcess(home, {**engine_env(), DELIVERY_PROCESS_ENV: "1"}, log=workdir / "engine.log")
        await engine.start()
        health = HealthWatch(engine.url).start()
        batches = make_batches(events, seed)
        sender = BrazeSender(engine.url, concurrency=concurrency, seed=seed)
        killed: Counter[str] = Counter()
        seen: set[int] = set()

        async def killer() -> None:
            while sum(killed.values()) < kills and time.monotonic() < deadline:
                await asyncio.sleep(every)
                await kill_helper(engine, rng, killed, seen, kinds=kinds)

        kill_task = asyncio.create_task(killer())
        await sender.send(batches, deadline=deadline, rate=events / (kills * every))
        await kill_task
        healthy_after = await healthy(engine.url, 10.0)
        await health.stop()
        arrived = await wait_delivered(standin, sender.acked_ids, max(5.0, deadline - time.monotonic()))
        lost = tally(figures, sender.sent_ids, sender.acked_ids, arrived)
        figures.kills = sum(killed.values())
        seen.update(descendants(engine.pid or 0))
        began = time.monotonic()
        exit_code = await engine.stop(timeout=30.0)
        stop_seconds = time.monotonic() - began
        stats = await standin.stats()
        figures.seconds = time.monotonic() - started
        figures.notes = {
            "kills by kind": ", ".join(f"{k} {n}" for k, n in sorted(killed.items())),
            "sender retries": sender.requests - len(batches),
            "SIGTERM to exit": f"{stop_seconds:.1f} s",
        }
        return StormRun(
            figures,
            lost,
            killed,
            sender.statuses,
            sender.failures,
            len(sender.given_up),
            health,
            healthy_after,
            stop_seconds,
            exit_code,
            await leftovers(seen),
            stats["violations"],
        )
    finally:
        if health is not None:
            await health.stop()
        if engine is not None:
            engine.close()
        standin.stop()


# ------------------------------------------------------------------------------------------ endpoint faults


@dataclass(frozen=True)
class FaultPlan:
    """How long each phase of the endpoint-fault run lasts (seconds) and how the engine is tuned.

    `request_timeout` and `backoff_scale` go to the engine's delivery loop (None and 1.0: the shipped
    defaults, 30 s and a 60 s backoff cap); `timeout_hold` is how long the stand-in holds each request in
    the timeout phase, longer than the request timeout so that the engine gives up first."""

    rate: float = 500.0  # events/s from Braze's side, throughout
    steady: float = 1.0
    errors: float = 2.0  # 10% answered 500/502/503/504/460
    rate_limits: float = 3.0  # bursts of 429 with Retry-After
    retry_after: float = 1.5
    burst: int = 3
    timeouts: float = 2.0
    timeout_hold: float = 1.6
    settle: float = 1.2  # no faults, so the requests held in the timeout phase end before the next one
    resets: float = 2.0  # connections closed, answers lost, then connections reset
    outage: float = 5.0  # every request answered 503
    recovery: float = 1.0  # Braze keeps sending after the outage
    request_timeout: float | None = 1.0
    backoff_scale: float = 0.02
    max_messages: int | None = 50  # per request; small batches make many requests in a short run
    drain_timeout: float = 20.0

    @property
    def backoff_cap(self) -> float:
        return segment.BACKOFF_CAP_SECONDS * self.backoff_scale

    @property
    def sending(self) -> float:
        return (
            self.steady
            + self.errors
            + self.rate_limits
            + self.timeouts
            + self.settle
            + self.resets
            + self.outage
            + self.recovery
        )


FULL_FAULT_PLAN = FaultPlan(
    rate=300.0,
    steady=10.0,
    errors=20.0,
    rate_limits=25.0,
    retry_after=5.0,
    burst=4,
    timeouts=35.0,
    timeout_hold=31.0,
    settle=32.0,
    resets=40.0,
    outage=120.0,
    recovery=20.0,
    request_timeout=None,
    backoff_scale=1.0,
    max_messages=None,
    drain_timeout=150.0,
)


@dataclass
class FaultRun:
    figures: Figures
    plan: FaultPlan
    lost_ids: set[str]
    phases: dict[str, tuple[float, float]]
    requests: list[Request]
    pause_violations: list[str]
    rate_limited: int  # 429 answers given
    outage_gaps: list[float]
    first_success_after_outage: float | None  # seconds from the outage's end
    steady_rate: float  # events/s accepted by the stand-in in the steady phase
    backlog_at_outage_end: int  # events acknowledged by then and not yet at the stand-in
    caught_up_after: float | None  # seconds from the outage's end until the stand-in had all of those
    recovery_rate: float  # events/s accepted from the first success after the outage until caught up
    drained_after: float | None  # seconds from the outage's end until every acknowledged event arrived
    faults_seen: Counter[str]
    violations: int


async def endpoint_faults(workdir: Path, plan: FaultPlan = FaultPlan(), *, seed: int = 2) -> FaultRun:
    """Braze's side sends at a steady rate while the stand-in goes through phases of faults: 10% 5xx and
    460, bursts of 429 with Retry-After, timeouts, closed and reset connections, an outage; then it recovers.

    The engine runs in this process (as tests/test_engine.py drives it) so that its request timeout and
    backoff can be scaled down for the short form; the full form uses the shipped values.
    """
    from tui_currents.engine import Engine, EngineOptions

    started = time.monotonic()
    figures = Figures("endpoint faults")
    standin = StandIn(workdir / "standin", [WRITE_KEY], seed=seed).start()
    engine = None
    phases: dict[str, tuple[float, float]] = {}
    try:
        home = Home.at(make_home(workdir / "home", standin.url))
        overrides: dict[str, float] = {"backoff_scale": plan.backoff_scale}
        if plan.request_timeout is not None:
            overrides["request_timeout"] = plan.request_timeout
        if plan.max_messages is not None:
            overrides["max_messages"] = plan.max_messages
        with environment(
            **{write_key_env_var(CONNECTOR): WRITE_KEY, receiver_token_env_var(WORKSPACE): TOKEN}
        ):
            secrets = Secrets(home, backend="file", passphrase=KEYRING_PASSPHRASE)  # env overrides win
            engine = Engine(
                home,
                secrets,
                EngineOptions(receiver_host="127.0.0.1", receiver_port=0, delivery_overrides=overrides),
            )
            await engine.start()
            events = int(plan.rate * plan.sending)
            batches = make_batches(max(BATCH, events - events % BATCH), seed)
            sender = BrazeSender(engine.receiver_url, seed=seed)
            sending_deadline = time.monotonic() + plan.sending + plan.drain_timeout
            send_task = asyncio.create_task(sender.send(batches, deadline=sending_deadline, rate=plan.rate))

            async def phase(name: str, seconds: float, **faults: object) -> None:
                await standin.faults(reset=True, seed=seed, **faults)
                begin = time.time()
                await asyncio.sleep(seconds)
                phases[name] = (begin, time.time())

            await phase("steady", plan.steady)
            await phase("errors", plan.errors, fail_rate=0.10, fail_statuses=[500, 502, 503, 504, 460])
            # 429 bursts: each burst answers the next requests 429 with Retry-After; a new burst comes once
            # the previous pause is over.
            await standin.faults(reset=True, seed=seed)
            begin = time.time()
            while time.time() - begin < plan.rate_limits - 0.01:
                await standin.faults(retry_after=plan.retry_after, next_statuses=[429] * plan.burst)
                await asyncio.sleep(
                    min(plan.retry_after + 1.0, max(0.0, plan.rate_limits - (time.time() - begin)))
                )
            phases["rate limits"] = (begin, time.time())
            await phase("timeouts", plan.timeouts, timeout=plan.timeout_hold)
            await phase("after timeouts", plan.settle)
            await phase(
                "closed connections", plan.resets / 2, drop_connection_rate=0.3, lose_response_rate=0.1
            )
            await phase("reset connections", plan.resets / 2, outage=True, outage_reset=True)
            await phase("outage", plan.outage, outage=True)
            await phase("recovery", plan.recovery)
            await send_task
            arrived = await wait_delivered(standin, sender.acked_ids, plan.drain_timeout)
            lost = tally(figures, sender.sent_ids, sender.acked_ids, arrived)
            requests = await standin.requests()
            stats = await standin.stats()
            acks = list(sender.acks)
    finally:
        if engine is not None:
            await engine.stop()
        standin.stop()

    outage_begin, outage_end = phases["outage"]
    rate_begin, rate_end = phases["rate limits"]
    violations = pause_violations(
        [r for r in requests if rate_begin <= r.at <= rate_end + plan.retry_after + 1.0],
        plan.retry_after,
        grace=0.3,
    )
    successes_after = [r.at for r in requests if r.status == 200 and r.at >= outage_end]
    first_success = min(successes_after) - outage_end if successes_after else None
    steady_begin, steady_end = phases["steady"]
    steady_accepted = sum(
        r.accepted for r in requests if r.status == 200 and steady_begin <= r.at <= steady_end
    )
    steady_rate = steady_accepted / max(steady_end - steady_begin, 1e-6)
    last_arrival = max((r.at for r in requests if r.accepted), default=outage_end)
    drained_after = last_arrival - outage_end if not lost else None
    # Catching up: the stand-in has every event acknowledged by the outage's end (counting new arrivals in
    # order, which the outbox keeps).
    owed = sum(n for at, n in acks if at <= outage_end)
    had = sum(r.accepted for r in requests if r.at <= outage_end)
    caught_up_at, total = None, had
    for r in sorted(requests, key=lambda r: r.at):
        if r.at > outage_end:
            total += r.accepted
            if total >= owed:
                caught_up_at = r.at
                break
    recovery_rate = 0.0
    if caught_up_at is not None and successes_after:
        resumed = min(successes_after)
        caught = sum(r.accepted for r in requests if resumed <= r.at <= caught_up_at)
        recovery_rate = caught / max(caught_up_at - resumed, 0.05)
    figures.seconds = time.monotonic() - started
    # The waits between attempts from the outage's start up to the first success after it (that last wait
    # is the longest backoff: it was chosen when the outage had lasted longest).
    outage_gaps = gaps(requests, outage_begin, min(successes_after) if successes_after else outage_end)
    figures.notes = {
        "429s": stats["statuses"].get("429", 0),
        "pause breaches": len(violations),
        "longest outage gap": f"{max(outage_gaps, default=0):.1f} s (cap {plan.backoff_cap:g} s)",
        "back after outage": f"{first_success:.1f} s" if first_success is not None else "never",
        "backlog cleared": f"{owed - had:,} events in {caught_up_at - outage_end:.1f} s"
        if caught_up_at is not None
        else "never",
    }
    return FaultRun(
        figures=figures,
        plan=plan,
        lost_ids=lost,
        phases=phases,
        requests=requests,
        pause_violations=violations,
        rate_limited=stats["statuses"].get("429", 0),
        outage_gaps=outage_gaps,
        first_success_after_outage=first_success,
        steady_rate=steady_rate,
        backlog_at_outage_end=owed - had,
        caught_up_after=None if caught_up_at is None else caught_up_at - outage_end,
        recovery_rate=recovery_rate,
        drained_after=drained_after,
        faults_seen=Counter(r.fault for r in requests if r.fault),
        violations=stats["violations"],
    )


# ------------------------------------------------------------------------------------------ disk full


@dataclass
class DiskRun:
    figures: Figures
    lost_ids: set[str]
    refused_503: int  # the receiver's 503 answers while the disk was full
    errors_500: int
    other_refusals: Counter[int]
    full_for: float  # seconds the disk stayed full
    recovered_after: float | None  # seconds from freeing space to the next 2xx
    engine_restarts: int  # the engine must recover by itself: 0
    engine_alive: bool
    given_up: int
    violations: int
    engine_output: str  # what the engine printed (stderr and stdout), from its start to its stop
    backlog_after: int  # events still queued once everything acknowledged had arrived (`status --json`)


async def disk_full(
    workdir: Path,
    *,
    events: int = 3_000,
    megabytes: int = 24,
    rate: float = 1_000.0,
    fill_at: float = 0.3,
    hold: float = 2.0,
    seed: int = 3,
    time_limit: float = 45.0,
) -> DiskRun:
    """With the home on a small tmpfs, fill it while the receiver is taking batches, hold it full for
    `hold` seconds after the first 503, then free the space. The engine is never restarted."""
    started = time.monotonic()
    deadline = started + time_limit
    figures = Figures("disk full")
    with small_filesystem(workdir / "disk", megabytes) as disk:
        standin = StandIn(workdir / "standin", [WRITE_KEY], seed=seed).start()
        engine: EngineProcess | None = None
        filler: Path | None = None
        try:
            home = make_home(disk / "home", standin.url)
            engine = EngineProcess(home, engine_env(), log=workdir / "engine.log")
            await engine.start()
            first_pid = engine.pid
            batches = make_batches(events, seed)
            sender = BrazeSender(engine.url, seed=seed, backoff_cap=0.5)
            send_task = asyncio.create_task(sender.send(batches, deadline=deadline, rate=rate))
            while sender.acked < events * fill_at and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            filler = await asyncio.to_thread(fill, disk)
            full_since = time.monotonic()
            refused_before = sender.statuses[503]
            while sender.statuses[503] == refused_before and time.monotonic() - full_since < 15.0:
                await asyncio.sleep(0.05)
            await asyncio.sleep(hold)
            refused = sender.statuses[503]
            filler.unlink()
            filler = None
            freed_at = time.time()
            full_for = time.monotonic() - full_since
            await send_task
            arrived = await wait_delivered(standin, sender.acked_ids, max(5.0, deadline - time.monotonic()))
            lost = tally(figures, sender.sent_ids, sender.acked_ids, arrived)
            stats = await standin.stats()
            after = [at for at, status in sender.answers if at >= freed_at and 200 <= status < 300]
            engine_alive = engine.alive() and engine.pid == first_pid
            final: dict = {}

            async def settled() -> bool:
                final.update(connector_status(await status_json(home, engine.env)))
                return final["backlog"] == 0

            await wait_until(settled, 10.0, 0.5)
            await engine.stop()
            figures.seconds = time.monotonic() - started
            figures.notes = {
                "503 answers": refused,
                "disk full for": f"{full_for:.1f} s",
                "engine restarts": engine.starts - 1,
                "backlog after": final["backlog"],
            }
            return DiskRun(
                figures=figures,
                lost_ids=lost,
                refused_503=refused,
                errors_500=sender.statuses[500],
                other_refusals=Counter(
                    {s: n for s, n in sender.statuses.items() if not 200 <= s < 300 and s != 503}
                ),
                full_for=full_for,
                recovered_after=(min(after) - freed_at) if after else None,
                engine_restarts=engine.starts - 1,
                engine_alive=engine_alive,
                given_up=len(sender.given_up),
                violations=stats["violations"],
                engine_output=engine.log.read_text(errors="replace"),
                backlog_after=final["backlog"],
            )
        finally:
            if filler is not None:
                with contextlib.suppress(OSError):
                    filler.unlink()
            if engine is not None:
                await engine.stop()
                engine.close()
            standin.stop()


# ------------------------------------------------------------------------------------------ credentials


@dataclass
class CredentialRound:
    status: int  # what the stand-in answered the refused key: 401 or 403
    refused_requests: int  # requests answered with it (one batch's worth: 1)
    rejected_state: bool  # `status --json` showed "credentials rejected"
    sent_while_rejected: int  # requests that reached the stand-in while the key stayed refused
    backlog_while_rejected: int
    edit_exit_code: int
    resumed_after: float | None  # seconds from the key change to every event of the round arriving


@dataclass
class CredentialsRun:
    figures: Figures
    lost_ids: set[str]
    rounds: list[CredentialRound]
    engine_restarted: bool
    leaked_into: list[str]  # files outside the keyring (and the engine's output) holding a write key


async def _post_batch(url: str, batch: list[dict]) -> int:
    async with httpx.AsyncClient(timeout=15.0) as client:
        response = await client.post(
            f"{url}/currents/{WORKSPACE}",
            content=orjson.dumps({"events": batch}),
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "Braze-Currents-Version": "1",
                "Content-Type": _JSON,
            },
        )
        return response.status_code


async def credentials(workdir: Path, *, seed: int = 4) -> CredentialsRun:
    """A refused write key (401, then 403 for the next key) turns the connector to "credentials rejected"
    after one batch with events kept; a new key saved with `connector edit --write-key-stdin` resumes
    delivery without a restart. Write keys live in the encrypted-file keyring."""
    started = time.monotonic()
    figures = Figures("credentials (401, 403)")
    stale, first, second = "stale-write-key-00000001", "fresh-write-key-00000002", "fresh-write-key-00000003"
    standin = StandIn(workdir / "standin", [first, second], seed=seed).start()
    engine: EngineProcess | None = None
    rounds: list[CredentialRound] = []
    try:
        home = make_home(workdir / "home")
        env = engine_env(write_key=None, keyring_file=True)
        added = await asyncio.to_thread(
            cli, home, "connector", "add", CONNECTOR, "--workspace", WORKSPACE, "--email", "ops@example.com",
            "--endpoint", standin.url, "--events", "all", "--include-anonymous", "--write-key-stdin",
            env=env, stdin=stale + "\n",
        )  # fmt: skip
        if added.returncode != 0:
            raise RuntimeError(f"connector add failed: {added.stderr.strip()}")
        engine = EngineProcess(home, env, log=workdir / "engine.log")
        await engine.start()
        first_pid = engine.pid
        batches = make_batches(500, seed)
        sent: set[str] = {e["id"] for b in batches for e in b}
        acked: set[str] = set()

        async def state() -> str:
            return connector_status(await status_json(home, env))["state"]

        async def round_(refused: int, held: list[list[dict]], new_key: str) -> CredentialRound:
            before = (await standin.stats())["statuses"].get(str(refused), 0)
            # One batch first, alone: the refusal must stop the connector after that one request.
            if await _post_batch(engine.url, held[0]) == 200:
                acked.update(e["id"] for e in held[0])
            rejected = await wait_until(lambda: _is(state, "credentials rejected"), 12.0, 0.3)
            refused_requests = (await standin.stats())["statuses"].get(str(refused), 0) - before
            requests_then = (await standin.stats())["requests"]
            for batch in held[1:]:
                if await _post_batch(engine.url, batch) == 200:
                    acked.update(e["id"] for e in batch)
            await asyncio.sleep(1.0)  # time for a connector that ignored the refusal to send again
            sent_while = (await standin.stats())["requests"] - requests_then
            backlog = connector_status(await status_json(home, env))["backlog"]
            changed_at = time.monotonic()
            edited = await asyncio.to_thread(
                cli, home, "connector", "edit", CONNECTOR, "--write-key-stdin", env=env, stdin=new_key + "\n"
            )
            ids = {e["id"] for b in held for e in b}
            arrived = await wait_delivered(standin, ids, 15.0)
            resumed = time.monotonic() - changed_at if ids <= arrived.keys() else None
            return CredentialRound(
                status=refused,
                refused_requests=refused_requests,
                rejected_state=rejected,
                sent_while_rejected=sent_while,
                backlog_while_rejected=backlog,
                edit_exit_code=edited.returncode,
                resumed_after=resumed,
            )

        rounds.append(await round_(401, batches[0:3], first))
        await standin.faults(status_for_keys={first: 403})
        rounds.append(await round_(403, batches[3:5], second))
        arrived = await standin.ids()
        lost = tally(figures, sent, acked, arrived)
        restarted = engine.starts != 1 or engine.pid != first_pid or not engine.alive()
        await engine.stop()
        leaked = _files_holding(
            [Path(home), engine.log], [stale, first, second], skip={Home.at(home).keyring_file}
        )
        figures.seconds = time.monotonic() - started
        figures.notes = {
            "refused batches": "+".join(str(r.refused_requests) for r in rounds),
            "resumed after": ", ".join(
                f"{r.resumed_after:.1f} s" for r in rounds if r.resumed_after is not None
            ),
            "restarts": int(restarted),
        }
        return CredentialsRun(figures, lost, rounds, restarted, leaked)
    finally:
        if engine is not None:
            await engine.stop()
            engine.close()
        standin.stop()


async def _is(state, wanted: str) -> bool:
    return (await state()) == wanted


def _files_holding(roots: Sequence[Path], secrets: Sequence[str], *, skip: set[Path]) -> list[str]:
    """Files under `roots` (folders or files) whose bytes contain any of `secrets`."""
    needles = [s.encode() for s in secrets]
    found = []
    for root in roots:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            if path in skip:
                continue
            data = path.read_bytes()
            if any(n in data for n in needles):
                found.append(str(path))
    return found
