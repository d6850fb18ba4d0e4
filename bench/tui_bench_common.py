"""What the terminal app's benches share: the terminal size, how the app is started, a demo home."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tui_currents.paths import Home

SIZE = (100, 32)
LATENCY_GOAL_MS = 100.0
IDLE_RATE = 50.0  # the demo's default events/s


def tui_command() -> list[str]:
    script = Path(sys.executable).with_name("tui-currents")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tui_currents"]


def child_env() -> dict[str, str]:
    """No inherited tui-currents settings and never the OS keyring (the demo has its own keyring file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUI_CURRENTS_", "TMUX", "TEXTUAL"))}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    return env


def new_home(parent: Path, name: str) -> Home:
    """A demo home whose receiver takes a free port (never collides with a running receiver)."""
    folder = parent / name
    folder.mkdir(mode=0o700)
    (folder / "config.toml").write_text("[receiver]\nport = 0\n")
    (folder / "config.toml").chmod(0o600)
    return Home.at(folder)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
