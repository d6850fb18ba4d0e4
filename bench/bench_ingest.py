"""How fast events get in: the receiver under Braze-like load, and the Avro import. Prints figures.

Receiver: 8 concurrent senders (aiohttp, in another process) post batches of 100 Currents events to the
receiver on 127.0.0.1, first with every batch committed to a real store file, then with the same server
answering 200 without storing; it prints accepted events/s for both and their ratio (goal: >= 20,000
events/s stored).

Import: Braze-like Avro files read, mapped and committed to the store, against a plain fastavro read of
the same files, in rounds (each round reads plainly, then imports into a fresh store); it prints both
rates, their ratio (goal: >= 0.8 in every round), the load, and the CPU each spends per event (here and
in the import's worker processes). The CPU figures bound the ratio whatever else runs: with the cores
busy, the import gets about the CPU time the plain read gets, so the ratio tends to that of their CPU.
`PYTHONPATH=/path/to/other/tree` measures another tree's code with the same script (run the two in
alternation to compare them on a shared machine).

    .venv/bin/python bench/bench_ingest.py [--events 40000] [--import-events 100000] [--rounds 3]
        [--durability full] [--only receiver|import]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

import fastavro
import orjson

from tui_currents import catalog
from tui_currents.config import Config, Connector, ReceiverSettings, Workspace
from tui_currents.sources.avro_import import import_path
from tui_currents.sources.avro_schemas import write_export
from tui_currents.sources.demo import DemoGenerator
from tui_currents.sources.import_workers import workers_wanted
from tui_currents.sources.ingest import Ingestor
from tui_currents.sources.receiver import Receiver
from tui_currents.store import Store

WORKSPACE = "bench"
CONNECTOR = "Bench"
TOKEN = "bench-token-0123456789abcdef"  # the receiver's token for this run only, never stored


def _config() -> Config:
    return Config(
        workspaces=[Workspace(WORKSPACE)],
        connectors=[
            Connector(
                name=CONNECTOR,
                workspace=WORKSPACE,
                contact_email="ops@example.com",
                events=catalog.supported_types(),
                include_anonymous=True,
            )
        ],
    )


class _NothingStored(Ingestor):
    """Gives the workspace no connector and commits nothing: the receiver's cost alone (HTTP, handing the
    body to the mapping process, JSON; each event only looked up, since no connector selects it)."""

    def __init__(self, config: Config, store: Store):
        super().__init__(config, store)
        self.store = _Discard()

    def connector_rules(self, workspace: str):
        super().connector_rules(workspace)  # still refuses unknown workspaces
        return ()


class _Discard:
    def commit(self, batch, *, source: str) -> None:
        return None


# ----------------------------------------------------------------------------------------- the senders


def _bodies(batches: int, batch_size: int, seed: int) -> list[bytes]:
    generator = DemoGenerator(seed=seed)
    return [orjson.dumps({"events": generator.batch(batch_size)}) for _ in range(batches)]


async def _send_all(url: str, bodies: list[bytes], senders: int, seconds: float) -> dict:
    import aiohttp

    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Braze-Currents-Version": "1",
        "Content-Type": "application/json",
    }
    statuses: Counter[int] = Counter()
    sent = 0
    next_body = 0
    deadline = time.perf_counter() + seconds

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal next_body, sent
        while next_body < len(bodies) and time.perf_counter() < deadline:
            body = bodies[next_body]
            next_body += 1
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                statuses[response.status] += 1
                if response.status == 200:
                    sent += 1

    connector = aiohttp.TCPConnector(limit=senders)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.perf_counter()
        await asyncio.gather(*(sender(session) for _ in range(senders)))
        elapsed = time.perf_counter() - began
    return {"batches": sent, "seconds": elapsed, "statuses": dict(statuses)}


def _sender_process(
    url: str, batches: int, batch_size: int, seed: int, senders: int, seconds: float, pipe
) -> None:
    bodies = _bodies(batches, batch_size, seed)  # made before the clock starts
    pipe.send("ready")
    pipe.recv()
    pipe.send(asyncio.run(_send_all(url, bodies, senders, seconds)))


async def _measure(url: str, batches: int, batch_size: int, seed: int, senders: int, seconds: float) -> dict:
    """What the senders sent and were answered; `started_at` (this process's perf_counter) is when they were
    told to go, once their process had started and made its bodies."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(
        target=_sender_process, args=(url, batches, batch_size, seed, senders, seconds, theirs), daemon=True
    )
    process.start()
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, ours.recv) == "ready"
    started_at = time.perf_counter()
    ours.send("go")
    result = await loop.run_in_executor(None, ours.recv)
    result["started_at"] = started_at
    await loop.run_in_executor(None, process.join, 30)
    return result


async def bench_receiver(folder: Path, events: int, senders: int, seconds: float, durability: str) -> None:
    batch_size = 100
    batches = max(senders, events // batch_size)
    store = Store(folder / "receiver.db", synchronous=durability)
    config = _config()
    storing = Ingestor(config, store)
    current: list[Ingestor] = [storing]
    receiver = Receiver(
        lambda: current[0], lambda w: TOKEN if w == WORKSPACE else None, ReceiverSettings(port=0)
    )
    base = await receiver.start("127.0.0.1", 0)
    url = f"{base}/currents/{WORKSPACE}"
    try:
        stored = await _measure(url, batches, batch_size, 1, senders, seconds)
        queued = store.backlog(CONNECTOR).messages
        current[0] = _NothingStored(config, store)  # the same server, from now on storing nothing
        bare = await _measure(url, batches, batch_size, 2, senders, seconds)
    finally:
        await receiver.stop()
        store.close()
    rate = stored["batches"] * batch_size / stored["seconds"]
    bare_rate = bare["batches"] * batch_size / bare["seconds"]
    print(
        f"Receiver: {senders} concurrent senders, batches of {batch_size} events (synchronous={durability})"
    )
    print(
        f"  stored:             {rate:>10,.0f} events/s  ({stored['batches'] * batch_size:,} events in "
        f"{stored['seconds']:.2f} s, answers {stored['statuses']}, {queued:,} queued in the store)"
    )
    print(
        f"  answered, no store: {bare_rate:>10,.0f} events/s  ({bare['batches'] * batch_size:,} events in "
        f"{bare['seconds']:.2f} s, answers {bare['statuses']})"
    )
    print(f"  ratio stored / no store: {rate / bare_rate:.2f}   goal: >= 20,000 events/s stored")


# ------------------------------------------------------------------------------------------- the import


def _plain_read(files: list[Path]) -> tuple[int, float, float]:
    """(records, wall seconds, CPU seconds) of reading the files with fastavro and nothing else."""
    cpu, began = time.process_time(), time.perf_counter()
    records = 0
    for path in files:
        with path.open("rb") as handle:
            for _ in fastavro.reader(handle):
                records += 1
    return records, time.perf_counter() - began, time.process_time() - cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_import(folder: Path, events: int, durability: str, rounds: int) -> None:
    generator = DemoGenerator(seed=3, flat=True)
    made = time.perf_counter()
    files = write_export(folder / "bucket", (generator.event() for _ in range(events)))
    made = time.perf_counter() - made
    size = sum(path.stat().st_size for path in files)
    workers = workers_wanted(size)
    print(
        f"Import: {events:,} events in {len(files)} Avro files, {size / 1e6:.0f} MB (written in "
        f"{made:.1f} s), {workers} worker processes, {os.cpu_count()} cores, synchronous={durability}"
    )
    print("  goal: import (read, map, commit) >= 0.8 of a plain fastavro read, in every round")
    ratios = []
    for number in range(1, rounds + 1):
        plain, plain_seconds, plain_cpu = _plain_read(files)
        # A store of its own each round: the imported-files table would skip every file the second time.
        store = Store(folder / f"import-{number}.db", synchronous=durability)
        ingestor = Ingestor(_config(), store)
        try:
            cpu, children = time.process_time(), _children_cpu()
            real = import_path(folder / "bucket", WORKSPACE, ingestor)
            cpu, children = time.process_time() - cpu, _children_cpu() - children
        finally:
            store.close()
        assert real.ok and real.queued == plain == events, (real.stopped, real.problems, real.queued)
        plain_rate, rate = plain / plain_seconds, real.events_read / real.elapsed
        ratios.append(rate / plain_rate)
        # The ratio the CPU figures allow: when other work keeps both cores busy, the import gets about
        # the CPU time the plain read gets (one share for the session), so the ratio is that of the CPU
        # spent per event; with two cores to itself, at most twice that.
        cpu_ratio = plain_cpu / (cpu + children)
        print(
            f"  round {number} (load {os.getloadavg()[0]:.1f}): plain fastavro read {plain_rate:>8,.0f} "
            f"events/s   import {rate:>8,.0f} events/s   ratio {rate / plain_rate:.2f}\n"
            f"    CPU per event: plain read {plain_cpu / plain * 1e6:.0f} us, import "
            f"{cpu / plain * 1e6:.0f} us here + {children / plain * 1e6:.0f} us in workers; ratio of CPU "
            f"{cpu_ratio:.2f} (the bound when the cores are busy; on two idle cores "
            f"{min(1.0, 2 * cpu_ratio):.2f})"
        )
    print(f"  ratio: lowest {min(ratios):.2f}, highest {max(ratios):.2f} (goal >= 0.8 in every round)")
    store = Store(folder / "dry-run.db", synchronous=durability)
    try:
        dry = import_path(folder / "bucket", WORKSPACE, Ingestor(_config(), store), dry_run=True)
    finally:
        store.close()
    print(f"  read + map only (dry run): {dry.rate:>8,.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40_000, help="events per receiver phase")
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0, help="at most this long per receiver phase")
    parser.add_argument("--import-events", type=int, default=100_000)
    parser.add_argument("--durability", choices=["full", "normal"], default="full")
    parser.add_argument(
        "--rounds", type=int, default=3, help="import rounds (each against its own plain read)"
    )
    parser.add_argument("--only", choices=["receiver", "import"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tui-currents-bench-") as tmp:
        folder = Path(tmp)
        if args.only in (None, "receiver"):
            asyncio.run(
                bench_receiver(folder, args.events, args.senders, args.seconds, args.durability.upper())
            )
        if args.only in (None, "import"):
            bench_import(folder, args.import_events, args.durability.upper(), max(1, args.rounds))


if __name__ == "__main__":
    main()
