"""How the TUI feels: time to the first screen, keypress-to-screen latency and the tail's lag under load.
Prints figures; not a test.

(a) Start-up. In tmux, the real `tui-currents --home H demo`: from launching the command to the connectors
    screen on the terminal (its title, then the demo connector's row with figures), polled with
    `capture-pane` every 20 ms; median of N runs on a warm home (the first, cold run is shown apart).
    In-process, `app.run_test()`: from entering it to the first frame and to the connector's row.

(b) Keypress to screen, while the demo engine forwards about --rate events/s and the tail is open.
    The app runs headless in this process (Pilot's `run_test`). A key is posted to the app as the terminal
    driver would post it; the time is taken when the first frame is composed *and encoded to the bytes a
    terminal would receive* that shows its effect. Not included: the
    driver's input thread and the terminal emulator drawing the bytes.
    The keys alternate `up` (a cursor line appears, the view stops following) and `end` (it follows the
    newest line again), at random 40-120 ms intervals so they land at every phase of the tail's polling.
    Two set-ups, both as users run them, after a reference with the demo's default 50 events/s (idle):
      in-process  `tui-currents demo --demo-rate R`: the engine shares the app's event loop (the default
                  when no service runs; the worst case for the interface).
      console     `tui-currents run --demo --demo-rate R` in its own process, and the app as its console
                  on the same home (a service on a server, watched over SSH).
    Goal: p99 < 100 ms. Printed with it: how late the event loop woke meanwhile, and the garbage
    collector's pauses (a full collection stops everything; --gc-freeze shows the figures with the
    start-up objects frozen out of it, --find-stalls names the callbacks that block the loop, --census what
    the collector walks in the app's process, by type).

(c) The tail's lag behind the store under that load, over --seconds: the store's newest tail row vs. the
    newest line the tail view holds, sampled every 0.5 s: in events (event rows stored but not yet taken by
    the view) and in seconds (how long ago the store already had the view's newest row). Shown at the
    start, middle and end of the run with the trend, to show that it stays bounded. Also the engine's
    achieved events/s (received and delivered) over the same window.

    .venv/bin/python bench/bench_tui.py [--rate 10000] [--seconds 30] [--presses 150] [--starts 5]
                                        [--setups idle,in-process,console] [--skip-tmux]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import multiprocessing
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from process_use import describe_cpu, peak_rss_mb, pss_mb, service_cpu, service_pids
from textual import events
from tui_bench_common import IDLE_RATE, LATENCY_GOAL_MS, SIZE, child_env, new_home, pct, tui_command
from tui_startup_tmux import bench_start_tmux

from tui_currents.demo_setup import DEMO_CONNECTOR, demo_secrets
from tui_currents.paths import Home
from tui_currents.tui.app import CurrentsApp
from tui_currents.tui.backend import Backend
from tui_currents.tui.screens.tail import TailScreen
from tui_currents.tui.widgets.tail_view import TailView

# ----------------------------------------------------------------------------- frames


class FrameClock:
    """Timestamps every frame the app composes, after encoding it to the bytes a terminal would get (a
    headless app composes frames but skips that step, so it is done here to count its cost)."""

    def __init__(self, app: CurrentsApp) -> None:
        self.app = app
        self.frames = 0
        self.first: float | None = None
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future]] = []
        original = app._display

        def display(screen, renderable) -> None:
            original(screen, renderable)
            if renderable is None:
                return
            render = getattr(renderable, "render_segments", None)
            if render is not None:
                render(app.console)
            now = time.perf_counter()
            self.frames += 1
            if self.first is None:
                self.first = now
            for condition, future in self._waiters:
                if not future.done() and condition():
                    future.set_result(now)
            self._waiters = [w for w in self._waiters if not w[1].done()]

        app._display = display

    async def frame_where(self, condition: Callable[[], bool], timeout: float) -> float | None:
        """perf_counter() of the first frame composed while `condition()` holds; None after `timeout`."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((condition, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None


# ----------------------------------------------------------------------------- (a) start-up in-process


async def bench_start_in_process(root: Path, starts: int) -> None:
    home = new_home(root, "run-test-home")
    secrets = demo_secrets(home)  # opened once here; a real start also derives the keyring file's key
    firsts, rows, frozen = [], [], []
    for _ in range(starts + 1):  # the first run makes the home; it is not counted
        backend = Backend(home, secrets, demo=True, demo_rate=50)
        app = CurrentsApp(backend)
        clock = FrameClock(app)
        stalls = LoopStalls()
        stalls.start()
        t0 = time.perf_counter()
        async with app.run_test(size=SIZE) as pilot:
            deadline = t0 + 30
            while not (app.screen.query("DataTable") and app.screen.query_one("DataTable").row_count):
                if time.perf_counter() > deadline:
                    raise RuntimeError("the connector row did not appear")
                await pilot.pause(0.01)
            rows.append(time.perf_counter() - t0)
            firsts.append((clock.first or time.perf_counter()) - t0)
            await stalls.stop()
            frozen.append(max(stalls.late_ms, default=0.0))
    firsts, rows, frozen = firsts[1:], rows[1:], frozen[1:]
    print(f"    in-process, app.run_test(), {starts} runs (imports done and keyring open; engine and sandbox")
    print("    started each time):")
    print(
        f"      first frame median {statistics.median(firsts) * 1000:.0f} ms; connector row median "
        f"{statistics.median(rows) * 1000:.0f} ms (max {max(rows) * 1000:.0f} ms); longest time the "
        f"event loop was blocked meanwhile (keys wait): median {statistics.median(frozen):.0f} ms"
    )


# ----------------------------------------------------------------------------- (b) + (c) under load


@dataclass
class StoreSampler:
    """A thread reading the store every 20 ms: (time, newest tail seq), and the engine's counters."""

    path: Path
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            while not self._stop.is_set():
                (seq,) = db.execute("SELECT coalesce(max(seq + lines) - 1, 0) FROM tail").fetchone()
                self.samples.append((time.perf_counter(), seq))
                self._stop.wait(0.02)
        finally:
            db.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def first_time_at_least(self, seq: int) -> float | None:
        for at, newest in self.samples:
            if newest >= seq:
                return at
        return None


def read_counts(path: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute(
            "SELECT name, sum(n) FROM counters WHERE connector = ? GROUP BY name", (DEMO_CONNECTOR,)
        ).fetchall()
    finally:
        db.close()
    return {name: int(n) for name, n in rows}


def event_rows_between(path: Path, after: int, upto: int) -> int:
    """Event lines (not fate updates) stored after the view's newest line, up to the store's newest.
    A stored tail row holds `lines` lines numbered from its seq; received events are the rows without a
    row-wide fate."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        (n,) = db.execute(
            "SELECT coalesce(sum(min(seq + lines - 1, ?) - max(seq, ? + 1) + 1), 0) FROM tail"
            " WHERE fate IS NULL AND seq + lines - 1 > ? AND seq <= ?",
            (upto, after, after, upto),
        ).fetchone()
    finally:
        db.close()
    return n


@dataclass
class LagSample:
    at: float  # seconds into the window
    events: int
    seconds: float


async def measure_lag(
    pilot, view: TailView, sampler: StoreSampler, store: Path, seconds: float
) -> tuple[list[LagSample], dict[str, float]]:
    start = time.perf_counter()
    before = read_counts(store)
    lags: list[LagSample] = []
    while (now := time.perf_counter()) - start < seconds:
        await pilot.pause(0.5)
        now = time.perf_counter()
        shown = view.lines[-1].seq if view.lines else 0
        newest = sampler.samples[-1][1] if sampler.samples else 0
        had_it = sampler.first_time_at_least(shown)
        if had_it is None:
            # The sampler has not seen that row yet (it reads every 20 ms): the view is current.
            had_it = now
        elif had_it == sampler.samples[0][0]:
            continue  # stored before sampling began: when is not known, so no figure
        behind = await asyncio.to_thread(event_rows_between, store, shown, newest)
        lags.append(LagSample(now - start, behind, now - had_it))
    elapsed = time.perf_counter() - start
    after = read_counts(store)
    rates = {name: (after.get(name, 0) - before.get(name, 0)) / elapsed for name in ("received", "delivered")}
    return lags, rates


class SlowCallbacks(logging.Handler):
    """Collects asyncio debug mode's "Executing <callback> took N seconds" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: dict[str, list[float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        found = re.match(r"Executing (.*) took (\d+\.\d+) seconds", record.getMessage())
        if found:
            where = re.sub(r" at 0x[0-9a-f]+| created at \S+", "", found.group(1))
            self.seen.setdefault(where[:160], []).append(float(found.group(2)) * 1000)

    def top(self, n: int) -> list[str]:
        ranked = sorted(self.seen.items(), key=lambda item: -max(item[1]))[:n]
        return [f"{len(ms)}x, max {max(ms):.0f} ms: {where}" for where, ms in ranked] or ["none over 50 ms"]


def watch_slow_callbacks() -> SlowCallbacks:
    """Turn on asyncio's debug mode on this loop and collect the callbacks that hold it over 50 ms."""
    slow = SlowCallbacks()
    logging.getLogger("asyncio").addHandler(slow)
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    return slow


def stop_watching(slow: SlowCallbacks) -> None:
    asyncio.get_running_loop().set_debug(False)
    logging.getLogger("asyncio").removeHandler(slow)


class GcPauses:
    """Durations of the garbage collector's runs (each stops the event loop): wall time, and the CPU time
    the collecting thread used meanwhile. On busy cores the two differ by the time the process waited for
    a core: a full collection that lasts 300 ms may have needed 20 ms of CPU."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float, float]] = []  # (generation, wall ms, CPU ms)
        self._began = self._cpu = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._began, self._cpu = time.perf_counter(), time.thread_time()
        else:
            wall, cpu = time.perf_counter() - self._began, time.thread_time() - self._cpu
            self.pauses.append((info["generation"], wall * 1000, cpu * 1000))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def full_pause_max(self) -> tuple[float, float] | None:
        """(wall ms, CPU ms) of the longest full collection, if any ran."""
        full = [(wall, cpu) for generation, wall, cpu in self.pauses if generation == 2]
        return max(full) if full else None

    def describe(self) -> str:
        if not self.pauses:
            return "no garbage collections"
        full = [(wall, cpu) for generation, wall, cpu in self.pauses if generation == 2]
        text = f"{len(self.pauses)} garbage collections, longest {max(p[1] for p in self.pauses):.0f} ms"
        if full:
            wall, cpu = max(full)
            text += (
                f" ({len(full)} full, longest {wall:.0f} ms of which {cpu:.0f} ms of CPU; "
                f"full collections used {sum(c for _, c in full):.0f} ms of CPU in all)"
            )
        return text


def tracked_objects() -> str:
    """What the garbage collector walks in this process, by type (objects frozen at start-up apart): what a
    full collection has to visit, and who holds most of it."""
    walked = gc.get_objects()  # every generation, not the frozen (permanent) one
    by_type: dict[str, int] = {}
    for obj in walked:
        name = f"{type(obj).__module__}.{type(obj).__qualname__}".removeprefix("builtins.")
        by_type[name] = by_type.get(name, 0) + 1
    top = sorted(by_type.items(), key=lambda item: -item[1])[:10]
    return (
        f"{len(walked):,} objects tracked by the garbage collector ({gc.get_freeze_count():,} more frozen at "
        "start-up): " + ", ".join(f"{n:,} {name}" for name, n in top)
    )


class LoopStalls:
    """How late a 5 ms sleep wakes up on the app's event loop: how long the loop was busy elsewhere."""

    def __init__(self) -> None:
        self.late_ms: list[float] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            self.late_ms.append((time.perf_counter() - t0 - 0.005) * 1000)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def measure_keys(pilot, view: TailView, clock: FrameClock, presses: int) -> tuple[list[float], int]:
    """Latency of key presses, key posted -> first encoded frame showing its effect. The keys alternate
    `up` (the cursor appears on a line and the view stops following) and `end` (the view follows the
    newest line again): each flips what the tail shows whatever the stream does meanwhile."""
    app = pilot.app
    latencies: list[float] = []
    missed = 0
    rng = random.Random(7)
    for _ in range(presses):
        await asyncio.sleep(rng.uniform(0.04, 0.12))
        following = view.following
        key = "up" if following else "end"

        def flipped(expected: bool = not following) -> bool:
            return view.following is expected

        t0 = time.perf_counter()
        app.post_message(events.Key(key, None))
        shown_at = await clock.frame_where(flipped, timeout=2.0)
        if shown_at is None:
            missed += 1
        else:
            latencies.append((shown_at - t0) * 1000)
    return latencies, missed


def print_load_results(
    setup: str,
    rate: float,
    lags: list[LagSample],
    rates: dict[str, float],
    latencies: list[float],
    missed: int,
    notes: list[str],
) -> None:
    print(f"  [{setup}] demo rate asked {rate:,.0f} events/s")
    print(
        f"    engine achieved: received {rates['received']:,.0f} events/s, delivered "
        f"{rates['delivered']:,.0f} events/s (to the local sandbox) over the lag window"
    )
    if latencies:
        verdict = "meets" if pct(latencies, 99) < LATENCY_GOAL_MS else "MISSES"
        print(
            f"    (b) keypress -> screen, {len(latencies)} presses (up/end): "
            f"p50 {pct(latencies, 50):.1f} ms, p90 {pct(latencies, 90):.1f} ms, "
            f"p99 {pct(latencies, 99):.1f} ms, max {max(latencies):.1f} ms"
            f"  ({verdict} the goal p99 < {LATENCY_GOAL_MS:.0f} ms)"
            + (f"; {missed} presses showed nothing within 2 s" if missed else "")
        )
    for note in notes:
        print(f"        {note}")
    if lags:
        third = max(len(lags) // 3, 1)
        parts = {"start": lags[:third], "middle": lags[third : 2 * third], "end": lags[2 * third :]}
        cells = []
        for name, part in parts.items():
            if not part:
                continue
            ev = statistics.mean(s.events for s in part)
            sec = statistics.mean(s.seconds for s in part)
            cells.append(
                f"{name} {ev:,.0f} events / {sec:.2f} s (max {max(s.events for s in part):,} / "
                f"{max(s.seconds for s in part):.2f} s)"
            )
        slope = _slope([(s.at, s.events) for s in lags])
        print(f"    (c) tail lag behind the store, {len(lags)} samples over {lags[-1].at:.0f} s:")
        print("        " + "; ".join(cells))
        # Growth over the window smaller than the typical lag itself (or than one poll's worth at low
        # rates) reads as bounded; a lag that keeps growing would exceed it.
        typical = max(statistics.mean(s.events for s in lags), 100)
        verdict = "bounded" if slope * lags[-1].at < typical else "GROWING"
        print(f"        trend {slope:+,.1f} events of lag per second of run: {verdict}")


def _slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    mx = statistics.mean(p[0] for p in points)
    my = statistics.mean(p[1] for p in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


async def open_tail(pilot, app: CurrentsApp) -> TailView:
    deadline = time.perf_counter() + 60
    while not (
        app.backend_ready and app.screen.query("DataTable") and app.screen.query_one("DataTable").row_count
    ):
        if time.perf_counter() > deadline:
            raise RuntimeError("the connectors screen did not fill")
        await pilot.pause(0.05)
    await pilot.press("t")
    while not isinstance(app.screen, TailScreen):
        await pilot.pause(0.02)
    view = app.screen.query_one(TailView)
    while not view.lines:
        if time.perf_counter() > deadline:
            raise RuntimeError("the tail stayed empty")
        await pilot.pause(0.05)
    return view


async def bench_under_load(
    root: Path,
    setup: str,
    rate: float,
    seconds: float,
    presses: int,
    *,
    find_stalls: bool = False,
    gc_freeze: bool = False,
) -> None:
    home = new_home(root, f"load-{setup}")
    service = None
    if setup == "idle":
        # The reference: the same app and keys with the demo's default trickle of events.
        rate, seconds = IDLE_RATE, min(seconds, 5.0)
    if setup in ("in-process", "idle"):
        backend = Backend(home, demo_secrets(home), demo=True, demo_rate=rate)
    else:
        log = (root / f"service-{setup}.log").open("wb")
        service = subprocess.Popen(
            [
                *tui_command(),
                "--home",
                str(home.root),
                "run",
                "--demo",
                "--port",
                "0",
                "--demo-rate",
                str(rate),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(),
            start_new_session=True,
        )
        deadline = time.perf_counter() + 60
        while not (home.lock_file.exists() and home.lock_file.read_text().strip() == str(service.pid)):
            if service.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(
                    f"the service did not start: {(root / f'service-{setup}.log').read_text()}"
                )
            await asyncio.sleep(0.1)
        # The console reads the store and the config; its keyring is the demo's file.
        backend = Backend(home, demo_secrets(home))
    sampler = StoreSampler(home.store_file)
    slow = watch_slow_callbacks() if find_stalls else None
    try:
        app = CurrentsApp(backend)
        clock = FrameClock(app)
        async with app.run_test(size=SIZE) as pilot:
            view = await open_tail(pilot, app)
            if gc_freeze:
                gc.freeze()  # what the app could do once started: full collections skip start-up objects
            assert (backend.mode == "in-process") == (setup != "console"), backend.mode
            sampler.start()
            await pilot.pause(3.0)  # let the engine reach its pace
            lags, rates = await measure_lag(pilot, view, sampler, home.store_file, seconds)
            stalls = LoopStalls()
            stalls.start()
            if slow is not None:
                slow.seen.clear()  # from here on: the key presses' window only
            cpu0, wall0 = time.process_time(), time.perf_counter()
            with GcPauses() as gc_pauses:
                latencies, missed = await measure_keys(pilot, view, clock, presses)
            cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
            await stalls.stop()
        late = stalls.late_ms
        notes = [
            f"meanwhile the event loop woke late by p50 {pct(late, 50):.1f} ms, p99 {pct(late, 99):.1f} ms, "
            f"max {max(late):.0f} ms ({sum(1 for x in late if x > 50)} times > 50 ms); "
            f"this process used {cpu:.0%} of a core; {gc_pauses.describe()}"
        ]
        if slow is not None:
            notes.append("slowest event-loop callbacks (asyncio debug mode, so slower than usual):")
            notes += [f"  {line}" for line in slow.top(6)]
        print_load_results(setup, rate, lags, rates, latencies, missed, notes)
    finally:
        sampler.stop()
        if slow is not None:
            stop_watching(slow)
        if service is not None:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(timeout=30)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait(timeout=5)


# ----------------------------------------------------------------------------- full speed


async def start_sandbox_process(root: Path) -> tuple[subprocess.Popen, str]:
    """The Segment stand-in in a process of its own (as a real Segment is elsewhere): (process, base URL)."""
    log = (root / "sandbox.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tui_currents.sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=log,
        env=child_env(),
        start_new_session=True,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
    found = re.search(rb"http://127\.0\.0\.1:\d+", line)
    if found is None:
        process.kill()
        raise RuntimeError(f"the sandbox did not say its address: {line!r}")
    threading.Thread(target=process.stdout.read, daemon=True).start()  # keep its pipe drained
    return process, found.group().decode()


def fill_backlog(home: Home, url: str, events_queued: int) -> None:
    """A home whose one connector delivers to `url`, with `events_queued` demo events already queued. Run
    in a process of its own, so that the app's process starts with none of the filling's objects (a real
    app has never generated a backlog: its garbage collector would walk them all)."""
    from tui_currents import catalog, config
    from tui_currents.config import Connector, Workspace
    from tui_currents.sources.demo import DemoGenerator
    from tui_currents.sources.ingest import Ingestor
    from tui_currents.store import Store

    config.add_workspace(home, Workspace("bench"))
    connector = Connector(
        name=DEMO_CONNECTOR, workspace="bench", contact_email="ops@example.com",
        events=catalog.supported_types(), include_anonymous=True, region="custom", endpoint=url,
    )  # fmt: skip
    config.add_connector(home, connector)
    secrets = demo_secrets(home)
    secrets.set_write_key(DEMO_CONNECTOR, "bench_" + uuid.uuid4().hex)
    generator = DemoGenerator(seed=11)
    with Store(home.store_file, synchronous="NORMAL") as store:
        ingestor = Ingestor(config.load(home), store)
        for start in range(0, events_queued, 10_000):
            ingestor.ingest("bench", generator.batch(min(10_000, events_queued - start)), source="bench")


def delivery_niceness() -> int:
    """The nice value of this process's delivery process (this process's own when there is none)."""
    for pid in service_pids(os.getpid()):
        try:
            if b"tui_currents.delivery_worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return os.getpriority(os.PRIO_PROCESS, pid)
        except OSError:
            continue
    return os.getpriority(os.PRIO_PROCESS, 0)


async def bench_full_speed(
    root: Path,
    backlog: int,
    presses: int,
    *,
    gc_freeze: bool = False,
    find_stalls: bool = False,
    show_census: bool = False,
) -> None:
    """Keypress latency in the TUI while its in-process engine delivers a queued backlog as fast as it can to
    the stand-in in another process (no generator, no receiver: all the engine does is forward)."""
    home = new_home(root, "full-speed")
    sandbox, url = await start_sandbox_process(root)
    try:
        filled = time.perf_counter()
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as filler:
            await asyncio.wrap_future(filler.submit(fill_backlog, home, url, backlog))
        filled = time.perf_counter() - filled
        # No service runs on this home: the engine runs in this process.
        backend = Backend(home, demo_secrets(home))
        app = CurrentsApp(backend)
        clock = FrameClock(app)
        async with app.run_test(size=SIZE) as pilot:
            view = await open_tail(pilot, app)
            assert backend.mode == "in-process", backend.mode
            if gc_freeze:
                gc.freeze()
            slow = watch_slow_callbacks() if find_stalls else None
            await pilot.pause(2.0)  # let the engine reach its pace
            before, began = read_counts(home.store_file), time.perf_counter()
            stalls = LoopStalls()
            stalls.start()
            cpu0, by_process = time.process_time(), service_cpu("tui")
            with GcPauses() as gc_pauses:
                latencies, missed = await measure_keys(pilot, view, clock, presses)
            elapsed = time.perf_counter() - began
            cpu = (time.process_time() - cpu0) / elapsed
            by_process = {name: t - by_process.get(name, 0.0) for name, t in service_cpu("tui").items()}
            # The app's process and its children (the mapping worker, the delivery process), not the
            # stand-in: the memory a user's app takes.
            pss = sum(pss_mb(pid) for pid in service_pids(os.getpid()) if pid != sandbox.pid)
            nice_of_delivery = delivery_niceness() - os.getpriority(os.PRIO_PROCESS, 0)
            await stalls.stop()
            if slow is not None:
                stop_watching(slow)
            census = tracked_objects() if show_census else None
            after = read_counts(home.store_file)
        delivered = after.get("delivered", 0) - before.get("delivered", 0)
        left = backlog - after.get("delivered", 0)
        late = stalls.late_ms
        print(
            f"  [full speed{', gc.freeze()' if gc_freeze else ''}] {backlog:,} events queued beforehand "
            f"(in {filled:.0f} s), delivered by the TUI's in-process engine to the stand-in in its own "
            "process"
        )
        print(
            f"    engine delivered {delivered / elapsed:,.0f} events/s while the keys were pressed; "
            f"{left:,} still queued at the end"
            + ("" if left > 0 else " (the backlog ran out: raise --backlog)")
        )
        layout = "the TUI's loop"
        if "delivery_worker" in by_process:
            layout = f"its own process (nice {nice_of_delivery:+d} against the app)"
        print(
            f"    delivery ran in {layout}; CPU per delivered event, by process: "
            + (describe_cpu({n: 1e6 * t / delivered for n, t in by_process.items()}) if delivered else "-")
        )
        if latencies:
            verdict = "meets" if pct(latencies, 99) < LATENCY_GOAL_MS else "MISSES"
            print(
                f"    keypress -> screen, {len(latencies)} presses (up/end): "
                f"p50 {pct(latencies, 50):.1f} ms, p90 {pct(latencies, 90):.1f} ms, "
                f"p99 {pct(latencies, 99):.1f} ms, max {max(latencies):.1f} ms"
                f"  ({verdict} the goal p99 < {LATENCY_GOAL_MS:.0f} ms)"
                + (f"; {missed} presses showed nothing within 2 s" if missed else "")
            )
        print(
            f"        meanwhile the event loop woke late by p50 {pct(late, 50):.1f} ms, "
            f"p99 {pct(late, 99):.1f} ms, max {max(late):.0f} ms; this process used {cpu:.0%} of a core; "
            f"{gc_pauses.describe()}"
        )
        print(
            f"        memory: the app's process peaked at {peak_rss_mb():.0f} MB RSS; at the end the app's "
            f"processes (with the mapping worker and any delivery process) held {pss:.0f} MB PSS"
        )
        if census is not None:
            print(f"        {census}")
        if slow is not None:
            print("        slowest event-loop callbacks (asyncio debug mode, so slower than usual):")
            for line in slow.top(6):
                print(f"          {line}")
    finally:
        sandbox.send_signal(signal.SIGTERM)
        try:
            sandbox.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sandbox.kill()
            sandbox.wait(timeout=5)


# ----------------------------------------------------------------------------- main


async def run(args: argparse.Namespace, root: Path) -> None:
    if not args.skip_tmux:
        if shutil.which("tmux") is None:
            print("(a) Start-up in tmux: skipped, tmux is not installed")
        else:
            bench_start_tmux(root, args.starts)
    else:
        print("(a) Start-up in tmux: skipped (--skip-tmux)")
    if args.starts > 0:
        await bench_start_in_process(root, args.starts)
    else:
        print("(a) Start-up in-process: skipped (--starts 0)")
    print(f"(b)+(c) The tail open; under load: about {args.rate:,.0f} demo events/s")
    for setup in args.setups.split(","):
        if setup.strip() == "full-speed":
            await bench_full_speed(
                root,
                args.backlog,
                args.presses,
                gc_freeze=args.gc_freeze,
                find_stalls=args.find_stalls,
                show_census=args.census,
            )
            continue
        await bench_under_load(
            root,
            setup.strip(),
            args.rate,
            args.seconds,
            args.presses,
            find_stalls=args.find_stalls,
            gc_freeze=args.gc_freeze,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10_000, help="demo events/s (default 10000)")
    parser.add_argument("--seconds", type=float, default=30, help="lag window per set-up (default 30)")
    parser.add_argument("--presses", type=int, default=150, help="key presses per set-up (default 150)")
    parser.add_argument("--starts", type=int, default=5, help="timed starts (default 5; 0 skips them)")
    parser.add_argument(
        "--setups",
        default="idle,in-process,console,full-speed",
        help="comma-separated: idle (the reference, 50 events/s), in-process, console, full-speed",
    )
    parser.add_argument(
        "--backlog", type=int, default=400_000, help="events queued for the full-speed set-up"
    )
    parser.add_argument("--skip-tmux", action="store_true", help="skip the start-up runs in tmux")
    parser.add_argument(
        "--find-stalls",
        action="store_true",
        help="asyncio debug mode: name the callbacks that block the event loop > 50 ms (slows the run)",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="call gc.freeze() once the tail is open, to see what freezing start-up objects would give",
    )
    parser.add_argument(
        "--census",
        action="store_true",
        help="full speed: print what the garbage collector walks in the app's process, by type",
    )
    args = parser.parse_args()
    os.umask(0o077)
    # Only the demo's own keyring file is used; never the OS keyring of whoever runs the bench.
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-tui-") as folder:
        asyncio.run(run(args, Path(folder)))
    print(f"total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
