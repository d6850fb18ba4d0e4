"""The import's worker processes: what they load, and how the files are shared between them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tui_currents import catalog, config
from tui_currents.config import Connector, Workspace
from tui_currents.mapping import ConnectorRules
from tui_currents.sources import avro_import
from tui_currents.sources.avro_files import ReadJob, read_file
from tui_currents.sources.avro_import import import_path
from tui_currents.sources.avro_schemas import write_export
from tui_currents.sources.demo import DemoGenerator
from tui_currents.sources.import_workers import ImportWorkers
from tui_currents.sources.ingest import Ingestor, Routes
from tui_currents.store import Store

pytestmark = pytest.mark.timeout(60)

WORKSPACE = "marketing"
CONNECTOR = "Marketing main"
SUPPORTED = [e.event_type for e in catalog.CATALOG if e.supported]


def _demo_file(folder: Path, n: int, *, seed: int) -> Path:
    """One Avro file of `n` email sends (a Braze export's layout under `folder`)."""
    clock = iter(1_717_171_200 + i // 10 for i in range(n))  # all in one hour: one file
    generator = DemoGenerator(seed=seed, event_types=["users.messages.email.Send"], anonymous_share=0.0,
                              flat=True, clock=lambda: next(clock))  # fmt: skip
    [path] = write_export(folder, [generator.event() for _ in range(n)])
    return path


def test_a_worker_starts_without_the_configuration_or_secrets_code() -> None:
    # A worker only reads and maps: loading the configuration, keyring and logging code would cost each
    # worker a tenth of a second of CPU at every import, and it has no use for secrets.
    script = "import sys, tui_currents.sources.import_workers; print(*sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    assert "tui_currents.sources.avro_files" in loaded
    unneeded = tuple(f"tui_currents.{name}" for name in ("config", "secrets", "keyring_file", "logs"))
    unwanted = [module for module in loaded if module.startswith(unneeded)]
    assert unwanted == []


def _job(path: Path, routes: Routes) -> ReadJob:
    return ReadJob(path, None, 0, WORKSPACE, routes, None, None, None, 1_000, False)


def test_a_worker_is_handed_its_next_file_while_it_reads_one(tmp_path) -> None:
    # So that it never waits for the importing process (busy committing) between two files.
    first = _demo_file(tmp_path / "first", 2_500, seed=1)
    second = _demo_file(tmp_path / "second", 300, seed=2)
    routes = ((CONNECTOR, ConnectorRules(selected=frozenset(SUPPORTED), include_anonymous=True)),)
    with ImportWorkers(1) as workers:
        assert workers.wanting()
        workers.give(_job(first, routes))
        assert workers.wanting()
        workers.give(_job(second, routes))
        assert not workers.wanting()
        name = {first: "first", second: "second"}
        seen: list[tuple[str, int, str]] = []
        while workers.busy():
            for job, message in workers.results():
                seen.append((name[job.path], message.done, type(message).__name__))
    assert seen == [
        ("first", 1_000, "Chunk"), ("first", 2_000, "Chunk"), ("first", 2_500, "Chunk"),
        ("first", 2_500, "FileEnd"), ("second", 300, "Chunk"), ("second", 300, "FileEnd"),
    ]  # fmt: skip


def test_the_importing_process_reads_small_files_itself_while_its_workers_read_big_ones(
    tmp_path, home, monkeypatch
) -> None:
    config.add_workspace(home, Workspace(WORKSPACE))
    config.add_connector(
        home,
        Connector(name=CONNECTOR, workspace=WORKSPACE, contact_email="ops@example.com", events=SUPPORTED),
    )
    big = [_demo_file(tmp_path / "bucket" / f"big{n}", 4_000, seed=n) for n in range(2)]
    small = [_demo_file(tmp_path / "bucket" / f"small{n}", 50, seed=10 + n) for n in range(6)]
    assert min(p.stat().st_size for p in big) > avro_import.READ_HERE_BYTES
    assert max(p.stat().st_size for p in small) <= avro_import.READ_HERE_BYTES
    read_here: list[Path] = []

    def reading_here(job: ReadJob):  # the importing process's own reads; the workers' are not seen here
        read_here.append(job.path)
        return read_file(job)

    monkeypatch.setattr(avro_import, "read_file", reading_here)
    with Store(home.store_file) as store:
        summary = import_path(tmp_path / "bucket", WORKSPACE, Ingestor(config.load(home), store), workers=2)
        assert summary.ok, summary.problems
        assert summary.events_read == summary.queued == 2 * 4_000 + 6 * 50
        assert store.backlog(CONNECTOR).messages == summary.queued
    # The workers start for a while: the importing process reads small files meanwhile, never a big one.
    assert read_here
    assert set(read_here) <= set(small)
