"""The first passphrase of the encrypted keyring file is asked twice, after one short line of why; a
mismatch stores nothing. Run on a real pseudo-terminal, as a person meets it."""

from __future__ import annotations

import os
import pty
import select
import sys
import time

import pytest

from tui_currents.paths import Home
from tui_currents.secrets import Secrets

pytestmark = pytest.mark.timeout(90)


def run_on_terminal(home: Home, args: list[str], answers: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its controlling terminal; type each answer at each prompt."""
    env = {k: v for k, v in os.environ.items() if k != "TUI_CURRENTS_KEYRING_PASSPHRASE"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal's side
        os.execve(
            sys.executable, [sys.executable, "-m", "tui_currents", "--home", str(home.root), *args], env
        )
    output, pending = b"", list(answers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if pending and chunk.endswith(b": "):  # a prompt, waiting
                os.write(fd, pending.pop(0).encode() + b"\n")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_a_new_passphrase_is_asked_twice_with_one_line_of_why(home: Home) -> None:
    code, out = run_on_terminal(home, ["workspace", "add", "prod"], ["first secret", "first secret"])
    assert code == 0, out
    before_prompt = out.split("New passphrase:")[0].strip().splitlines()
    assert len(before_prompt) == 1 and "asked twice" in before_prompt[0]
    assert "same passphrase again" in out
    assert "start tui-currents in a terminal" not in out
    assert Secrets(home, backend="file", passphrase="first secret").has_receiver_token("prod")


def test_two_different_passphrases_store_nothing(home: Home) -> None:
    answers = ["one", "two"] * 3
    code, out = run_on_terminal(home, ["workspace", "add", "prod"], answers)
    assert code == 2 and "did not match" in out, out
    assert not home.keyring_file.exists()
