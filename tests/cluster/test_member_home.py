"""A home with a [cluster] table opens the cluster's queue (`outbox_home.open_outbox`), under a name that
stays the same for that home; the clear errors of a cluster that cannot be used: unreachable (exit 1
naming the URLs tried), credentials refused, JetStream disabled."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.cluster.conftest import NatsCluster, free_ports, member_config, single_server
from tests.reliability.harness import subprocess_env
from tests.test_store import queued
from tui_currents.cluster import JetStreamOutbox
from tui_currents.cluster.identity import instance_name
from tui_currents.outbox import StoreUnavailable
from tui_currents.outbox_home import open_outbox
from tui_currents.paths import Home
from tui_currents.received import Received
from tui_currents.store import Store

C1 = "Production"


def test_a_member_home_opens_the_cluster_queue_under_a_stable_name(
    home: Home, nats_cluster: NatsCluster, queue_name: str
):
    member_config(home.root, nats_cluster.urls, queue_name)
    first = open_outbox(home)
    try:
        assert isinstance(first, JetStreamOutbox)
        assert first.name == queue_name and first.replicas == 3
        first.commit(Received.of([(C1, queued(f"m-{i}")) for i in range(7)]), source="test")
    finally:
        first.close()
    reader = open_outbox(home, readonly=True)
    try:
        assert isinstance(reader, JetStreamOutbox)
        assert reader.backlog(C1).messages == 7  # the same queue, seen from another opening
        assert reader.instance == first.instance == instance_name(home)
    finally:
        reader.close()
    assert (home.data / "cluster-instance").stat().st_mode & 0o777 == 0o600


def test_a_home_without_a_cluster_table_keeps_its_sqlite_store(home: Home):
    outbox = open_outbox(home)
    try:
        assert isinstance(outbox, Store)
    finally:
        outbox.close()


def test_run_on_a_member_home_with_nats_unreachable_exits_1_naming_the_urls(home: Home):
    urls = [f"nats://127.0.0.1:{port}" for port in free_ports(2)]  # nothing listens there
    member_config(home.root, urls, "tc")
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tui_currents", "--home", str(home.root), "run", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(TUI_CURRENTS_KEYRING="file", TUI_CURRENTS_KEYRING_PASSPHRASE="test passphrase"),
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - began < 30
    assert all(url in result.stderr for url in urls), result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_credentials_refused_are_a_clear_error_that_shows_no_password(tmp_path: Path):
    # config.toml refuses a password in a URL (a creds file instead); the queue itself must still say a
    # refusal in words without the password, whatever the URL it was given.
    auth = ("--user", "tc", "--pass", "right-pw")
    with single_server(tmp_path, "-js", "-sd", str(tmp_path / "js"), *auth) as url:
        wrong = url.replace("nats://", "nats://tc:wrong-pw@")
        began = time.monotonic()
        with pytest.raises(StoreUnavailable) as failure:
            JetStreamOutbox([wrong], instance="a", name="tc", replicas=1, timeout=2.0)
        assert time.monotonic() - began < 15
    message = str(failure.value)
    assert failure.value.cause == "credentials refused", message
    assert "wrong-pw" not in message and "refused this connection's credentials" in message
    assert url in message and "\n" not in message


def test_a_credentials_file_that_cannot_be_read_is_named(tmp_path: Path):
    with single_server(tmp_path, "-js", "-sd", str(tmp_path / "js")) as url:
        missing = tmp_path / "nowhere.creds"
        with pytest.raises(StoreUnavailable) as failure:
            JetStreamOutbox([url], instance="a", name="tc", replicas=1, timeout=2.0, creds=missing)
    assert failure.value.cause == "credentials refused", str(failure.value)
    assert str(missing) in str(failure.value)


def test_jetstream_disabled_is_a_clear_error(home: Home, tmp_path: Path):
    with single_server(tmp_path) as url:  # no -js
        member_config(home.root, [url], "tc")
        with pytest.raises(StoreUnavailable) as failure:
            open_outbox(home)
    assert failure.value.cause == "no jetstream", str(failure.value)
    assert "without JetStream" in str(failure.value) and "-js" in str(failure.value)


def test_an_import_on_a_member_home_queues_in_the_cluster(
    home: Home, nats_cluster: NatsCluster, queue_name: str, tmp_path: Path
):
    """`import` acts on the cluster: the events go to the cluster's queue, not the home's own file, while
    the imported-files ledger stays in the home's file (a second run finds the file already imported)."""
    from tests.fixtures.currents_events import event
    from tests.test_avro_import import flat
    from tui_currents import config
    from tui_currents.config import Connector, Workspace
    from tui_currents.import_command import run_import
    from tui_currents.sources.avro_schemas import write_export

    email = "users.messages.email.Send"
    config.add_workspace(home, Workspace("prod"))
    config.add_connector(
        home, Connector(name=C1, workspace="prod", contact_email="ops@example.com", events=[email])
    )
    member_config(home.root, nats_cluster.urls, queue_name)
    records = []
    for i in range(40):
        record = event(email)
        record["id"] = f"import-{i}"
        records.append(flat(record))
    write_export(tmp_path / "bucket", records)

    args = {"workspace": "prod", "since": None, "until": None, "event_types": None, "dry_run": False}
    assert run_import(home, tmp_path / "bucket", **args) == 0
    queue = open_outbox(home, readonly=True)
    try:
        assert isinstance(queue, JetStreamOutbox)
        assert queue.backlog(C1).messages == 40
    finally:
        queue.close()
    with Store(home.store_file, readonly=True) as local:
        assert local.backlog(C1).messages == 0  # nothing went to the single box's queue
    assert run_import(home, tmp_path / "bucket", **args) == 0  # already imported: skipped
    queue = open_outbox(home, readonly=True)
    try:
        assert queue.backlog(C1).messages == 40
    finally:
        queue.close()


def test_a_member_without_a_local_file_yet_reads_the_clusters_dead_letters(
    nats_cluster: NatsCluster, queue_name: str, tmp_path: Path
):
    """A member that never ran an engine (no SQLite file of its own) still reads the cluster: the dead
    letters another member made are listed, not "no store yet"."""
    first, second = Home.at(tmp_path / "a").ensure(), Home.at(tmp_path / "b").ensure()
    for home in (first, second):
        member_config(home.root, nats_cluster.urls, queue_name)
    with open_outbox(first) as queue:
        queue.commit(Received.of([(C1, queued("dead-1")), (C1, queued("kept-1"))]), source="test")
        rows = queue.lease(C1, max_messages=1, max_bytes=10**6, lease_seconds=30)
        queue.dead_letter(C1, [rows[0].seq], reason="refused by Segment: bad event")
        queue.release_leases()
    assert not second.store_file.exists()
    result = subprocess.run(
        [sys.executable, "-m", "tui_currents", "--home", str(second.root), "dead-letters", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(TUI_CURRENTS_KEYRING="file", TUI_CURRENTS_KEYRING_PASSPHRASE="test passphrase"),
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    letters = orjson.loads(result.stdout)
    assert [(d["connector"], d["reason"]) for d in letters] == [(C1, "refused by Segment: bad event")]
