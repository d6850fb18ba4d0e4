"""What mapping one Currents event costs, in microseconds of CPU, per stage. Prints figures.

Stages: normalise (a record into one shape), map + encode (`map_event`: checks, the Segment message and its
bytes), and encode alone (orjson over the finished messages, as map_event writes them); map is the
difference. Measured with time.process_time (CPU time is less disturbed than wall time by other work on
the machine), each stage over the same events in every round. The events are a realistic mix: half the
demo generator's HTTP events, half its flat records written to Braze-like Avro files and read back with
fastavro, as the import reads them; one connector selecting every type, anonymous users included.

    .venv/bin/python bench/bench_mapping.py [--events 200000] [--distinct 20000] [--rounds 3] [--profile]

Runs against whatever `tui_currents` is on the path, so an older tree can be measured with the same
script: PYTHONPATH=/path/to/old/tree .venv/bin/python bench/bench_mapping.py
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

import fastavro
import orjson

import tui_currents
from tui_currents import catalog
from tui_currents.mapping import ConnectorRules, Fate, map_event, normalise
from tui_currents.sources.avro_schemas import write_export
from tui_currents.sources.demo import DemoGenerator

RULES = ConnectorRules(selected=frozenset(e.event_type for e in catalog.CATALOG), include_anonymous=True)


def _type_of(path: Path) -> str:
    for part in reversed(path.parts):
        if part.startswith("event_type="):
            return catalog.canonical_name(unquote(part[len("event_type=") :]))
    return ""


def records(distinct: int) -> list[object]:
    """`distinct` records: half HTTP events, half flat records read back from Avro files, interleaved."""
    http = DemoGenerator(seed=21).batch(distinct // 2)
    flat_records = DemoGenerator(seed=22, flat=True).batch(distinct - distinct // 2)
    avro: list[object] = []
    with tempfile.TemporaryDirectory(prefix="bench-mapping-") as folder:
        for path in write_export(Path(folder), flat_records):
            event_type = _type_of(path)
            with path.open("rb") as handle:
                for record in fastavro.reader(handle):
                    assert isinstance(record, dict)
                    record["event_type"] = event_type  # as the import writes the file's type in
                    avro.append(record)
    mixed: list[object] = []
    for pair in zip(http, avro, strict=False):
        mixed.extend(pair)
    return mixed


def _cpu(work) -> float:
    gc.collect()
    began = time.process_time()
    work()
    return time.process_time() - began


def measure(batch: list[object], repeat: int) -> dict[str, float]:
    """us of CPU per event for each stage, over `repeat` passes of the batch."""
    events = [normalise(record) for record in batch]
    outcomes = [map_event(event, RULES) for event in events]
    messages = [outcome.message for outcome in outcomes if outcome.fate is Fate.QUEUED]
    option = orjson.OPT_PASSTHROUGH_DATETIME

    def normalise_all() -> None:
        for _ in range(repeat):
            for record in batch:
                normalise(record)

    def map_all() -> None:
        for _ in range(repeat):
            for event in events:
                map_event(event, RULES)

    def encode_all() -> None:
        dumps = orjson.dumps
        for _ in range(repeat):
            for message in messages:
                dumps(message, option=option)

    n = len(batch) * repeat
    normalising = _cpu(normalise_all) / n * 1e6
    mapping = _cpu(map_all) / n * 1e6
    encoding = _cpu(encode_all) / n * 1e6
    return {
        "normalise": normalising,
        "map + encode": mapping,
        "map": mapping - encoding,
        "encode": encoding,
        "total": normalising + mapping,
    }


def profile(batch: list[object]) -> None:
    """cProfile of normalise + map_event over the batch, the costliest functions first."""
    profiler = cProfile.Profile()
    profiler.enable()
    for record in batch:
        map_event(normalise(record), RULES)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(14)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events mapped per stage and round")
    parser.add_argument("--distinct", type=int, default=20_000, help="distinct events, mapped in turn")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the hot path")
    args = parser.parse_args()
    load = os.getloadavg()
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; Python {sys.version.split()[0]}, "
        f"orjson {orjson.__version__}; tui_currents from {Path(tui_currents.__file__).parent.parent}"
    )
    made = time.perf_counter()
    batch = records(args.distinct)
    fates: dict[str, int] = {}
    for record in batch:
        fate = str(map_event(normalise(record), RULES).fate)
        fates[fate] = fates.get(fate, 0) + 1
    repeat = max(1, args.events // len(batch))
    print(
        f"{len(batch):,} distinct events (half HTTP, half read from Avro; {fates}), made in "
        f"{time.perf_counter() - made:.1f} s; {len(batch) * repeat:,} mapped per stage and round"
    )
    rounds = [measure(batch, repeat) for _ in range(args.rounds)]
    print(f"us of CPU per event, {args.rounds} rounds: median (lowest-highest) [each round]")
    for stage in rounds[0]:
        values = [r[stage] for r in rounds]
        each = " ".join(f"{v:.2f}" for v in values)
        print(
            f"  {stage:<13} {statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})  [{each}]"
        )
    if args.profile:
        profile(batch)


if __name__ == "__main__":
    main()
