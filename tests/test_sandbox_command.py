"""`tui-currents sandbox`: the local Segment stand-in for trying a connector by hand; it prints its address
and then what it accepted."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading

import httpx
import pytest

pytestmark = pytest.mark.timeout(60)


def read_line(proc: subprocess.Popen, timeout: float = 20) -> str:
    # A reader thread, not select() on the pipe: the text reader may already hold the next line in its
    # buffer (two lines that arrived together), where select() on the pipe cannot see it.
    lines = _lines.get(proc)
    if lines is None:
        lines = _lines[proc] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        return lines.get(timeout=timeout).strip()
    except queue.Empty:
        raise AssertionError("the sandbox printed nothing in time") from None


_lines: dict[subprocess.Popen, queue.Queue[str]] = {}


def test_the_sandbox_command_says_where_it_listens_and_what_it_accepted(tmp_path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui_currents", "--home", str(tmp_path), "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert "Segment stand-in" in read_line(proc)
        url = read_line(proc)
        assert url.startswith("http://127.0.0.1:")
        batch = {
            "batch": [
                {
                    "type": "track",
                    "event": "Email Sent",
                    "userId": "u-1",
                    "messageId": "m-1",
                    "timestamp": "2026-12-07T00:00:00Z",
                }
            ]
        }
        answer = httpx.post(url + "/v1/batch", json=batch, auth=("any-key", ""), timeout=10)
        assert answer.status_code == 200
        line = read_line(proc)
        assert line.startswith("accepted 1 message") and "Email Sent" in line
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
