"""The real `tui-currents` command in a real terminal: tmux runs it, keys are typed with `send-keys`, and
the screen is read back with `capture-pane`, as a person would see it.

Every tmux server here runs on a private socket (`-L`), so a user's own tmux is never touched, and is
killed at the end of each test. Waits poll the screen against a deadline; nothing sleeps for a fixed time
beyond a poll interval.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tui_currents import catalog
from tui_currents.demo_setup import DEMO_CONNECTOR, DEMO_KEYRING_PASSPHRASE
from tui_currents.paths import Home
from tui_currents.secrets import Secrets
from tui_currents.tui.screens.connectors import ConnectorsScreen
from tui_currents.tui.screens.tail import TailScreen

TMUX = shutil.which("tmux")

pytestmark = [
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed; these tests drive the app in tmux"),
    pytest.mark.timeout(60),
]

WIDTH, HEIGHT = 100, 32
POLL = 0.1
START_TIMEOUT = 25.0  # Python start, imports, the demo's sandbox: slow on a busy two-core machine
STEP_TIMEOUT = 10.0

NEW_CONNECTOR = "Growth e2e"  # short enough for the connectors table's name column
NEW_EMAIL = "growth@example.com"
NEW_WORKSPACE = "marketing"
NEW_WRITE_KEY = "wk_e2e_0123456789abcdefXYZ"
SEGMENT_NAMES = {e.segment_event for e in catalog.CATALOG if e.supported}


def tui_command() -> list[str]:
    """The installed console script next to this interpreter, or the module when there is none."""
    script = Path(sys.executable).with_name("tui-currents")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tui_currents"]


def command_env() -> dict[str, str]:
    """The environment for the app: no inherited tui-currents settings, no OS keyring, no outer tmux."""
    env = {
        name: value
        for name, value in os.environ.items()
        # COLUMNS and LINES (set in a pytest-xdist worker) would fix the app's size whatever tmux's is.
        if not name.startswith(("TUI_CURRENTS_", "TEXTUAL", "TMUX", "PYTEST_"))
        and name not in ("COLUMNS", "LINES")
    }
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    return env


class Terminal:
    """A tmux server of our own with one session per command: keys in, screen text out."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.socket = f"tui-currents-e2e-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.folder = folder
        self.env = env
        self.conf = folder / "tmux.conf"
        # Dead panes stay, so whatever was printed last can still be read.
        self.conf.write_text("set -g remain-on-exit on\nset -g history-limit 5000\n")

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            [TMUX, "-L", self.socket, "-f", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=10,
            env=self.env,
        )
        if done.returncode != 0:
            raise RuntimeError(f"tmux {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self, session: str, argv: list[str], *, env: dict[str, str] | None = None) -> None:
        """Run `argv` in a new session of this server's size. A shell around it writes the exit status to
        a file: the status then never depends on tmux noticing that the pane's process ended."""
        extra = [arg for name, value in (env or {}).items() for arg in ("-e", f"{name}={value}")]
        status = self._status_file(session)
        wrapper = ["sh", "-c", f'"$@"; echo $? > {shlex.quote(str(status))}', "sh", *argv]
        self.tmux(
            "new-session", "-d", "-s", session, "-x", str(WIDTH), "-y", str(HEIGHT),
            "-c", str(self.folder), *extra, *wrapper,
        )  # fmt: skip

    def _status_file(self, session: str) -> Path:
        return self.folder / f"{session}.exit-status"

    def screen(self, session: str, *, history: bool = False) -> str:
        args = ["capture-pane", "-p", "-t", session] + (["-S", "-"] if history else [])
        return self.tmux(*args)

    def keys(self, session: str, *keys: str) -> None:
        """Named keys (Tab, Enter, Escape, F1, C-s...)."""
        self.tmux("send-keys", "-t", session, *keys)

    def type(self, session: str, text: str) -> None:
        """Literal text, as typed."""
        self.tmux("send-keys", "-t", session, "-l", text)

    def cursor(self, session: str) -> tuple[int, int]:
        """Where the terminal's cursor is (Textual puts it in the focused text field)."""
        x, y = self.tmux("display-message", "-p", "-t", session, "#{cursor_x} #{cursor_y}").split()
        return int(x), int(y)

    def exit_status(self, session: str) -> int | None:
        """The command's exit status once it has ended, else None."""
        try:
            text = self._status_file(session).read_text()
        except FileNotFoundError:
            return None
        return int(text) if text.endswith("\n") else None

    def wait_for(
        self, session: str, condition: Callable[[str], bool], what: str, timeout: float = STEP_TIMEOUT
    ) -> str:
        """Poll the screen until `condition(screen)` holds; fail with the last screen shown."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen(session)
            if condition(text):
                return text
            if self.exit_status(session) is not None:
                raise AssertionError(
                    f"the app ended while waiting for {what}:\n{self.screen(session, history=True)}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {what}; the screen:\n{text}"
                )
            time.sleep(POLL)

    def wait_text(self, session: str, text: str, timeout: float = STEP_TIMEOUT) -> str:
        return self.wait_for(session, lambda screen: text in screen, repr(text), timeout)

    def wait_cursor_in(self, session: str, label: str) -> None:
        """After Tab: wait until the cursor sits in the text field on the row labelled `label` (Textual
        puts the terminal's cursor in the focused field; while it blinks off, the cursor is parked)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            rows = [
                y for y, line in enumerate(self.screen(session).splitlines()) if line.startswith(f" {label} ")
            ]
            if rows and self.cursor(session)[1] == rows[0]:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the cursor never reached {label!r}:\n{self.screen(session)}")
            time.sleep(POLL / 2)

    def wait_exit(self, session: str, timeout: float = STEP_TIMEOUT) -> int:
        deadline = time.monotonic() + timeout
        while (status := self.exit_status(session)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the app did not exit within {timeout:.0f} s:\n{self.screen(session)}")
            time.sleep(POLL)
        return status

    def kill(self) -> None:
        """Stop the server and its commands, and remove its socket (tmux leaves the file behind)."""
        subprocess.run(
            [TMUX, "-L", self.socket, "kill-server"], capture_output=True, timeout=10, env=self.env
        )
        folder = Path(self.env.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        (folder / self.socket).unlink(missing_ok=True)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path, command_env())
    try:
        yield term
    finally:
        term.kill()


def demo_home(folder: Path) -> Path:
    """A fresh home whose receiver takes a free port, so the test never collides with a running one."""
    folder.mkdir(mode=0o700)
    config = folder / "config.toml"
    config.write_text("[receiver]\nport = 0\n")
    config.chmod(0o600)
    return folder


def delivered_count(screen: str) -> int | None:
    """The connectors screen's "Delivered N" for the selected connector (counts: 999, 12.3k, 4.56M)."""
    found = re.search(r"Delivered (\d+(?:\.\d+)?)([kM]?) ·", screen)
    if found is None:
        return None
    scale = {"": 1, "k": 1_000, "M": 1_000_000}[found.group(2)]
    return int(float(found.group(1)) * scale)


def tail_event_lines(screen: str) -> list[str]:
    """Lines of the tail that show a time and a Segment event name of the catalog."""
    return [
        line
        for line in screen.splitlines()
        if re.match(r"\d\d:\d\d:\d\d ", line) and any(f" {name} " in line for name in SEGMENT_NAMES)
    ]


def assert_clean_exit(term: Terminal, session: str) -> None:
    status = term.wait_exit(session)
    everything = term.screen(session, history=True)
    assert status == 0, f"exit status {status}:\n{everything}"
    assert "Traceback" not in everything, everything


def wait_for_help(terminal: Terminal, session: str, title: str, bindings: list) -> None:
    """Wait for the help titled `title` listing every binding's id: the title can be drawn a frame before
    the list, so the whole help is what is waited for (and the screen shown if an id never appears)."""
    terminal.wait_for(
        session,
        lambda t: title in t and all(b.id in t for b in bindings),
        f"{title!r} listing the ids {[b.id for b in bindings]}",
    )


def test_demo_by_keyboard(terminal: Terminal, tmp_path: Path) -> None:
    home = demo_home(tmp_path / "home")
    s = "demo"
    terminal.start(s, [*tui_command(), "--home", str(home), "demo"])

    # The connectors screen with the demo connector, and its delivered count rising.
    screen = terminal.wait_for(
        s,
        lambda t: "› Connectors" in t and f"{DEMO_CONNECTOR} ·" in t and delivered_count(t) is not None,
        "the demo connector on the connectors screen",
        START_TIMEOUT,
    )
    assert "DEMO: nothing leaves this machine" in screen
    first = delivered_count(screen)
    terminal.wait_for(s, lambda t: (delivered_count(t) or 0) > first, "the delivered count to rise")

    # The tail: lines with Braze types and Segment event names.
    terminal.keys(s, "t")
    screen = terminal.wait_for(
        s,
        lambda t: f"Tail of {DEMO_CONNECTOR}" in t and len(tail_event_lines(t)) >= 5,
        "tail lines with Segment event names",
    )
    assert "Segment event" in screen and "Braze event type" in screen

    # Enter: the exact Segment message of the newest line.
    terminal.keys(s, "Enter")
    screen = terminal.wait_text(s, '"messageId"')
    assert '"type": "track"' in screen
    shown_event = re.search(r'"event": "([^"]+)"', screen)
    assert shown_event is not None and shown_event.group(1) in SEGMENT_NAMES, screen

    terminal.keys(s, "Escape")
    terminal.wait_for(
        s, lambda t: '"messageId"' not in t and f"Tail of {DEMO_CONNECTOR}" in t, "the tail again"
    )
    # "?" is help too: the tail's own keys.
    terminal.keys(s, "?")
    wait_for_help(terminal, s, f"Help: Tail of {DEMO_CONNECTOR}", TailScreen.BINDINGS)
    terminal.keys(s, "Escape")
    terminal.wait_for(s, lambda t: "Help:" not in t, "the help to close")
    terminal.keys(s, "Escape")
    terminal.wait_text(s, "› Connectors")

    # Help: the keys of this screen, with their ids for remapping.
    terminal.keys(s, "F1")
    wait_for_help(terminal, s, "Help: Connectors", ConnectorsScreen.BINDINGS)
    terminal.keys(s, "Escape")
    terminal.wait_for(s, lambda t: "Help: Connectors" not in t, "the help to close")

    # A new connector, typed field by field.
    terminal.keys(s, "n")
    terminal.wait_text(s, "› New connector")
    terminal.wait_cursor_in(s, "Integration name")
    terminal.type(s, NEW_CONNECTOR)
    terminal.wait_text(s, f"Integration name  {NEW_CONNECTOR}")
    terminal.keys(s, "Tab")
    terminal.wait_cursor_in(s, "Contact email")
    terminal.type(s, NEW_EMAIL)
    terminal.wait_text(s, f"Contact email     {NEW_EMAIL}")
    terminal.keys(s, "Tab")
    terminal.wait_cursor_in(s, "Braze workspace")
    # The only workspace, "demo", is filled in; this connector goes to a new one. A key bound to an action
    # takes effect a moment after letters typed at once, so wait to see the field empty before typing.
    terminal.keys(s, "C-u")
    terminal.wait_text(s, "Braze workspace   Braze workspace (a new name adds it)")
    terminal.type(s, NEW_WORKSPACE)
    terminal.wait_text(s, f"Braze workspace   {NEW_WORKSPACE}")
    terminal.keys(s, "Tab")
    terminal.wait_cursor_in(s, "Segment write key")
    terminal.type(s, NEW_WRITE_KEY)
    screen = terminal.wait_text(s, "•" * len(NEW_WRITE_KEY))
    assert NEW_WRITE_KEY not in screen  # masked as it is typed

    # Tab on to the event tree (its keys show in the footer when it has focus) and tick the first category.
    for _ in range(12):
        terminal.keys(s, "Tab")
        try:
            # Long enough for a busy machine to draw the move: a Tab pressed before it overshoots the tree.
            terminal.wait_for(s, lambda t: "space Toggle" in t.splitlines()[-1], "the event tree", 3.0)
            break
        except AssertionError:
            continue
    else:
        raise AssertionError(f"Tab never reached the event tree:\n{terminal.screen(s)}")
    category, groups = next(iter(catalog.categories().items()))
    chosen = {e.event_type for events in groups.values() for e in events}
    terminal.keys(s, "Space")
    terminal.wait_text(s, f"[x] {category}  {len(chosen)}/{len(chosen)}")
    terminal.wait_text(s, f"{len(chosen)}/{len(catalog.supported_types())} of Braze's connector")

    terminal.keys(s, "C-s")
    terminal.wait_for(s, lambda t: "› Connectors" in t and NEW_CONNECTOR in t, "the new connector's row")

    config_file = home / "config.toml"
    saved = tomllib.loads(config_file.read_text())
    connector = next(c for c in saved["connectors"] if c["name"] == NEW_CONNECTOR)
    assert connector["workspace"] == NEW_WORKSPACE and connector["contact_email"] == NEW_EMAIL
    assert connector["region"] == "us" and set(connector["events"]) == chosen
    assert NEW_WORKSPACE in [w["name"] for w in saved["workspaces"]]
    assert NEW_WRITE_KEY not in config_file.read_text()
    assert config_file.stat().st_mode & 0o777 == 0o600

    # Quit with its key: a clean exit, nothing printed on the way out.
    terminal.keys(s, "q")
    assert_clean_exit(terminal, s)
    # The write key went to the demo home's keyring file, encrypted there.
    secrets = Secrets(Home.at(home), backend="file", passphrase=DEMO_KEYRING_PASSPHRASE)
    assert secrets.get_write_key(NEW_CONNECTOR) == NEW_WRITE_KEY
    assert NEW_WRITE_KEY.encode() not in Home.at(home).keyring_file.read_bytes()


def test_a_second_app_on_a_running_service_is_its_console(terminal: Terminal, tmp_path: Path) -> None:
    home = tmp_path / "service-home"
    log = tmp_path / "service.log"
    env = command_env()
    with log.open("wb") as out:
        service = subprocess.Popen(
            [*tui_command(), "--home", str(home), "run", "--demo", "--port", "0", "--demo-rate", "40"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        lock = Home.at(home).lock_file
        deadline = time.monotonic() + START_TIMEOUT
        while not (lock.exists() and lock.read_text().strip() == str(service.pid)):
            assert service.poll() is None, f"the service ended: {log.read_text()}"
            assert time.monotonic() < deadline, f"the service did not take the home: {log.read_text()}"
            time.sleep(POLL)

        # The same home, the plain command: the demo home's keyring file is opened with its passphrase.
        s = "console"
        keyring_env = {
            "TUI_CURRENTS_KEYRING": "file",
            "TUI_CURRENTS_KEYRING_PASSPHRASE": DEMO_KEYRING_PASSPHRASE,
        }
        terminal.start(s, [*tui_command(), "--home", str(home)], env=keyring_env)
        screen = terminal.wait_for(
            s,
            lambda t: f"console of the service (pid {service.pid})" in t and delivered_count(t) is not None,
            "the console naming the service",
            START_TIMEOUT,
        )
        assert f"{DEMO_CONNECTOR} ·" in screen
        # It reads the service's live figures, and the service kept its lock.
        first = delivered_count(screen)
        terminal.wait_for(s, lambda t: (delivered_count(t) or 0) > first, "the service's deliveries to show")
        assert lock.read_text().strip() == str(service.pid)

        terminal.keys(s, "q")
        assert_clean_exit(terminal, s)
        assert service.poll() is None, "closing the console must not stop the service"
    finally:
        if service.poll() is None:
            service.send_signal(signal.SIGTERM)
        try:
            code = service.wait(timeout=15)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(timeout=5)
            raise
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()
