"""The reliability scenarios and what they need, at any size: the tests run them small, bench/soak.py full.

Pieces, all on 127.0.0.1:

- `StandIn`: the Segment stand-in (`tui_currents.sandbox.SegmentSandbox`, unchanged) in its own process, so
  it outlives every engine it serves, plus a read-only inspection port that tells which messageIds arrived
  how often and when each request came (the stand-in's own `/_sandbox/*` endpoints give only counts).
- `EngineProcess`: `tui-currents --home H run --port P`, a real process that can be killed with SIGKILL.
- `BrazeSender`: posts Currents batches the way Braze's Custom HTTP connector does: a batch is done only
  when answered 2xx; anything else (another status, a reset connection, no answer) is sent again later,
  with exponential backoff and jitter, holding the same events and so the same event ids.
- The scenarios (`crash_safety`, `helper_storm`, `endpoint_faults`, `disk_full`, `credentials`), each
  returning a `Figures` row plus what its checks found. Every acknowledged event is an obligation: it must
  reach the stand-in.
- `service_processes`: the processes of a running service by kind (the engine, its mapping worker, any
  other process below it), so that a run can kill every kind of them, not only the engine.

Run `python -m tests.reliability.harness standin --write-key-file F` (from the repository root) to start a
stand-in by hand; it prints one JSON line with its URLs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import orjson

from tui_currents import catalog, config, segment
from tui_currents.delivery_process import DELIVERY_PROCESS_ENV
from tui_currents.paths import Home
from tui_currents.secrets import (
    BACKEND_ENV,
    PASSPHRASE_ENV,
    Secrets,
    receiver_token_env_var,
    write_key_env_var,
)
from tui_currents.sources.demo import DemoGenerator

REPO = Path(__file__).resolve().parents[2]
WORKSPACE = "reliability"
CONNECTOR = "Segment"
# Values for these runs only (loopback, throw-away homes); they are not anyone's credentials.
TOKEN = "reliability-receiver-token-0123456789"
WRITE_KEY = "reliability-write-key-0001"
KEYRING_PASSPHRASE = "reliability suite passphrase"
BATCH = 100  # events per request, as Braze sends them
START_TIMEOUT = 20.0  # seconds for a process to be ready
_JSON = "application/json"


class Skip(Exception):  # noqa: N818 - read as "skip this scenario", like pytest.skip
    """The scenario cannot run here (e.g. no tmpfs can be mounted); the message says why."""


# ------------------------------------------------------------------------------------------ processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (kept for every restart of one engine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for the product's processes: ours without any TUI_CURRENTS_* setting, no OS
    keyring (so nothing can reach a real user's keyring), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUI_CURRENTS_")}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def engine_env(*, write_key: str | None = WRITE_KEY, keyring_file: bool = False) -> dict[str, str]:
    """Keys through the per-connector environment overrides (no keyring cost), or with `keyring_file` the
    encrypted-file keyring (its passphrase in the environment) for the write key."""
    extra = {receiver_token_env_var(WORKSPACE): TOKEN, BACKEND_ENV: "file"}
    if write_key is not None:
        extra[write_key_env_var(CONNECTOR)] = write_key
    if keyring_file:
        extra[PASSPHRASE_ENV] = KEYRING_PASSPHRASE
    return subprocess_env(**extra)


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first line a process prints, or RuntimeError if it exits or stays silent for `timeout`."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    fd = proc.stdout.fileno()
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"no output within {timeout:g} s")
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.2))
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"the process exited (code {proc.wait(5)}) before printing")
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the stand-in saw it: `at` when it came in, `sent_at` the client's own sentAt."""

    at: float
    status: int  # 0: the connection was closed without an answer
    messages: int
    accepted: int
    duplicates: int
    sent_at: float | None  # only known when the body was read (not for answers given before that)
    fault: str | None

    @property
    def sent(self) -> float:
        """When the client sent it: its sentAt when known, else when it came in."""
        return self.sent_at if self.sent_at is not None else self.at


class StandIn:
    """The Segment stand-in in its own process (see the module docstring). `url` is the connector's
    endpoint; `faults()`, `stats()`, `ids()` and `requests()` talk to the running process."""

    def __init__(self, workdir: Path, write_keys: Sequence[str], *, seed: int = 0, keep: int = 500_000):
        self.workdir = workdir
        self.write_keys = list(write_keys)
        self.seed = seed
        self.keep = keep
        self.url = ""
        self.inspect_url = ""
        self.log = workdir / "standin.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> StandIn:
        """Start the process and wait for its URLs."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        key_file = self.workdir / "standin-write-keys"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(self.write_keys) + "\n")
        command = [sys.executable, "-m", "tests.reliability.harness", "standin"]
        command += ["--write-key-file", str(key_file), "--seed", str(self.seed), "--keep", str(self.keep)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=REPO, stdout=subprocess.PIPE, stderr=log, env=subprocess_env()
            )
        try:
            line = _read_line(self.proc, START_TIMEOUT)
            urls = json.loads(line)
        except (RuntimeError, ValueError) as exc:
            self.stop()
            raise RuntimeError(f"the Segment stand-in did not start: {exc}\n{_tail(self.log)}") from None
        self.url, self.inspect_url = urls["url"], urls["inspect"]
        return self

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    async def _get(self, url: str) -> dict:
        async with httpx.AsyncClient(timeout=30.0) as client:
            response = await client.get(url)
            response.raise_for_status()
            return orjson.loads(response.content)

    async def faults(self, **changes: object) -> dict:
        """Change the stand-in's faults (`reset=True` first turns every fault off); returns them all."""
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.post(f"{self.url}/_sandbox/faults", content=orjson.dumps(changes))
            if response.status_code != 200:
                raise ValueError(f"the stand-in refused {changes}: {response.text}")
            return orjson.loads(response.content)

    async def stats(self) -> dict:
        """The stand-in's counts (requests, statuses, accepted, duplicates, violations...)."""
        return await self._get(f"{self.url}/_sandbox/stats")

    async def ids(self) -> dict[str, int]:
        """Every messageId the stand-in accepted, with how many times it arrived."""
        return (await self._get(f"{self.inspect_url}/ids"))["ids"]

    async def requests(self) -> list[Request]:
        """Every request so far, oldest first (RuntimeError if the stand-in kept fewer than it had)."""
        data = await self._get(f"{self.inspect_url}/requests")
        if data["kept"] < data["total"]:
            raise RuntimeError(f"the stand-in kept {data['kept']} of {data['total']} requests; raise --keep")
        return [
            Request(at, status, messages, accepted, duplicates, _parse_time(sent_at), fault)
            for at, status, messages, accepted, duplicates, sent_at, fault in data["records"]
        ]


class EngineProcess:
    """`tui-currents --home H run --host 127.0.0.1 --port P` as a process: start, kill (SIGKILL), stop."""

    def __init__(
        self, home: Path, env: Mapping[str, str], *, port: int | None = None, log: Path | None = None
    ):
        self.home = home
        self.env = dict(env)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log or home.parent / "engine.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.kills = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the engine and wait until its receiver answers /healthz."""
        command = [sys.executable, "-m", "tui_currents", "--home", str(self.home), "run"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "ab") as log:
            log.write(f"--- start {self.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                command, cwd=self.home.parent, stdout=log, stderr=log, env=self.env, stdin=subprocess.DEVNULL
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"the engine exited ({self.proc.returncode}) while starting:\n{_tail(self.log)}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the engine did not answer within {timeout:g} s:\n{_tail(self.log)}")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.kills += 1

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (SIGKILL after `timeout`); returns the exit code."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc is not None else None
        proc.terminate()
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        return proc.returncode

    def close(self) -> None:
        """Make sure no engine process is left behind (teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def cli(
    home: Path, *args: str, env: Mapping[str, str], stdin: str | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess:
    """Run `tui-currents --home H ARGS...` (secrets only ever on stdin) and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "tui_currents", "--home", str(home), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=timeout,
        cwd=home.parent,
        check=False,
    )


async def status_json(home: Path, env: Mapping[str, str]) -> dict:
    """`tui-currents status --json` as data (RuntimeError with its stderr when it fails)."""
    done = await asyncio.to_thread(cli, home, "status", "--json", env=env)
    if done.returncode != 0:
        raise RuntimeError(f"status --json failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)


def connector_status(report: dict, name: str = CONNECTOR) -> dict:
    """One connector's entry of a `status --json` document."""
    return next(c for c in report["connectors"] if c["name"] == name)


# ------------------------------------------------------------------------------------------ homes, events


def make_home(folder: Path, endpoint: str | None = None, **connector_options: object) -> Path:
    """A home with the workspace and (given an endpoint) one connector that selects every supported event
    type, anonymous users included, so every generated event is queued for Segment."""
    home = Home.at(folder).ensure()
    config.add_workspace(home, config.Workspace(name=WORKSPACE))
    if endpoint is not None:
        connector = config.Connector(
            name=CONNECTOR,
            workspace=WORKSPACE,
            contact_email="ops@example.com",
            region="custom",
            endpoint=endpoint,
            events=catalog.supported_types(),
            include_anonymous=True,
            **connector_options,  # type: ignore[arg-type]
        )
        config.add_connector(home, connector)
    return home.root


def make_batches(events: int, seed: int) -> list[list[dict]]:
    """`events` realistic Currents events of every supported type, in batches of 100 (ids all distinct)."""
    generator = DemoGenerator(seed=seed)
    records = [generator.event() for _ in range(events)]
    return [records[i : i + BATCH] for i in range(0, events, BATCH)]


# ------------------------------------------------------------------------------------------ Braze's side


class BrazeSender:
    """Posts batches to the receiver like Braze does and keeps count of what was acknowledged.

    A batch is acknowledged only by a 2xx; until then it is sent again (same events, same ids) after
    `backoff_base * 2^n` seconds (at most `backoff_cap`) times a random factor in [0.5, 1], until the
    deadline. `concurrency` batches are in flight at once, as Braze's workers do.
    """

    def __init__(
        self,
        url: str,
        token: str = TOKEN,
        *,
        concurrency: int = 4,
        backoff_base: float = 0.05,
        backoff_cap: float = 1.0,
        request_timeout: float = 15.0,
        seed: int = 0,
    ):
        self.url = f"{url}/currents/{WORKSPACE}"
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Braze-Currents-Version": "1",
            "Content-Type": _JSON,
        }
        self.concurrency = concurrency
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.request_timeout = request_timeout
        self._rng = random.Random(seed)
        self.sent_ids: set[str] = set()
        self.acked_ids: set[str] = set()
        self.statuses: Counter[int] = Counter()  # answers by status
        self.failures: Counter[str] = Counter()  # no answer, by kind (connection refused, reset...)
        self.answers: list[tuple[float, int]] = []  # (when, status; 0 for no answer) of every attempt
        self.acks: list[tuple[float, int]] = []  # (when, events) of every acknowledged batch
        self.requests = 0
        self.given_up: list[int] = []  # batches still unacknowledged at the deadline

    @property
    def acked(self) -> int:
        return len(self.acked_ids)

    async def post(self, client: httpx.AsyncClient, body: bytes) -> int:
        """One attempt; the status, or 0 when no answer came."""
        self.requests += 1
        try:
            response = await client.post(self.url, content=body, headers=self.headers)
        except httpx.HTTPError as exc:
            self.failures[type(exc).__name__] += 1
            self.answers.append((time.time(), 0))
            return 0
        self.statuses[response.status_code] += 1
        self.answers.append((time.time(), response.status_code))
        return response.status_code

    async def send(
        self, batches: Sequence[list[dict]], *, deadline: float, rate: float | None = None
    ) -> None:
        """Send every batch until acknowledged or `deadline` (time.monotonic()); with `rate` (events/s)
        batch i is not sent before i * 100 / rate seconds from now."""
        queue: asyncio.Queue[tuple[int, list[dict]]] = asyncio.Queue()
        for index, batch in enumerate(batches):
            queue.put_nowait((index, batch))
            self.sent_ids.update(event["id"] for event in batch)
        start = time.monotonic()
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=self.request_timeout, limits=limits) as client:
            workers = [
                asyncio.create_task(self._worker(client, queue, start, rate, deadline))
                for _ in range(self.concurrency)
            ]
            await asyncio.gather(*workers)

    async def _worker(
        self,
        client: httpx.AsyncClient,
        queue: asyncio.Queue[tuple[int, list[dict]]],
        start: float,
        rate: float | None,
        deadline: float,
    ) -> None:
        while not queue.empty():
            index, batch = queue.get_nowait()
            if rate:
                due = start + index * BATCH / rate
                await asyncio.sleep(max(0.0, min(due, deadline) - time.monotonic()))
            body = orjson.dumps({"events": batch})
            attempt = 0
            while True:
                if time.monotonic() >= deadline:
                    self.given_up.append(index)
                    break
                status = await self.post(client, body)
                if 200 <= status < 300:
                    self.acked_ids.update(event["id"] for event in batch)
                    self.acks.append((time.time(), len(batch)))
                    break
                delay = min(self.backoff_cap, self.backoff_base * 2**attempt)
                attempt += 1
                await asyncio.sleep(delay * (0.5 + 0.5 * self._rng.random()))


# ------------------------------------------------------------------------------------------ figures


@dataclass
class Figures:
    """One scenario's outcome, as the README's table shows it."""

    scenario: str
    sent: int = 0  # distinct events Braze's side had to send
    acknowledged: int = 0  # distinct events in batches answered 2xx
    delivered: int = 0  # acknowledged events that reached the stand-in
    lost: int = 0  # acknowledged events that never reached it (must be 0)
    duplicates: int = 0  # arrivals at the stand-in of a messageId it already had
    unexpected: int = 0  # messageIds at the stand-in that no sent event has (must be 0)
    kills: int = 0
    seconds: float = 0.0
    notes: dict[str, object] = field(default_factory=dict)

    def row(self) -> list[str]:
        notes = "; ".join(f"{k}: {v}" for k, v in self.notes.items())
        return [
            self.scenario,
            f"{self.sent:,}",
            f"{self.acknowledged:,}",
            f"{self.delivered:,}",
            f"{self.lost:,}",
            f"{self.duplicates:,}",
            f"{self.unexpected:,}",
            str(self.kills),
            f"{self.seconds:.0f} s",
            notes,
        ]


HEADERS = ["Scenario", "Sent", "Acknowledged", "Delivered", "Lost", "Duplicates", "Unexpected ids",
           "Kills", "Time", "Notes"]  # fmt: skip


def table(rows: Sequence[Figures]) -> str:
    """A Markdown table of figures."""
    cells = [HEADERS, *(f.row() for f in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(HEADERS))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def tally(figures: Figures, sent: set[str], acked: set[str], arrived: Mapping[str, int]) -> set[str]:
    """Fill in the delivery figures from what was sent, acknowledged and arrived; returns the lost ids."""
    lost = acked - arrived.keys()
    figures.sent = len(sent)
    figures.acknowledged = len(acked)
    figures.delivered = len(acked) - len(lost)
    figures.lost = len(lost)
    figures.duplicates = sum(count - 1 for count in arrived.values())
    figures.unexpected = len(arrived.keys() - sent)
    return lost


async def wait_delivered(standin: StandIn, acked: set[str], timeout: float) -> dict[str, int]:
    """Wait until every acknowledged id is at the stand-in (or `timeout`); returns what arrived."""
    deadline = time.monotonic() + timeout
    while True:
        stats = await standin.stats()
        if stats["unique_message_ids"] >= len(acked) or time.monotonic() >= deadline:
            arrived = await standin.ids()
            if acked <= arrived.keys() or time.monotonic() >= deadline:
                return arrived
        await asyncio.sleep(0.25)


async def wait_until(check, timeout: float, interval: float = 0.2) -> bool:
    """Poll an async `check()` until true or `timeout`; returns the last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(interval)
    return bool(await check())


def pause_violations(requests: Sequence[Request], retry_after: float, grace: float) -> list[str]:
    """Requests sent while a Retry-After pause was on: each 429 at time t asks for nothing to be sent in
    (t + grace, t + retry_after). `grace` covers requests already on their way when the 429 was given."""
    problems = []
    pauses = [r.at for r in requests if r.status == 429]
    for request in requests:
        sent = request.sent
        for start in pauses:
            if start + grace < sent < start + retry_after - 0.01:
                problems.append(
                    f"a request sent {sent - start:.3f} s after a 429 asking for {retry_after:g} s"
                )
                break
    return problems


def gaps(requests: Sequence[Request], start: float, end: float) -> list[float]:
    """Seconds between consecutive requests that came in [start, end]."""
    times = sorted(r.at for r in requests if start <= r.at <= end)
    return [b - a for a, b in zip(times, times[1:], strict=False)]


# ------------------------------------------------------------------------------ the service's processes

ENGINE = "engine"
DELIVERY = "delivery process"


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, their children...), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if running(child):
                found.append(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def process_kind(pid: int) -> str:
    """What a process of the service is, from its command line (and its parent's, for a fork server's
    children, which share the fork server's command line)."""
    try:
        argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    except OSError:
        return "gone"
    if "tui_currents.sources.mapping_worker" in argv:
        return "mapping worker"
    if "tui_currents.delivery_worker" in argv:
        return DELIVERY
    code = " ".join(argv[argv.index("-c") + 1 :]) if "-c" in argv else ""
    if "multiprocessing.forkserver" in code:
        parent = _parent_of(pid)
        # A fork server's child is what it was started for: the mapping worker.
        return "mapping worker" if parent and process_kind(parent) == "fork server" else "fork server"
    if "multiprocessing.resource_tracker" in code:
        return "resource tracker"
    if "tui_currents" in argv:
        return ENGINE
    return Path(argv[0]).name or "unknown"


def service_processes(engine_pid: int) -> dict[str, list[int]]:
    """The running processes of a service by kind: the engine and every process below it."""
    kinds: dict[str, list[int]] = {ENGINE: [engine_pid]} if running(engine_pid) else {}
    for pid in descendants(engine_pid):
        kind = process_kind(pid)
        kinds.setdefault(kind if kind != ENGINE else "engine child", []).append(pid)
    return kinds


async def kill_helper(
    engine: EngineProcess,
    rng: random.Random,
    killed: Counter[str],
    seen: set[int],
    wait: float = 3.0,
    kinds: Collection[str] | None = None,
) -> str | None:
    """SIGKILL one process below the engine (of `kinds` if given), of the kind killed least so far (a
    random one of it); the kind, or None if none appeared within `wait` seconds (one being replaced)."""
    deadline = time.monotonic() + wait
    while engine.pid is not None and time.monotonic() < deadline:
        helpers = {
            k: v
            for k, v in service_processes(engine.pid).items()
            if k != ENGINE and (kinds is None or k in kinds)
        }
        for pids in helpers.values():
            seen.update(pids)
        if helpers:
            fewest = min(killed[kind] for kind in helpers)
            kind = rng.choice(sorted(k for k in helpers if killed[k] == fewest))
            with contextlib.suppress(ProcessLookupError):
                os.kill(rng.choice(helpers[kind]), signal.SIGKILL)
                killed[kind] += 1
                return kind
        await asyncio.sleep(0.05)
    return None


class HealthWatch:
    """Asks the receiver's /healthz every `every` seconds, as a load balancer does, and keeps count."""

    def __init__(self, url: str, every: float = 0.25, timeout: float = 5.0):
        self.url = f"{url}/healthz"
        self.every = every
        self.timeout = timeout
        self.answers: Counter[int] = Counter()  # by status; 0: no answer within the timeout
        self.reasons: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            while True:
                try:
                    response = await client.get(self.url)
                except httpx.TimeoutException:
                    self.answers[0] += 1
                except httpx.HTTPError:
                    self.answers[-1] += 1  # refused: the engine is restarting
                else:
                    self.answers[response.status_code] += 1
                    if response.status_code != 200:
                        self.reasons[str(response.json().get("reason"))] += 1
                await asyncio.sleep(self.every)

    def start(self) -> HealthWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def healthy(url: str, timeout: float) -> bool:
    """Whether /healthz answers 200 within `timeout` seconds."""

    async def ok() -> bool:
        async with httpx.AsyncClient(timeout=2.0) as client:
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(f"{url}/healthz")).status_code == 200
        return False

    return await wait_until(ok, timeout, 0.2)


# ------------------------------------------------------------------------------------------ crash safety


@dataclass
class CrashRun:
    figures: Figures
    lost_ids: set[str]
    engine_starts: int
    sender_statuses: Counter[int]
    sender_failures: Counter[str]
    given_up: int
    final_status: dict
    violations: int
    kills_by_kind: Counter[str] = field(default_factory=Counter)
    leftovers: list[int] = field(default_factory=list)  # helper processes still running after the stop


async def crash_safety(
    workdir: Path,
    *,
    events: int = 5_000,
    kills: int = 5,
    seed: int = 1,
    latency: float = 0.05,
    concurrency: int = 4,
    time_limit: float = 60.0,
    console_every: float | None = None,
    every_kind: bool = False,
) -> CrashRun:
    """Kill the engine with SIGKILL `kills` times while a Braze-like sender pushes `events` events, restart
    it each time, and account for every acknowledged event at the stand-in. With `every_kind`, half the
    kills (in a random order) hit a process below the engine instead (its mapping worker, or any other
    kind there is, each kind in turn), which the engine must replace by itself.

    Kills come at random moments: each when the acknowledged count passes a random point of the run, after
    a random further 0-0.4 s. The stand-in answers after `latency` seconds so kills also land while
    batches are on their way to it. With `console_every`, an operator runs `tui-currents status --json`
    that often (seconds) while it all happens, as a monitoring check would.
    """
    rng = random.Random(seed)
    started = time.monotonic()
    deadline = started + time_limit
    figures = Figures(
        ("crash safety (SIGKILL of any process)" if every_kind else "crash safety (SIGKILL)")
        + (f", status --json every {console_every:g} s" if console_every else "")
    )
    killed: Counter[str] = Counter()
    helpers_seen: set[int] = set()
    standin = StandIn(workdir / "standin", [WRITE_KEY], seed=seed).start()
    engine: EngineProcess | None = None
    try:
        await standin.faults(latency=latency)
        home = make_home(workdir / "home", standin.url)
        engine = EngineProcess(home, engine_env(), log=workdir / "engine.log")
        await engine.start()
        batches = make_batches(events, seed)
        sender = BrazeSender(engine.url, concurrency=concurrency, seed=seed)
        points = sorted(rng.sample(range(events // 20, events - events // 20), kills))
        victims = [ENGINE if not every_kind or n % 2 else "helper" for n in range(kills)]
        rng.shuffle(victims)

        async def killer() -> None:
            for point, victim in zip(points, victims, strict=True):
                while sender.acked < point and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(rng.uniform(0.0, 0.4))
                if victim != ENGINE and await kill_helper(engine, rng, killed, helpers_seen):
                    continue
                helpers_seen.update(descendants(engine.pid or 0))
                engine.kill()
                killed[ENGINE] += 1
                await asyncio.sleep(rng.uniform(0.0, 0.3))  # down for a moment: the sender meets a refusal
                await engine.start()

        async def console() -> None:
            while console_every:
                await asyncio.sleep(console_every)
                with contextlib.suppress(RuntimeError):  # a look while the engine restarts may fail
                    await status_json(home, engine.env)

        kill_task = asyncio.create_task(killer())
        console_task = asyncio.create_task(console())
        try:
            await sender.send(batches, deadline=deadline)
            await kill_task
        finally:
            console_task.cancel()
            await asyncio.gather(console_task, return_exceptions=True)
        arrived = await wait_delivered(standin, sender.acked_ids, max(5.0, deadline - time.monotonic()))
        lost = tally(figures, sender.sent_ids, sender.acked_ids, arrived)
        figures.kills = sum(killed.values())
        if every_kind:
            figures.notes["kills by kind"] = ", ".join(f"{k} {n}" for k, n in sorted(killed.items()))
        # The engine records a delivery just after the stand-in's answer: give it a moment to catch up.
        final: dict = {}

        async def settled() -> bool:
            final.update(connector_status(await status_json(home, engine.env)))
            return final["backlog"] == 0

        await wait_until(settled, 10.0, 0.5)
        stats = await standin.stats()
        figures.seconds = time.monotonic() - started
        figures.notes["sender retries"] = sender.requests - len(batches)
        figures.notes["backlog after"] = final["backlog"]
        helpers_seen.update(descendants(engine.pid or 0))
        await engine.stop()
        return CrashRun(
            figures,
            lost,
            engine.starts,
            sender.statuses,
            sender.failures,
            len(sender.given_up),
            final,
            stats["violations"],
            killed,
            await leftovers(helpers_seen),
        )
    finally:
        if engine is not None:
            await engine.stop()
            engine.close()
        standin.stop()


async def leftovers(pids: set[int], wait: float = 5.0) -> list[int]:
    """The processes of `pids` still running after `wait` seconds (a helper must end with its engine)."""
    deadline = time.monotonic() + wait
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return sorted(pid for pid in pids if running(pid))


# ------------------------------------------------------------------------------------------ helper storm


@dataclass
class StormRun:
    figures: Figures
    lost_ids: set[str]
    kills_by_kind: Counter[str]
    sender_statuses: Counter[int]
    sender_failures: Counter[str]
    given_up: int
    health: HealthWatch
    healthy_after: bool
    stop_seconds: float
    exit_code: int | None
    leftovers: list[int]
    violations: int


async def helper_storm(
    workdir: Path,
    *,
    events: int = 4_000,
    kills: int = 30,
    every: float = 0.3,
    seed: int = 1,
    concurrency: int = 4,
    time_limit: float = 60.0,
    kinds: Collection[str] | None = None,
) -> StormRun:
    """SIGKILL a process below the engine (of `kinds`, or any kind in turn) every `every` seconds, `kills`
    times, while `concurrency` senders post 100-event batches spread over that time; the
    engine itself keeps running. Then: is /healthz 200 again, does every acknowledged event reach the
    stand-in, and does SIGTERM end the engine (and every helper) in bounded time?"""
    rng = random.Random(seed)
    started = time.monotonic()
    deadline = started + time_limit
    figures = Figures(f"helper processes SIGKILLed every {every:g} s")
    standin = StandIn(workdir / "standin", [WRITE_KEY], seed=seed).start()
    engine: EngineProcess | None = None
    health: HealthWatch | None = None
    try:
        home = make_home(workdir / "home", standin.url)
        # Both helper processes run: the mapping worker, and delivery in its own process (asked for).
        engine = EngineProcess(home, {**engine_env(), DELIVERY_PROCESS_ENV: "1"}, log=workdir / "engine.log")
        await engine.start()
        health = HealthWatch(engine.url).start()
        batches = make_batches(events, seed)
        sender = BrazeSender(engine.url, concurrency=concurrency, seed=seed)
        killed: Counter[str] = Counter()
        seen: set[int] = set()

        async def killer() -> None:
            while sum(killed.values()) < kills and time.monotonic() < deadline:
                await asyncio.sleep(every)
                await kill_helper(engine, rng, killed, seen, kinds=kinds)

        kill_task = asyncio.create_task(killer())
        await sender.send(batches, deadline=deadline, rate=events / (kills * every))
        await kill_task
        healthy_after = await healthy(engine.url, 10.0)
        await health.stop()
        arrived = await wait_delivered(standin, sender.acked_ids, max(5.0, deadline - time.monotonic()))
        lost = tally(figures, sender.sent_ids, sender.acked_ids, arrived)
        figures.kills = sum(killed.values())
        seen.update(descendants(engine.pid or 0))
        began = time.monotonic()
        exit_code = await engine.stop(timeout=30.0)
        stop_seconds = time.monotonic() - began
        stats = await standin.stats()
        figures.seconds = time.monotonic() - started
        figures.notes = {
            "kills by kind": ", ".join(f"{k} {n}" for k, n in sorted(killed.items())),
            "sender retries": sender.requests - len(batches),
            "SIGTERM to exit": f"{stop_seconds:.1f} s",
        }
        return StormRun(
            figures,
            lost,
            killed,
            sender.statuses,
            sender.failures,
            len(sender.given_up),
            health,
            healthy_after,
            stop_seconds,
            exit_code,
            await leftovers(seen),
            stats["violations"],
        )
    finally:
        if health is not None:
            await health.stop()
        if engine is not None:
            engine.close()
        standin.stop()


# ------------------------------------------------------------------------------------------ endpoint faults


@dataclass(frozen=True)
class FaultPlan:
    """How long each phase of the endpoint-fault run lasts (seconds) and how the engine is tuned.

    `request_timeout` and `backoff_scale` go to the engine's delivery loop (None and 1.0: the shipped
    defaults, 30 s and a 60 s backoff cap); `timeout_hold` is how long the stand-in holds each request in
    the timeout phase, longer than the request timeout so that the engine gives up first."""

    rate: float = 500.0  # events/s from Braze's side, throughout
    steady: float = 1.0
    errors: float = 2.0  # 10% answered 500/502/503/504/460
    rate_limits: float = 3.0  # bursts of 429 with Retry-After
    retry_after: float = 1.5
    burst: int = 3
    timeouts: float = 2.0
    timeout_hold: float = 1.6
    settle: float = 1.2  # no faults, so the requests held in the timeout phase end before the next one
    resets: float = 2.0  # connections closed, answers lost, then connections reset
    outage: float = 5.0  # every request answered 503
    recovery: float = 1.0  # Braze keeps sending after the outage
    request_timeout: float | None = 1.0
    backoff_scale: float = 0.02
    max_messages: int | None = 50  # per request; small batches make many requests in a short run
    drain_timeout: float = 20.0

    @property
    def backoff_cap(self) -> float:
        return segment.BACKOFF_CAP_SECONDS * self.backoff_scale

    @property
    def sending(self) -> float:
        return (
            self.steady
            + self.errors
            + self.rate_limits
            + self.timeouts
            + self.settle
            + self.resets
            + self.outage
            + self.recovery
        )


FULL_FAULT_PLAN = FaultPlan(
    rate=300.0,
    steady=10.0,
    errors=20.0,
    rate_limits=25.0,
    retry_after=5.0,
    burst=4,
    timeouts=35.0,
    timeout_hold=31.0,
    settle=32.0,
    resets=40.0,
    outage=120.0,
    recovery=20.0,
    request_timeout=None,
    backoff_scale=1.0,
    max_messages=None,
    drain_timeout=150.0,
)


@dataclass
class FaultRun:
    figures: Figures
    plan: FaultPlan
    lost_ids: set[str]
    phases: dict[str, tuple[float, float]]
    requests: list[Request]
    pause_violations: list[str]
    rate_limited: int  # 429 answers given
    outage_gaps: list[float]
    first_success_after_outage: float | None  # seconds from the outage's end
    steady_rate: float  # events/s accepted by the stand-in in the steady phase
    backlog_at_outage_end: int  # events acknowledged by then and not yet at the stand-in
    caught_up_after: float | None  # seconds from the outage's end until the stand-in had all of those
    recovery_rate: float  # events/s accepted from the first success after the outage until caught up
    drained_after: float | None  # seconds from the outage's end until every acknowledged event arrived
    faults_seen: Counter[str]
    violations: int


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for a block, then put back what was there."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def endpoint_faults(workdir: Path, plan: FaultPlan = FaultPlan(), *, seed: int = 2) -> FaultRun:
    """Braze's side sends at a steady rate while the stand-in goes through phases of faults: 10% 5xx and
    460, bursts of 429 with Retry-After, timeouts, closed and reset connections, an outage; then it recovers.

    The engine runs in this process (as tests/test_engine.py drives it) so that its request timeout and
    backoff can be scaled down for the short form; the full form uses the shipped values.
    """
    from tui_currents.engine import Engine, EngineOptions

    started = time.monotonic()
    figures = Figures("endpoint faults")
    standin = StandIn(workdir / "standin", [WRITE_KEY], seed=seed).start()
    engine = None
    phases: dict[str, tuple[float, float]] = {}
    try:
        home = Home.at(make_home(workdir / "home", standin.url))
        overrides: dict[str, float] = {"backoff_scale": plan.backoff_scale}
        if plan.request_timeout is not None:
            overrides["request_timeout"] = plan.request_timeout
        if plan.max_messages is not None:
            overrides["max_messages"] = plan.max_messages
        with environment(
            **{write_key_env_var(CONNECTOR): WRITE_KEY, receiver_token_env_var(WORKSPACE): TOKEN}
        ):
            secrets = Secrets(home, backend="file", passphrase=KEYRING_PASSPHRASE)  # env overrides win
            engine = Engine(
                home,
                secrets,
                EngineOptions(receiver_host="127.0.0.1", receiver_port=0, delivery_overrides=overrides),
            )
            await engine.start()
            events = int(plan.rate * plan.sending)
            batches = make_batches(max(BATCH, events - events % BATCH), seed)
            sender = BrazeSender(engine.receiver_url, seed=seed)
            sending_deadline = time.monotonic() + plan.sending + plan.drain_timeout
            send_task = asyncio.create_task(sender.send(batches, deadline=sending_deadline, rate=plan.rate))

            async def phase(name: str, seconds: float, **faults: object) -> None:
                await standin.faults(reset=True, seed=seed, **faults)
                begin = time.time()
                await asyncio.sleep(seconds)
                phases[name] = (begin, time.time())

            await phase("steady", plan.steady)
            await phase("errors", plan.errors, fail_rate=0.10, fail_statuses=[500, 502, 503, 504, 460])
            # 429 bursts: each burst answers the next requests 429 with Retry-After; a new burst comes once
            # the previous pause is over.
            await standin.faults(reset=True, seed=seed)
            begin = time.time()
            while time.time() - begin < plan.rate_limits - 0.01:
                await standin.faults(retry_after=plan.retry_after, next_statuses=[429] * plan.burst)
                await asyncio.sleep(
                    min(plan.retry_after + 1.0, max(0.0, plan.rate_limits - (time.time() - begin)))
                )
            phases["rate limits"] = (begin, time.time())
            await phase("timeouts", plan.timeouts, timeout=plan.timeout_hold)
            await phase("after timeouts", plan.settle)
            await phase(
                "closed connections", plan.resets / 2, drop_connection_rate=0.3, lose_response_rate=0.1
            )
            await phase("reset connections", plan.resets / 2, outage=True, outage_reset=True)
            await phase("outage", plan.outage, outage=True)
            await phase("recovery", plan.recovery)
            await send_task
            arrived = await wait_delivered(standin, sender.acked_ids, plan.drain_timeout)
            lost = tally(figures, sender.sent_ids, sender.acked_ids, arrived)
            requests = await standin.requests()
            stats = await standin.stats()
            acks = list(sender.acks)
    finally:
        if engine is not None:
            await engine.stop()
        standin.stop()

    outage_begin, outage_end = phases["outage"]
    rate_begin, rate_end = phases["rate limits"]
    violations = pause_violations(
        [r for r in requests if rate_begin <= r.at <= rate_end + plan.retry_after + 1.0],
        plan.retry_after,
        grace=0.3,
    )
    successes_after = [r.at for r in requests if r.status == 200 and r.at >= outage_end]
    first_success = min(successes_after) - outage_end if successes_after else None
    steady_begin, steady_end = phases["steady"]
    steady_accepted = sum(
        r.accepted for r in requests if r.status == 200 and steady_begin <= r.at <= steady_end
    )
    steady_rate = steady_accepted / max(steady_end - steady_begin, 1e-6)
    last_arrival = max((r.at for r in requests if r.accepted), default=outage_end)
    drained_after = last_arrival - outage_end if not lost else None
    # Catching up: the stand-in has every event acknowledged by the outage's end (counting new arrivals in
    # order, which the outbox keeps).
    owed = sum(n for at, n in acks if at <= outage_end)
    had = sum(r.accepted for r in requests if r.at <= outage_end)
    caught_up_at, total = None, had
    for r in sorted(requests, key=lambda r: r.at):
        if r.at > outage_end:
            total += r.accepted
            if total >= owed:
                caught_up_at = r.at
                break
    recovery_rate = 0.0
    if caught_up_at is not None and successes_after:
        resumed = min(successes_after)
        caught = sum(r.accepted for r in requests if resumed <= r.at <= caught_up_at)
        recovery_rate = caught / max(caught_up_at - resumed, 0.05)
    figures.seconds = time.monotonic() - started
    # The waits between attempts from the outage's start up to the first success after it (that last wait
    # is the longest backoff: it was chosen when the outage had lasted longest).
    outage_gaps = gaps(requests, outage_begin, min(successes_after) if successes_after else outage_end)
    figures.notes = {
        "429s": stats["statuses"].get("429", 0),
        "pause breaches": len(violations),
        "longest outage gap": f"{max(outage_gaps, default=0):.1f} s (cap {plan.backoff_cap:g} s)",
        "back after outage": f"{first_success:.1f} s" if first_success is not None else "never",
        "backlog cleared": f"{owed - had:,} events in {caught_up_at - outage_end:.1f} s"
        if caught_up_at is not None
        else "never",
    }
    return FaultRun(
        figures=figures,
        plan=plan,
        lost_ids=lost,
        phases=phases,
        requests=requests,
        pause_violations=violations,
        rate_limited=stats["statuses"].get("429", 0),
        outage_gaps=outage_gaps,
        first_success_after_outage=first_success,
        steady_rate=steady_rate,
        backlog_at_outage_end=owed - had,
        caught_up_after=None if caught_up_at is None else caught_up_at - outage_end,
        recovery_rate=recovery_rate,
        drained_after=drained_after,
        faults_seen=Counter(r.fault for r in requests if r.fault),
        violations=stats["violations"],
    )


# ------------------------------------------------------------------------------------------ disk full


@contextlib.contextmanager
def small_filesystem(folder: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of `megabytes` mounted at `folder` (root only); Skip when it cannot be mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(folder)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise Skip(
            f"cannot mount a {megabytes} MB tmpfs for the disk-full run (needs root and mount): "
            f"{exc} {detail.decode(errors='replace').strip()}"
        ) from None
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True, timeout=10)


def fill(folder: Path) -> Path:
    """Write a file in `folder` until its filesystem is full; returns the file (delete it to free space)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1):
            chunk = b"\0" * size
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return filler


@dataclass
class DiskRun:
    figures: Figures
    lost_ids: set[str]
    refused_503: int  # the receiver's 503 answers while the disk was full
    errors_500: int
    other_refusals: Counter[int]
    full_for: float  # seconds the disk stayed full
    recovered_after: float | None  # seconds from freeing space to the next 2xx
    engine_restarts: int  # the engine must recover by itself: 0
    engine_alive: bool
    given_up: int
    violations: int
    engine_output: str  # what the engine printed (stderr and stdout), from its start to its stop
    backlog_after: int  # events still queued once everything acknowledged had arrived (`status --json`)


async def disk_full(
    workdir: Path,
    *,
    events: int = 3_000,
    megabytes: int = 24,
    rate: float = 1_000.0,
    fill_at: float = 0.3,
    hold: float = 2.0,
    seed: int = 3,
    time_limit: float = 45.0,
) -> DiskRun:
    """With the home on a small tmpfs, fill it while the receiver is taking batches, hold it full for
    `hold` seconds after the first 503, then free the space. The engine is never restarted."""
    started = time.monotonic()
    deadline = started + time_limit
    figures = Figures("disk full")
    with small_filesystem(workdir / "disk", megabytes) as disk:
        standin = StandIn(workdir / "standin", [WRITE_KEY], seed=seed).start()
        engine: EngineProcess | None = None
        filler: Path | None = None
        try:
            home = make_home(disk / "home", standin.url)
            engine = EngineProcess(home, engine_env(), log=workdir / "engine.log")
            await engine.start()
            first_pid = engine.pid
            batches = make_batches(events, seed)
            sender = BrazeSender(engine.url, seed=seed, backoff_cap=0.5)
            send_task = asyncio.create_task(sender.send(batches, deadline=deadline, rate=rate))
            while sender.acked < events * fill_at and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            filler = await asyncio.to_thread(fill, disk)
            full_since = time.monotonic()
            refused_before = sender.statuses[503]
            while sender.statuses[503] == refused_before and time.monotonic() - full_since < 15.0:
                await asyncio.sleep(0.05)
            await asyncio.sleep(hold)
            refused = sender.statuses[503]
            filler.unlink()
            filler = None
            freed_at = time.time()
            full_for = time.monotonic() - full_since
            await send_task
            arrived = await wait_delivered(standin, sender.acked_ids, max(5.0, deadline - time.monotonic()))
            lost = tally(figures, sender.sent_ids, sender.acked_ids, arrived)
            stats = await standin.stats()
            after = [at for at, status in sender.answers if at >= freed_at and 200 <= status < 300]
            engine_alive = engine.alive() and engine.pid == first_pid
            final: dict = {}

            async def settled() -> bool:
                final.update(connector_status(await status_json(home, engine.env)))
                return final["backlog"] == 0

            await wait_until(settled, 10.0, 0.5)
            await engine.stop()
            figures.seconds = time.monotonic() - started
            figures.notes = {
                "503 answers": refused,
                "disk full for": f"{full_for:.1f} s",
                "engine restarts": engine.starts - 1,
                "backlog after": final["backlog"],
            }
            return DiskRun(
                figures=figures,
                lost_ids=lost,
                refused_503=refused,
                errors_500=sender.statuses[500],
                other_refusals=Counter(
                    {s: n for s, n in sender.statuses.items() if not 200 <= s < 300 and s != 503}
                ),
                full_for=full_for,
                recovered_after=(min(after) - freed_at) if after else None,
                engine_restarts=engine.starts - 1,
                engine_alive=engine_alive,
                given_up=len(sender.given_up),
                violations=stats["violations"],
                engine_output=engine.log.read_text(errors="replace"),
                backlog_after=final["backlog"],
            )
        finally:
            if filler is not None:
                with contextlib.suppress(OSError):
                    filler.unlink()
            if engine is not None:
                await engine.stop()
                engine.close()
            standin.stop()


# ------------------------------------------------------------------------------------------ credentials


@dataclass
class CredentialRound:
    status: int  # what the stand-in answered the refused key: 401 or 403
    refused_requests: int  # requests answered with it (one batch's worth: 1)
    rejected_state: bool  # `status --json` showed "credentials rejected"
    sent_while_rejected: int  # requests that reached the stand-in while the key stayed refused
    backlog_while_rejected: int
    edit_exit_code: int
    resumed_after: float | None  # seconds from the key change to every event of the round arriving


@dataclass
class CredentialsRun:
    figures: Figures
    lost_ids: set[str]
    rounds: list[CredentialRound]
    engine_restarted: bool
    leaked_into: list[str]  # files outside the keyring (and the engine's output) holding a write key


async def _post_batch(url: str, batch: list[dict]) -> int:
    async with httpx.AsyncClient(timeout=15.0) as client:
        response = await client.post(
            f"{url}/currents/{WORKSPACE}",
            content=orjson.dumps({"events": batch}),
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "Braze-Currents-Version": "1",
                "Content-Type": _JSON,
            },
        )
        return response.status_code


async def credentials(workdir: Path, *, seed: int = 4) -> CredentialsRun:
    """A refused write key (401, then 403 for the next key) turns the connector to "credentials rejected"
    after one batch with events kept; a new key saved with `connector edit --write-key-stdin` resumes
    delivery without a restart. Write keys live in the encrypted-file keyring."""
    started = time.monotonic()
    figures = Figures("credentials (401, 403)")
    stale, first, second = "stale-write-key-00000001", "fresh-write-key-00000002", "fresh-write-key-00000003"
    standin = StandIn(workdir / "standin", [first, second], seed=seed).start()
    engine: EngineProcess | None = None
    rounds: list[CredentialRound] = []
    try:
        home = make_home(workdir / "home")
        env = engine_env(write_key=None, keyring_file=True)
        added = await asyncio.to_thread(
            cli, home, "connector", "add", CONNECTOR, "--workspace", WORKSPACE, "--email", "ops@example.com",
            "--endpoint", standin.url, "--events", "all", "--include-anonymous", "--write-key-stdin",
            env=env, stdin=stale + "\n",
        )  # fmt: skip
        if added.returncode != 0:
            raise RuntimeError(f"connector add failed: {added.stderr.strip()}")
        engine = EngineProcess(home, env, log=workdir / "engine.log")
        await engine.start()
        first_pid = engine.pid
        batches = make_batches(500, seed)
        sent: set[str] = {e["id"] for b in batches for e in b}
        acked: set[str] = set()

        async def state() -> str:
            return connector_status(await status_json(home, env))["state"]

        async def round_(refused: int, held: list[list[dict]], new_key: str) -> CredentialRound:
            before = (await standin.stats())["statuses"].get(str(refused), 0)
            # One batch first, alone: the refusal must stop the connector after that one request.
            if await _post_batch(engine.url, held[0]) == 200:
                acked.update(e["id"] for e in held[0])
            rejected = await wait_until(lambda: _is(state, "credentials rejected"), 12.0, 0.3)
            refused_requests = (await standin.stats())["statuses"].get(str(refused), 0) - before
            requests_then = (await standin.stats())["requests"]
            for batch in held[1:]:
                if await _post_batch(engine.url, batch) == 200:
                    acked.update(e["id"] for e in batch)
            await asyncio.sleep(1.0)  # time for a connector that ignored the refusal to send again
            sent_while = (await standin.stats())["requests"] - requests_then
            backlog = connector_status(await status_json(home, env))["backlog"]
            changed_at = time.monotonic()
            edited = await asyncio.to_thread(
                cli, home, "connector", "edit", CONNECTOR, "--write-key-stdin", env=env, stdin=new_key + "\n"
            )
            ids = {e["id"] for b in held for e in b}
            arrived = await wait_delivered(standin, ids, 15.0)
            resumed = time.monotonic() - changed_at if ids <= arrived.keys() else None
            return CredentialRound(
                status=refused,
                refused_requests=refused_requests,
                rejected_state=rejected,
                sent_while_rejected=sent_while,
                backlog_while_rejected=backlog,
                edit_exit_code=edited.returncode,
                resumed_after=resumed,
            )

        rounds.append(await round_(401, batches[0:3], first))
        await standin.faults(status_for_keys={first: 403})
        rounds.append(await round_(403, batches[3:5], second))
        arrived = await standin.ids()
        lost = tally(figures, sent, acked, arrived)
        restarted = engine.starts != 1 or engine.pid != first_pid or not engine.alive()
        await engine.stop()
        leaked = _files_holding(
            [Path(home), engine.log], [stale, first, second], skip={Home.at(home).keyring_file}
        )
        figures.seconds = time.monotonic() - started
        figures.notes = {
            "refused batches": "+".join(str(r.refused_requests) for r in rounds),
            "resumed after": ", ".join(
                f"{r.resumed_after:.1f} s" for r in rounds if r.resumed_after is not None
            ),
            "restarts": int(restarted),
        }
        return CredentialsRun(figures, lost, rounds, restarted, leaked)
    finally:
        if engine is not None:
            await engine.stop()
            engine.close()
        standin.stop()


async def _is(state, wanted: str) -> bool:
    return (await state()) == wanted


def _files_holding(roots: Sequence[Path], secrets: Sequence[str], *, skip: set[Path]) -> list[str]:
    """Files under `roots` (folders or files) whose bytes contain any of `secrets`."""
    needles = [s.encode() for s in secrets]
    found = []
    for root in roots:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            if path in skip:
                continue
            data = path.read_bytes()
            if any(n in data for n in needles):
                found.append(str(path))
    return found


# ------------------------------------------------------------------------------------------ stand-in process


async def _serve_standin(args: argparse.Namespace) -> None:
    from aiohttp import web

    from tui_currents.sandbox import Faults, SegmentSandbox, read_write_keys

    sandbox = SegmentSandbox(
        read_write_keys(args.write_key_file),
        reject_unknown_keys=True,
        keep=args.keep,
        faults=Faults(seed=args.seed),
    )

    async def ids(_request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({"ids": sandbox.message_ids}), content_type=_JSON)

    async def requests(_request: web.Request) -> web.Response:
        records = [
            [r.at, r.status, r.messages, r.accepted, r.duplicates, r.sent_at, r.fault]
            for r in sandbox.requests
        ]
        body = {"total": sandbox.request_count, "kept": len(records), "records": records}
        return web.Response(body=orjson.dumps(body), content_type=_JSON)

    inspect = web.Application()
    inspect.router.add_get("/ids", ids)
    inspect.router.add_get("/requests", requests)
    runner = web.AppRunner(inspect, access_log=None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with sandbox:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        print(json.dumps({"url": sandbox.url, "inspect": f"http://127.0.0.1:{port}"}), flush=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.harness")
    sub = parser.add_subparsers(dest="command", required=True)
    standin = sub.add_parser("standin", help="serve the Segment stand-in with its inspection port")
    standin.add_argument("--write-key-file", required=True)
    standin.add_argument("--seed", type=int, default=0)
    standin.add_argument("--keep", type=int, default=500_000)
    args = parser.parse_args(argv)
    asyncio.run(_serve_standin(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
