"""What every reliability run needs, at any size, all on 127.0.0.1: processes, traffic, figures.

- `StandIn`: the Segment stand-in (`tui_currents.sandbox.SegmentSandbox`, unchanged) in its own process, so
  it outlives every engine it serves, plus a read-only inspection port that tells which messageIds arrived
  how often and when each request came (the stand-in's own `/_sandbox/*` endpoints give only counts).
- `EngineProcess`: `tui-currents --home H run --port P`, a real process that can be killed with SIGKILL.
- `BrazeSender`: posts Currents batches the way Braze's Custom HTTP connector does: a batch is done only
  when answered 2xx; anything else (another status, a reset connection, no answer) is sent again later,
  with exponential backoff and jitter, holding the same events and so the same event ids.
- `Figures`, `tally`, `wait_delivered`, `pause_violations`: what a run counts and checks. Every
  acknowledged event is an obligation: it must reach the stand-in.

The faults a run injects are in `faults.py`, the scenarios built from both in `scenarios.py`.

Run `python -m tests.reliability.harness standin --write-key-file F` (from the repository root) to start a
stand-in by hand; it prints one JSON line with its URLs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import orjson

from tui_currents import catalog, config
from tui_currents.keyring_cost import NEW_FILE_COST_ENV
from tui_currents.paths import Home
from tui_currents.secrets import (
    BACKEND_ENV,
    PASSPHRASE_ENV,
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
    """The environment for the product's processes: ours without any TUI_CURRENTS_* setting but the cost
    of new keyring files (the test run's, tests/conftest.py), no OS keyring (so nothing can reach a real
    user's keyring), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUI_CURRENTS_")}
    if os.environ.get(NEW_FILE_COST_ENV):
        env[NEW_FILE_COST_ENV] = os.environ[NEW_FILE_COST_ENV]
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
