"""The encrypted keyring file under concurrent writers and under damage while the receiver runs.

Real things only: `tui-currents` subprocesses writing one home's keyring file at once, and a real receiver
reading tokens from the real encrypted file while the file is deleted, truncated and put back.
"""

from __future__ import annotations

import asyncio
import configparser
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tui_currents import catalog, config
from tui_currents.engine import Engine, EngineOptions
from tui_currents.paths import Home
from tui_currents.secrets import Secrets
from tui_currents.sources.demo import DemoGenerator
from tui_currents.status import engine_status

WRITERS = 8  # parallel `workspace add` commands
KEY_WRITERS = 4  # parallel `connector add --write-key-stdin` commands, at the same time
SUPPORTED = catalog.supported_types()
ROUNDS = 2  # a home whose keyring file does not exist yet, then one with a well-used file


def _cli(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tui_currents", "--home", str(home), *args]


def _token(n: int) -> str:
    return f"rt-concurrent-writer-{n:02d}-" + "x" * 20


def _write_key(n: int) -> str:
    return f"wk-concurrent-writer-{n:02d}-" + "y" * 20


def _pad(keyring_file: Path, entries: int = 3_000) -> None:
    """Give the keyring file the size of a well-used one: entries of another service (copies of one
    encrypted value, never read), so that reading and rewriting the file takes as long as it would then."""
    parser = configparser.RawConfigParser()
    parser.read(keyring_file, encoding="utf-8")
    value = next(v for k, v in parser.items("keyring_2Dsetting") if k.startswith("password"))
    parser.add_section("another_2Dservice")
    for n in range(entries):
        parser.set("another_2Dservice", f"entry_2D{n:05d}", value)
    with keyring_file.open("w", encoding="utf-8") as handle:
        parser.write(handle)


def _one_round(home: Path, *, seeded: bool) -> tuple[list[str], list[subprocess.CompletedProcess]]:
    """Start every writer at once; return what is missing afterwards and the results. `seeded`: the
    keyring file exists already (else the writers race to create it)."""
    if seeded:
        setup = subprocess.run(
            _cli(home, "workspace", "add", "base"), capture_output=True, text=True, timeout=120
        )
        assert setup.returncode == 0, setup.stderr
        _pad(home / "keyring.cfg")
    else:
        config.add_workspace(Home.at(home), config.Workspace("base"))  # the connectors need a workspace
    started: list[tuple[subprocess.Popen, str]] = []
    for n in range(WRITERS):
        proc = subprocess.Popen(
            _cli(home, "workspace", "add", f"w{n}", "--receiver-token-stdin"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        started.append((proc, _token(n)))
    for n in range(KEY_WRITERS):
        proc = subprocess.Popen(
            _cli(home, "connector", "add", f"c{n}", "--workspace", "base", "--email", "ops@example.com",
                 "--region", "us", "--events", SUPPORTED[n], "--write-key-stdin"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        started.append((proc, _write_key(n)))
    results = []
    for proc, secret in started:
        out, err = proc.communicate(secret, timeout=180)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    vault = Secrets(Home.at(home))
    missing = [f"w{n}" for n in range(WRITERS) if vault.get_receiver_token(f"w{n}") != _token(n)]
    missing += [f"c{n}" for n in range(KEY_WRITERS) if vault.get_write_key(f"c{n}") != _write_key(n)]
    return missing, results


# Minutes of Argon2 work in a dozen processes: a soak run. The processes test above is the quick proof.
@pytest.mark.soak
@pytest.mark.timeout(600)
def test_concurrent_cli_writers_lose_no_secret(tmp_path: Path) -> None:
    """Eight `workspace add --receiver-token-stdin` and four `connector add --write-key-stdin` at once, on a
    home whose keyring file does not exist yet, then on one where it does: every command says it stored its
    secret, and every secret reads back afterwards."""
    for round_ in range(ROUNDS):
        home = tmp_path / f"round-{round_}"
        missing, results = _one_round(home, seeded=bool(round_ % 2))
        for result in results:
            assert result.returncode == 0, result.stderr
            assert "added" in result.stdout
        assert missing == [], f"round {round_ + 1}: secrets lost by concurrent writers: {missing}"
        assert (os.stat(home / "keyring.cfg").st_mode & 0o777) == 0o600
        print(f"round {round_ + 1}: nothing lost")
    lock = home / "keyring.cfg.lock"
    assert lock.exists() and (os.stat(lock).st_mode & 0o777) == 0o600


_HAMMER = """
import os, sys, time
from pathlib import Path
from tui_currents.secrets import Secrets
vault = Secrets(sys.argv[1])  # unlocks the file (Argon2) before the start signal
n, go = int(sys.argv[2]), Path(sys.argv[3])
while not go.exists():
    time.sleep(0.005)
for k in range(3):
    vault.set_write_key(f"h{n}-{k}", f"wk-hammer-{n:02d}-{k}-" + "z" * 20)
print("stored")
"""


# About 45 s of Argon2 unlocks and locked rewrites: with `-m soak`, beside the 12-CLI scenario; every run
# keeps the lock's own tests (tests/test_secrets.py).
@pytest.mark.soak
@pytest.mark.timeout(600)
def test_processes_storing_secrets_at_the_same_moment_lose_none(tmp_path: Path) -> None:
    """Eight processes, each with the keyring already unlocked, store three write keys each the moment a
    start signal appears (so their writes meet, in a file the size of a well-used one): every key is kept."""
    home = Home.at(tmp_path / "home").ensure()
    Secrets(home).set_write_key("seed", "wk-seed-" + "s" * 20)
    _pad(home.keyring_file)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", _HAMMER, str(home.root), str(n), str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(WRITERS)
    ]  # fmt: skip
    time.sleep(1.0)
    go.touch()
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.strip() == "stored", err
    vault = Secrets(home)
    missing = [
        f"h{n}-{k}"
        for n in range(WRITERS)
        for k in range(3)
        if vault.get_write_key(f"h{n}-{k}") != f"wk-hammer-{n:02d}-{k}-" + "z" * 20
    ]
    assert missing == [], f"write keys lost by concurrent writers: {missing}"
    assert vault.get_write_key("seed") == "wk-seed-" + "s" * 20


# --------------------------------------------------------------------------- the keyring file damaged


TOKEN = "rt-keyring-fault-token-" + "q" * 24
WRONG = "rt-keyring-fault-wrong-" + "q" * 24


def _damage(path: Path, how: str) -> None:
    if how == "deleted":
        path.unlink()
    elif how == "cut in half":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        assert not path.read_bytes().endswith(b"\n\n")  # cut inside an entry, as a crash or full disk does
    elif how == "emptied":
        path.write_bytes(b"")


async def _post(client: httpx.AsyncClient, url: str, token: str) -> httpx.Response:
    body = orjson.dumps({"events": [DemoGenerator(seed=3).event(anonymous=False)]})
    return await client.post(
        f"{url}/currents/prod",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Braze-Currents-Version": "1"},
    )


@pytest.mark.timeout(240)
async def test_an_unreadable_keyring_file_is_answered_503_and_shown_until_it_is_back(
    home: Home, caplog: pytest.LogCaptureFixture
) -> None:
    """A running engine whose encrypted keyring file is deleted, cut in half or emptied: Braze gets 503 with
    Retry-After (it retries; on 401 it would drop the batch), status --json names the workspace and what to
    do, one error line is logged; with the file back, requests are accepted again. A wrong token while the
    file is readable is still 401."""
    caplog.set_level(logging.INFO, logger="tui_currents")
    Secrets(home).set_receiver_token("prod", TOKEN)
    config.add_workspace(home, config.Workspace("prod"))
    config.add_connector(
        home,
        config.Connector(
            name="Prod main", workspace="prod", contact_email="ops@example.com", events=SUPPORTED, paused=True
        ),
    )
    good_copy = home.data / "keyring-backup.cfg"
    shutil.copy2(home.keyring_file, good_copy)
    engine = Engine(home, Secrets(home), EngineOptions(receiver_port=0))
    await engine.start()
    try:
        async with httpx.AsyncClient(timeout=30.0) as client:
            url = engine.receiver_url
            assert (await _post(client, url, TOKEN)).status_code == 200
            assert (await _post(client, url, WRONG)).status_code == 401
            for how in ("deleted", "cut in half", "emptied"):
                caplog.clear()
                _damage(home.keyring_file, how)
                answers = [await _post(client, url, TOKEN) for _ in range(5)]
                assert {a.status_code for a in answers} == {503}, how
                assert all(int(a.headers["Retry-After"]) > 0 for a in answers)
                assert (await _post(client, url, WRONG)).status_code == 503  # no verdict without the token
                errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
                assert len(errors) == 1 and "receiver token of 'prod' cannot be read" in errors[0], errors
                assert str(home.keyring_file) in errors[0] and TOKEN not in caplog.text

                async def shown() -> str | None:
                    report = engine_status(home, config.load(home))
                    return report["engine"]["receiver_problems"].get("prod")

                deadline = time.monotonic() + 10
                while await shown() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                problem = await shown()
                assert problem and problem.startswith("receiver token unreadable: "), problem
                assert "put it back" in problem.lower() or "put back" in problem.lower()  # what to do

                os.replace(shutil.copy2(good_copy, home.data / "restore.tmp"), home.keyring_file)
                deadline = time.monotonic() + 30
                while (await _post(client, url, TOKEN)).status_code != 200:
                    assert time.monotonic() < deadline, f"still refused after the file came back ({how})"
                    await asyncio.sleep(0.2)
                assert (await _post(client, url, WRONG)).status_code == 401
                deadline = time.monotonic() + 10
                while await shown() is not None and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                assert await shown() is None
        # What a user runs: the same state in `status --json` and `status`, while the file is gone.
        home.keyring_file.unlink()
        async with httpx.AsyncClient(timeout=30.0) as client:
            assert (await _post(client, engine.receiver_url, TOKEN)).status_code == 503
        await asyncio.sleep(1.0)

        def status(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                _cli(home.root, "status", *args), capture_output=True, text=True, timeout=60
            )

        as_json = await asyncio.to_thread(status, "--json")  # the engine's loop keeps beating meanwhile
        assert as_json.returncode == 0, as_json.stderr
        problem = json.loads(as_json.stdout)["engine"]["receiver_problems"]["prod"]
        assert problem.startswith("receiver token unreadable: ") and "is missing" in problem
        human = await asyncio.to_thread(status)
        assert f"Workspace 'prod': {problem}" in human.stdout, human.stdout
    finally:
        await engine.stop()
