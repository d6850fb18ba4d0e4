"""The TUI on a cluster member: its header names the cluster and counts the instances alive (a fresh
heartbeat, the rule of `cluster status`), says "unreachable" in words when NATS is gone while the app keeps
answering keys, and its health screen lists the instances and the queue stream's replicas.

The app runs as a console (no engine of its own): instances are other engines' presences in the cluster,
one kept by a real `JetStreamOutbox` beating every second, one written as a stopped engine leaves it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from pathlib import Path

import nats
import orjson
import pytest

from tests.cluster import conftest as cluster_support
from tests.cluster.conftest import LOOPBACK, NatsCluster, OpenOutbox, member_config, single_server
from tests.tui.helpers import make_app, ready, wait_until
from tests.tui.test_contrast import low_contrast_texts
from tests.tui.test_narrow import screen_lines
from tui_currents import __version__
from tui_currents.cluster import codec
from tui_currents.cluster.status import ALIVE_SECONDS
from tui_currents.paths import Home
from tui_currents.tui.backend import CLUSTER_READ_SECONDS, CONSOLE_OPEN_SECONDS, OPEN_RETRY_SECONDS

pytestmark = pytest.mark.timeout(90)


def words(app) -> str:
    """The screen's text with its line breaks and padding as single spaces (a wrapped message reads whole)."""
    return " ".join(" ".join(screen_lines(app)).split())


def header(app) -> str:
    """The header's cluster line (the line under the title bar)."""
    return screen_lines(app)[1]


async def write_presence(urls: list[str], bucket: str, instance: str, **presence: object) -> None:
    """An engine's presence in the cluster's state bucket, as that engine last wrote it."""
    nc = await nats.connect(servers=urls, connect_timeout=5)
    try:
        kv = await nc.jetstream(timeout=5).key_value(bucket)
        await kv.put(f"i.{codec.token(instance)}", orjson.dumps({"instance": instance, **presence}))
    finally:
        await nc.close()


async def test_the_header_counts_the_instances_alive_and_drops_one_whose_heartbeat_went_stale(
    home: Home, nats_cluster: NatsCluster, open_outbox: OpenOutbox, queue_name: str
):
    member_config(home.root, nats_cluster.urls, queue_name)
    engine = open_outbox(instance="eu-1", presence=True)  # beats every second, as a running engine does
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await wait_until(pilot, lambda: f"cluster {queue_name} · 1 instance" in header(app))
        assert "1 instances" not in header(app)

        # A second engine whose last heartbeat was 1.5 s ago, and which beats no more (killed).
        await write_presence(
            nats_cluster.urls,
            engine.bucket,
            "eu-2",
            state="running",
            at=time.time() - 1.5,
            address="http://127.0.0.1:9",
            version=__version__,
            pid=os.getpid(),
        )
        await wait_until(pilot, lambda: f"cluster {queue_name} · 2 instances" in header(app), timeout=3)
        began = time.monotonic()
        await wait_until(
            pilot, lambda: f"cluster {queue_name} · 1 instance" in header(app), timeout=ALIVE_SECONDS + 3
        )
        assert time.monotonic() - began < ALIVE_SECONDS + 2

        # A single box's header is left as it was: only a member home has the line.
        assert app.backend.cluster_name == queue_name


async def test_a_single_box_shows_no_cluster_line(home: Home):
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert app.backend.cluster_name is None and app.backend.cluster is None
        assert not any("cluster" in line for line in screen_lines(app)[:3])


async def test_the_health_screen_lists_instances_and_the_streams_replicas_readable_in_both_themes(
    home: Home, nats_cluster: NatsCluster, open_outbox: OpenOutbox, queue_name: str
):
    member_config(home.root, nats_cluster.urls, queue_name)
    engine = open_outbox(instance="eu-1", presence=True)
    engine.announce(receiver="http://127.0.0.1:8750")
    await write_presence(
        nats_cluster.urls, engine.bucket, "eu-0", state="stopped", at=time.time() - 30, version=__version__
    )
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("h")

        def listed() -> bool:
            text = "\n".join(screen_lines(app))
            return "eu-1" in text and "http://127.0.0.1:8750" in text and "leader n" in text

        await wait_until(pilot, listed)
        lines = screen_lines(app)
        text = "\n".join(lines)
        assert f"Cluster {queue_name}" in text and "1 of 2 instances running" in text
        running = next(line for line in lines if "eu-1" in line)
        assert "● running" in running and f"v{__version__}" in running and "http://127.0.0.1:8750" in running
        age = float(running.split("seen ")[1].split(" s ago")[0])  # the last heartbeat as an age
        assert 0 <= age < ALIVE_SECONDS
        stopped = next(line for line in lines if "eu-0" in line)
        assert "○ stopped" in stopped and "no receiver" in stopped and "s ago" in stopped
        assert f"queue {engine.stream}: 0 messages" in text
        replicas = next(line for line in lines if "replicas" in line)
        assert "3 replicas · leader n" in replicas and "lagging: none" in replicas
        assert all(len(line) <= 80 for line in lines)

        for theme in ("currents-dark", "currents-light"):
            app.set_theme(theme, remember=False)
            await app.screen.reload()  # the figures are drawn in the new theme's colours at the next read
            await pilot.pause(0.1)
            assert low_contrast_texts(app.screen) == [], theme


async def test_nats_gone_reads_unreachable_in_words_while_the_app_keeps_answering(home: Home, tmp_path: Path):
    with contextlib.ExitStack() as nats_server:
        url = nats_server.enter_context(single_server(tmp_path, "-js", "-sd", str(tmp_path / "js")))
        home.root.joinpath("config.toml").write_text(
            f'[cluster]\nnats = ["{url}"]\nreplicas = 1\nname = "eu"\n'
        )
        app = make_app(home)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            await wait_until(pilot, lambda: "cluster eu · 0 instances" in header(app))

            nats_server.close()  # the only NATS server stops
            began = time.monotonic()
            await wait_until(pilot, lambda: "cluster eu · unreachable" in header(app), timeout=5)
            # Said within a refresh and a bounded read, not after the client's own timeouts.
            assert time.monotonic() - began < CLUSTER_READ_SECONDS + 2

            await pilot.press("h")  # the app answers keys meanwhile; the health screen says why
            await wait_until(pilot, lambda: "no NATS server of the cluster" in words(app))
            text = words(app)
            assert "Cluster eu" in text and "unreachable" in text and "Traceback" not in text


async def test_quorum_lost_reads_in_words_while_the_app_keeps_answering(
    home: Home, nats_cluster: NatsCluster, open_outbox: OpenOutbox, queue_name: str
):
    member_config(home.root, nats_cluster.urls, queue_name)
    open_outbox(instance="eu-1", presence=True)
    app = make_app(home)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            await wait_until(pilot, lambda: f"cluster {queue_name} · 1 instance" in header(app))
            nats_cluster.kill(0)
            nats_cluster.kill(1)  # one node of three left: no quorum
            began = time.monotonic()
            await wait_until(pilot, lambda: f"cluster {queue_name} · quorum lost" in header(app), timeout=8)
            assert time.monotonic() - began < CLUSTER_READ_SECONDS + 3  # a bounded read, then words
            await pilot.press("h")  # the app answers keys meanwhile; the health screen says why
            await wait_until(pilot, lambda: "gave no answer with a quorum" in words(app))
            assert f"Cluster {queue_name}" in words(app) and "Traceback" not in words(app)
    finally:  # booting while the app closes (the next test using the cluster waits until it is healthy)
        nats_cluster.restart(0, wait=False)
        nats_cluster.restart(1, wait=False)


class OpenAttempts:
    """The app's connects to the cluster as its threads show them: each open of the queue runs a client
    loop in a thread named after the cluster (`nats-<name>`), ended when that open fails."""

    def __init__(self, name: str) -> None:
        self.name = f"nats-{name}"
        self.seen: dict[threading.Thread, list[float]] = {}  # thread: [first seen, last seen alive]
        self.most_at_once = 0

    def look(self) -> None:
        now = time.monotonic()
        alive = [t for t in threading.enumerate() if t.name == self.name]
        self.most_at_once = max(self.most_at_once, len(alive))
        for thread in alive:
            self.seen.setdefault(thread, [now, now])[1] = now

    async def watch(self) -> None:
        while True:
            self.look()
            await asyncio.sleep(0.02)

    def spans(self) -> list[list[float]]:
        return sorted(self.seen.values())


async def test_nats_down_at_start_is_retried_one_open_at_a_time_and_reconnects_by_itself(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    ports = cluster_support.free_ports(2)
    monkeypatch.setattr(cluster_support, "free_ports", lambda n: ports)  # NATS comes back on its own port
    home.root.joinpath("config.toml").write_text(
        f'[cluster]\nnats = ["nats://{LOOPBACK}:{ports[0]}"]\nreplicas = 1\nname = "eu-down"\n'
    )
    attempts = OpenAttempts("eu-down")
    watching = asyncio.create_task(attempts.watch())
    try:
        began = time.monotonic()
        app = make_app(home)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: "cluster eu-down · unreachable" in header(app))
            assert time.monotonic() - began < CONSOLE_OPEN_SECONDS + 1.5  # a bounded connect, then words

            # The screens refresh twice a second meanwhile: one connect at a time, each bounded, and the
            # next one only after a pause.
            await wait_until(pilot, lambda: len(attempts.seen) >= 2, timeout=CONSOLE_OPEN_SECONDS * 2 + 3)
            first, second = attempts.spans()[:2]
            assert first[1] - first[0] < CONSOLE_OPEN_SECONDS + 0.5
            assert second[0] - first[1] > OPEN_RETRY_SECONDS - 0.5
            assert "Traceback" not in words(app)

            with single_server(tmp_path, "-js", "-sd", str(tmp_path / "js")):
                back = time.monotonic()
                await wait_until(
                    pilot,
                    lambda: "cluster eu-down · 0 instances" in header(app),
                    timeout=CONSOLE_OPEN_SECONDS + OPEN_RETRY_SECONDS + 3,
                )
                assert time.monotonic() - back < CONSOLE_OPEN_SECONDS + OPEN_RETRY_SECONDS + 1.5
                assert attempts.most_at_once == 1
    finally:
        watching.cancel()
