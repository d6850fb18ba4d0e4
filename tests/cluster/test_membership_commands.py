"""`cluster init | join | leave` and the configuration mirror, on the real 3-node cluster (conftest.py).

The commands run as real subprocesses (`python -m tui_currents`), with the encrypted-file keyring, where
the command is what a test is about (init, join, a crash, what a process prints); the tests of the mirror
make their members with the CLI's main in this process (`cli_in_process`). The cluster's contents are
checked by reading NATS directly (every KV value and stream message scanned for secrets in clear) and
through `JetStreamOutbox`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nats
import orjson
import pytest

from tests.cluster.conftest import LOOPBACK, NatsCluster, free_ports, nats_server_binary
from tests.conftest import TEST_KEYRING_PASSPHRASE
from tests.support import cli_in_process
from tui_currents import config
from tui_currents.cluster import JetStreamOutbox
from tui_currents.cluster.membership import ClusterSettings, cluster_settings
from tui_currents.cluster.migration import CRASH_AT_ENV
from tui_currents.cluster.mirror import mirror_shared_config
from tui_currents.config.model import Connector, Workspace
from tui_currents.paths import Home
from tui_currents.received import Received
from tui_currents.secrets import Secrets
from tui_currents.store import Store

PASSPHRASE = "cluster passphrase for tests 42"
EMAIL = ["users.messages.email.Send", "users.messages.email.Open"]
SMS = ["users.messages.sms.Send"]
PUSH = ["users.messages.pushnotification.Send"]
WRITE_KEYS = {
    "Marketing": "wk_marketing_0123456789abcdef",
    "Texts": "wk_texts_abcdef0123456789",
    "EU": "wk_eu_9f8e7d6c5b4a3210",
}
TOKENS = {"prod": "tok_prod_ABCDEFGHIJKLMNOP", "eu-shop": "tok_eu_QRSTUVWXYZ012345"}
EVENTS = 500


def cli(
    home: Home, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui_currents", "--home", str(home.root), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def init_args(cluster: NatsCluster, name: str, *more: str) -> list[str]:
    return ["cluster", "init", "--nats", ",".join(cluster.urls), "--replicas", "3", "--name", name, *more]


def join_args(cluster: NatsCluster, name: str) -> list[str]:
    return ["cluster", "join", "--nats", ",".join(cluster.urls), "--name", name, "--passphrase-stdin"]


def new_home(tmp_path: Path, name: str) -> Home:
    return Home.at(tmp_path / name).ensure()


def member(home: Home, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """A `cluster init | join` that only makes members for a test of what comes after: in this process."""
    return cli_in_process(home.root, *args, stdin=stdin)


@pytest.fixture(scope="module")
def single_box(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A home made by make_single_box once for the module (its keyring writes cost seconds), and the ids
    of its queued events; copy_single_box gives each test its own copy."""
    template = new_home(tmp_path_factory.mktemp("single-box"), "template")
    return template.root, make_single_box(template)


def copy_single_box(single_box: tuple[Path, list[str]], tmp_path: Path, name: str) -> tuple[Home, list[str]]:
    """A copy of the module's single box (config, keyring file, store), as a home of this test's own."""
    template, ids = single_box
    shutil.copytree(template, tmp_path / name)
    return Home.at(tmp_path / name), ids


def make_single_box(home: Home) -> list[str]:
    """Two workspaces, three connectors, their secrets and EVENTS queued events; returns the messageIds."""
    config.add_workspace(home, Workspace("prod"))
    config.add_workspace(home, Workspace("eu-shop"))
    base = {"contact_email": "ops@example.com"}
    config.add_connector(home, Connector(name="Marketing", workspace="prod", events=EMAIL, **base))
    config.add_connector(home, Connector(name="Texts", workspace="prod", events=SMS, **base))
    config.add_connector(home, Connector(name="EU", workspace="eu-shop", region="eu", events=PUSH, **base))
    # The test passphrase, given here: the module's template is made before each test's own environment.
    secrets = Secrets(home, backend="file", passphrase=TEST_KEYRING_PASSPHRASE)
    for connector, key in WRITE_KEYS.items():
        secrets.set_write_key(connector, key)
    for workspace, token in TOKENS.items():
        secrets.set_receiver_token(workspace, token)
    ids: list[str] = []
    with Store(home.store_file) as store:
        for start in range(0, EVENTS, 100):
            received = Received(items=100)
            for i in range(start, start + 100):
                connector = list(WRITE_KEYS)[i % 3]
                message_id = f"m-{i:04d}"
                body = orjson.dumps(
                    {"type": "track", "event": "Email Sent", "messageId": message_id, "userId": f"u{i}"}
                )
                entries, bodies = received.tails.setdefault(connector, ([], []))
                entries.append(
                    [
                        "users.messages.email.Send",
                        "Email Sent",
                        f"u{i}",
                        "queued",
                        None,
                        message_id,
                        len(body),
                    ]
                )
                bodies.append(body)
                key = (connector, "users.messages.email.Send", "queued")
                received.fates[key] = received.fates.get(key, 0) + 1
                ids.append(f"{connector}/{message_id}")
            store.commit(received, source="test")
    return ids


def queued_in_cluster(cluster: NatsCluster, name: str) -> list[str]:
    """Every event waiting in the cluster's queue, as connector/messageId (leased, then given back)."""
    found: list[str] = []
    with JetStreamOutbox(cluster.urls, instance="checker", name=name, replicas=3, ack_wait=30) as queue:
        for connector in WRITE_KEYS:
            while rows := queue.lease(connector, max_messages=1000, max_bytes=10**8, lease_seconds=30):
                found += [f"{connector}/{row.message_id}" for row in rows]
        queue.release_leases()
    return found


def cluster_bytes(cluster: NatsCluster, name: str) -> list[bytes]:
    """The data of every message of every stream of this test (KV buckets are streams too)."""

    async def scan() -> list[bytes]:
        nc = await nats.connect(servers=cluster.urls, connect_timeout=5)
        try:
            js = nc.jetstream(timeout=5)
            data: list[bytes] = []
            for info in await js.streams_info():
                stream = info.config.name or ""
                if name not in stream and name.upper() not in stream:
                    continue
                if not info.state.messages:
                    continue
                for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
                    try:
                        msg = await js.get_msg(stream, seq)
                    except nats.js.errors.NotFoundError:
                        continue
                    data.append(msg.data or b"")
                    data.append(repr(msg.headers).encode())
            return data
        finally:
            await nc.close()

    return asyncio.run(scan())


def shared_config(cluster: NatsCluster, name: str) -> dict:
    """The cluster's shared configuration as stored (JSON)."""

    async def read() -> dict:
        nc = await nats.connect(servers=cluster.urls, connect_timeout=5)
        try:
            kv = await nc.jetstream(timeout=5).key_value(f"{name}_config")
            return orjson.loads((await kv.get("config")).value or b"{}")
        finally:
            await nc.close()

    return asyncio.run(read())


# ------------------------------------------------------------------------------------------------------ init


def test_init_carries_configuration_secrets_and_queue_then_join_gets_them(
    nats_cluster: NatsCluster, queue_name: str, tmp_path: Path, single_box: tuple[Path, list[str]]
) -> None:
    first, ids = copy_single_box(single_box, tmp_path, "a")
    done = cli(first, *init_args(nats_cluster, queue_name, "--passphrase-stdin"), stdin=PASSPHRASE + "\n")
    assert done.returncode == 0, done.stderr
    assert "Queued events carried: 500" in done.stdout

    # Everything is in the cluster, once each; nothing is left waiting here.
    assert sorted(queued_in_cluster(nats_cluster, queue_name)) == sorted(ids)
    with Store(first.store_file) as store:
        assert sum(store.backlog(c).messages for c in WRITE_KEYS) == 0
    settings = cluster_settings(first)
    assert settings == ClusterSettings(nats=tuple(nats_cluster.urls), replicas=3, name=queue_name)
    assert Secrets(first).get_cluster_passphrase() == PASSPHRASE

    # Nothing secret in clear anywhere in NATS, nor in any file of the home, nor in the output.
    everything = b"\n".join(cluster_bytes(nats_cluster, queue_name))
    assert b"prod" in everything  # the scan did read the configuration
    for secret in [*WRITE_KEYS.values(), *TOKENS.values(), PASSPHRASE]:
        assert secret.encode() not in everything
        assert secret not in done.stdout + done.stderr
        for path in first.root.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path

    # A second home joins: the same configuration and working secrets.
    second = new_home(tmp_path, "b")
    joined = cli(second, *join_args(nats_cluster, queue_name), stdin=PASSPHRASE + "\n")
    assert joined.returncode == 0, joined.stderr
    mine, theirs = config.load(first), config.load(second)
    assert theirs.workspaces == mine.workspaces and theirs.connectors == mine.connectors
    assert theirs.cluster == mine.cluster
    secrets = Secrets(second)
    assert {c: secrets.get_write_key(c) for c in WRITE_KEYS} == WRITE_KEYS
    assert {w: secrets.get_receiver_token(w) for w in TOKENS} == TOKENS

    # Init again, from either home: refused, nothing changed.
    before = second.config_file.read_bytes()
    again = cli(second, *init_args(nats_cluster, queue_name, "--passphrase-stdin"), stdin=PASSPHRASE + "\n")
    assert again.returncode == 2 and "already a member" in again.stderr
    third = new_home(tmp_path, "c")
    other = cli(third, *init_args(nats_cluster, queue_name, "--passphrase-stdin"), stdin=PASSPHRASE + "\n")
    assert other.returncode == 2, other.stderr
    assert "already initialised" in other.stderr and len(other.stderr.strip().splitlines()) == 1
    assert not third.config_file.exists() and second.config_file.read_bytes() == before

    # Leave: a single box again, with the configuration it had.
    left = cli(second, "cluster", "leave")
    assert left.returncode == 0, left.stderr
    assert cluster_settings(second) is None
    assert config.load(second).connectors == mine.connectors
    assert Secrets(second).get_cluster_passphrase() is None


def test_a_wrong_passphrase_is_refused_and_nothing_is_written(
    nats_cluster: NatsCluster, queue_name: str, tmp_path: Path
) -> None:
    first = new_home(tmp_path, "a")
    config.add_workspace(first, Workspace("prod"))
    init = member(first, *init_args(nats_cluster, queue_name, "--passphrase-stdin"), stdin=PASSPHRASE)
    assert init.returncode == 0, init.stderr
    second = new_home(tmp_path, "b")
    wrong = cli(second, *join_args(nats_cluster, queue_name), stdin="not the passphrase at all\n")
    assert wrong.returncode == 2
    assert "passphrase is wrong" in wrong.stderr and "not the passphrase" not in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    assert not second.config_file.exists() and not second.keyring_file.exists()


def test_nats_down_is_exit_1_naming_the_urls_tried(tmp_path: Path) -> None:
    home = new_home(tmp_path, "a")
    urls = [f"nats://{LOOPBACK}:{port}" for port in free_ports(2)]
    started = time.monotonic()
    for args in (
        ["cluster", "init", "--nats", ",".join(urls), "--passphrase-stdin"],
        ["cluster", "join", "--nats", ",".join(urls), "--passphrase-stdin"],
    ):
        failed = cli(home, *args, stdin=PASSPHRASE)
        assert failed.returncode == 1, failed.stderr
        assert "Could not reach the NATS cluster" in failed.stderr and all(u in failed.stderr for u in urls)
        assert len(failed.stderr.strip().splitlines()) == 1 and "Traceback" not in failed.stderr
    assert time.monotonic() - started < 60
    assert not home.config_file.exists()

    # An edit on a member whose cluster cannot be reached: one line, the file unchanged.
    config.set_cluster(home, ClusterSettings(nats=tuple(urls), replicas=3))
    before = home.config_file.read_bytes()
    edit = cli(home, "workspace", "add", "prod")
    assert edit.returncode != 0 and "Could not reach the NATS cluster" in edit.stderr, edit.stderr
    assert len(edit.stderr.strip().splitlines()) == 1 and "Traceback" not in edit.stderr
    assert home.config_file.read_bytes() == before


def test_more_replicas_than_nodes_is_one_line(
    nats_cluster: NatsCluster, queue_name: str, tmp_path: Path
) -> None:
    home = new_home(tmp_path, "a")
    args = ["cluster", "init", "--nats", ",".join(nats_cluster.urls), "--name", queue_name, "--replicas", "5"]
    failed = cli(home, *args, "--passphrase-stdin", stdin=PASSPHRASE)
    assert failed.returncode == 1, failed.stderr
    assert (
        "Could not initialise the cluster" in failed.stderr and "run the same command again" in failed.stderr
    )
    assert len(failed.stderr.strip().splitlines()) == 1 and "Traceback" not in failed.stderr
    assert not home.config_file.exists()


def test_refused_before_connecting_engine_running_or_short_passphrase(tmp_path: Path) -> None:
    from tui_currents.engine import EngineLock

    home = new_home(tmp_path, "a")
    urls = f"nats://{LOOPBACK}:{free_ports(1)[0]}"
    short = cli(home, "cluster", "init", "--nats", urls, "--passphrase-stdin", stdin="short")
    assert short.returncode == 2 and "too short" in short.stderr, short.stderr
    lock = EngineLock(home.lock_file)
    lock.acquire()
    try:
        for args in (
            ["init", "--nats", urls, "--passphrase-stdin"],
            ["join", "--nats", urls, "--passphrase-stdin"],
        ):
            running = cli(home, "cluster", *args, stdin=PASSPHRASE)
            assert running.returncode == 1 and "An engine runs on this home" in running.stderr, running.stderr
        config.set_cluster(home, ClusterSettings(nats=(urls,)))
        left = cli(home, "cluster", "leave")
        assert left.returncode == 1 and "An engine runs on this home" in left.stderr
        assert cluster_settings(home) is not None
    finally:
        lock.release()
    no_passphrase = cli(home, "cluster", "join", "--nats", urls, env={"TUI_CURRENTS_CLUSTER_PASSPHRASE": ""})
    assert no_passphrase.returncode == 2 and "--passphrase-stdin" in no_passphrase.stderr


def _lone_server(tmp_path: Path, *options: str) -> tuple[subprocess.Popen, str]:
    port = free_ports(1)[0]
    process = subprocess.Popen(
        [nats_server_binary(), "-a", LOOPBACK, "-p", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            import socket

            socket.create_connection((LOOPBACK, port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return process, f"nats://{LOOPBACK}:{port}"


def test_jetstream_disabled_and_credentials_refused_are_told(tmp_path: Path) -> None:
    home = new_home(tmp_path, "a")
    plain, url = _lone_server(tmp_path)  # no -js
    try:
        failed = cli(
            home, "cluster", "init", "--nats", url, "--replicas", "1", "--passphrase-stdin", stdin=PASSPHRASE
        )
    finally:
        plain.terminate()
        plain.wait(5)
    assert failed.returncode == 1 and "JetStream is not enabled" in failed.stderr, failed.stderr
    guarded, url = _lone_server(
        tmp_path, "-js", "-sd", str(tmp_path / "js"), "--user", "app", "--pass", "s3cret-pass"
    )
    try:
        refused = cli(
            home, "cluster", "init", "--nats", url, "--replicas", "1", "--passphrase-stdin", stdin=PASSPHRASE
        )
    finally:
        guarded.terminate()
        guarded.wait(5)
    assert refused.returncode == 1 and "refused this instance's credentials" in refused.stderr, refused.stderr
    for result in (failed, refused):
        assert len(result.stderr.strip().splitlines()) == 1
    assert not home.config_file.exists()


# The last step (events half carried) runs everywhere: it is the one where an event could be lost or stored
# twice. The steps before it are the same resumption with less done; they run with `-m soak`, to hold the
# suite's time budget.
@pytest.mark.parametrize(
    "step",
    [
        pytest.param("claimed", marks=pytest.mark.soak),
        pytest.param("secrets", marks=pytest.mark.soak),
        pytest.param("config", marks=pytest.mark.soak),
        "events",
    ],
)
def test_init_stopped_by_a_crash_is_finished_by_running_it_again(
    nats_cluster: NatsCluster, queue_name: str, tmp_path: Path, step: str, single_box: tuple[Path, list[str]]
) -> None:
    home, ids = copy_single_box(single_box, tmp_path, "a")
    crashed = cli(
        home,
        *init_args(nats_cluster, queue_name, "--passphrase-stdin"),
        stdin=PASSPHRASE,
        env={CRASH_AT_ENV: step},
    )
    assert crashed.returncode == -9, crashed.stderr
    assert cluster_settings(home) is None  # not a member until the end
    finished = cli(home, *init_args(nats_cluster, queue_name, "--passphrase-stdin"), stdin=PASSPHRASE)
    assert finished.returncode == 0, finished.stderr
    found = queued_in_cluster(nats_cluster, queue_name)
    assert set(found) == set(ids)  # nothing lost
    assert len(found) == len(ids)  # and the batch committed before the crash was stored once
    with Store(home.store_file) as store:
        assert sum(store.backlog(c).messages for c in WRITE_KEYS) == 0
    second = new_home(tmp_path, "b")
    assert cli(second, *join_args(nats_cluster, queue_name), stdin=PASSPHRASE).returncode == 0
    assert Secrets(second).get_write_key("Texts") == WRITE_KEYS["Texts"]


# ---------------------------------------------------------------------------------------------------- mirror


async def test_an_edit_on_one_member_reaches_the_others_config_and_keyring(
    nats_cluster: NatsCluster, queue_name: str, tmp_path: Path
) -> None:
    first, second = new_home(tmp_path, "a"), new_home(tmp_path, "b")
    config.add_workspace(first, Workspace("prod"))
    config.add_connector(
        first, Connector(name="Marketing", workspace="prod", contact_email="ops@example.com", events=EMAIL)
    )
    Secrets(first).set_write_key("Marketing", WRITE_KEYS["Marketing"])
    init = await asyncio.to_thread(
        member, first, *init_args(nats_cluster, queue_name, "--passphrase-stdin"), stdin=PASSPHRASE
    )
    assert init.returncode == 0, init.stderr
    joined = await asyncio.to_thread(member, second, *join_args(nats_cluster, queue_name), stdin=PASSPHRASE)
    assert joined.returncode == 0, joined.stderr

    ready_a, ready_b = asyncio.Event(), asyncio.Event()
    mirrors = [
        asyncio.create_task(mirror_shared_config(first, ready=ready_a)),
        asyncio.create_task(mirror_shared_config(second, ready=ready_b)),
    ]
    try:
        await asyncio.wait_for(asyncio.gather(ready_a.wait(), ready_b.wait()), 30)

        # A config edit on B (the CLI, a subprocess) goes to the cluster, then into A's config.toml.
        added = await asyncio.to_thread(
            cli, second, "connector", "add", "Texts", "--workspace", "prod", "--email", "ops@example.com",
            "--region", "us", "--events", ",".join(SMS), "--write-key-stdin", stdin=WRITE_KEYS["Texts"],
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        started = time.monotonic()
        while "Texts" not in first.config_file.read_text(encoding="utf-8"):
            assert time.monotonic() - started < 5, "the edit did not reach the other member within 5 s"
            await asyncio.sleep(0.1)
        assert [c.name for c in config.load(first).connectors] == ["Marketing", "Texts"]
        assert cluster_settings(first) is not None  # its own [cluster] kept

        # Its write key, stored in B's keyring by the CLI, is carried by B's mirror to the cluster, then
        # into A's keyring.
        reader = Secrets(first)
        started = time.monotonic()
        while await asyncio.to_thread(reader.get_write_key, "Texts") != WRITE_KEYS["Texts"]:
            assert time.monotonic() - started < 15, "the write key did not reach the other member"
            await asyncio.sleep(0.3)
    finally:
        for task in mirrors:
            task.cancel()
        await asyncio.gather(*mirrors, return_exceptions=True)


def test_edits_on_two_members_at_once_are_all_kept(
    nats_cluster: NatsCluster, queue_name: str, tmp_path: Path
) -> None:
    first, second = new_home(tmp_path, "a"), new_home(tmp_path, "b")
    config.add_workspace(first, Workspace("prod"))
    init = member(first, *init_args(nats_cluster, queue_name, "--passphrase-stdin"), stdin=PASSPHRASE)
    assert init.returncode == 0, init.stderr
    assert member(second, *join_args(nats_cluster, queue_name), stdin=PASSPHRASE).returncode == 0

    def add(home: Home, prefix: str) -> None:
        for i in range(6):
            config.add_workspace(home, Workspace(f"{prefix}{i}"))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(add, [first, second], ["a", "b"]))
    # Each compare-and-set that lost was redone on the other's version: nothing was overwritten.
    expected = {"prod", *(f"a{i}" for i in range(6)), *(f"b{i}" for i in range(6))}
    assert {w["name"] for w in shared_config(nats_cluster, queue_name)["workspaces"]} == expected

    # A change that the cluster's configuration refuses is refused on a member, and nothing is written.
    before = second.config_file.read_bytes()
    with pytest.raises(config.ConfigError) as caught:
        config.remove_workspace(second, "nowhere")
    assert "no workspace named 'nowhere'" in str(caught.value)
    assert second.config_file.read_bytes() == before


async def test_a_running_engine_applies_an_edit_made_on_another_member(
    nats_cluster: NatsCluster, queue_name: str, tmp_path: Path
) -> None:
    """The engine of a member starts the mirror itself: a connector paused with the CLI on B is paused in
    the engine running on A (its delivery stops), with no command given on A."""
    from tui_currents.engine import Engine, EngineOptions

    first, second = new_home(tmp_path, "a"), new_home(tmp_path, "b")
    config.add_workspace(first, Workspace("prod"))
    config.add_connector(
        first, Connector(name="Marketing", workspace="prod", contact_email="ops@example.com", events=EMAIL)
    )
    Secrets(first).set_write_key("Marketing", WRITE_KEYS["Marketing"])
    init = await asyncio.to_thread(
        member, first, *init_args(nats_cluster, queue_name, "--passphrase-stdin"), stdin=PASSPHRASE
    )
    assert init.returncode == 0, init.stderr
    joined = await asyncio.to_thread(member, second, *join_args(nats_cluster, queue_name), stdin=PASSPHRASE)
    assert joined.returncode == 0, joined.stderr

    engine = Engine(first, Secrets(first), EngineOptions(start_receiver=False))
    await engine.start()
    try:
        assert engine.config is not None and not engine.config.connector("Marketing").paused
        paused = await asyncio.to_thread(cli, second, "connector", "pause", "Marketing")
        assert paused.returncode == 0, paused.stderr
        started = time.monotonic()
        while not engine.config.connector("Marketing").paused:
            assert time.monotonic() - started < 15, "the running engine did not apply the other member's edit"
            await asyncio.sleep(0.2)
    finally:
        await engine.stop()
