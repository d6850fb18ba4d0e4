"""Running the sandbox: on its own event loop in a thread (tests, the demo), or as a process
(`python -m tui_currents.sandbox`, `tui-currents sandbox`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping

from tui_currents.sandbox.faults import Faults
from tui_currents.sandbox.server import SegmentSandbox
from tui_currents.sandbox_options import WRITE_KEYS_ENV, add_arguments


class SandboxThread:
    """A sandbox running on its own event loop in a daemon thread: `url`, `sandbox`, `stop()`."""

    def __init__(self, sandbox: SegmentSandbox, *, start_timeout: float = 10.0) -> None:
        self.sandbox = sandbox
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="segment-sandbox", daemon=True)
        self._thread.start()
        if not self._started.wait(start_timeout):
            raise RuntimeError(f"the Segment sandbox did not start within {start_timeout:g} s")
        if self._error is not None:
            raise RuntimeError(f"the Segment sandbox could not start: {self._error}") from self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.sandbox.start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._started.set()
            self._loop.close()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.sandbox.stop())
        self._loop.close()

    @property
    def url(self) -> str:
        return self.sandbox.url

    def wait_accepted(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least `count` messages were accepted; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while self.sandbox.accepted_count < count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the sandbox and its thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> SandboxThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def read_write_keys(path: str | None, environ: Mapping[str, str] = os.environ) -> set[str] | None:
    """Write keys from a file (one a line, # comments) or the environment variable; None if neither."""
    text: str | None = None
    if path:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    elif environ.get(WRITE_KEYS_ENV):
        text = environ[WRITE_KEYS_ENV].replace(",", "\n")
    if text is None:
        return None
    keys = {line.strip() for line in text.splitlines()}
    return {k for k in keys if k and not k.startswith("#")}


async def _serve(sandbox: SegmentSandbox, *, report_every: float | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with sandbox:
        print(sandbox.url, flush=True)
        if report_every is None:
            await stop.wait()
            return
        reported = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), report_every)
            if sandbox.accepted_count != reported:
                print(accepted_line(sandbox, sandbox.accepted_count - reported), flush=True)
                reported = sandbox.accepted_count


def accepted_line(sandbox: SegmentSandbox, new: int) -> str:
    """One line saying what arrived since the last line: how many, and of which events."""
    recent = sandbox.recent(min(new, 1000))
    names = Counter(str(m.get("event", m.get("type", "?"))) for m in recent)
    top = ", ".join(f"{name} {n}" for name, n in names.most_common(3))
    return (
        f"accepted {new:,} message{'s' if new != 1 else ''} ({sandbox.accepted_count:,} in all;"
        f" {sandbox.duplicates:,} duplicates): {top}"
    )


def serve(args: argparse.Namespace, *, report_every: float | None = None) -> int:
    """Serve until SIGINT/SIGTERM (the base URL printed first); with `report_every`, a line of what was
    accepted at most that often."""
    try:
        keys = read_write_keys(args.write_key_file)
    except OSError as exc:
        print(f"could not read the write key file: {exc.strerror}", file=sys.stderr)
        return 2
    if keys is not None and not keys:
        print("the write key file holds no key; add one key per line", file=sys.stderr)
        return 2
    sandbox = SegmentSandbox(
        keys,
        host=args.host,
        port=args.port,
        keep=args.keep,
        reject_unknown_keys=args.reject_unknown_keys,
        strict=not args.lenient,
        faults=Faults(seed=args.seed),
    )
    try:
        asyncio.run(_serve(sandbox, report_every=report_every))
    except OSError as exc:
        print(f"could not listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m tui_currents.sandbox`: serve until SIGINT/SIGTERM; prints the base URL first."""
    parser = argparse.ArgumentParser(
        prog="python -m tui_currents.sandbox",
        description="A local stand-in for Segment's HTTP Tracking API (prints its base URL, then serves).",
    )
    add_arguments(parser)
    return serve(parser.parse_args(argv))
