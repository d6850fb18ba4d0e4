"""A systemd unit that runs this installation's `tui-currents run` on one home (`service unit [--user]`).

Type=notify (see systemd.py), restarted on failure, watched by the watchdog, confined (read-only system,
private /tmp, no new privileges) except for the home it writes. The keyring passphrase reaches the service
as a systemd credential (LoadCredential=), never on a command line or in the unit.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from pathlib import Path

from tui_currents.paths import Home
from tui_currents.secrets import BACKEND_ENV, PASSPHRASE_CREDENTIAL

UNIT_NAME = "tui-currents.service"
SYSTEM_CREDENTIAL = Path("/etc/credstore/tui-currents-keyring-passphrase")
WATCHDOG_SECONDS = 60
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def executable() -> list[str]:
    """The command that starts this installation: its `tui-currents` script beside the interpreter (a venv,
    pipx or uv tool), else this interpreter with `-m tui_currents`. Absolute; links are not followed, so a
    venv's interpreter stays the venv's."""
    interpreter = Path(sys.executable).absolute()
    script = interpreter.parent / "tui-currents"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(interpreter), "-m", "tui_currents"]


def user_credential_file() -> Path:
    """Where a user service's passphrase credential is read from by default."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "credstore" / "tui-currents-keyring-passphrase"


def quote(word: str) -> str:
    """One word of a unit file: `%` doubled (systemd's specifier sign), quoted when it holds spaces."""
    word = word.replace("%", "%%")
    if _PLAIN.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(home: Home, *, user: bool, credential: Path | None = None) -> str:
    """The unit's text for `home`: a system unit run as the current user, or a user unit (`user=True`)."""
    credential = credential or (user_credential_file() if user else SYSTEM_CREDENTIAL)
    if home.root == home.data:  # one folder: --home names it
        command, environment = [*executable(), "--home", str(home.root), "run"], []
    else:  # the user's config and data folders: the same ones, whatever $HOME the service gets
        command = [*executable(), "run"]
        environment = [
            f"Environment={quote(f'XDG_CONFIG_HOME={home.root.parent}')}",
            f"Environment={quote(f'XDG_DATA_HOME={home.data.parent}')}",
        ]
    writable = sorted({str(home.root), str(home.data)})
    account = getpass.getuser()
    lines = [
        f"# {UNIT_NAME}: written by `tui-currents service unit{' --user' if user else ''}` for the home",
        f"# {home.root}. The keyring passphrase is read from {credential} (0600), never from this file.",
        "[Unit]",
        "Description=tui-currents: Braze Currents to Segment",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=" + " ".join(quote(word) for word in command),
        "Restart=on-failure",
        "RestartSec=5",
        f"WatchdogSec={WATCHDOG_SECONDS}",
        "TimeoutStopSec=30",
        f"Environment={BACKEND_ENV}=file",
        *environment,
        f"LoadCredential={PASSPHRASE_CREDENTIAL}:{quote(str(credential))}",
        "UMask=0077",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "LockPersonality=yes",
        "ReadWritePaths=" + " ".join(quote(path) for path in writable),
        "SyslogIdentifier=tui-currents",
    ]
    if not user and account != "root":
        lines.insert(lines.index("Restart=on-failure"), f"User={account}")
    lines += ["", "[Install]", f"WantedBy={'default.target' if user else 'multi-user.target'}", ""]
    return "\n".join(lines)
