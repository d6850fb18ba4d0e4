"""Reading Currents bodies in the mapping process: the same result as in this process, no batch lost when
the worker dies, and the store's form of a batch (`Received`) committed like the mapped items it holds."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import TimeoutError as FuturesTimeout
from pathlib import Path

import orjson
import pytest

from tui_currents import catalog, child_process
from tui_currents.config import Config, Connector, Workspace
from tui_currents.received import Received
from tui_currents.sources import intake
from tui_currents.sources.batch_body import NotABatch
from tui_currents.sources.ingest import Ingestor
from tui_currents.sources.intake import MappingPool, MappingProcess
from tui_currents.store import Store

from .fixtures.currents_events import EVENTS, event

pytestmark = pytest.mark.timeout(60)

WORKSPACE = "marketing"
SUPPORTED = [e.event_type for e in catalog.CATALOG if e.supported]


def _config() -> Config:
    half = len(SUPPORTED) // 2
    return Config(
        workspaces=[Workspace(WORKSPACE)],
        connectors=[
            Connector(name="A", workspace=WORKSPACE, contact_email="a@example.com", events=SUPPORTED[:half]),
            Connector(
                name="B", workspace=WORKSPACE, contact_email="b@example.com", events=SUPPORTED[half:],
                include_anonymous=True,
            ),
        ],
    )  # fmt: skip


def _mixed_events(prefix: str) -> list[object]:
    """Every event type, an anonymous one, an invalid one, an unknown type, a duplicate and a non-object."""
    events: list[object] = []
    for number, item in enumerate(EVENTS.values()):
        item = dict(item, id=f"{prefix}-{number}")
        events.append(item)
    anonymous = event(SUPPORTED[-1])
    anonymous["id"] = f"{prefix}-anon"
    anonymous["user"] = {"user_id": "65f1c0a2b3d4e5f601234567"}
    no_id = event(SUPPORTED[0])
    del no_id["id"]
    unknown = dict(event(SUPPORTED[1]), event_type="users.something.new", id=f"{prefix}-new")
    return [*events, anonymous, no_id, unknown, events[0], 42]


def _body(events: list[object]) -> bytes:
    return orjson.dumps({"events": events})


@pytest.fixture
def ingestor(tmp_path: Path) -> Ingestor:
    return Ingestor(_config(), Store(tmp_path / "unused.db"))


def _stored(path: Path, batch: Received) -> dict:
    """What a store holds after committing the batch (its tail, counters, backlog and dead letters)."""
    with Store(path) as store:
        store.commit(batch, source="test", now=1_700_000_000.0)
        return {
            "tail": [(r.connector, r.fate, r.message_id, r.reason, r.event_type) for r in store.tail()],
            "counters": store.counters(),
            "backlog": {c: store.backlog(c).messages for c in ("A", "B")},
            "dead": sorted((d.connector, d.reason) for d in store.dead_letters()),
        }


def _wait_ready(mapping: MappingProcess) -> None:
    assert mapping.wait_ready(30.0), "the mapping worker did not start"


def test_a_body_reads_the_same_in_the_worker_process_as_in_a_thread(tmp_path: Path, ingestor) -> None:
    body = _body(_mixed_events("same"))
    connectors = ingestor.connector_rules(WORKSPACE)
    in_process, in_worker = MappingProcess(use_process=False), MappingProcess(use_process=True)
    try:
        _wait_ready(in_worker)
        here = in_process.submit(WORKSPACE, connectors, body).result(timeout=30)
        there = in_worker.submit(WORKSPACE, connectors, body).result(timeout=30)
        pids = in_worker.worker_pids
    finally:
        in_process.close()
        in_worker.close()

    assert pids and os.getpid() not in pids  # it really was read in another process
    assert here[0] == there[0] == len(_mixed_events("same"))
    assert here[1] == there[1]
    # Committed, both give the same store, and one that holds what the items say.
    assert _stored(tmp_path / "here.db", here[1]) == _stored(tmp_path / "there.db", there[1])
    items, _ = ingestor.route(WORKSPACE, _mixed_events("same"))
    assert _stored(tmp_path / "items.db", Received.of(items)) == _stored(tmp_path / "again.db", here[1])


def test_a_body_that_is_not_a_batch_is_refused_by_the_worker_with_the_reason(ingestor) -> None:
    mapping = MappingProcess(use_process=True)
    try:
        with pytest.raises(NotABatch, match="not valid JSON"):
            mapping.submit(WORKSPACE, ingestor.connector_rules(WORKSPACE), b"{not json").result(timeout=30)
        count, batch = mapping.submit(WORKSPACE, (), b"").result(timeout=30)
    finally:
        mapping.close()
    assert (count, batch.items) == (0, 0)


def test_a_killed_worker_loses_no_batch_and_is_replaced(ingestor) -> None:
    connectors = ingestor.connector_rules(WORKSPACE)
    mapping = MappingProcess(use_process=True)
    try:
        assert mapping.submit(WORKSPACE, connectors, _body(_mixed_events("first"))).result(timeout=30)[0]
        [killed] = mapping.worker_pids
        os.kill(killed, signal.SIGKILL)
        # Batches handed over while the worker dies, and after: each is read, here or in a new worker.
        futures = [mapping.submit(WORKSPACE, connectors, _body(_mixed_events(f"b{n}"))) for n in range(20)]
        results = [future.result(timeout=30) for future in futures]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            result = mapping.submit(WORKSPACE, connectors, _body(_mixed_events("later"))).result(timeout=30)
            if mapping.worker_pids and killed not in mapping.worker_pids:
                break
            time.sleep(0.05)
        replaced = mapping.worker_pids
    finally:
        mapping.close()

    expected = len(_mixed_events("x"))
    assert [count for count, _ in results] == [expected] * 20
    assert all(batch.items == 2 * expected for _, batch in results)  # mapped for both connectors
    assert result[0] == expected
    assert replaced and killed not in replaced


def test_a_worker_killed_again_and_again_under_load_never_leaves_a_batch_waiting(ingestor) -> None:
    # Four senders hand over batches while the worker is SIGKILLed every 0.3 s, so that some kills land
    # while it writes a result: every batch is still read, and closing takes no time.
    connectors = ingestor.connector_rules(WORKSPACE)
    body = _body(_mixed_events("storm") * 10)
    expected = 10 * len(_mixed_events("x"))
    mapping = MappingProcess(use_process=True)
    stop = threading.Event()
    counts: list[int] = []
    stuck: list[str] = []

    def sender() -> None:
        while not stop.is_set():
            try:
                counts.append(mapping.submit(WORKSPACE, connectors, body).result(timeout=15)[0])
            except FuturesTimeout:
                stuck.append("a batch waited more than 15 s")
                return

    senders = [threading.Thread(target=sender) for _ in range(4)]
    killed: set[int] = set()
    try:
        _wait_ready(mapping)
        for thread in senders:
            thread.start()
        for _ in range(30):
            time.sleep(0.3)
            for pid in mapping.worker_pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
        stop.set()
        for thread in senders:
            thread.join(30)
        assert not any(thread.is_alive() for thread in senders), "a sender still waits for its batch"
        _wait_ready(mapping)  # a new worker, and it is used again
        last = mapping.submit(WORKSPACE, connectors, body).result(timeout=15)
        in_use = mapping.worker_pids
    finally:
        stop.set()
        began = time.monotonic()
        mapping.close()
        closing = time.monotonic() - began

    assert not stuck, stuck
    assert len(killed) >= 10 and counts and set(counts) == {expected}
    assert last[0] == expected and in_use and not set(in_use) & killed
    assert mapping.worker_losses >= 10
    assert closing < 5.0, f"closing took {closing:.1f} s"


def test_a_worker_that_stops_answering_is_replaced_and_its_batch_read_here(ingestor, monkeypatch) -> None:
    monkeypatch.setattr(intake, "BASE_SECONDS", 1.0)  # a batch is due within a second here
    connectors = ingestor.connector_rules(WORKSPACE)
    mapping = MappingProcess(use_process=True)
    try:
        _wait_ready(mapping)
        [frozen] = mapping.worker_pids
        os.kill(frozen, signal.SIGSTOP)  # alive, holding its pipe, answering nothing
        began = time.monotonic()
        body = _body(_mixed_events("frozen"))
        count, batch = mapping.submit(WORKSPACE, connectors, body).result(timeout=10)
        waited = time.monotonic() - began
        _wait_ready(mapping)
        replaced = mapping.worker_pids
    finally:
        mapping.close()
    assert count == len(_mixed_events("x")) and batch.items == 2 * count
    assert waited < 5.0
    assert replaced and frozen not in replaced
    assert not _running(frozen), "the hung worker was left behind"


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads process environments from /proc")
def test_the_worker_gets_no_secret_from_the_engines_environment(monkeypatch) -> None:
    secrets = {
        "TUI_CURRENTS_KEYRING_PASSPHRASE": "passphrase-SENTINEL-1",
        "TUI_CURRENTS_WRITE_KEY_MARKETING": "write-key-SENTINEL-2",
        "TUI_CURRENTS_RECEIVER_TOKEN_MARKETING": "token-SENTINEL-3",
        "TUI_CURRENTS_SMTP_PASSWORD": "smtp-SENTINEL-4",
        "AWS_SECRET_ACCESS_KEY": "cloud-SENTINEL-5",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    # Only the processes the mapping starts: others of this test process (a test server left running for
    # the session, say) were not started by it.
    before = set(_descendants(os.getpid()))
    mapping = MappingProcess(use_process=True)
    try:
        _wait_ready(mapping)
        started = [pid for pid in _descendants(os.getpid()) if pid not in before]
        environments = {pid: Path(f"/proc/{pid}/environ").read_bytes() for pid in started}
        assert mapping.submit(WORKSPACE, (), _body([])).result(timeout=30)[0] == 0
    finally:
        mapping.close()
    assert environments
    for pid, environment in environments.items():
        names = {entry.split(b"=", 1)[0].decode() for entry in environment.split(b"\0") if entry}
        assert not names & secrets.keys(), (pid, names & secrets.keys())
        assert not any(value.encode() in environment for value in secrets.values())
        assert names <= set(child_process.WORKER_ENVIRONMENT)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_committing_a_batch_leaves_it_as_it_was_so_a_failed_commit_can_be_retried(tmp_path: Path) -> None:
    ingestor = Ingestor(_config(), Store(tmp_path / "unused.db"))
    events = _mixed_events("retry")  # holds a duplicate of its first event
    batch = Received.of(ingestor.route(WORKSPACE, events)[0])
    before = copy.deepcopy(batch)

    first = _stored(tmp_path / "first.db", batch)

    assert batch == before
    assert _stored(tmp_path / "second.db", batch) == first
    assert sum(1 for line in first["tail"] if line[1] == "duplicate") == 1


def test_merged_batches_commit_like_one_batch_of_all_their_items(tmp_path: Path, ingestor) -> None:
    parts = [_mixed_events(f"part{n}") for n in range(3)]
    merged = Received.merged(Received.of(ingestor.route(WORKSPACE, part)[0]) for part in parts)
    whole = Received.of(ingestor.route(WORKSPACE, [e for part in parts for e in part])[0])
    assert merged == whole
    assert _stored(tmp_path / "merged.db", merged) == _stored(tmp_path / "whole.db", whole)


ENGINE_THAT_DIES = """
import os, signal, sys
from tui_currents.sources.intake import MappingPool, MappingProcess
if __name__ == "__main__":
    mapping = MappingProcess(use_process=True)
    mapping.submit("w", (), b'{"events": []}').result(timeout=30)
    print(*mapping.worker_pids, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_the_worker_ends_when_its_engine_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "engine.py"
    script.write_text(ENGINE_THAT_DIES)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL
    [worker] = [int(pid) for pid in done.stdout.split()]
    deadline = time.monotonic() + 10
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(worker), "the mapping worker outlived its engine"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_a_receivers_pool_reads_two_bodies_at_once_in_two_workers(ingestor) -> None:
    # Concurrent requests no longer queue behind one worker's exchanges: each of two bodies under way at
    # once is mapped by a worker of its own.
    connectors = ingestor.connector_rules(WORKSPACE)
    body = _body(_mixed_events("big") * 200)
    pool = MappingPool(use_process=True, workers=2)
    try:
        assert await asyncio.to_thread(pool.wait_ready, 30.0), "the mapping workers did not start"
        pids = pool.worker_pids
        assert len(set(pids)) == 2 and os.getpid() not in pids
        before = [_cpu_seconds(pid) for pid in pids]
        results = await asyncio.gather(*(pool.read(WORKSPACE, connectors, body) for _ in range(2)))
        spent = [_cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
    finally:
        await asyncio.to_thread(pool.close)
    assert [count for count, _ in results] == [200 * len(_mixed_events("x"))] * 2
    assert all(seconds > 0.02 for seconds in spent), f"one worker read both bodies: {spent}"
    assert not any(_alive(pid) for pid in pids), "a worker outlived its pool"


async def test_a_pool_whose_workers_are_all_killed_still_reads_every_body(ingestor) -> None:
    connectors = ingestor.connector_rules(WORKSPACE)
    pool = MappingPool(use_process=True, workers=2)
    try:
        assert await asyncio.to_thread(pool.wait_ready, 30.0)
        for pid in pool.worker_pids:
            os.kill(pid, signal.SIGKILL)
        bodies = [_body(_mixed_events(f"k{n}")) for n in range(8)]
        results = await asyncio.gather(*(pool.read(WORKSPACE, connectors, b) for b in bodies))
    finally:
        await asyncio.to_thread(pool.close)
    assert [count for count, _ in results] == [len(_mixed_events("x"))] * 8


def _alive(pid: int) -> bool:
    """Whether a process is still running (a zombie is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_mapping_worker_imports_neither_asyncio_nor_the_configuration(ingestor) -> None:
    # What a worker imports it holds for the engine's whole life, once per worker (two per receiver).
    routes = ingestor.connector_rules(WORKSPACE)
    script = (
        "import pickle, sys\n"
        "from tui_currents.sources import mapping_worker\n"
        "from tui_currents.sources.mapping_job import read_batch\n"
        "routes, body = pickle.loads(sys.stdin.buffer.read())\n"
        "count, batch = read_batch('marketing', routes, body)\n"
        "assert count and batch.items, 'nothing was read'\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    job = pickle.dumps((routes, _body(_mixed_events("lean"))))
    out = subprocess.run(
        [sys.executable, "-c", script], input=job, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    loaded = set(out.split())
    assert "tui_currents.mapping" in loaded
    assert not loaded & {"asyncio", "tomlkit", "tui_currents.config", "concurrent.futures", "logging"}, (
        sorted(loaded & {"asyncio", "tomlkit", "tui_currents.config", "concurrent.futures", "logging"})
    )
