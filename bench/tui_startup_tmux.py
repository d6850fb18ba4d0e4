"""The terminal app's start-up in tmux: the real `tui-currents --home H demo`, from launching the command to
the connectors screen on the terminal (its title, then the demo connector's row with figures), polled with
`capture-pane` every 20 ms; median of N runs on a warm home (the first, cold run is shown apart). Run by
bench_tui.py (its part (a)).
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tui_bench_common import SIZE, child_env, new_home, tui_command

from tui_currents.demo_setup import DEMO_CONNECTOR
from tui_currents.paths import Home


class Tmux:
    """A private tmux server (its own -L socket) running one command at a time."""

    def __init__(self, folder: Path) -> None:
        self.socket = f"tui-currents-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.folder = folder
        self.conf = folder / "tmux.conf"
        self.conf.write_text("set -g remain-on-exit on\n")
        self.env = child_env()

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=10,
            env=self.env,
        )
        if done.returncode:
            raise RuntimeError(f"tmux {args[0]}: {done.stderr.strip()}")
        return done.stdout

    def start(self, session: str, argv: list[str], status: Path) -> None:
        # A shell records the exit status, so it never depends on tmux noticing the process end.
        wrapper = ["sh", "-c", f'"$@"; echo $? > {shlex.quote(str(status))}', "sh", *argv]
        w, h = SIZE
        self.run("new-session", "-d", "-s", session, "-x", str(w), "-y", str(h), *wrapper)

    def screen(self, session: str) -> str:
        return self.run("capture-pane", "-p", "-t", session)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)
        folder = Path(self.env.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        (folder / self.socket).unlink(missing_ok=True)  # tmux leaves its socket file behind


def tmux_start_once(tmux: Tmux, home: Home, index: int) -> tuple[float, float]:
    """Seconds from launching `tui-currents demo` to (the connectors screen, the demo connector's row)."""
    session, status = f"start{index}", tmux.folder / f"start{index}.status"
    t0 = time.perf_counter()
    tmux.start(session, [*tui_command(), "--home", str(home.root), "demo"], status)
    screen_at = row_at = None
    deadline = t0 + 60
    while row_at is None:
        text = tmux.screen(session)
        now = time.perf_counter()
        if screen_at is None and "› Connectors" in text:
            screen_at = now - t0
        if "› Connectors" in text and f"{DEMO_CONNECTOR} ·" in text and "Delivered" in text:
            row_at = now - t0
        if now > deadline or status.exists():
            raise RuntimeError(f"the connectors screen did not show:\n{text}")
        time.sleep(0.02)
    tmux.run("send-keys", "-t", session, "q")
    deadline = time.perf_counter() + 20
    while not (status.exists() and status.read_text().endswith("\n")):
        if time.perf_counter() > deadline:
            raise RuntimeError("the app did not exit after q")
        time.sleep(0.05)
    if status.read_text().strip() != "0":
        raise RuntimeError(f"the app exited with {status.read_text().strip()}")
    return screen_at or row_at, row_at


def bench_start_tmux(root: Path, starts: int) -> None:
    home = new_home(root, "start-home")
    tmux = Tmux(root)
    try:
        cold = tmux_start_once(tmux, home, 0)
        warm = [tmux_start_once(tmux, home, i) for i in range(1, starts + 1)]
    finally:
        tmux.kill()
    screens, rows = [w[0] for w in warm], [w[1] for w in warm]
    print(f"(a) Start-up in tmux ({SIZE[0]}x{SIZE[1]}), `tui-currents --home H demo`:")
    print(f"    cold (new home):   screen {cold[0]:.2f} s, connector row {cold[1]:.2f} s")
    print(
        f"    warm, {starts} runs:     screen median {statistics.median(screens):.2f} s "
        f"(min {min(screens):.2f}, max {max(screens):.2f}); connector row median "
        f"{statistics.median(rows):.2f} s (min {min(rows):.2f}, max {max(rows):.2f})"
    )
    python_only = _seconds([sys.executable, "-c", "pass"])
    imports = _seconds([sys.executable, "-c", "import tui_currents.tui.app, tui_currents.engine"])
    print(
        f"    of which: Python start {python_only:.2f} s; "
        f"Python + importing the app and engine {imports:.2f} s"
    )


def _seconds(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, env=child_env())
    return time.perf_counter() - t0
