"""Reading Currents Avro files: finding them, telling their event type, and turning one file into mapped
chunks ready for the store.

`read_file` does the per-file work of an import: read the records with fastavro from a resume point, keep
those the filters choose, map them for the workspace's connectors and put each chunk in the store's form
(`Received`). It touches no store, so it runs in an import worker process (`import_workers`) as well as in
the importing process itself; what it yields is small to send: flat lists and the messages' bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import cast
from urllib.parse import unquote

import fastavro

from tui_currents import catalog
from tui_currents.received import Received
from tui_currents.sources.ingest import Routes, route

AVRO_SUFFIX = ".avro"
AVRO_MAGIC = b"Obj\x01"
_HASH_BLOCK = 1 << 20
_SCHEMA_NAME = re.compile(r"dataexport\.[^.]+\.inner\.(.+)")


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


# ------------------------------------------------------------------------------------------- one file


@dataclass(frozen=True, slots=True)
class ReadJob:
    """One file to read from record `start`, with what to keep and whom to map it for."""

    path: Path
    file_type: str | None  # the `event_type=` folder of its path, if any
    start: int  # records a previous run committed: read past them
    workspace: str
    routes: Routes  # the workspace's enabled connectors and their rules
    since: float | None
    until: float | None
    chosen: frozenset[str] | None  # --event-type
    chunk_records: int
    dry_run: bool  # map and count only: no store form is built


@dataclass(slots=True)
class Chunk:
    """Records of one file, read and mapped: `done` records of the file (from its beginning) are behind
    it once it is committed."""

    done: int
    read: dict[str, list[int]] = field(default_factory=dict)  # event type -> [read, not chosen, outside]
    fates: dict[str, dict[str, int]] = field(default_factory=dict)  # event type -> mapping fate -> events
    received: Received | None = None  # the store's form of the mapped records (None: nothing, dry run)


@dataclass(frozen=True, slots=True)
class FileEnd:
    """A file read to its end (`problem` None) or up to damage that `problem` describes."""

    done: int
    problem: str | None = None


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


def _outside(moment: object, since: float | None, until: float | None) -> bool:
    """Whether a record's `time` is outside [since, until). A record without a usable time is kept: the
    mapping then says what is wrong with it."""
    if not isinstance(moment, (int, float)) or isinstance(moment, bool):
        return False
    return (since is not None and moment < since) or (until is not None and moment >= until)


def _mapped(job: ReadJob, done: int, read: dict[str, list[int]], records: list[dict]) -> Chunk:
    chunk = Chunk(done, read)
    if records:
        items, result = route(job.workspace, job.routes, records)
        chunk.fates = {event_type: dict(fates) for event_type, fates in result.by_type.items()}
        if items and not job.dry_run:
            chunk.received = Received.of(items)
    return chunk


def read_file(job: ReadJob) -> Iterator[Chunk | FileEnd]:
    """The file's chunks, each read and mapped, then how it ended. Raises OSError when the file cannot be
    read at all (the FileEnd of a damaged file says what is wrong instead)."""
    since, until, chosen = job.since, job.until, job.chosen
    filtering_time = since is not None or until is not None
    box = _ReadError()
    with job.path.open("rb") as handle:
        magic = handle.read(len(AVRO_MAGIC))
        if magic != AVRO_MAGIC:
            yield FileEnd(
                0,
                "the file is empty (an incomplete copy?)"
                if not magic
                else "not an Avro container file (it does not start with Avro's marker)",
            )
            return
        handle.seek(0)
        try:
            reader = fastavro.reader(handle)
        except MemoryError:  # a damaged header length: see _records
            yield FileEnd(0, "the file is damaged: its header claims an impossible size")
            return
        except Exception as exc:  # no readable Avro header: nothing of the file can be read
            yield FileEnd(0, _describe(exc))
            return
        schema = reader.writer_schema
        if not isinstance(schema, dict) or schema.get("type") != "record":
            yield FileEnd(0, "not a Currents export: its Avro schema is not a record")
            return
        fallback = job.file_type or event_type_from_schema(schema) or ""
        has_type_field = any(
            isinstance(f, dict) and f.get("name") == "event_type" for f in schema.get("fields", ())
        )
        # fastavro types a datum as any Avro value; under a record schema (checked above) each is a dict.
        records = _records(cast("Iterable[dict]", reader), box)
        # Resume: read past what a previous run committed (Avro has no index to seek with).
        done = sum(1 for _ in islice(records, job.start)) if job.start else 0
        if chosen is None and not filtering_time and not has_type_field:
            # The usual import (a Braze export, no filter): every record is kept and has the file's type,
            # so chunks are taken whole and only the type is written into each record.
            while whole := list(islice(records, job.chunk_records)):
                if fallback:
                    for record in whole:
                        record["event_type"] = fallback
                done += len(whole)
                yield _mapped(job, done, {fallback: [len(whole), 0, 0]}, whole)
            yield FileEnd(done, None if box.error is None else _describe(box.error))
            return
        kept: list[dict] = []
        read: dict[str, list[int]] = {}
        n = 0
        # Flush on kept records, or on records read when filters leave most of them out, so the resume
        # point keeps moving.
        flush_at = job.chunk_records
        read_flush_at = job.chunk_records * 4
        counted_type = None
        counts = [0, 0, 0]
        for record in records:
            n += 1
            event_type = fallback
            if has_type_field:
                given = record.get("event_type")
                if isinstance(given, str) and given:
                    event_type = catalog.canonical_name(given)
                else:
                    record["event_type"] = fallback  # a null field does not hide the file's type
            elif event_type:
                record["event_type"] = event_type
            if event_type != counted_type:  # files hold one type: look its counts up once
                counts = read.get(event_type) or read.setdefault(event_type, [0, 0, 0])
                counted_type = event_type
            counts[0] += 1
            if chosen is not None and event_type not in chosen:
                counts[1] += 1
            elif filtering_time and _outside(record.get("time"), since, until):
                counts[2] += 1
            else:
                kept.append(record)
            if len(kept) >= flush_at or n >= read_flush_at:
                done += n
                yield _mapped(job, done, read, kept)
                n, kept, read, counted_type = 0, [], {}, None
        done += n
        if n:
            yield _mapped(job, done, read, kept)
    yield FileEnd(done, None if box.error is None else _describe(box.error))
