"""Helpers shared by several test modules: waiting for a condition, a real small disk to fill, a
self-signed certificate, and the CLI run in this process."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import io
import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (its last answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()


def cli_in_process(
    home: Path, *args: str, stdin: str | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`tui-currents --home HOME ARGS` run by the CLI's own main function in this process: its exit code
    and what it printed on stdout and stderr, as `subprocess.run(..., capture_output=True, text=True)`
    gives them, with `stdin` as standard input and `env` added to the environment for the command.

    For tests of what a command prints, exits with and writes: no interpreter start-up, and the keyring
    file unlocked once per process instead of once per command. Tests about process behaviour (signals,
    kills, the environment a process is given, what a separate process leaves in its output or files)
    run the real command in a subprocess instead."""
    from tui_currents.cli import main

    argv = ["--home", str(home), *args]
    out, err = io.StringIO(), io.StringIO()
    saved_env = {name: os.environ.get(name) for name in (env or {})}
    saved_umask = os.umask(0o077)  # main sets it for the process; given back below
    saved_stdin = sys.stdin
    os.environ.update(env or {})
    sys.stdin = io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exit_:  # argparse's usage errors and --help
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.stdin = saved_stdin
        os.umask(saved_umask)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return subprocess.CompletedProcess(
        [sys.executable, "-m", "tui_currents", *argv], code, out.getvalue(), err.getvalue()
    )


@contextmanager
def tiny_disk(folder: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of `megabytes` mounted at `folder`, to fill a disk for real (skips where mounting is not
    allowed: it needs root)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("filling a disk for real needs the right to mount a small tmpfs (root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def fill_disk(folder: Path) -> Path:
    """Write a filler file until the disk holding `folder` is full; delete it to give the space back."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, valid for a day, written as PEM files in `folder`."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


# Delivery in its own process is an option (off by default): the whole engine suite runs in that layout
# with `-m soak`; in every run, tests/test_delivery_process.py and the kill suites cover it.
@pytest.fixture(params=[pytest.param("delivery process", marks=pytest.mark.soak), "delivery in the engine"])
def delivery_layout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once with delivery in its own process and once in the engine's loop (the one-core
    layout), whatever this machine's cores: import it into a test module and `usefixtures` it."""
    from tui_currents import engine

    in_process = request.param == "delivery process"
    monkeypatch.setattr(engine, "delivery_process_wanted", lambda: in_process)
    return str(request.param)
