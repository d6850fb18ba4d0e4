"""Hundreds of damaged Avro files through the real importer, generated with a seeded RNG from valid demo
events: the importer reports a damaged file with the reason, imports what it can, and never stops. An Avro
block claiming an impossible size has its own test at the end.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import orjson
import pytest

from tests.security.bad_input import (
    CONNECTOR,
    SEED,
    SUPPORTED,
    WORKSPACE,
    fixed_clock,
    table,
)
from tui_currents import config
from tui_currents.paths import Home
from tui_currents.sources.avro_import import import_path
from tui_currents.sources.avro_schemas import export_file_path, schema_for, write_avro_file
from tui_currents.sources.demo import DemoGenerator
from tui_currents.sources.ingest import Ingestor
from tui_currents.store import Store

pytestmark = pytest.mark.timeout(90)


# ------------------------------------------------------------------------------------------ Avro files


def _sync_marker(data: bytes) -> bytes:
    import io

    return fastavro.reader(io.BytesIO(data))._header["sync"]


def _boundaries(data: bytes) -> set[int]:
    """Offsets just after each sync marker: cutting a file there leaves a valid, shorter file."""
    sync = _sync_marker(data)
    found, at = set(), data.find(sync)
    while at != -1:
        found.add(at + len(sync))
        at = data.find(sync, at + 1)
    return found


@dataclass
class AvroFile:
    path: Path
    kind: str
    records: int
    ids: list[str]
    must_be_reported: bool


def _write_avro_files(root: Path, rng: random.Random) -> list[AvroFile]:
    gen = DemoGenerator(seed=rng.randrange(2**32), flat=True, clock=fixed_clock)
    templates: list[tuple[bytes, list[str]]] = []
    files: list[AvroFile] = []
    hour = datetime(2024, 5, 31, 12, tzinfo=UTC)
    serial = 0

    def place(data: bytes, event_type: str) -> Path:
        nonlocal serial
        serial += 1
        path = export_file_path(root, event_type, hour=hour, offset=serial)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    for n in range(12):
        event_type = rng.choice(SUPPORTED)
        records = [gen.event(event_type, anonymous=False) for _ in range(rng.randint(20, 80))]
        for k, record in enumerate(records):
            record.pop("event_type", None)
            record["id"] = f"avro-{n}-{k}"
        path = place(b"", event_type)
        write_avro_file(
            path, event_type, records, schema=schema_for(event_type, records),
            codec=rng.choice(("null", "deflate")), sync_interval=rng.choice((500, 2_000, 16_000)),
        )  # fmt: skip
        data = path.read_bytes()
        templates.append((data, [r["id"] for r in records]))
        files.append(AvroFile(path, "intact", len(records), [r["id"] for r in records], False))

    for _ in range(320):
        data, ids = rng.choice(templates)
        header_end = data.find(_sync_marker(data)) + 16
        kind = rng.choices(
            ("truncated", "empty", "magic only", "not Avro", "bytes flipped", "header scribbled",
             "sync marker broken", "garbage appended", "span zeroed"),
            (8, 1, 1, 2, 8, 3, 3, 2, 3),
        )[0]  # fmt: skip
        must = True
        if kind == "truncated":
            whole = _boundaries(data)
            broken = data[: rng.choice([c for c in range(1, len(data)) if c not in whole])]
        elif kind == "empty":
            broken = b""
        elif kind == "magic only":
            broken = b"Obj\x01"
        elif kind == "not Avro":
            broken = rng.choice(
                (rng.randbytes(rng.randint(1, 5_000)), orjson.dumps({"id": "x"}), b"PK\x03\x04zip")
            )
            must = not broken.startswith(b"Obj\x01")
        elif kind == "bytes flipped":
            buf = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                buf[rng.randrange(header_end, len(buf))] ^= 1 << rng.randrange(8)
            broken, must = bytes(buf), False
        elif kind == "header scribbled":
            buf = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                buf[rng.randrange(4, header_end - 16)] = rng.randrange(256)
            broken, must = bytes(buf), False
        elif kind == "sync marker broken":
            later = sorted(b for b in _boundaries(data) if b > header_end)
            end = rng.choice(later)  # a block's trailing marker no longer matches the header's
            buf = bytearray(data)
            buf[end - 1 - rng.randrange(16)] ^= 0xFF
            broken = bytes(buf)
        elif kind == "garbage appended":
            broken, must = data + rng.randbytes(rng.randint(1, 3_000)), False
        else:
            buf = bytearray(data)
            at, span = rng.randrange(header_end, len(buf)), rng.randint(1, 200)
            buf[at : at + span] = bytes(len(buf[at : at + span]))
            broken, must = bytes(buf), False
        event_type = rng.choice(SUPPORTED)
        files.append(AvroFile(place(broken, event_type), kind, len(ids), ids, must))
    return files


@pytest.fixture
def importer(home: Home):
    config.add_workspace(home, config.Workspace(name=WORKSPACE))
    config.add_connector(
        home,
        config.Connector(
            name=CONNECTOR, workspace=WORKSPACE, contact_email="ops@example.com", events=SUPPORTED
        ),
    )
    store = Store(home.store_file)
    try:
        yield store, Ingestor(config.load(home), store)
    finally:
        store.close()


def test_hundreds_of_damaged_avro_files_never_stop_an_import(importer, tmp_path: Path) -> None:
    store, ingestor = importer
    rng = random.Random(SEED + 1)
    root = tmp_path / "exports"
    files = _write_avro_files(root, rng)
    started = time.monotonic()

    summary = import_path(root, WORKSPACE, ingestor)

    took = time.monotonic() - started
    assert took < 30
    assert summary.files_total == len(files)
    assert summary.stopped is None
    problems = {p.path: p for p in summary.problems}
    assert summary.files_imported + len(problems) + summary.files_skipped == len(files)
    for file in files:
        problem = problems.get(file.path)
        if file.must_be_reported:
            assert problem is not None, f"{file.kind} file imported as if whole: {file.path.name}"
        if problem is not None:
            assert problem.message and "Traceback" not in problem.message and len(problem.message) < 400
            if file.kind == "truncated":
                assert problem.records_imported <= file.records
        if file.kind == "intact":
            assert problem is None
    totals = summary.totals()
    assert totals.read == (
        totals.queued
        + totals.duplicate
        + totals.not_selected
        + totals.anonymous
        + totals.unsupported
        + totals.rejected
    )
    assert store.counter_totals(CONNECTOR).get("received", 0) == totals.read
    assert (summary.queued, summary.duplicates) == (totals.queued, totals.duplicate)
    rows = store.lease(CONNECTOR, max_messages=1_000_000, max_bytes=10**10, lease_seconds=60)
    store.release(CONNECTOR, [r.seq for r in rows])
    queued_ids = {orjson.loads(r.body)["messageId"] for r in rows}
    for file in files:
        if file.kind == "intact":
            assert set(file.ids) <= queued_ids

    # Again: whole files are skipped, damaged ones reported again, nothing queued twice.
    again = import_path(root, WORKSPACE, ingestor)
    assert again.stopped is None
    assert again.files_skipped == summary.files_imported
    assert {p.path for p in again.problems} == set(problems)
    assert again.queued == 0

    kinds: dict[str, Counter] = {}
    for file in files:
        outcome = "reported" if file.path in problems else "imported whole"
        kinds.setdefault(file.kind, Counter())[outcome] += 1
    print()
    print(table("Avro files by kind -> outcome", kinds))
    print(f"{len(files)} files, {totals.read:,} records read, import took {took:.1f} s")


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_long(data: bytes, at: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), at


def test_an_avro_block_claiming_an_impossible_size_is_a_file_problem(importer, tmp_path: Path) -> None:
    """One damaged byte run in a block header (its size) makes the reader ask for exabytes: that is the
    file's problem, reported with the others; the next file is still imported."""
    store, ingestor = importer
    gen = DemoGenerator(seed=SEED, flat=True, clock=fixed_clock)
    event_type = "users.messages.email.Send"
    records = [gen.event(event_type, anonymous=False) for _ in range(10)]
    for record in records:
        record.pop("event_type", None)
    good = write_avro_file(tmp_path / "in" / "a-good.avro", event_type, records)
    data = good.read_bytes()
    after_header = data.find(_sync_marker(data)) + 16
    _, size_at = _read_long(data, after_header)  # the block's record count, then its size in bytes
    _, data_at = _read_long(data, size_at)
    bad = tmp_path / "in" / "b-bad.avro"
    bad.write_bytes(data[:size_at] + _zigzag(2**62) + data[data_at:])
    other = [dict(r, id=f"{r['id']}-2") for r in records]
    write_avro_file(tmp_path / "in" / "c-good.avro", event_type, other)

    summary = import_path(tmp_path / "in", WORKSPACE, ingestor)

    assert [p.path.name for p in summary.problems] == ["b-bad.avro"]
    assert summary.files_imported == 2
    assert store.backlog(CONNECTOR).messages == 20
