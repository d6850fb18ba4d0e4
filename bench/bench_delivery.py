"""How fast and how lean delivery to Segment is. Prints figures; not a test.

Throughput: 200,000 Currents events of mixed types through the whole path (map, durable enqueue in a real
SQLite store, batch, HTTP) into a local Segment stand-in running in its own process; in the same run,
Segment's official `segment-analytics-python` sends the same 200,000 mapped messages to the same stand-in,
once with its defaults and once with a queue big enough to hold them all. Prints events/s and the ratio.

Memory: peak RSS of a process that queues 1,000,000 events while the endpoint is down, then drains them;
and the service as run (`tui-currents run`, with its mapping and delivery processes): the same events
posted to its receiver while the endpoint is down, then drained, its peak PSS summed over its processes.

Latency: at a steady 1,000 events/s, enqueue -> Segment's 200 (read from the store's own tail feed), p50/p99.

Per-event work (in-process: map + durable commit, no HTTP), same run, side by side: one workspace with 1
connector selecting every type, 10 and 50 connectors each selecting its own types (goal: 50 at >= 0.75 of
1's events/s); events of about 1 KB and 10 KB (cost per KB; goal: 10 KB at most half of today's per KB).

    .venv/bin/python bench/bench_delivery.py [--events N] [--repeat R] [--memory-events N]
        [--latency-seconds S] [--scaling-events N] [--compare-layouts]
        [--skip throughput|memory|service-memory|latency|scaling]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import platform
import secrets as token_source
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path

import httpx
import orjson
from process_use import PssWatch, describe_cpu, peak_rss_mb, service_cpu

from tui_currents import catalog, segment
from tui_currents.config import Config, Connector, Workspace
from tui_currents.delivery import ConnectorDelivery
from tui_currents.mapping import ConnectorRules, Fate, map_event, normalise
from tui_currents.sources.demo import DemoGenerator
from tui_currents.sources.ingest import Ingestor
from tui_currents.sources.intake import MappingPool
from tui_currents.store import Store

WORKSPACE = "bench"
CONNECTOR = "Bench"
RECEIVER_BATCH = 100  # Braze posts batches of up to 100 events
FEED_CHUNK = 1_000  # events per body of the in-process feed (a Braze request holds up to 100)
READ_AHEAD = 4  # bodies of the in-process feed being read (two per mapping process) while one is committed


# ------------------------------------------------------------------------------------------ the stand-in


class StandIn:
    """The Segment sandbox in its own process, so its CPU is not charged to the sender being measured."""

    def __init__(self, write_key: str, folder: Path):
        key_file = folder / "write-keys"
        key_file.write_text(write_key + "\n")
        key_file.chmod(0o600)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tui_currents.sandbox",
                "--write-key-file",
                str(key_file),
                "--reject-unknown-keys",
                "--keep",
                "100",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = self.proc.stdout.readline().strip()
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def stats(self) -> dict:
        return self.http.get("/_sandbox/stats").json()

    def reset(self) -> None:
        self.http.post("/_sandbox/reset")

    def faults(self, **faults) -> None:
        self.http.post("/_sandbox/faults", json=faults).raise_for_status()

    def wait_accepted(self, count: int, *, timeout: float, settle: float = 2.0) -> tuple[int, float]:
        """Wait for `count` accepted (or `settle` s with nothing new); (accepted, time of the last)."""
        deadline = time.monotonic() + timeout
        last_count, last_change = -1, time.perf_counter()
        while time.monotonic() < deadline:
            accepted = self.stats()["accepted"]
            now = time.perf_counter()
            if accepted != last_count:
                last_count, last_change = accepted, now
            if accepted >= count or now - last_change > settle:
                break
            time.sleep(0.02)
        return last_count, last_change

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------ helpers


def bench_config(url: str) -> Config:
    connector = Connector(
        name=CONNECTOR,
        workspace=WORKSPACE,
        contact_email="ops@example.com",
        region="custom",
        endpoint=url,
        events=catalog.supported_types(),
        include_anonymous=True,
    )
    return Config(workspaces=[Workspace(name=WORKSPACE)], connectors=[connector])


def make_events(n: int, seed: int = 1) -> list[dict]:
    gen = DemoGenerator(seed=seed)
    return [gen.event() for _ in range(n)]


async def deliver_until(store: Store, url: str, key: str, done: threading.Event, **options) -> None:
    """Run one connector's delivery loop until `done` is set and its outbox is empty."""
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=16)) as client:
        delivery = ConnectorDelivery(
            store, CONNECTOR, url, lambda: key, client=client, idle_poll_seconds=0.01, **options
        )
        task = asyncio.create_task(delivery.run())
        while not (done.is_set() and store.backlog(CONNECTOR).messages == 0):
            await asyncio.sleep(0.02)
        await delivery.stop()
        await task


# ------------------------------------------------------------------------------------------ throughput


def ours(stand_in: StandIn, key: str, bodies: list[bytes], folder: Path, durability: str) -> dict:
    """Currents bodies (as Braze posts them, JSON) read in the receiver's mapping processes and committed
    durably here, a few ahead, while delivery runs: the receiver's path without its HTTP server."""
    store = Store(folder / "throughput.db", synchronous=durability)
    ingestor = Ingestor(bench_config(stand_in.url), store)
    connectors = ingestor.connector_rules(WORKSPACE)
    mapping = MappingPool()
    mapping.wait_ready()  # the workers are up before the clock starts
    done = threading.Event()
    events = 0

    def receive() -> None:
        reading: deque = deque()

        def commit_next() -> None:
            nonlocal events
            count, batch = reading.popleft().result()
            store.commit(batch, source="bench")
            events += count

        for number, body in enumerate(bodies):  # taking turns, as the receiver's requests do
            part = mapping.parts[number % len(mapping.parts)]
            reading.append(part.submit(WORKSPACE, connectors, body))
            if len(reading) > READ_AHEAD:
                commit_next()
        while reading:
            commit_next()
        done.set()

    stand_in.reset()
    start = time.perf_counter()
    feeder = threading.Thread(target=receive)
    feeder.start()
    asyncio.run(deliver_until(store, stand_in.url + "/v1/batch", key, done))
    feeder.join()
    accepted, last = stand_in.wait_accepted(events, timeout=120)
    elapsed = last - start
    mapping.close()
    store.close()
    return {"accepted": accepted, "seconds": elapsed, "rate": accepted / elapsed}


def ours_via_receiver(
    stand_in: StandIn, key: str, n: int, folder: Path, durability: str, senders: int,
    delivery_process: bool | None = None,
) -> dict:  # fmt: skip
    """The real engine (receiver + store + delivery) with Braze-like senders in another process."""
    from bench_ingest import TOKEN, _measure

    from tui_currents import config
    from tui_currents.engine import Engine, EngineOptions
    from tui_currents.paths import Home
    from tui_currents.secrets import Secrets, receiver_token_env_var, write_key_env_var

    layout = {None: "", True: "-process", False: "-inline"}[delivery_process]
    home = Home.at(folder / f"home-{durability}{layout}").ensure()
    cfg = bench_config(stand_in.url)
    cfg.durability = durability.lower()
    config.save(home, cfg)
    os.environ[write_key_env_var(CONNECTOR)] = key
    os.environ[receiver_token_env_var(WORKSPACE)] = TOKEN
    stand_in.reset()

    said: list[str] = []  # what the delivery process says when it stops: its writes' times (lock waits)
    heard = logging.getLogger("tui_currents.delivery_worker")
    heard.setLevel(logging.INFO)
    listener = _Lines(said)
    heard.addHandler(listener)

    async def run() -> dict:
        engine = Engine(
            home,
            Secrets(home, backend="file", passphrase="bench"),
            EngineOptions(receiver_port=0, delivery_process=delivery_process),
        )
        await engine.start()
        try:
            await asyncio.sleep(1.0)  # the children have started: their start-up is not counted
            cpu_before = service_cpu()
            url = f"{engine.receiver_url}/currents/{WORKSPACE}"
            sent = await _measure(url, n // RECEIVER_BATCH, RECEIVER_BATCH, 5, senders, 600)
            start = sent["started_at"]  # the senders' start-up and the making of their bodies not counted
            accepted, last = await asyncio.to_thread(stand_in.wait_accepted, n, timeout=300)
            cpu_after = service_cpu()
            cpu_us = {
                name: 1e6 * (seconds - cpu_before.get(name, 0.0)) / max(1, accepted)
                for name, seconds in cpu_after.items()
            }
            seconds = last - start
            return {"accepted": accepted, "seconds": seconds, "statuses": sent["statuses"], "cpu": cpu_us}
        finally:
            await engine.stop()

    try:
        result = asyncio.run(run())
    finally:
        heard.removeHandler(listener)
    result["rate"] = result["accepted"] / result["seconds"]
    result["writes"] = " ".join(line.removeprefix("delivery process: ") for line in said)
    return result


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]):
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def official(stand_in: StandIn, key: str, messages: list[dict], *, max_queue_size: int | None) -> dict:
    from segment.analytics import Client

    stand_in.reset()
    options = {} if max_queue_size is None else {"max_queue_size": max_queue_size}
    client = Client(key, host=stand_in.url, **options)
    refused = 0
    start = time.perf_counter()
    for m in messages:
        ok, _ = client.track(
            user_id=m.get("userId"),
            anonymous_id=m.get("anonymousId"),
            event=m["event"],
            properties=m.get("properties"),
            context=m.get("context"),
            timestamp=m["_ts"],
            message_id=m["messageId"],
        )
        refused += not ok
    client.flush()
    accepted, last = stand_in.wait_accepted(len(messages) - refused, timeout=600)
    elapsed = last - start
    client.shutdown()
    return {"accepted": accepted, "refused": refused, "seconds": elapsed, "rate": accepted / elapsed}


def mapped_messages(events: list[dict]) -> list[dict]:
    rules = ConnectorRules(selected=frozenset(catalog.supported_types()), include_anonymous=True)
    out = []
    for event in events:
        outcome = map_event(normalise(event), rules)
        if outcome.fate is Fate.QUEUED:
            message = dict(outcome.message)
            message["_ts"] = datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))
            out.append(message)
    return out


# ------------------------------------------------------------------------------------------ per-event work


def split_config(url: str, connectors: int) -> Config:
    """One workspace whose `connectors` connectors each select their own share of the supported types."""
    types = catalog.supported_types()
    return Config(
        workspaces=[Workspace(name=WORKSPACE)],
        connectors=[
            Connector(
                name=f"{CONNECTOR} {i + 1}",
                workspace=WORKSPACE,
                contact_email="ops@example.com",
                region="custom",
                endpoint=url,
                events=types[i::connectors],
                include_anonymous=True,
            )
            for i in range(connectors)
        ],
    )


def padded_events(n: int, message_bytes: int, seed: int = 5) -> list[dict]:
    """Demo events with a `note` property that brings their Segment message to about `message_bytes`."""
    events = make_events(n, seed=seed)
    rules = ConnectorRules(selected=frozenset(catalog.supported_types()), include_anonymous=True)
    for event in events:
        outcome = map_event(normalise(event), rules)
        size = len(outcome.encoded) if outcome.encoded is not None else 800
        event["properties"]["note"] = "x" * max(0, message_bytes - size - 10)
    return events


def written_bytes() -> int:
    """Bytes this process has handed to write() so far (the store's WAL and checkpoints), or 0 if unknown."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def ingest_rates(
    rows: dict[str, tuple[Config, list[dict]]], folder: Path, durability: str
) -> dict[str, dict]:
    """Per row: events/s, CPU and bytes written per event of map + durable commit, FEED_CHUNK events a
    commit. The rows take turns chunk by chunk, so that a load that comes and goes on the machine weighs
    on each about as much."""
    stores = {label: Store(folder / f"{label}.db", synchronous=durability) for label in rows}
    ingestors = {label: Ingestor(config, stores[label]) for label, (config, _) in rows.items()}
    wall = dict.fromkeys(rows, 0.0)
    cpu = dict.fromkeys(rows, 0.0)
    written = dict.fromkeys(rows, 0)
    longest = max(len(events) for _, events in rows.values())
    for i in range(0, longest, FEED_CHUNK):
        for label, (_, events) in rows.items():
            if i >= len(events):
                continue
            w0, c0, b0 = time.perf_counter(), time.process_time(), written_bytes()
            ingestors[label].ingest(WORKSPACE, events[i : i + FEED_CHUNK], source="bench")
            wall[label] += time.perf_counter() - w0
            cpu[label] += time.process_time() - c0
            written[label] += written_bytes() - b0
    out = {}
    for label, (config, events) in rows.items():
        queued = sum(stores[label].backlog(c.name).bytes for c in config.connectors)
        stores[label].close()
        n = len(events)
        out[label] = {
            "rate": n / wall[label],
            "cpu_us": 1e6 * cpu[label] / n,
            "kb_per_event": queued / 1000 / n,
            "written_per_byte": written[label] / queued if queued else 0.0,
        }
    return out


def scaling(stand_in: StandIn, folder: Path, args: argparse.Namespace) -> None:
    """Connectors 1/10/50 and events of 1 KB/10 KB, each round side by side."""
    n = args.scaling_events
    events = make_events(n, seed=7)
    small, large = padded_events(n, 1_000), padded_events(max(n // 4, FEED_CHUNK), 10_000)
    gc.collect()
    print(
        f"\nper-event work (map + durable commit, {FEED_CHUNK:,} events a commit, in-process, rows taking "
        f"turns chunk by chunk), durability {args.durability}, {args.repeat} rounds"
    )
    ratios: list[tuple[float, float, float]] = []
    for n_round in range(1, args.repeat + 1):
        here = folder / f"scaling-{n_round}"
        here.mkdir()
        rows = {f"c{count}": (split_config(stand_in.url, count), events) for count in (1, 10, 50)}
        rows["1kb"] = (bench_config(stand_in.url), small)
        rows["10kb"] = (bench_config(stand_in.url), large)
        r = ingest_rates(rows, here, args.durability)
        per_kb = {k: 1e6 / (r[k]["rate"] * r[k]["kb_per_event"]) for k in ("1kb", "10kb")}
        print(
            f"  round {n_round}: connectors 1 {r['c1']['rate']:,.0f} events/s, 10 {r['c10']['rate']:,.0f} "
            f"({r['c10']['rate'] / r['c1']['rate']:.2f}), 50 {r['c50']['rate']:,.0f} "
            f"({r['c50']['rate'] / r['c1']['rate']:.2f}); CPU us/event {r['c1']['cpu_us']:.0f} / "
            f"{r['c10']['cpu_us']:.0f} / {r['c50']['cpu_us']:.0f}"
        )
        print(
            "           "
            + "; ".join(
                f"{r[k]['kb_per_event']:.1f} KB events {r[k]['rate']:,.0f}/s: {per_kb[k]:.1f} us/KB, "
                f"CPU {r[k]['cpu_us'] / r[k]['kb_per_event']:.1f} us/KB, "
                f"{r[k]['written_per_byte']:.2f} bytes written per message byte"
                for k in ("1kb", "10kb")
            )
        )
        ratios.append((r["c50"]["rate"] / r["c1"]["rate"], per_kb["1kb"], per_kb["10kb"]))
    fifty, small_kb, large_kb = (statistics.median(column) for column in zip(*ratios, strict=True))
    print(
        f"  medians: 50 connectors at {fifty:.2f} of 1 connector's events/s (goal >= 0.75); "
        f"cost per KB {small_kb:.1f} us (1 KB events), {large_kb:.1f} us (10 KB events)"
    )


# ------------------------------------------------------------------------------------------ memory


def memory_child(url: str, key: str, n: int, db: str) -> None:
    """Queue n events with the endpoint down, then drain them; print peak RSS (MB) and timings."""
    store = Store(db, synchronous="FULL")
    ingestor = Ingestor(bench_config(url), store)
    gen = DemoGenerator(seed=3)
    start = time.perf_counter()
    for _ in range(0, n, 1000):
        ingestor.ingest(WORKSPACE, gen.batch(1000), source="bench")
    queued_at = time.perf_counter()
    backlog = store.backlog(CONNECTOR).messages
    rss_queued = peak_rss_mb()
    httpx.post(url + "/_sandbox/faults", json={"outage": False}).raise_for_status()
    done = threading.Event()
    done.set()
    asyncio.run(deliver_until(store, url + "/v1/batch", key, done))
    drained_at = time.perf_counter()
    peak = peak_rss_mb()
    print(
        orjson.dumps(
            {
                "backlog": backlog,
                "queue_seconds": queued_at - start,
                "drain_seconds": drained_at - queued_at,
                "rss_after_queue_mb": rss_queued,
                "peak_rss_mb": peak,
                "db_mb": os.path.getsize(db) / 1e6,
            }
        ).decode()
    )


def memory(stand_in: StandIn, key: str, n: int, folder: Path) -> dict:
    stand_in.reset()
    stand_in.faults(outage=True)
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", stand_in.url, str(n), str(folder / "memory.db")],
        input=key,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    result = orjson.loads(out.stdout.strip().splitlines()[-1])
    result["delivered"] = stand_in.stats()["accepted"]
    return result


def memory_service(stand_in: StandIn, key: str, n: int, folder: Path, durability: str) -> dict:
    """`tui-currents run` as its own process: n events posted to its receiver while the endpoint is down,
    then drained; the peak PSS summed over the service's processes (shared pages counted once)."""
    from bench_ingest import TOKEN, _measure

    from tui_currents import config
    from tui_currents.paths import Home
    from tui_currents.secrets import receiver_token_env_var, write_key_env_var

    home = Home.at(folder / "memory-home").ensure()
    cfg = bench_config(stand_in.url)
    cfg.durability = durability.lower()
    config.save(home, cfg)
    env = {**os.environ, write_key_env_var(CONNECTOR): key, receiver_token_env_var(WORKSPACE): TOKEN}
    stand_in.reset()
    stand_in.faults(outage=True)
    port = _free_port()
    engine = subprocess.Popen(
        [sys.executable, "-m", "tui_currents", "--home", str(home.root), "run", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        with PssWatch(engine.pid) as watch:
            sent = asyncio.run(
                _measure(f"{url}/currents/{WORKSPACE}", n // RECEIVER_BATCH, RECEIVER_BATCH, 3, 8, 1800)
            )
            start = sent["started_at"]
            queued_at = time.perf_counter()
            after_queue = watch.sample()
            stand_in.faults(outage=False)
            # After a long outage the service tries again at its backoff's ceiling (60 s): wait that long
            # and more for the first delivery before taking "nothing new" for the end.
            accepted, last = stand_in.wait_accepted(
                n, timeout=1800, settle=segment.BACKOFF_CAP_SECONDS + 30.0
            )
        engine.terminate()
        engine.wait(60)
    finally:
        if engine.poll() is None:
            engine.kill()
    return {
        "queued": sent["batches"] * RECEIVER_BATCH,
        "queue_seconds": queued_at - start,
        "drain_seconds": last - queued_at,
        "delivered": accepted,
        "pss_after_queue_mb": after_queue,
        "peak_pss_mb": watch.peak,
        "peak_parts_mb": watch.peak_parts,
        "db_mb": home.store_file.stat().st_size / 1e6,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------ latency


def latency(stand_in: StandIn, key: str, seconds: float, rate: float, folder: Path) -> dict:
    stand_in.reset()
    store = Store(folder / "latency.db", synchronous="FULL")
    ingestor = Ingestor(bench_config(stand_in.url), store)
    done = threading.Event()

    def steady() -> None:
        gen = DemoGenerator(seed=9)
        per_tick, tick = int(rate / 20), 1 / 20  # 20 commits a second, like a receiver under steady load
        start = time.perf_counter()
        for i in range(int(seconds * 20)):
            ingestor.ingest(WORKSPACE, gen.batch(per_tick), source="bench")
            time.sleep(max(0.0, start + (i + 1) * tick - time.perf_counter()))
        done.set()

    feeder = threading.Thread(target=steady)
    feeder.start()
    asyncio.run(deliver_until(store, stand_in.url + "/v1/batch", key, done))
    feeder.join()
    # The tail feed holds each event's enqueue time and the time its batch was answered 200.
    queued, delivered = {}, {}
    after = 0
    while True:
        rows = store.tail(after=after, limit=5000, connector=CONNECTOR)
        if not rows:
            break
        after = rows[-1].seq
        for row in rows:
            if row.update and row.fate == "delivered":
                delivered[row.message_id] = row.at
            elif not row.update and row.fate == "queued":
                queued[row.message_id] = row.at
    store.close()
    lat = sorted(delivered[m] - queued[m] for m in delivered if m in queued)
    if not lat:
        return {"samples": 0}
    return {
        "samples": len(lat),
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[int(len(lat) * 0.99) - 1],
        "max_ms": 1000 * lat[-1],
        "mean_ms": 1000 * statistics.fmean(lat),
    }


# ------------------------------------------------------------------------------------------ main


def throughput(stand_in: StandIn, key: str, folder: Path, args: argparse.Namespace) -> None:
    """Every sender `args.repeat` times, interleaved, then the medians and the ratios of each round: the
    official library's figure with its defaults swings from run to run with how much of its input it drops,
    so one round says little on its own."""
    logging.getLogger("segment").setLevel(logging.CRITICAL)  # it logs every refused event; they are counted
    events = make_events(args.events)
    messages = mapped_messages(events)
    bodies = [orjson.dumps({"events": events[i : i + FEED_CHUNK]}) for i in range(0, len(events), FEED_CHUNK)]
    gc.collect()
    gc.freeze()  # the prepared inputs are not garbage: keep the collector off them for all senders
    print(
        f"\nthroughput: {len(events):,} events ({len(messages):,} mapped messages), "
        f"durability {args.durability}, {args.repeat} rounds"
    )
    rounds = []
    for n in range(1, args.repeat + 1):
        here = folder / f"round-{n}"
        here.mkdir()
        a = ours(stand_in, key, bodies, here, args.durability)
        # Compared, each layout is named; otherwise the receiver row runs the default layout.
        inline = False if args.compare_layouts else None
        r = ours_via_receiver(
            stand_in, key, len(events), here, args.durability, senders=8, delivery_process=inline
        )
        if r["writes"]:
            print(f"  round {n}: the delivery process's {r['writes']}")
        apart = None
        if args.compare_layouts:
            apart = ours_via_receiver(
                stand_in, key, len(events), here, args.durability, senders=8, delivery_process=True
            )
            if apart["writes"]:
                print(f"  round {n}: the delivery process's {apart['writes']}")
        b = official(stand_in, key, messages, max_queue_size=None)
        c = official(stand_in, key, messages, max_queue_size=len(messages) + 1)
        print(
            f"  round {n}: tui-currents in-process feed {a['rate']:,.0f}/s ({a['accepted']:,} delivered); "
            f"through the receiver {r['rate']:,.0f}/s ({r['accepted']:,}, answers {r['statuses']}); "
            f"segment-analytics-python defaults {b['rate']:,.0f}/s ({b['accepted']:,} delivered, "
            f"{b['refused']:,} refused by its full queue), with a queue of {len(messages) + 1:,} "
            f"{c['rate']:,.0f}/s ({c['accepted']:,})"
        )
        print(f"  round {n}: CPU per event through the receiver, by process: {describe_cpu(r['cpu'])}")
        if apart is not None:
            print(
                f"  round {n}: through the receiver with delivery in its own process "
                f"{apart['rate']:,.0f}/s: {apart['rate'] / c['rate']:.1f}x the big queue, against "
                f"{r['rate'] / c['rate']:.1f}x with delivery in the engine's process"
            )
            print(f"  round {n}: CPU per event, delivery in its own process: {describe_cpu(apart['cpu'])}")
        rounds.append((a["rate"], r["rate"], b["rate"], c["rate"]))
    ours_in, ours_rx, lib, lib_big = (statistics.median(column) for column in zip(*rounds, strict=True))
    print(
        "  medians: tui-currents in-process feed (map + durable enqueue + batch + HTTP) "
        f"{ours_in:,.0f} events/s; engine with 8 Braze-like senders -> receiver -> store -> Segment "
        f"{ours_rx:,.0f}; segment-analytics-python defaults {lib:,.0f}, with a big queue {lib_big:,.0f}"
    )
    for label, column in (("in-process feed", 0), ("through the receiver", 1)):
        to_defaults = ", ".join(f"{row[column] / row[2]:.1f}x" for row in rounds)
        to_big = ", ".join(f"{row[column] / row[3]:.1f}x" for row in rounds)
        print(
            f"  ratio per round ({label}): {to_defaults} the official library's defaults;"
            f" {to_big} with its big queue"
        )
    gc.unfreeze()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the throughput comparison")
    parser.add_argument("--memory-events", type=int, default=1_000_000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--latency-rate", type=float, default=1000.0)
    parser.add_argument("--durability", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument(
        "--compare-layouts",
        action="store_true",
        help="also run the receiver row with delivery in its own process (TUI_CURRENTS_DELIVERY_PROCESS=1)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["throughput", "memory", "service-memory", "latency", "scaling"],
    )
    parser.add_argument("--scaling-events", type=int, default=20_000, help="events per per-event-work row")
    parser.add_argument("--memory-child", nargs=3, metavar=("URL", "N", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        url, n, db = args.memory_child
        memory_child(url, sys.stdin.read().strip(), int(n), db)
        return

    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    key = "bench_" + token_source.token_urlsafe(24)  # this run's stand-in key, never stored
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stand_in = StandIn(key, folder)
        try:
            if "throughput" not in args.skip:
                throughput(stand_in, key, folder, args)
            if "scaling" not in args.skip:
                scaling(stand_in, folder, args)
            if "memory" not in args.skip:
                print(f"\nmemory: {args.memory_events:,} events queued with the endpoint down, then drained")
                m = memory(stand_in, key, args.memory_events, folder)
                print(
                    f"  queued {m['backlog']:,} in {m['queue_seconds']:.1f} s, drained in "
                    f"{m['drain_seconds']:.1f} s, delivered {m['delivered']:,}; store {m['db_mb']:.0f} MB"
                )
                print(
                    f"  peak RSS {m['peak_rss_mb']:.0f} MB "
                    f"(after queueing {m['rss_after_queue_mb']:.0f} MB); goal <= 200 MB"
                )
            if "service-memory" not in args.skip:
                print(
                    f"\nmemory of the service (`run`, every process): {args.memory_events:,} events "
                    "posted to its receiver with the endpoint down, then drained"
                )
                sm = memory_service(stand_in, key, args.memory_events, folder, args.durability)
                parts = " + ".join(f"{p:.0f}" for p in sm["peak_parts_mb"])
                print(
                    f"  queued {sm['queued']:,} in {sm['queue_seconds']:.1f} s, drained in "
                    f"{sm['drain_seconds']:.1f} s, delivered {sm['delivered']:,}; store {sm['db_mb']:.0f} MB"
                )
                print(
                    f"  peak PSS summed over the service's processes {sm['peak_pss_mb']:.0f} MB ({parts}); "
                    f"after queueing {sm['pss_after_queue_mb']:.0f} MB; goal <= 200 MB"
                )
            if "latency" not in args.skip:
                print(
                    f"\nlatency: {args.latency_rate:,.0f} events/s for {args.latency_seconds:.0f} s, "
                    "enqueue -> Segment 200"
                )
                lat = latency(stand_in, key, args.latency_seconds, args.latency_rate, folder)
                if lat["samples"]:
                    print(
                        f"  {lat['samples']:,} events: p50 {lat['p50_ms']:.0f} ms, "
                        f"p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms; goal p99 < 1000 ms"
                    )
                else:
                    print("  no samples: the tail feed held no delivered rows")
        finally:
            stand_in.close()


if __name__ == "__main__":
    main()
