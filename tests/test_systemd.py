"""systemd: Type=notify datagrams read from a real NOTIFY_SOCKET, and the unit `service unit` prints."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.service_support import Service, free_port, service_env
from tui_currents import config
from tui_currents.paths import Home
from tui_currents.secrets import PASSPHRASE_ENV, Secrets, receiver_token_env_var
from tui_currents.systemd import Notifier

WORKSPACE = "prod"
TOKEN = "systemd-test-receiver-token-0123456789"


def notify_socket(folder: Path) -> tuple[socket.socket, str]:
    path = str(folder / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    return sock, path


def read_until(sock: socket.socket, wanted: str, timeout: float, seen: list[str]) -> bool:
    """Collect datagrams into `seen` until one holds the line `wanted`; False after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            return False
        seen.append(data)
        if wanted in data.split("\n"):
            return True
    return False


def test_the_service_notifies_ready_watchdog_and_stopping(home: Home, tmp_path: Path) -> None:
    config.add_workspace(home, config.Workspace(name=WORKSPACE))
    sock, path = notify_socket(tmp_path)
    port = free_port()
    env = service_env(
        TUI_CURRENTS_KEYRING="file",
        NOTIFY_SOCKET=path,
        WATCHDOG_USEC="400000",  # a ping every 0.2 s
        **{receiver_token_env_var(WORKSPACE): TOKEN},
    )
    service = Service(home.root, "--port", str(port), "--metrics-port", "0", env=env)
    seen: list[str] = []
    try:
        assert read_until(sock, "READY=1", 30, seen), (seen, service.stderr())
        # READY comes once the receiver listens and the store is open.
        ready = next(d for d in seen if "READY=1" in d.split("\n"))
        assert f"STATUS=forwarding; receiver http://127.0.0.1:{port}" in ready
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        assert (home.data / "currents.db").exists()
        seen.clear()
        assert read_until(sock, "WATCHDOG=1", 5, seen)
        assert read_until(sock, "WATCHDOG=1", 5, seen)  # again: it keeps being fed while healthy
        service.proc.send_signal(15)
        assert read_until(sock, "STOPPING=1", 10, seen), seen
        assert service.proc.wait(30) == 0
    finally:
        service.stop()
        sock.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog_interval() is None


def test_an_abstract_notify_socket_and_a_watchdog_meant_for_another_process() -> None:
    name = f"tui-currents-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
        assert notifier.ready("up")
        sock.settimeout(2)
        assert sock.recv(4096).decode().split("\n") == ["READY=1", "STATUS=up"]
        assert notifier.watchdog_interval() is None  # WATCHDOG_PID names another process
        own = Notifier(
            {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
        )
        assert own.watchdog_interval() == 1.0
    finally:
        sock.close()


def test_a_vanished_notify_socket_is_logged_once_and_not_raised(tmp_path: Path, caplog) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    warnings = [r for r in caplog.records if "could not notify systemd" in r.getMessage()]
    assert len(warnings) == 1


# ---------------------------------------------------------------------------------------- the unit


def service_unit(home: Home, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tui_currents", "--home", str(home.root), "service", "unit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=service_env(),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def unit_values(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.mark.parametrize("user", [False, True])
def test_service_unit_runs_this_installation_confined_to_the_home(tmp_path: Path, user: bool) -> None:
    home = Home.at(tmp_path / "a home with spaces")
    text = service_unit(home, *(["--user"] if user else []))
    values = unit_values(text)
    script = Path(sys.executable).absolute().parent / "tui-currents"
    exec_start = values["ExecStart"][0]
    assert exec_start.startswith(f"{script} " if script.exists() else f"{Path(sys.executable).absolute()} -m")
    assert exec_start.endswith(f'--home "{home.root}" run')
    assert values["Type"] == ["notify"]
    assert values["Restart"] == ["on-failure"]
    for hardening, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes")):
        assert values[hardening] == [value]
    assert values["ReadWritePaths"] == [f'"{home.root}"']
    assert values["LoadCredential"][0].startswith("keyring-passphrase:/")
    assert values["WantedBy"] == ["default.target" if user else "multi-user.target"]
    assert "WatchdogSec" in values
    assert ("User" in values) == (not user and os.geteuid() != 0)
    assert home.data.is_dir() and home.root.is_dir()  # ReadWritePaths= must exist when the service starts


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("user", [False, True])
def test_systemd_analyze_verifies_the_unit_without_a_warning(tmp_path: Path, user: bool) -> None:
    home = Home.at(tmp_path / "home")
    unit = tmp_path / "tui-currents.service"
    unit.write_text(service_unit(home, *(["--user"] if user else [])))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    complaints = [line for line in result.stderr.splitlines() if "tui-currents.service" in line]
    assert complaints == [], result.stderr


def test_the_keyring_passphrase_comes_from_the_systemd_credential(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passphrase = os.environ[PASSPHRASE_ENV]
    Secrets(home, backend="file").set_webhook_url("https://hooks.example.com/services/T0/B0/secret0")
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "keyring-passphrase").write_text(passphrase + "\n")
    monkeypatch.delenv(PASSPHRASE_ENV)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    secrets = Secrets(home, backend="file")
    assert secrets.get_webhook_url() == "https://hooks.example.com/services/T0/B0/secret0"


def test_a_unit_for_the_default_home_finds_the_same_config_and_data_folders(tmp_path: Path) -> None:
    from tui_currents.service_unit import render

    home = Home(root=tmp_path / "conf dir" / "tui-currents", data=tmp_path / "data" / "tui-currents")
    values = unit_values(render(home, user=False))
    assert "--home" not in values["ExecStart"][0] and values["ExecStart"][0].endswith(" run")
    env = dict(v.strip('"').split("=", 1) for v in values["Environment"])
    assert env["XDG_CONFIG_HOME"] == str(tmp_path / "conf dir")
    assert env["XDG_DATA_HOME"] == str(tmp_path / "data")
    # The service resolves the very same home from them.
    resolved = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tui_currents.paths import Home; h = Home.resolve(); print(h.root); print(h.data)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **service_env(),
            "XDG_CONFIG_HOME": env["XDG_CONFIG_HOME"],
            "XDG_DATA_HOME": env["XDG_DATA_HOME"],
        },
    )
    assert resolved.stdout.splitlines() == [str(home.root), str(home.data)], resolved.stderr
    assert values["ReadWritePaths"] == [
        " ".join(f'"{p}"' if " " in str(p) else str(p) for p in sorted([str(home.root), str(home.data)]))
    ]


def test_the_service_unlocks_the_keyring_with_the_credential_alone(home: Home, tmp_path: Path) -> None:
    config.add_workspace(home, config.Workspace(name=WORKSPACE))
    Secrets(home, backend="file").set_receiver_token(WORKSPACE, TOKEN)  # only in the encrypted file
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "keyring-passphrase").write_text(os.environ[PASSPHRASE_ENV] + "\n")
    port = free_port()
    env = service_env(TUI_CURRENTS_KEYRING="file", CREDENTIALS_DIRECTORY=str(credentials))
    assert PASSPHRASE_ENV not in env
    service = Service(home.root, "--port", str(port), "--metrics-port", "0", env=env)
    try:
        service.wait_http(f"http://127.0.0.1:{port}/healthz")
        response = httpx.post(
            f"http://127.0.0.1:{port}/currents/{WORKSPACE}",
            json={"events": []},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
    finally:
        assert service.stop() == 0, service.stderr()
