"""Import Currents Avro files (Braze's export to S3, GCS or Azure, copied or synced to a folder).

Files are found by walking the folder (Braze warns its naming may change, so nothing depends on the
layout), read with fastavro, and their flat records go through the same mapping as the receiver's events,
in chunks of about ten thousand records, each committed in one transaction (bigger chunks share the cost
of a durable commit; a crash re-reads at most the chunks not yet committed, whose events collapse as
duplicates). On two cores or more, an import of more than a few megabytes reads and maps its files in
worker processes (`import_workers`), largest files first so that no big one is left for the end, and this
process commits the chunks they hand back, reading the smallest files itself whenever no chunk is waiting
(while the workers start, and between their chunks), so that no core idles.

Re-running an import is safe:
- The imported-files table (in the store's file: `store.import_ledger`) remembers each file by content
  hash (sha256) and, to skip hashing unchanged files, by identity (path, size, modification time). A
  file fully imported is skipped. An import stopped midway (Ctrl-C, disk full, a crash, a kill) resumes
  after the last committed chunk of each file.
- The resume point is written right after each chunk's commit, in its own transaction (the store has no
  hook to join its transaction). If the process dies between the two, that one chunk is read again and
  its events collapse as duplicates in the store's outbox (unique per connector and messageId) or its
  record of recently delivered messages: nothing is sent twice, and nothing read is lost, since a
  chunk's resume point is written only once the chunk is committed.
- The table is keyed by workspace and filters too: importing the same files with another `--since`,
  `--until` or `--event-type` reads them again (events already imported are duplicates, as above).

A truncated or corrupt file is reported with the reason; its records before the damage are imported and
the rest of the files are not affected. The event type of a record comes from its `event_type` field if
it has one, else from the `event_type=` folder of its path, else from the Avro record name
(`dataexport.S3.inner.users.messages.email.Send` -> `users.messages.email.Send`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path

from tui_currents import catalog
from tui_currents.mapping import Fate
from tui_currents.sources.avro_files import (
    AVRO_MAGIC,
    AVRO_SUFFIX,
    Chunk,
    FileEnd,
    ReadJob,
    event_type_from_path,
    event_type_from_schema,
    file_sha256,
    find_avro_files,
    read_file,
)
from tui_currents.sources.import_workers import ImportWorkers, WorkerLost, workers_wanted
from tui_currents.sources.ingest import Ingestor
from tui_currents.store import StoreUnavailable
from tui_currents.store.import_ledger import FileIdentity, ImportLedger

__all__ = [
    "AVRO_MAGIC",
    "AVRO_SUFFIX",
    "CHUNK_RECORDS",
    "FileIdentity",
    "FileProblem",
    "ImportLedger",
    "ImportProgress",
    "ImportSummary",
    "TypeCounts",
    "event_type_from_path",
    "event_type_from_schema",
    "file_sha256",
    "filters_key",
    "find_avro_files",
    "import_path",
]

CHUNK_RECORDS = 10_000
# The largest file the importing process reads itself, between its workers' chunks (about 1,000 records:
# a few hundredths of a second, during which a worker with a chunk ready waits).
READ_HERE_BYTES = 512 * 1024
SOURCE = "import"


# ------------------------------------------------------------------------------------------- results


@dataclass(slots=True)
class TypeCounts:
    """What became of the records of one event type."""

    read: int = 0
    queued: int = 0  # queued to be sent (would be, for a dry run)
    duplicate: int = 0  # already queued or recently delivered: not sent again
    not_selected: int = 0
    anonymous: int = 0
    unsupported: int = 0
    not_forwardable: int = 0  # a known type never sent (the catalog says why)
    rejected: int = 0  # invalid: kept as dead letters with the reason
    outside_time: int = 0  # before --since or not before --until
    not_chosen: int = 0  # not among the --event-type choices

    @property
    def filtered(self) -> int:
        """Not sent because of a connector's selection or its anonymous-users switch."""
        return self.not_selected + self.anonymous

    def add(self, other: TypeCounts) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


_FATE_FIELD: dict[str, str] = {  # Fate (a str) -> TypeCounts field; looked up by the fate's text
    Fate.QUEUED: "queued",
    Fate.NOT_SELECTED: "not_selected",
    Fate.ANONYMOUS: "anonymous",
    Fate.UNSUPPORTED: "unsupported",
    Fate.NOT_FORWARDABLE: "not_forwardable",
    Fate.REJECTED: "rejected",
}


@dataclass(frozen=True, slots=True)
class FileProblem:
    """A file that could not be read, or not to its end."""

    path: Path
    message: str
    records_imported: int  # records of the file read before the problem (0 when it could not be opened)


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """Where an import is, for a progress bar."""

    files_done: int
    files_total: int
    events: int  # records read so far in this run
    elapsed: float
    current: Path | None

    @property
    def rate(self) -> float:
        """Records read per second so far."""
        return self.events / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(slots=True)
class ImportSummary:
    """What an import did, per event type and per file."""

    workspace: str
    dry_run: bool
    files_total: int = 0
    files_imported: int = 0  # read to their end in this run (including resumed ones)
    files_resumed: int = 0  # of those, files a previous run had started
    files_skipped: int = 0  # imported completely before (same content, workspace and filters)
    problems: list[FileProblem] = field(default_factory=list)
    by_type: dict[str, TypeCounts] = field(default_factory=dict)
    queued: int = 0  # outbox rows written
    duplicates: int = 0  # events already queued or recently delivered
    elapsed: float = 0.0
    stopped: str | None = None  # why the import stopped before the end (the store failed)

    @property
    def events_read(self) -> int:
        return sum(c.read for c in self.by_type.values())

    @property
    def rate(self) -> float:
        """Records read per second."""
        return self.events_read / self.elapsed if self.elapsed > 0 else 0.0

    def totals(self) -> TypeCounts:
        """The counts of every event type added up."""
        total = TypeCounts()
        for counts in self.by_type.values():
            total.add(counts)
        return total

    @property
    def ok(self) -> bool:
        """Every file read to its end and nothing stopped the import."""
        return not self.problems and self.stopped is None


# ------------------------------------------------------------------------------------------- helpers


def _timestamp(moment: float | datetime | None) -> float | None:
    if moment is None:
        return None
    if isinstance(moment, datetime):
        return moment.timestamp()  # naive datetimes are local time, as Python reads them
    return float(moment)


def filters_key(since: float | None, until: float | None, event_types: Collection[str] | None) -> str:
    """How the imported-files table tells imports with different filters apart ("" for none)."""
    parts = []
    if since is not None:
        parts.append(f"since={since!r}")
    if until is not None:
        parts.append(f"until={until!r}")
    if event_types is not None:
        parts.append("types=" + ",".join(sorted(event_types)))
    return ";".join(parts)


# -------------------------------------------------------------------------------------------- import


@dataclass(slots=True)
class _File:
    """A file being imported: where its resume point goes, and where this run started it."""

    path: Path
    sha256: str
    identity: FileIdentity
    start: int
    job: ReadJob


class _Later(Enum):
    SAME_CONTENT_BEING_READ = "same content being read"


_SAME_CONTENT_BEING_READ = _Later.SAME_CONTENT_BEING_READ


class _Run:
    """One import run: which files to read, committing what their readers hand back, counting."""

    def __init__(
        self,
        ingestor: Ingestor,
        ledger: ImportLedger,
        summary: ImportSummary,
        root: Path,
        *,
        filters: str,
        force: bool,
        job: Callable[[Path, str | None, int], ReadJob],
        progress: Callable[[ImportProgress], None] | None,
    ):
        self.ingestor = ingestor
        self.ledger = ledger
        self.summary = summary
        self.root = root
        self.filters = filters
        self.force = force
        self.job = job
        self.progress = progress
        self.started = time.monotonic()
        self.files_done = 0
        self.events = 0
        self.files: dict[Path, _File] = {}  # being read, by path

    def report(self, current: Path | None) -> None:
        if self.progress is not None:
            self.progress(
                ImportProgress(
                    files_done=self.files_done,
                    files_total=self.summary.files_total,
                    events=self.events,
                    elapsed=time.monotonic() - self.started,
                    current=current,
                )
            )

    def counts(self, event_type: str) -> TypeCounts:
        counts = self.summary.by_type.get(event_type)
        if counts is None:
            counts = self.summary.by_type[event_type] = TypeCounts()
        return counts

    def prepare(self, file: Path) -> _File | None | _Later:
        """The file's reading job, from where a previous run left it; None (counted) when it was imported
        before or cannot be read; _SAME_CONTENT_BEING_READ while a file of the same content is being read
        (in another worker)."""
        summary, ledger, workspace, filters = self.summary, self.ledger, self.summary.workspace, self.filters
        try:
            stat = file.stat()
            identity = FileIdentity(file.resolve(), stat.st_size, stat.st_mtime_ns)
            known = ledger.sha256_by_identity(identity, workspace, filters)
            sha256 = known or file_sha256(file)
        except OSError as exc:
            self.problem(file, f"could not be read: {exc.strerror or exc}", 0)
            self.file_done(file)
            return None
        if any(entry.sha256 == sha256 for entry in self.files.values()):
            return _SAME_CONTENT_BEING_READ  # read once: after that one, this file is skipped (or forced)
        state = None if self.force else ledger.state(sha256, workspace, filters)
        start = 0
        if state is not None:
            start, complete = state
            if complete:
                summary.files_skipped += 1
                if known is None:  # the same content under another name or date: remember this one too
                    ledger.record(sha256, workspace, filters, identity, records_done=start, complete=True)
                self.file_done(file)
                return None
        relative = file.relative_to(self.root) if file != self.root else Path(file.name)
        job = self.job(file, event_type_from_path(relative), start)
        entry = self.files[file] = _File(file, sha256, identity, start, job)
        return entry

    def take(self, entry: _File, message: Chunk | FileEnd) -> None:
        """Commit a chunk (then note the file's resume point), or finish a file. Raises StoreUnavailable
        when the chunk could not be stored (its resume point is then not moved)."""
        if isinstance(message, FileEnd):
            self.end(entry, message)
            return
        for event_type, (read, not_chosen, outside) in message.read.items():
            counts = self.counts(event_type)
            counts.read += read
            counts.not_chosen += not_chosen
            counts.outside_time += outside
            self.events += read
        committed = None
        if message.received is not None and not self.summary.dry_run:
            committed = self.ingestor.store.commit(message.received, source=SOURCE)
        for event_type, fates in message.fates.items():
            counts = self.counts(event_type)
            for fate, n in fates.items():
                name = _FATE_FIELD[fate]
                setattr(counts, name, getattr(counts, name) + n)
        if committed is not None:
            self.summary.queued += committed.queued
            self.summary.duplicates += committed.duplicates
            # The router counted every mapped event as queued; the store found some already there.
            for event_type, n in (committed.duplicates_by_type or {}).items():
                counts = self.counts(event_type)
                counts.queued -= n
                counts.duplicate += n
        self.note(entry, message.done, complete=False)
        self.report(entry.path)

    def note(self, entry: _File, done: int, *, complete: bool) -> None:
        self.ledger.record(
            entry.sha256, self.summary.workspace, self.filters, entry.identity, records_done=done,
            complete=complete,
        )  # fmt: skip

    def end(self, entry: _File, end: FileEnd) -> None:
        del self.files[entry.path]
        if end.problem is not None:
            # Not marked complete: the next run reports the file again, without sending again what was read.
            self.problem(entry.path, end.problem, end.done)
        else:
            self.note(entry, end.done, complete=True)
            self.summary.files_imported += 1
            if entry.start:
                self.summary.files_resumed += 1
        self.file_done(entry.path)

    def problem(self, file: Path, message: str, records: int) -> None:
        self.summary.problems.append(FileProblem(file, message, records))

    def file_done(self, file: Path) -> None:
        self.files_done += 1
        self.report(file)


def import_path(
    path: Path | str,
    workspace: str,
    ingestor: Ingestor,
    since: float | datetime | None = None,
    until: float | datetime | None = None,
    event_types: Collection[str] | None = None,
    dry_run: bool = False,
    progress: Callable[[ImportProgress], None] | None = None,
    *,
    force: bool = False,
    chunk_records: int = CHUNK_RECORDS,
    workers: int | None = None,
    ledger_file: Path | None = None,
) -> ImportSummary:
    """Import every Currents Avro file at `path` (a file or a folder, walked recursively) into the
    workspace's connectors through `ingestor`.

    - `since` / `until`: keep records whose `time` is at or after `since` and before `until` (UNIX
      seconds or datetimes). `event_types`: keep only these event types (canonical names).
    - `dry_run`: map and count what would be queued, store nothing (the imported-files table is read to
      skip files already imported, never written).
    - `progress(ImportProgress)`: called after every chunk and every file.
    - `force`: read files again even if they were imported before (events already stored collapse as
      duplicates).
    - `workers`: how many worker processes read and map the files (0: this process does; None: as many
      as pay off for the size of the files and the cores, see `import_workers.workers_wanted`).
    - `ledger_file`: the SQLite file holding the imported-files table (the home's store file; by default
      the file of `ingestor`'s store, which a cluster queue does not have).

    Returns the summary; unreadable or damaged files are listed in `summary.problems` and do not stop the
    import. If the store fails (disk full), the import stops with `summary.stopped` saying why; what was
    committed stays, and running the same import again resumes. Raises UnknownWorkspace for a workspace
    the configuration does not have, and FileNotFoundError when `path` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    routes = ingestor.connector_rules(workspace)  # UnknownWorkspace before anything is read
    since_ts, until_ts = _timestamp(since), _timestamp(until)
    chosen = frozenset(catalog.canonical_name(t) for t in event_types) if event_types is not None else None
    summary = ImportSummary(workspace=workspace, dry_run=dry_run)
    files = find_avro_files(root)
    summary.files_total = len(files)

    def job(file: Path, file_type: str | None, start: int) -> ReadJob:
        return ReadJob(file, file_type, start, workspace, routes, since_ts, until_ts, chosen,
                       max(1, chunk_records), dry_run)  # fmt: skip

    if workers is None:
        workers = workers_wanted(sum(_size(file) for file in files))
    ledger = ImportLedger(ledger_file if ledger_file is not None else _store_file(ingestor), readonly=dry_run)
    run = _Run(ingestor, ledger, summary, root, filters=filters_key(since_ts, until_ts, chosen), force=force,
               job=job, progress=progress)  # fmt: skip
    try:
        run.report(None)
        if workers > 0:
            _read_in_workers(run, files, workers)
        else:
            _read_here(run, files)
    except (StoreUnavailable, WorkerLost) as exc:
        summary.stopped = str(exc)
    finally:
        ledger.close()
        summary.elapsed = time.monotonic() - run.started
    return summary


def _size(file: Path) -> int:
    try:
        return file.stat().st_size
    except OSError:
        return 0


def _read_here(run: _Run, files: list[Path]) -> None:
    for file in files:
        entry = run.prepare(file)
        if isinstance(entry, _File):  # nothing else is being read here: never _SAME_CONTENT_BEING_READ
            _read_one_here(run, entry)


def _read_one_here(run: _Run, entry: _File) -> None:
    try:
        for message in read_file(entry.job):
            run.take(entry, message)
    except OSError as exc:
        run.end(entry, FileEnd(0, f"could not be read: {exc.strerror or exc}"))


def _read_in_workers(run: _Run, files: list[Path], count: int) -> None:
    sizes = {file: _size(file) for file in files}
    # Largest first, so that no big file is left for the end, read by one worker while the other cores
    # idle; this process reads the smallest ones itself whenever it has nothing to commit (below).
    waiting = deque(sorted(files, key=lambda file: -sizes[file]))
    later: list[Path] = []  # files whose content another worker is reading: prepared again after it
    with ImportWorkers(count) as workers:
        while True:
            while workers.wanting() and waiting:
                file = waiting.popleft()
                entry = run.prepare(file)
                if entry is _SAME_CONTENT_BEING_READ:
                    later.append(file)
                elif isinstance(entry, _File):
                    workers.give(entry.job)
            if not workers.busy():
                if not later:
                    return
                waiting.extendleft(reversed(later))
                later.clear()
                continue
            # While the workers start, and whenever none has a chunk ready, this process reads a small
            # file rather than wait: its core would otherwise idle at the start and at the end. A small
            # one, so that a worker with a chunk ready is not kept waiting long.
            here = bool(waiting) and sizes[waiting[-1]] <= READ_HERE_BYTES
            for job, message in workers.results(timeout=0.0 if here else None):
                here = False
                run.take(run.files[job.path], message)
                if isinstance(message, FileEnd) and later:
                    waiting.extendleft(reversed(later))
                    later.clear()
            if here:
                file = waiting.pop()
                entry = run.prepare(file)
                if entry is _SAME_CONTENT_BEING_READ:
                    later.append(file)
                elif isinstance(entry, _File):
                    _read_one_here(run, entry)


def _store_file(ingestor: Ingestor) -> Path:
    """The file of a SQLite queue, which holds the imported-files table beside the outbox."""
    path = getattr(ingestor.store, "path", None)
    if path is None:
        raise ValueError("this queue keeps no local file: give import_path the home's store file")
    return Path(path)
