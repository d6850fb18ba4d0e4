"""Import Currents Avro files (Braze's export to S3, GCS or Azure, copied or synced to a folder).

Files are found by walking the folder (Braze warns its naming may change, so nothing depends on the
layout), read with fastavro, and their flat records go through the same path as the receiver's events, in
chunks of about five thousand records, each committed in one transaction (bigger chunks share the cost
of a durable commit; a crash re-reads at most one chunk, whose events collapse as duplicates).

Re-running an import is safe:
- The imported-files table (in the store's file: `store.import_ledger`) remembers each file by content
  hash (sha256) and, to skip hashing unchanged files, by identity (path, size, modification time). A
  file fully imported is skipped. An import stopped midway (Ctrl-C, disk full, a crash) resumes after
  the last committed chunk.
- The resume point is written right after each chunk's commit, in its own transaction (the store has no
  hook to join its transaction). If the process dies between the two, that one chunk is read again and
  its events collapse as duplicates in the store's outbox (unique per connector and messageId) or its
  record of recently delivered messages: nothing is sent twice.
- The table is keyed by workspace and filters too: importing the same files with another `--since`,
  `--until` or `--event-type` reads them again (events already imported are duplicates, as above).

A truncated or corrupt file is reported with the reason; its records before the damage are imported and
the rest of the files are not affected. The event type of a record comes from its `event_type` field if
it has one, else from the `event_type=` folder of its path, else from the Avro record name
(`dataexport.S3.inner.users.messages.email.Send` -> `users.messages.email.Send`).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import cast
from urllib.parse import unquote

import fastavro

from tui_currents import catalog
from tui_currents.mapping import Fate
from tui_currents.sources.ingest import Ingestor, IngestSummary
from tui_currents.store import CommitResult, StoreUnavailable
from tui_currents.store.import_ledger import FileIdentity, ImportLedger

CHUNK_RECORDS = 5_000
SOURCE = "import"
AVRO_SUFFIX = ".avro"
AVRO_MAGIC = b"Obj\x01"
_HASH_BLOCK = 1 << 20
_SCHEMA_NAME = re.compile(r"dataexport\.[^.]+\.inner\.(.+)")


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


def find_avro_files(path: Path) -> list[Path]:
    """The .avro files at `path` (a file, or every one under a folder, recursively, in path order).
    Symbolic links to folders are not followed, so a link loop cannot make the walk endless."""
    if path.is_file():
        return [path]
    found: list[Path] = []
    for folder, subfolders, files in os.walk(path):
        subfolders.sort()
        for name in sorted(files):
            if name.endswith(AVRO_SUFFIX):
                found.append(Path(folder) / name)
    return found


def event_type_from_path(path: Path) -> str | None:
    """The `event_type=<type>` folder of a Braze export path, if there is one."""
    for part in reversed(path.parts):
        if part.startswith("event_type="):
            value = unquote(part[len("event_type=") :])
            return catalog.canonical_name(value) if value else None
    return None


def event_type_from_schema(schema: object) -> str | None:
    """The event type an Avro record schema stands for: `dataexport.S3.inner.users.messages.email` +
    `Send` -> `users.messages.email.Send`; other names are taken as they are."""
    if not isinstance(schema, dict):
        return None
    name = schema.get("name")
    if not isinstance(name, str) or not name:
        return None
    namespace = schema.get("namespace")
    full = name if "." in name or not isinstance(namespace, str) or not namespace else f"{namespace}.{name}"
    match = _SCHEMA_NAME.fullmatch(full)
    return catalog.canonical_name(match.group(1) if match else full)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


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


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, EOFError):
        return f"the file ends in the middle of a block: it is truncated ({text})" if text else "truncated"
    if isinstance(exc, ValueError) and "header" in text:
        return "not an Avro container file (its header cannot be read)"
    return f"the file is damaged: {type(exc).__name__}{': ' + text if text else ''}"


class _ReadError:
    """Where a reader's exception is kept, so a damaged file ends its loop without ending the import."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: BaseException | None = None


def _records(reader: Iterable[dict], box: _ReadError) -> Iterator[dict]:
    try:
        yield from reader
    except MemoryError:
        # A damaged block length asks fastavro for an impossible buffer (exabytes): the file's problem.
        box.error = ValueError("a block claims an impossible size")
    except Exception as exc:  # any decoding failure is the file's problem, not the import's
        box.error = exc


# -------------------------------------------------------------------------------------------- import


class _Run:
    """One import run: counts, progress, and feeding chunks to the ingestor."""

    def __init__(
        self,
        ingestor: Ingestor,
        summary: ImportSummary,
        *,
        since: float | None,
        until: float | None,
        event_types: frozenset[str] | None,
        chunk_records: int,
        progress: Callable[[ImportProgress], None] | None,
    ):
        self.ingestor = ingestor
        self.summary = summary
        self.since = since
        self.until = until
        self.event_types = event_types
        self.chunk_records = chunk_records
        self.progress = progress
        self.started = time.monotonic()
        self.files_done = 0
        self.events = 0

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

    def send(self, chunk: list[dict]) -> None:
        """Map one chunk of selected records and, unless dry-running, commit it in one transaction;
        count what became of them. Raises StoreUnavailable when the chunk could not be stored."""
        items, result = self.ingestor.route(self.summary.workspace, chunk)
        committed = None
        if items and not self.summary.dry_run:
            committed = self.ingestor.store.commit(items, source=SOURCE)
        self._count(result, committed)

    def _count(self, result: IngestSummary, committed: CommitResult | None) -> None:
        for event_type, fates in result.by_type.items():
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

    def read_file(
        self, path: Path, file_type: str | None, start: int, on_chunk: Callable[[int], None]
    ) -> int:
        """Import the records of one file from record `start`; returns how many records of the file have
        been read (from its beginning). Raises _FileDamaged, after committing the records before the
        damage, when the file cannot be read to its end."""
        since, until, chosen = self.since, self.until, self.event_types
        filtering_time = since is not None or until is not None
        box = _ReadError()
        with path.open("rb") as handle:
            magic = handle.read(len(AVRO_MAGIC))
            if magic != AVRO_MAGIC:
                raise _FileDamaged(
                    "the file is empty (an incomplete copy?)"
                    if not magic
                    else "not an Avro container file (it does not start with Avro's marker)",
                    0,
                )
            handle.seek(0)
            try:
                reader = fastavro.reader(handle)
            except MemoryError:  # a damaged header length: see _records
                raise _FileDamaged("the file is damaged: its header claims an impossible size", 0) from None
            except Exception as exc:  # no readable Avro header: nothing of the file can be read
                raise _FileDamaged(_describe(exc), 0) from None
            schema = reader.writer_schema
            if not isinstance(schema, dict) or schema.get("type") != "record":
                raise _FileDamaged("not a Currents export: its Avro schema is not a record", 0)
            fallback = file_type or event_type_from_schema(schema) or ""
            has_type_field = any(
                isinstance(f, dict) and f.get("name") == "event_type" for f in schema.get("fields", ())
            )
            # fastavro types a datum as any Avro value; under a record schema (checked above) each is a dict.
            records = _records(cast("Iterable[dict]", reader), box)
            # Resume: read past what a previous run committed (Avro has no index to seek with).
            done = sum(1 for _ in islice(records, start)) if start else 0
            chunk: list[dict] = []
            read = 0
            # Flush on selected records, or on records read when filters leave most of them out, so the
            # resume point keeps moving.
            flush_at = self.chunk_records
            read_flush_at = self.chunk_records * 4
            counted_type = None
            counts = TypeCounts()
            for record in records:
                read += 1
                event_type = fallback
                if has_type_field:
                    given = record.get("event_type")
                    if isinstance(given, str) and given:
                        event_type = catalog.canonical_name(given)
                    else:
                        record["event_type"] = fallback  # a null field does not hide the file's type
                if event_type != counted_type:  # files hold one type: look its counts up once
                    counts = self.counts(event_type)
                    counted_type = event_type
                counts.read += 1
                if chosen is not None and event_type not in chosen:
                    counts.not_chosen += 1
                elif filtering_time and _outside(record.get("time"), since, until):
                    counts.outside_time += 1
                else:
                    if not has_type_field and event_type:
                        record["event_type"] = event_type
                    chunk.append(record)
                if len(chunk) >= flush_at or read >= read_flush_at:
                    self.send(chunk)
                    self.events += read
                    done += read
                    read = 0
                    chunk = []
                    on_chunk(done)
                    self.report(path)
            if chunk:
                self.send(chunk)
            self.events += read
            done += read
        if box.error is not None:
            raise _FileDamaged(_describe(box.error), done)
        return done


def _outside(moment: object, since: float | None, until: float | None) -> bool:
    """Whether a record's `time` is outside [since, until). A record without a usable time is kept: the
    mapping then says what is wrong with it."""
    if not isinstance(moment, (int, float)) or isinstance(moment, bool):
        return False
    return (since is not None and moment < since) or (until is not None and moment >= until)


class _FileDamaged(Exception):
    def __init__(self, message: str, records: int):
        super().__init__(message)
        self.records = records


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

    Returns the summary; unreadable or damaged files are listed in `summary.problems` and do not stop the
    import. If the store fails (disk full), the import stops with `summary.stopped` saying why; what was
    committed stays, and running the same import again resumes. Raises UnknownWorkspace for a workspace
    the configuration does not have, and FileNotFoundError when `path` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    ingestor.require_workspace(workspace)
    since_ts, until_ts = _timestamp(since), _timestamp(until)
    chosen = frozenset(catalog.canonical_name(t) for t in event_types) if event_types is not None else None
    filters = filters_key(since_ts, until_ts, chosen)
    summary = ImportSummary(workspace=workspace, dry_run=dry_run)
    files = find_avro_files(root)
    summary.files_total = len(files)
    run = _Run(
        ingestor,
        summary,
        since=since_ts,
        until=until_ts,
        event_types=chosen,
        chunk_records=max(1, chunk_records),
        progress=progress,
    )
    ledger = ImportLedger(ingestor.store.path, readonly=dry_run)
    try:
        run.report(None)
        for file in files:
            try:
                _import_file(run, ledger, root, file, workspace, filters, force=force)
            except StoreUnavailable as exc:
                summary.stopped = str(exc)
                break
            run.files_done += 1
            run.report(file)
    finally:
        ledger.close()
        summary.elapsed = time.monotonic() - run.started
    return summary


def _import_file(
    run: _Run, ledger: ImportLedger, root: Path, file: Path, workspace: str, filters: str, *, force: bool
) -> None:
    summary = run.summary
    try:
        stat = file.stat()
        identity = FileIdentity(file.resolve(), stat.st_size, stat.st_mtime_ns)
        known = ledger.sha256_by_identity(identity, workspace, filters)
        sha256 = known or file_sha256(file)
    except OSError as exc:
        summary.problems.append(FileProblem(file, f"could not be read: {exc.strerror or exc}", 0))
        return
    state = None if force else ledger.state(sha256, workspace, filters)
    start = 0
    if state is not None:
        start, complete = state
        if complete:
            summary.files_skipped += 1
            if known is None:  # the same content under another name or date: remember this one too
                ledger.record(sha256, workspace, filters, identity, records_done=start, complete=True)
            return

    def committed(done: int) -> None:
        ledger.record(sha256, workspace, filters, identity, records_done=done, complete=False)

    relative = file.relative_to(root) if file != root else Path(file.name)
    try:
        done = run.read_file(file, event_type_from_path(relative), start, committed)
    except _FileDamaged as exc:
        # Not marked complete: the next run reports the file again, without sending again what was read.
        if exc.records:
            committed(exc.records)
        summary.problems.append(FileProblem(file, str(exc), exc.records))
        return
    except OSError as exc:
        summary.problems.append(FileProblem(file, f"could not be read: {exc.strerror or exc}", 0))
        return
    ledger.record(sha256, workspace, filters, identity, records_done=done, complete=True)
    summary.files_imported += 1
    if start:
        summary.files_resumed += 1
