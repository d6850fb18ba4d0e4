"""Helpers for tests of `tui-currents run` as a service: a real subprocess on a real home, on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.reliability.harness import free_port, subprocess_env

__all__ = ["Service", "free_port", "subprocess_env"]


class Service:
    """`tui-currents --home H run ARGS` in a subprocess; its stderr kept in a file for the test to read."""

    def __init__(self, home: Path, *args: str, env: dict[str, str]):
        self.home = home
        self.stderr_path = home / "service-stderr.log"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tui_currents", "--home", str(home), "run", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=env,
        )

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_http(self, url: str, timeout: float = 30.0) -> httpx.Response:
        """GET `url` until it answers (the service is up) or `timeout`; AssertionError with its stderr."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the service exited ({self.proc.returncode}):\n{self.stderr()}")
            try:
                return httpx.get(url, timeout=2.0)
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"{url} did not answer within {timeout:g} s:\n{self.stderr()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        self._stderr.close()
        return code


def service_env(**extra: str) -> dict[str, str]:
    """The product's environment for a service run (no TUI_CURRENTS_* of the test, no OS keyring)."""
    env = subprocess_env()
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY"):
        env.pop(name, None)  # this test run's own, should it run under systemd
    env.update(extra)
    return env


def cli_json(home: Path, *args: str, env: dict[str, str]) -> object:
    """Run a `tui-currents` command that prints JSON; its parsed output."""
    import json

    result = subprocess.run(
        [sys.executable, "-m", "tui_currents", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "TUI_CURRENTS_KEYRING": env.get("TUI_CURRENTS_KEYRING", "file")},
        stdin=subprocess.DEVNULL,
        cwd=os.getcwd(),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
