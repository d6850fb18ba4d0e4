"""The engine: wires sources -> store -> delivery in one asyncio loop and applies config changes live.

One engine runs per home (a file lock). Everything it knows that others need (connector states, counters,
the tail) it writes to the store; consoles change it through the config file, the keyring and `control`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import httpx

from tui_currents import __version__, config, control
from tui_currents.alerts import AlertMonitor, smtp_sender_for
from tui_currents.cluster.membership import cluster_settings
from tui_currents.config import Config, Connector
from tui_currents.delivery import GZIP_LEVEL, ConnectorDelivery
from tui_currents.delivery_process import DeliveryProcess, delivery_process_wanted
from tui_currents.delivery_worker import ConnectorPlan, Plan, Settings
from tui_currents.logs import register_secret
from tui_currents.outbox import ConnectorState, DeadLetterCaps, Outbox, StoreUnavailable
from tui_currents.outbox_home import open_outbox
from tui_currents.paths import Home
from tui_currents.secrets import Secrets
from tui_currents.sources.ingest import Ingestor
from tui_currents.webhook import WebhookPoster
from tui_currents.write_turns import WriteTurns, turns_file

if TYPE_CHECKING:
    from tui_currents.metrics import ServiceMetrics
    from tui_currents.sources.receiver import Receiver
    from tui_currents.store import Store

log = logging.getLogger("tui_currents.engine")

WATCH_INTERVAL = 0.5  # seconds between looks at the config file and the command table
HEARTBEAT_INTERVAL = 1.0
KEY_RETRY_SECONDS = 5.0  # between reads of a write key the keyring failed to give (delivery process)


class EngineLocked(RuntimeError):
    """Another engine already runs on this home."""


class EngineLock:
    """An exclusive advisory lock on the home's lock file, released by the OS if the process dies."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise EngineLocked(
                f"another tui-currents engine (pid {holder}) is already running on {self.path.parent}; "
                "stop it first, or open `tui-currents` with the same home to use it as the console"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class EngineOptions:
    """How this run of the engine differs from the configured defaults."""

    receiver_host: str | None = None
    receiver_port: int | None = None
    start_receiver: bool = True
    demo_rate: float | None = None  # events/s from the demo generator; None: no generator
    demo: bool = False
    http_timeout: float = 30.0
    alert_interval: float = 10.0  # seconds between looks for conditions to alert a contact email about
    delivery_overrides: dict = field(default_factory=dict)  # passed to ConnectorDelivery (tests, benchmarks)
    # Delivery in a process of its own (None: when there is a second core); False: in the engine's loop.
    delivery_process: bool | None = None
    # Added to the delivery process's nice value (the terminal app's engine: its keys go first).
    delivery_niceness: int = 0


class Engine:
    """Receives, stores and delivers for every enabled connector of a home until stopped."""

    def __init__(self, home: Home, secrets: Secrets, options: EngineOptions | None = None):
        self.home = home
        self.secrets = secrets
        self.options = options or EngineOptions()
        self.config: Config | None = None
        self.store: Outbox | None = None
        self.receiver_url: str | None = None
        self.sandbox = None  # the demo's local Segment stand-in, when running the demo
        self._lock = EngineLock(home.lock_file)
        self._control: control.Control | None = None
        self._ingestor: Ingestor | None = None
        self._http: httpx.AsyncClient | None = None
        self._receiver: Receiver | None = None
        self._alerts: AlertMonitor | None = None
        self._webhook: WebhookPoster | None = None
        self._deliveries: dict[str, tuple[ConnectorDelivery, asyncio.Task, tuple]] = {}
        self._delivery_process: DeliveryProcess | None = None
        self._inline_starts: dict[str, int] = {}
        self._plan_lock: asyncio.Lock | None = None
        self._write_turns: WriteTurns | None = None  # shared with the delivery process (write_turns.py)
        self._keys_unread_at: float | None = None  # when a plan went out without a key the keyring failed on
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self._config_mtime: float | None = None
        self._write_keys: dict[str, str | None] = {}
        # Keys this process holds in memory only (the demo's per-run sandbox key); they win over the keyring.
        self.write_key_overrides: dict[str, str] = {}
        self._started_at = 0.0
        self._stopping = False
        self.on_config_applied: Callable[[Config], None] | None = None
        # Set by the headless service before start: times deliveries and counts receiver answers.
        self.metrics: ServiceMetrics | None = None

    # ----------------------------------------------------------------- what `start` opens

    @property
    def _running_config(self) -> Config:
        """The config in force: loaded by `start`, replaced on every reload."""
        assert self.config is not None, "the engine has not started"
        return self.config

    @property
    def _running_store(self) -> Outbox:
        """The store, open from `start` until `stop`."""
        assert self.store is not None, "the engine has not started"
        return self.store

    @property
    def _running_control(self) -> control.Control:
        """The command and heartbeat channel, open from `start` until `stop`."""
        assert self._control is not None, "the engine has not started"
        return self._control

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Take the home's lock, open the store, start the receiver, deliveries and watchers."""
        self.home.ensure()
        self._lock.acquire()
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self._started_at = time.time()
        self.config = config.load(self.home)
        # Opening (and maybe upgrading) the store waits on the disk: in a worker thread, since in-process the
        # event loop is the TUI's. Every store call the engine makes from the loop goes through a thread.
        await asyncio.to_thread(self._open_store, self.config.durability.upper())
        assert self.store is not None  # set by _open_store
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.options.http_timeout, connect=10.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            headers={"User-Agent": f"tui-currents/{__version__}"},
        )
        if self.options.demo:
            await self._start_demo()
        self._ingestor = Ingestor(self.config, self.store)
        if self._use_delivery_process():
            self._write_turns = WriteTurns(turns_file(self.home.store_file))
            await self._start_delivery_process()
        if self.options.start_receiver:
            await self._start_receiver()
        # Consoles and `status` see this engine from the moment it answers (the watcher beats from then on;
        # a store that cannot be written now is said by the watcher, as for every later beat).
        with contextlib.suppress(sqlite3.Error, StoreUnavailable):
            await asyncio.to_thread(self._beat)
        self._config_mtime = self._mtime()
        # The alert log and the rules' memory are the store's side tables; a cluster queue passes those
        # calls to the home's own file.
        self._alerts = AlertMonitor(self.home.store_file, sender=None, store=cast("Store", self.store))
        self._webhook = WebhookPoster(
            self.home.store_file,
            self.secrets.get_webhook_url,
            client=self._http,
            host_name=socket.gethostname(),
        )
        self._apply(self.config)
        self._tasks.append(asyncio.create_task(self._watch(), name="engine-watch"))
        if (cluster := await asyncio.to_thread(cluster_settings, self.home)) is not None:
            # A member mirrors the cluster's shared configuration into its config.toml and keyring; the
            # watch above then applies a change made on any member, as for a local edit.
            from tui_currents.cluster.mirror import mirror_shared_config  # the NATS client: members only

            mirror = mirror_shared_config(self.home, secrets=self.secrets, settings=cluster)
            self._tasks.append(asyncio.create_task(mirror, name="cluster-config-mirror"))
        self._tasks.append(
            asyncio.create_task(
                self._webhook.run(lambda: self._running_config.alerts.webhook), name="alert-webhook"
            )
        )
        self._tasks.append(
            asyncio.create_task(
                self._alerts.run(lambda: self.config, self.options.alert_interval), name="alerts"
            )
        )
        if self.options.demo and self.options.demo_rate:
            self._tasks.append(asyncio.create_task(self._demo_feed(self.options.demo_rate), name="demo-feed"))
        log.info(
            "engine started (pid %d, home %s, receiver %s%s)",
            os.getpid(),
            self.home.root,
            self.receiver_url or "off",
            ", demo: nothing leaves this machine" if self.options.demo else "",
        )

    def _open_store(self, synchronous: str) -> None:
        self.store = open_outbox(self.home, synchronous=synchronous)  # a member's: the cluster's
        self.store.release_leases()
        self._control = control.Control(self.home.store_file)
        self._control.take()  # commands left for a previous run are stale: this run reloads everything

    def _beat(self) -> None:
        """Say this engine is alive, with its receiver's address (every second, from the watcher)."""
        self._running_control.beat(
            pid=os.getpid(), started_at=self._started_at, receiver=self.receiver_url, demo=self.options.demo
        )
        if announce := getattr(self.store, "announce", None):  # a cluster queue: `cluster status` shows it
            announce(receiver=self.receiver_url)

    def _close_store(self) -> None:
        if self._control is not None:
            self._control.gone()
            self._control.close()
        if self.store is not None:
            self.store.close()

    async def stop(self) -> None:
        """Stop taking new work, let in-flight batches finish (or leave them leased for the next run)."""
        if self._stopping:
            return
        self._stopping = True
        if self._receiver is not None:
            await self._receiver.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*(self._stop_delivery(name) for name in list(self._deliveries)))
        if self._delivery_process is not None:
            await self._delivery_process.stop()
        if self._alerts is not None:
            self._alerts.close()
        if self._http is not None:
            await self._http.aclose()
        if self.sandbox is not None:
            await self.sandbox.stop()
        await asyncio.to_thread(self._close_store)
        if self._write_turns is not None:
            self._write_turns.close()
        self._lock.release()
        log.info("engine stopped")

    def healthy(self) -> bool:
        """True while started and not stopping, with the watcher and alert tasks still running."""
        return self.store is not None and not self._stopping and all(not t.done() for t in self._tasks)

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    # ----------------------------------------------------------------- sources

    def ingest(self, workspace: str, records: list, *, source: str):
        """Route raw Currents records of one workspace to its connectors and commit them (one transaction)."""
        assert self._ingestor is not None
        return self._ingestor.ingest(workspace, records, source=source)

    async def _start_receiver(self) -> None:
        from tui_currents.sources.receiver import Receiver

        settings = self._running_config.receiver
        host = self.options.receiver_host or settings.host
        port = self.options.receiver_port if self.options.receiver_port is not None else settings.port
        receiver = self._receiver = Receiver(
            ingestor_provider=lambda: self._ingestor,
            token_provider=self.secrets.get_receiver_token,
            settings=settings,
            middlewares=(self.metrics.receiver_middleware(),) if self.metrics else (),
            token_version=self.secrets.version,
            write_turn=self._write_turns.turn if self._write_turns is not None else None,
        )
        self.receiver_url = await receiver.start(host, port)
        self._tasks.append(asyncio.create_task(self._watch_receiver_tokens(receiver), name="receiver-tokens"))

    async def _watch_receiver_tokens(self, receiver: Receiver) -> None:
        """Read receiver tokens again after the keyring changes (before requests need them), and tell
        consoles which workspaces' tokens cannot be read (status, the TUI)."""
        published: dict[str, str] | None = None
        while True:
            try:
                names = [w.name for w in self._running_config.workspaces]
                await receiver.tokens.refresh(names)
                problems = receiver.tokens.problems(names)
                if problems != published and self._control is not None:
                    self._control.set_receiver_problems(problems)
                    published = problems
            except asyncio.CancelledError:
                raise
            except sqlite3.Error:
                pass  # the store cannot be written: the engine's watcher says so; published next round
            except Exception:
                log.exception("receiver token watcher: unexpected error (the engine keeps running)")
            await asyncio.sleep(WATCH_INTERVAL)

    def send_test_events(self, connector_name: str) -> int:
        """Like Braze's "Send test events": one generated event of each type the connector selects, each
        marked as a test (see `tui_currents.test_events`)."""
        from tui_currents import test_events

        connector = self._running_config.connector(connector_name)
        outcomes = test_events.build(connector)
        self._running_store.commit([(connector.name, o) for o in outcomes], source="test")
        sent = test_events.queued(outcomes)
        log.info("sent %d test events through connector %r", sent, connector.name)
        return sent

    # ----------------------------------------------------------------- config, live

    def _mtime(self) -> float | None:
        try:
            return self.home.config_file.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    async def _watch(self) -> None:
        last_beat = 0.0
        watch_trouble: str | None = None
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                reload = False
                mtime = self._mtime()
                if mtime != self._config_mtime:
                    self._config_mtime = mtime
                    reload = True
                for command in await asyncio.to_thread(self._running_control.take):
                    reload |= await asyncio.to_thread(self._run_command, command)
                if reload:
                    self.reload()
                now = time.time()
                if self._keys_unread_at is not None and now - self._keys_unread_at >= KEY_RETRY_SECONDS:
                    # A write key the keyring could not give: asked again, as a delivery loop in this
                    # process asks while it has no key.
                    self._keys_unread_at = None
                    self._in_background(self._send_plan(self._running_config))
                if now - last_beat >= HEARTBEAT_INTERVAL:
                    last_beat = now
                    await asyncio.to_thread(self._beat)
                watch_trouble = None
            except asyncio.CancelledError:
                raise
            except sqlite3.Error as exc:
                # A full disk or a busy store: said once in words (the receiver reports the same cause for
                # every refused batch); the watcher tries again next round.
                if watch_trouble != str(exc):
                    watch_trouble = str(exc)
                    log.warning("engine commands and heartbeat paused: the store cannot be written (%s)", exc)
            except Exception:  # the watcher must outlive any single bad config or command
                log.exception("engine watcher: unexpected error (the engine keeps running)")

    def _run_command(self, command: control.Command) -> bool:
        """Carry out a console's command (in a worker thread: it writes the store); True when it asks for a
        reload."""
        if command.kind == control.RELOAD:
            return True
        if command.kind == control.SEND_TEST_EVENTS:
            try:
                self.send_test_events(command.args["connector"])
            except KeyError:
                log.warning("send test events: no connector named %r", command.args.get("connector"))
            return False
        if command.kind == control.RETRY_DEAD_LETTERS:
            moved = self._running_store.requeue(
                connector=command.args.get("connector"), ids=command.args.get("ids")
            )
            log.info("requeued %d dead letters", moved)
            return False
        log.warning("ignored unknown engine command %r", command.kind)
        return False

    def reload(self) -> None:
        """Read the config file and write keys again and apply them without stopping anything."""
        try:
            new = config.load(self.home)
        except config.ConfigError as exc:
            # Keep running on the last good config: a typo in the file must not stop forwarding.
            log.error("config not reloaded, still running on the previous one: %s", exc)
            return
        self._write_keys.clear()
        self._apply(new)
        log.info("config reloaded")

    def _apply(self, new: Config) -> None:
        self.config = new
        if self.store is not None:
            caps = new.dead_letters
            self.store.dead_letter_caps = DeadLetterCaps(
                per_request=caps.max_per_request, total=caps.max_total, event_bytes=caps.max_event_bytes
            )
        if self._ingestor is not None:
            self._ingestor.update_config(new)
        if self._alerts is not None:
            self._alerts.sender = smtp_sender_for(new, self.secrets)
        if self._webhook is not None:
            self._webhook.url_changed()
        if self._delivery_process is not None:
            self._in_background(self._send_plan(new))
            if self.on_config_applied:
                self.on_config_applied(new)
            return
        wanted = {c.name: c for c in new.connectors}
        for name in list(self._deliveries):
            if name not in wanted:
                self._in_background(self._stop_delivery(name, state="removed"))
        for connector in new.connectors:
            self._sync_delivery(connector)
        if self.on_config_applied:
            self.on_config_applied(new)

    def _in_background(self, job) -> None:
        # The loop keeps only weak references to tasks: hold them until done, or one may vanish mid-way.
        task = asyncio.create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _batch_url(self, connector: Connector) -> str:
        # In the demo every connector delivers to the local sandbox, whatever region or endpoint it names:
        # nothing typed in the demo may reach a real Segment source.
        if self.options.demo and self.sandbox is not None:
            return self.sandbox.url + "/v1/batch"
        return connector.batch_url()

    def _delivery_signature(self, connector: Connector) -> tuple:
        return (self._batch_url(connector), connector.max_in_flight, connector.gzip, connector.retention_days)

    # ----------------------------------------------------------------- delivery in its own process

    def _use_delivery_process(self) -> bool:
        wanted = self.options.delivery_process
        return delivery_process_wanted() if wanted is None else wanted

    @property
    def delivery_pids(self) -> list[int]:
        """The delivery process's id, when delivery runs in one (tests, diagnostics)."""
        pid = self._delivery_process.pid if self._delivery_process is not None else None
        return [pid] if pid is not None else []

    def delivery_starts(self, connector: str) -> int:
        """How many delivery loops were started for a connector in this run (a restart adds one)."""
        if self._delivery_process is not None:
            return self._delivery_process.starts.get(connector, 0)
        return self._inline_starts.get(connector, 0)

    async def _start_delivery_process(self) -> None:
        settings = Settings(
            home_root=str(self.home.root),
            home_data=str(self.home.data),
            synchronous=self._running_config.durability.upper(),
            http_timeout=self.options.http_timeout,
            overrides=dict(self.options.delivery_overrides),
            timed=self.metrics is not None,
            write_turns=str(self._write_turns.path) if self._write_turns is not None else None,
            niceness=self.options.delivery_niceness,
        )
        self._plan_lock = asyncio.Lock()
        self._delivery_process = DeliveryProcess(self.home, settings, on_latency=self._observe_latencies)
        self._delivery_process.start()  # not waited for: it gets the plan as soon as it is ready

    def _observe_latencies(self, connector: str, seconds: list[float]) -> None:
        if self.metrics is not None:
            observe = self.metrics.latency.labels(connector).observe
            for value in seconds:
                observe(value)

    async def _send_plan(self, new: Config) -> None:
        """Tell the delivery process what to run under this config, with the write keys (read here, in a
        worker thread: the keyring can take a second). Plans go out in the order configs were applied."""
        assert self._delivery_process is not None and self._plan_lock is not None
        async with self._plan_lock:
            run: dict[str, ConnectorPlan] = {}
            held: dict[str, str] = {}
            for connector in new.connectors:
                if not connector.enabled or connector.paused:
                    held[connector.name] = "disabled" if not connector.enabled else "paused"
                    continue
                run[connector.name] = ConnectorPlan(
                    url=self._batch_url(connector),
                    max_in_flight=connector.max_in_flight,
                    gzip=connector.gzip,
                    gzip_level=GZIP_LEVEL,
                    retention_days=connector.retention_days,
                    key=await asyncio.to_thread(self._write_key, connector.name),
                )
                if connector.name not in self._write_keys and connector.name not in self.write_key_overrides:
                    self._keys_unread_at = time.time()  # the keyring failed (a missing key is cached)
            caps = new.dead_letters
            self._delivery_process.apply(
                Plan(
                    run=run,
                    held=held,
                    dead_letter_caps=DeadLetterCaps(
                        per_request=caps.max_per_request,
                        total=caps.max_total,
                        event_bytes=caps.max_event_bytes,
                    ),
                )
            )

    def _sync_delivery(self, connector: Connector) -> None:
        name = connector.name
        running = self._deliveries.get(name)
        if not connector.enabled or connector.paused:
            state = "disabled" if not connector.enabled else "paused"
            if running:
                self._in_background(self._stop_delivery(name, state=state))
            else:
                self._in_background(
                    asyncio.to_thread(
                        self._running_store.set_state, name, ConnectorState(state=state, since=time.time())
                    )
                )
            return
        signature = self._delivery_signature(connector)
        if running and running[2] == signature:
            running[0].credentials_changed()  # a new key, if any, is picked up without a restart
            return
        if running:
            # Destination or limits changed: let the old loop finish its in-flight batches, then start anew.
            self._in_background(self._replace_delivery(connector, signature))
            return
        self._start_delivery(connector, signature)

    def _start_delivery(self, connector: Connector, signature: tuple) -> None:
        name = connector.name
        store = self.metrics.timed(self._running_store, name) if self.metrics else self._running_store
        delivery = ConnectorDelivery(
            store,
            name,
            self._batch_url(connector),
            functools.partial(self._write_key_off_loop, name),
            client=self._http,
            max_in_flight=connector.max_in_flight,
            gzip=connector.gzip,
            retention_days=connector.retention_days,
            **self.options.delivery_overrides,
        )
        task = asyncio.create_task(delivery.run(), name=f"delivery:{name}")
        self._deliveries[name] = (delivery, task, signature)
        self._inline_starts[name] = self._inline_starts.get(name, 0) + 1

    async def _replace_delivery(self, connector: Connector, signature: tuple) -> None:
        await self._stop_delivery(connector.name)
        if not self._stopping:
            self._start_delivery(connector, signature)

    async def _stop_delivery(self, name: str, *, state: str | None = None) -> None:
        entry = self._deliveries.pop(name, None)
        if entry is None:
            return
        delivery, task, _ = entry
        await delivery.stop()
        await asyncio.gather(task, return_exceptions=True)
        if state and self.store is not None:
            await asyncio.to_thread(
                self.store.set_state, name, ConnectorState(state=state, since=time.time())
            )

    async def _write_key_off_loop(self, connector_name: str) -> str | None:
        # An encrypted keyring file derives its key on each read (about a second): never on the event loop
        # the receiver shares.
        return await asyncio.to_thread(self._write_key, connector_name)

    def _write_key(self, connector_name: str) -> str | None:
        # The keyring can be slow (the encrypted file derives its key each time), so keys are read once
        # per reload; a console's RELOAD command clears this cache after a key change.
        if connector_name in self.write_key_overrides:
            return self.write_key_overrides[connector_name]
        if connector_name not in self._write_keys:
            try:
                self._write_keys[connector_name] = self.secrets.get_write_key(connector_name)
            except Exception as exc:  # never let the key's value reach the log: only the error type
                log.error("could not read the write key of %r: %s", connector_name, type(exc).__name__)
                return None
        return self._write_keys[connector_name]

    # ----------------------------------------------------------------- demo

    async def _start_demo(self) -> None:
        from tui_currents import demo_setup

        self.sandbox, demo_key = await demo_setup.start_sandbox_for(self.home, self.secrets)
        self.write_key_overrides[demo_setup.DEMO_CONNECTOR] = demo_key
        register_secret(demo_key)
        self.config = config.load(self.home)

    async def _demo_feed(self, rate: float) -> None:
        from tui_currents.demo_setup import DEMO_WORKSPACE
        from tui_currents.sources.demo import DemoGenerator

        generator = DemoGenerator(seed=None)

        def make_and_store(n: int) -> None:
            # Built in the worker thread too: at high rates, building batches on the loop stalls the UI.
            self.ingest(DEMO_WORKSPACE, generator.batch(n), source="demo")

        async for n in generator.paced(rate):
            try:
                await asyncio.to_thread(make_and_store, n)
            except Exception as exc:
                log.error("demo generator: batch not stored: %s", exc)
