"""The faults the reliability runs inject, and how they see the service's processes.

- `service_processes`: the processes of a running service by kind (the engine, its mapping worker, any
  other process below it), so that a run can kill every kind of them (`kill_helper`), not only the engine;
  `HealthWatch` records whether the service keeps answering meanwhile.
- `environment`: environment variables set for a block (the endpoint-fault run's engine settings).
- `small_filesystem` and `fill`: a small tmpfs and a file that fills it, for the disk-full run.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path

import httpx

from tests.reliability.harness import (
    EngineProcess,
    Skip,
    _parent_of,
    descendants,
    running,
    wait_until,
)

# ------------------------------------------------------------------------------ the service's processes

ENGINE = "engine"
DELIVERY = "delivery process"


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
