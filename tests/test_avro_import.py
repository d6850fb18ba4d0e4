"""Importing Currents Avro files: files written with fastavro in Braze's folder layout, a real config file and
a real store file."""

from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import orjson
import pytest

import tui_currents
from tests import support
from tui_currents import catalog, config
from tui_currents.config import Connector, Workspace
from tui_currents.mapping import map_event, normalise
from tui_currents.paths import Home
from tui_currents.sources import avro_import
from tui_currents.sources.avro_import import ImportProgress, import_path
from tui_currents.sources.avro_schemas import schema_for, write_avro_file, write_export
from tui_currents.sources.demo import DemoGenerator
from tui_currents.sources.ingest import Ingestor, UnknownWorkspace
from tui_currents.store import Store, StoreUnavailable
from tui_currents.store.import_ledger import ImportLedger
from tui_currents.store.schema import PAGE_SIZE

from .fixtures.currents_events import EVENTS, event

pytestmark = pytest.mark.timeout(30)

WORKSPACE = "marketing"
CONNECTOR = "Marketing main"
SUPPORTED = [e.event_type for e in catalog.CATALOG if e.supported]
HOUR = 3600


def flat(http_event: dict) -> dict:
    """An HTTP-shaped Currents event as the flat record Braze's Avro files hold (event_type kept so that
    write_export can group by it; it leaves it out of the files)."""
    return {
        "event_type": http_event["event_type"],
        "id": http_event["id"],
        "time": http_event["time"],
        **http_event["user"],
        **http_event["properties"],
    }


@pytest.fixture(autouse=True, params=["in-process", "workers"])
def reading(request, monkeypatch) -> str:
    """Every import test runs twice: files read and mapped in the importing process, and in two worker
    processes (what an import of more than a few megabytes on two cores does)."""
    count = 0 if request.param == "in-process" else 2
    monkeypatch.setattr(avro_import, "workers_wanted", lambda total_bytes: count)
    # Small files are otherwise read by the importing process between its workers' chunks: here every
    # file goes to a worker (tests/test_import_workers.py covers the mix).
    monkeypatch.setattr(avro_import, "READ_HERE_BYTES", -1)
    return str(request.param)


@pytest.fixture
def setup(home: Home) -> Iterator[tuple[Store, Ingestor]]:
    config.add_workspace(home, Workspace(WORKSPACE))
    config.add_workspace(home, Workspace("other"))
    config.add_connector(
        home,
        Connector(name=CONNECTOR, workspace=WORKSPACE, contact_email="ops@example.com", events=SUPPORTED),
    )
    store = Store(home.store_file)
    try:
        yield store, Ingestor(config.load(home), store)
    finally:
        store.close()


@pytest.fixture
def store(setup) -> Store:
    return setup[0]


@pytest.fixture
def ingestor(setup) -> Ingestor:
    return setup[1]


def _queued(store: Store) -> list[dict]:
    rows = store.lease(CONNECTOR, max_messages=100_000, max_bytes=10**9, lease_seconds=60)
    store.release(CONNECTOR, [r.seq for r in rows])
    return [orjson.loads(r.body) for r in rows]


def _demo_records(n: int, event_type: str, *, seed: int = 7, start: int = 1_717_171_200, step: float = 1.0):
    clock = iter(start + i * step for i in range(n))
    generator = DemoGenerator(
        seed=seed, event_types=[event_type], anonymous_share=0.0, flat=True, clock=lambda: next(clock)
    )
    return [generator.event() for _ in range(n)]


# ------------------------------------------------------------------------------------------- importing


def test_every_supported_type_is_imported_from_a_braze_layout(tmp_path, home, store, ingestor) -> None:
    records = [flat(EVENTS[name]) for name in SUPPORTED]
    files = write_export(tmp_path / "bucket", records)
    progress: list[ImportProgress] = []

    summary = import_path(tmp_path / "bucket", WORKSPACE, ingestor, progress=progress.append)

    assert summary.ok
    assert summary.files_total == summary.files_imported == len(files) == len(SUPPORTED)
    for name in SUPPORTED:
        counts = summary.by_type[name]
        assert (counts.read, counts.queued) == (1, 1), name
    rules = config.load(home).connector(CONNECTOR).rules()
    expected = {r["id"]: map_event(normalise(r), rules).message for r in records}
    assert {m["messageId"]: m for m in _queued(store)} == expected
    assert progress[-1].files_done == len(files)
    assert progress[-1].events == len(SUPPORTED)
    one = next(f for f in files if "email.Send" in str(f))
    assert f"event_type=users.messages.email.Send{os.sep}date=2024-05-31-" in str(one)
    assert one.name.startswith("dataexport.prod-01.S3.integration.")


def test_the_event_type_comes_from_the_record_then_the_path_then_the_schema(
    tmp_path, store, ingestor
) -> None:
    send = flat(event("users.messages.email.Send"))
    del send["event_type"]
    base = tmp_path / "export"
    # 1. A record that names its type wins over the folder it sits in.
    in_record = {**send, "id": "from-record", "event_type": "users.messages.email.Open"}
    write_avro_file(base / "event_type=users.messages.email.Send" / "a.avro", "x", [in_record],
                    schema=schema_for("users.messages.email.Send", [in_record]))  # fmt: skip
    # 2. No field: the event_type= folder wins over the record name.
    by_path = {**send, "id": "from-path"}
    write_avro_file(base / "event_type=users.messages.email.Click" / "b.avro", "x", [by_path],
                    schema=schema_for("users.messages.email.Send", [by_path]))  # fmt: skip
    # 3. Neither: the record name (namespace dataexport.S3.inner.users.messages.sms, name Send).
    by_schema = {**send, "id": "from-schema"}
    write_avro_file(base / "elsewhere" / "c.avro", "x", [by_schema],
                    schema=schema_for("users.messages.sms.Send", [by_schema]))  # fmt: skip

    summary = import_path(base, WORKSPACE, ingestor)

    assert summary.ok
    events = {m["messageId"]: m["event"] for m in _queued(store)}
    assert events == {
        "from-record": "Email Opened",
        "from-path": "Email Link Clicked",
        "from-schema": "SMS Sent",
    }


def test_avro_types_nulls_unknown_fields_and_schema_changes(tmp_path, store, ingestor) -> None:
    whatsapp = flat(event("users.messages.whatsapp.Send"))
    email = flat(event("users.messages.email.Send"))
    email["campaign_name"] = None  # a ["null", "string"] union holding null
    newer = {**email, "id": "newer-schema", "field_added_later": "hello"}  # a schema id later
    root = tmp_path / "bucket"
    write_export(root / "old", [whatsapp, email])
    write_export(root / "new", [newer])
    [whatsapp_file] = [f for f in root.rglob("*.avro") if "whatsapp" in str(f)]
    with whatsapp_file.open("rb") as handle:
        schema = fastavro.reader(handle).writer_schema
    assert {f["name"]: f["type"] for f in schema["fields"]}["time"] == "long"

    summary = import_path(root, WORKSPACE, ingestor)

    assert summary.ok and summary.files_imported == 3
    messages = {m["messageId"]: m for m in _queued(store)}
    sent_at = datetime.fromtimestamp(whatsapp["time"], UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert messages[whatsapp["id"]]["timestamp"] == sent_at
    assert "campaign_name" not in messages[email["id"]]["properties"]
    assert messages["newer-schema"]["properties"]["field_added_later"] == "hello"


def test_with_two_connectors_each_event_counts_once_by_its_best_fate(tmp_path, home, store) -> None:
    email = catalog.resolve_events("Email")
    config.update_connector(
        home,
        CONNECTOR,
        Connector(name=CONNECTOR, workspace=WORKSPACE, contact_email="ops@example.com", events=email),
    )
    rest = [t for t in SUPPORTED if t not in email]
    config.add_connector(
        home,
        Connector(name="Everything else", workspace=WORKSPACE, contact_email="ops@example.com", events=rest),
    )
    ingestor = Ingestor(config.load(home), store)
    write_export(tmp_path, [flat(EVENTS[name]) for name in SUPPORTED])

    summary = import_path(tmp_path, WORKSPACE, ingestor)

    assert summary.totals().read == summary.totals().queued == len(SUPPORTED)
    assert summary.totals().not_selected == 0
    assert store.backlog(CONNECTOR).messages == len(email)
    assert store.backlog("Everything else").messages == len(rest)


def test_anonymous_and_invalid_records_are_counted_and_kept(tmp_path, store, ingestor) -> None:
    anonymous = {**flat(event("users.messages.email.Open")), "id": "anon", "external_user_id": None}
    nobody = {
        **flat(event("users.messages.email.Open")),
        "id": "nobody",
        "external_user_id": None,
        "user_id": None,
    }
    unsupported = {
        **flat(event("users.messages.email.Open")),
        "event_type": "users.behaviors.app.SessionHologram",
    }
    deletion = {**flat(event("users.UserDeleteRequest")), "event_type": "users.UserDeleteRequest"}
    write_export(tmp_path, [anonymous, nobody, unsupported, deletion])

    summary = import_path(tmp_path, WORKSPACE, ingestor)

    opens = summary.by_type["users.messages.email.Open"]
    assert (opens.read, opens.anonymous, opens.rejected, opens.queued) == (2, 1, 1, 0)
    assert summary.by_type["users.behaviors.app.SessionHologram"].unsupported == 1
    assert summary.by_type["users.UserDeleteRequest"].not_forwardable == 1
    assert store.counter_totals(CONNECTOR)["not_forwardable"] == 1
    [letter] = store.dead_letters(CONNECTOR)
    assert letter.message_id == "nobody"
    assert "external_user_id" in letter.reason
    assert store.counter_totals(CONNECTOR)["anonymous"] == 1


def test_damaged_files_are_reported_and_everything_else_imported(tmp_path, store, ingestor) -> None:
    root = tmp_path / "bucket"
    good = _demo_records(50, "users.messages.pushnotification.Send", seed=1)
    write_export(root / "good", good)
    records = _demo_records(3000, "users.messages.email.Send", seed=2)
    for r in records:
        r.pop("event_type")
    schema = schema_for("users.messages.email.Send", records)
    whole = write_avro_file(root / "cut" / "whole.avro", "users.messages.email.Send", records, schema=schema,
                            sync_interval=4000)  # fmt: skip
    data = whole.read_bytes()
    truncated = root / "cut" / "truncated.avro"
    truncated.write_bytes(data[: len(data) * 6 // 10])
    whole.unlink()
    (root / "junk.avro").write_text("this is not Avro\n")
    (root / "empty.avro").write_bytes(b"")
    (root / "notes.txt").write_text("a file the walk leaves alone\n")

    summary = import_path(root, WORKSPACE, ingestor)

    assert summary.files_total == 4  # the .txt file is not an export file
    assert summary.files_imported == 1
    problems = {p.path.name: p for p in summary.problems}
    assert set(problems) == {"truncated.avro", "junk.avro", "empty.avro"}
    assert "truncated" in problems["truncated.avro"].message
    assert "not an Avro" in problems["junk.avro"].message
    kept = problems["truncated.avro"].records_imported
    assert 0 < kept < len(records)
    ids = {m["messageId"] for m in _queued(store)}
    assert ids == {r["id"] for r in good} | {r["id"] for r in records[:kept]}

    again = import_path(root, WORKSPACE, ingestor)  # still reported, nothing sent twice
    assert {p.path.name for p in again.problems} == set(problems)
    assert again.files_skipped == 1
    assert again.duplicates == 0
    assert store.backlog(CONNECTOR).messages == len(ids)


def test_since_and_until_filter_on_the_records_time_not_the_folder(tmp_path, store, ingestor) -> None:
    start = 1_717_171_200  # 2024-05-31T16:00:00Z
    records = _demo_records(30, "users.messages.email.Delivery", start=start, step=HOUR / 10)  # 3 hours
    for r in records:
        r.pop("event_type")
    schema = schema_for("users.messages.email.Delivery", records)
    # All in one hourly folder (the hour Braze queued them), whatever their own time.
    write_avro_file(tmp_path / "event_type=users.messages.email.Delivery" / "date=2024-05-31-16" / "f.avro",
                    "users.messages.email.Delivery", records, schema=schema)  # fmt: skip
    since = datetime.fromtimestamp(start + HOUR, UTC)
    until = datetime.fromtimestamp(start + 2 * HOUR, UTC)

    summary = import_path(tmp_path, WORKSPACE, ingestor, since=since, until=until)

    wanted = {r["id"] for r in records if start + HOUR <= r["time"] < start + 2 * HOUR}
    assert 0 < len(wanted) < len(records)
    assert {m["messageId"] for m in _queued(store)} == wanted
    counts = summary.by_type["users.messages.email.Delivery"]
    assert (counts.read, counts.queued, counts.outside_time) == (30, len(wanted), 30 - len(wanted))

    # A window 12 minutes wider is another import: the file is read again, only the new events queued.
    wider = import_path(tmp_path, WORKSPACE, ingestor, since=since.timestamp() - 720, until=until)
    assert (wider.files_skipped, wider.files_imported) == (0, 1)
    assert (wider.queued, wider.duplicates) == (2, len(wanted))


def test_the_event_type_filter_leaves_other_types_unread_by_the_store(tmp_path, store, ingestor) -> None:
    write_export(tmp_path, [flat(EVENTS[name]) for name in SUPPORTED])
    email = catalog.resolve_events("Email")

    summary = import_path(tmp_path, WORKSPACE, ingestor, event_types=email)

    assert {m["event"] for m in _queued(store)} == {catalog.find(t).segment_event for t in email}
    assert summary.totals().not_chosen == len(SUPPORTED) - len(email)
    assert store.counter_totals(CONNECTOR)["received"] == len(email)


def test_a_dry_run_counts_what_would_be_sent_and_stores_nothing(tmp_path, store, ingestor) -> None:
    records = [flat(EVENTS[name]) for name in SUPPORTED]
    records.append({**flat(event("users.messages.email.Open")), "id": "anon", "external_user_id": None})
    write_export(tmp_path, records)

    dry = import_path(tmp_path, WORKSPACE, ingestor, dry_run=True)

    assert dry.dry_run and dry.totals().queued == len(SUPPORTED)
    assert store.counter_totals() == {}
    assert store.backlog(CONNECTOR).messages == 0
    real = import_path(tmp_path, WORKSPACE, ingestor)  # the dry run marked nothing as imported
    assert real.files_skipped == 0
    assert real.by_type == dry.by_type
    assert store.backlog(CONNECTOR).messages == len(SUPPORTED)


# ------------------------------------------------------------------------------------------- re-running


def test_importing_again_skips_what_was_imported(tmp_path, store, ingestor) -> None:
    root = tmp_path / "bucket"
    write_export(root, [flat(EVENTS[name]) for name in SUPPORTED[:10]])
    first = import_path(root, WORKSPACE, ingestor)
    a_file = next(root.rglob("*.avro"))
    os.utime(a_file, (1, 1))  # touched: same content
    shutil.copy(a_file, root / "copy-of-a-file.avro")  # the same content under another name

    again = import_path(root, WORKSPACE, ingestor)

    assert first.files_imported == 10
    assert (again.files_skipped, again.files_imported, again.events_read) == (11, 0, 0)
    assert store.backlog(CONNECTOR).messages == 10
    forced = import_path(root, WORKSPACE, ingestor, force=True)
    assert (forced.queued, forced.duplicates) == (0, 11)
    other_filters = import_path(root, WORKSPACE, ingestor, event_types=SUPPORTED)  # another selection: read
    assert (other_filters.files_imported, other_filters.files_skipped, other_filters.queued) == (10, 1, 0)


class _Interrupted(Exception):
    pass


def test_an_interrupted_import_resumes_after_the_last_committed_chunk(tmp_path, store, ingestor) -> None:
    records = _demo_records(3500, "users.messages.email.Send")
    write_export(tmp_path, records)
    seen: list[int] = []

    def stop_after_first_chunk(progress: ImportProgress) -> None:
        seen.append(progress.events)
        if progress.events >= 1000:
            raise _Interrupted  # as Ctrl-C would, right after a chunk was committed

    with pytest.raises(_Interrupted):
        import_path(tmp_path, WORKSPACE, ingestor, progress=stop_after_first_chunk, chunk_records=1000)
    assert store.backlog(CONNECTOR).messages == 1000

    resumed = import_path(tmp_path, WORKSPACE, ingestor, chunk_records=1000)

    assert (resumed.files_resumed, resumed.events_read, resumed.duplicates) == (1, 2500, 0)
    assert store.backlog(CONNECTOR).messages == 3500
    assert {m["messageId"] for m in _queued(store)} == {r["id"] for r in records}


def test_a_lost_resume_point_costs_duplicates_not_double_sends(tmp_path, home, store, ingestor) -> None:
    records = _demo_records(1200, "users.messages.email.Send")
    write_export(tmp_path, records)
    import_path(tmp_path, WORKSPACE, ingestor)
    delivered = store.lease(CONNECTOR, max_messages=200, max_bytes=10**9, lease_seconds=60)
    store.delivered(CONNECTOR, [r.seq for r in delivered])  # some already went to Segment
    with sqlite3.connect(home.store_file) as db:  # as if the process died before noting its progress
        db.execute("UPDATE imported_files SET records_done = 0, complete = 0")

    again = import_path(tmp_path, WORKSPACE, ingestor)

    assert (again.events_read, again.queued, again.duplicates) == (1200, 0, 1200)
    assert store.backlog(CONNECTOR).messages == 1000


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    with support.tiny_disk(tmp_path / "tiny", megabytes=4) as folder:
        yield folder


def test_a_full_disk_stops_the_import_and_a_rerun_resumes(tmp_path, home, tiny_disk) -> None:
    config.add_workspace(home, Workspace(WORKSPACE))
    config.add_connector(
        home,
        Connector(name=CONNECTOR, workspace=WORKSPACE, contact_email="ops@example.com", events=SUPPORTED),
    )
    records = _demo_records(1500, "users.messages.email.Send")
    write_export(tmp_path, records)
    fillers: list[Path] = []

    def fill_the_disk_after_the_first_chunk(progress: ImportProgress) -> None:
        if progress.events >= 500 and not fillers:
            fillers.append(support.fill_disk(tiny_disk))

    with Store(tiny_disk / "currents.db") as store:
        ingestor = Ingestor(config.load(home), store)
        first = import_path(tmp_path, WORKSPACE, ingestor, progress=fill_the_disk_after_the_first_chunk,
                            chunk_records=500)  # fmt: skip
        assert first.stopped and "full" in first.stopped
        assert not first.ok
        assert store.backlog(CONNECTOR).messages == 500

        fillers[0].unlink()
        second = import_path(tmp_path, WORKSPACE, ingestor, chunk_records=500)

        assert second.ok, second.stopped
        assert (second.files_resumed, second.events_read) == (1, 1000)
        counters = store.counter_totals(CONNECTOR)
        assert counters["queued"] == len(records)
        assert counters.get("duplicate", 0) == 0


def test_an_unknown_workspace_is_refused_before_reading(tmp_path, ingestor) -> None:
    with pytest.raises(UnknownWorkspace, match="nowhere"):
        import_path(tmp_path, "nowhere", ingestor)
    with pytest.raises(FileNotFoundError):
        import_path(tmp_path / "absent", WORKSPACE, ingestor)


def test_files_written_by_the_helpers_read_back_as_written(tmp_path) -> None:
    records = _demo_records(20, "users.messages.sms.Delivery")
    [path] = write_export(tmp_path, records)
    with path.open("rb") as handle:
        reader = fastavro.reader(handle)
        schema = reader.writer_schema
        read = list(reader)
    types = {f["name"]: f["type"] for f in schema["fields"]}
    assert schema["name"] == "dataexport.S3.inner.users.messages.sms.Delivery"
    assert types["id"] == "string" and types["time"] == "int"
    assert types["external_user_id"] == ["null", "string"]
    assert "event_type" not in types
    # Fields a record lacks (Canvas fields on a campaign's message) read back as null.
    expected = [{name: r.get(name) for name in types} for r in records]
    assert read == expected


# ----------------------------------------------------------------------------- the imported-files table

FIXTURES = Path(__file__).parent / "fixtures" / "imported_before"


def test_only_the_store_package_opens_the_store_file() -> None:
    package = Path(tui_currents.__file__).parent
    openers = [
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if "sqlite3.connect(" in path.read_text() and path.parent.name != "store"
    ]
    assert openers == []


def test_the_imported_files_table_opens_the_file_the_stores_way(tmp_path) -> None:
    path = tmp_path / "currents.db"
    ledger = ImportLedger(path)  # the first to make the file
    ledger.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    assert path.stat().st_mode & 0o777 == 0o600
    Store(path).close()  # and the store takes it as its own
    assert ImportLedger(path, readonly=True).state("0" * 64, WORKSPACE, "") is None


def test_a_damaged_store_file_is_refused_in_the_stores_words(tmp_path) -> None:
    path = tmp_path / "currents.db"
    path.write_bytes(b"this is not a database, it is some other file of the same name" * 100)
    for readonly in (False, True):
        with pytest.raises(StoreUnavailable) as caught:
            ImportLedger(path, readonly=readonly).close()
        assert caught.value.cause == "damaged"
        assert "\n" not in str(caught.value)


def test_files_imported_by_an_earlier_version_are_still_skipped(tmp_path, home) -> None:
    # The store file and the Avro file it imported, both as an earlier version of the importer left them.
    home.ensure()
    home.store_file.write_bytes(gzip.decompress((FIXTURES / "currents.db.gz").read_bytes()))
    config.add_workspace(home, Workspace(WORKSPACE))
    config.add_connector(
        home,
        Connector(name=CONNECTOR, workspace=WORKSPACE, contact_email="ops@example.com", events=SUPPORTED),
    )
    shutil.copy(FIXTURES / "email-send.avro", tmp_path / "moved-since.avro")
    with Store(home.store_file) as store:
        ingestor = Ingestor(config.load(home), store)
        dry = import_path(tmp_path, WORKSPACE, ingestor, dry_run=True)
        again = import_path(tmp_path, WORKSPACE, ingestor)
        assert (dry.files_skipped, dry.events_read) == (1, 0)
        assert (again.files_skipped, again.events_read, again.queued) == (1, 0, 0)
        assert store.backlog(CONNECTOR).messages == 3  # what the earlier version queued
        forced = import_path(tmp_path, WORKSPACE, ingestor, force=True)
        assert (forced.events_read, forced.queued, forced.duplicates) == (3, 0, 3)


# ---------------------------------------------------------------------------------------- a killed import


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(p) for p in (task / "children").read_text().split())
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _records_done(store_file: Path) -> int:
    try:
        with sqlite3.connect(f"{store_file.as_uri()}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT coalesce(sum(records_done), 0) FROM imported_files").fetchone()[0])
    except sqlite3.OperationalError:  # no table yet
        return 0


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("reading", ["workers"], indirect=True)
def test_an_import_killed_midway_then_run_again_gives_each_event_once(tmp_path, home, reading) -> None:
    config.add_workspace(home, Workspace(WORKSPACE))
    config.add_connector(
        home,
        Connector(name=CONNECTOR, workspace=WORKSPACE, contact_email="ops@example.com", events=SUPPORTED),
    )
    types = ("users.messages.email.Send", "users.messages.email.Open", "users.messages.sms.Send")
    records = [
        r for seed, event_type in enumerate(types) for r in _demo_records(12_000, event_type, seed=seed)
    ]
    assert len({r["id"] for r in records}) == len(records)
    write_export(tmp_path / "bucket", records)  # about 14 MB: read in worker processes
    command = [sys.executable, "-m", "tui_currents", "import", str(tmp_path / "bucket"), "--workspace",
               WORKSPACE]  # fmt: skip
    importing = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: set[int] = set()
    deadline = time.monotonic() + 120
    while _records_done(home.store_file) == 0:  # SIGKILL once some chunks are committed, none is complete
        assert importing.poll() is None, importing.stderr.read() if importing.stderr else ""
        assert time.monotonic() < deadline
        workers |= _children(importing.pid)
        time.sleep(0.02)
    importing.kill()
    importing.wait()
    assert workers, "the import read its files in worker processes"
    gone_by = time.monotonic() + 15
    while any(_running(pid) for pid in workers) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert not any(_running(pid) for pid in workers), "workers outlived the killed import"
    with Store(home.store_file) as store:
        assert 0 < store.backlog(CONNECTOR).messages < len(records)

    again = subprocess.run(command, capture_output=True, text=True, timeout=180)

    assert again.returncode == 0, again.stderr
    assert "resumed" in again.stdout
    with Store(home.store_file) as store:
        assert store.backlog(CONNECTOR).messages == len(records)
        ids = [m["messageId"] for m in _queued(store)]
        assert len(ids) == len(set(ids)) == len(records)
        assert set(ids) == {r["id"] for r in records}
        assert store.counter_totals(CONNECTOR)["queued"] == len(records)
