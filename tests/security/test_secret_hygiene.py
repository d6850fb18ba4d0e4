"""Secrets stay in the keyring: a whole working session with known sentinel secrets, then a search for them
everywhere else.

The session: workspace and connector added with the CLI (receiver token and write key on standard input),
an SMTP password stored for alert emails, the engine running with its receiver and delivery, Segment
refusing the first write key (401, logged, alerted by email through an SMTP server that refuses the first
login), the key changed with `connector edit --write-key-stdin`, `status --json`, an Avro import, dead
letters exported, and `tui-currents run --demo` for a few seconds in a home of its own. The search: every
file under both homes (config, store database and WAL, logs, exports), everything printed, every log
record, every email sent, and the command lines and environments of the processes while they ran and of
every process below them (the mapping worker, anything else they start); each secret as is,
base64-encoded at any alignment, percent-encoded, hex and UTF-16. The encrypted keyring file is the only
place a secret may be, and there only encrypted. The keyring passphrase is a secret too: it may be in the
environment the user gave a command, and nowhere else (not in the environment of a process below it).
Every file the app created is 0600 and every folder 0700.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import orjson
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support import wait_for
from tui_currents import config
from tui_currents.demo_setup import DEMO_KEYRING_PASSPHRASE, DEMO_WORKSPACE
from tui_currents.engine import Engine, EngineOptions
from tui_currents.logs import setup_logging
from tui_currents.paths import Home
from tui_currents.sandbox import SegmentSandbox
from tui_currents.secrets import Secrets
from tui_currents.sources.avro_schemas import write_export
from tui_currents.sources.demo import DemoGenerator

pytestmark = pytest.mark.timeout(110)

WORKSPACE = "prod"
CONNECTOR = "Marketing"
SMTP_USER = "alerts"
# Sentinels: long enough that a match cannot be chance, with characters that percent-encoding changes.
WRITE_KEY = "wkSENTINEL7Qx9ZpL3vR8mT2nB5cY1dK4hW6jF0"
REFUSED_WRITE_KEY = "wkSENTINELrefused5Rk2Lp8Vn3Tz6Qw9Xc1Hb4"
RECEIVER_TOKEN = "rtSENTINEL+Hq7/Yt3Mx8.Pz2~Wd5_Ke9-Ub4Nc6=="
SMTP_PASSWORD = "smtpSENTINEL Gv8!Rj2@Lw5#Ty7$Qm"
KEYRING_PASSPHRASE = "kpSENTINEL unlock/Me+9Zr4=Tq7&Wx2"
PASSPHRASE = "keyring passphrase"
SENTINELS = {
    "write key": WRITE_KEY,
    "refused write key": REFUSED_WRITE_KEY,
    "receiver token": RECEIVER_TOKEN,
    "SMTP password": SMTP_PASSWORD,
    PASSPHRASE: KEYRING_PASSPHRASE,
}
FAST = {"backoff_scale": 0.01, "key_poll_seconds": 0.2, "idle_poll_seconds": 0.05, "state_interval": 0.1}
REPO = Path(__file__).resolve().parents[2]
DEMO_WRITE_KEY_SHAPE = re.compile(rb"demo_[A-Za-z0-9_-]{32}")  # how the demo makes its write keys


def encodings(secret: str) -> dict[str, bytes]:
    """The byte strings that betray `secret` in a file or a stream, however it was written down."""
    raw = secret.encode()
    found = {"as is": raw, "UTF-16": secret.encode("utf-16-le"), "hex": raw.hex().encode()}
    found["HEX"] = found["hex"].upper()
    found["percent-encoded"] = quote(secret, safe="").encode()
    found["form-encoded"] = quote_plus(secret).encode()
    # Base64 of any text that contains the secret holds, at one of three alignments, the characters that
    # only the secret's own bytes decide (e.g. an "Authorization: Basic base64(key:)" header).
    for shift in range(3):
        padded = b"\0" * shift + raw
        encoded = base64.b64encode(padded)
        core = encoded[4 if shift else 0 : len(encoded) - (4 if len(padded) % 3 else 0)]
        found[f"base64 (alignment {shift})"] = core
        found[f"URL-safe base64 (alignment {shift})"] = core.translate(bytes.maketrans(b"+/", b"-_"))
    return found


@dataclass
class Evidence:
    """Everything seen during the session, to be searched for the secrets."""

    items: list[tuple[str, bytes]] = field(default_factory=list)
    processes_seen: int = 0
    children_seen: int = 0  # processes below a watched one whose environment was read
    allowed: dict[int, frozenset[str]] = field(default_factory=dict)  # item -> secrets it may hold

    def add(self, where: str, data: bytes | str, *, may_hold: frozenset[str] = frozenset()) -> None:
        """Record data to search; `may_hold` names secrets that belong there (the environment a user gave
        a command holds the keyring passphrase)."""
        if may_hold:
            self.allowed[len(self.items)] = may_hold
        self.items.append((where, data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data))

    def leaks(self, secrets: dict[str, str]) -> list[str]:
        found = []
        patterns = {name: encodings(value) for name, value in secrets.items() if value}
        for index, (where, data) in enumerate(self.items):
            for name, forms in patterns.items():
                if name in self.allowed.get(index, ()):
                    continue
                for form, needle in forms.items():
                    if needle and needle in data:
                        found.append(f"{name} ({form}) in {where}")
        return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid`: its children, their children, and so on."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def peek(pid: int, label: str, evidence: Evidence, *, itself: bool = True) -> bool:
    """Record a running process's command line and environment (with `itself`), and those of every
    process below it. The environment the process was given may hold the keyring passphrase (the user
    put it there); a process it started may not."""
    seen = False
    for each in ([pid] if itself else []) + descendants(pid):
        for what in ("cmdline", "environ"):
            try:
                data = Path(f"/proc/{each}/{what}").read_bytes()
            except OSError:
                continue
            if data:
                given = each == pid and what == "environ"
                evidence.add(
                    f"/proc/{each}/{what} of {label}" + ("" if each == pid else " (a process below it)"),
                    data,
                    may_hold=frozenset({PASSPHRASE}) if given else frozenset(),
                )
                seen = True
                if each != pid and what == "environ":
                    evidence.children_seen += 1
    return seen


def run_cli(
    args: list[str], evidence: Evidence, folder: Path, *, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess:
    """`tui-currents ARGS` as a user runs it, watched while it runs (command line, environment)."""
    label = "tui-currents " + " ".join(args[:2])
    out, err = folder / f"out-{time.monotonic_ns()}", folder / f"err-{time.monotonic_ns()}"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui_currents", *args],
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=stderr,
            env=env,
        )
        if peek(proc.pid, label, evidence):
            evidence.processes_seen += 1
        if stdin is not None:
            proc.stdin.write(stdin.encode())
        proc.stdin.close()
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            peek(proc.pid, label, evidence)
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out.read_bytes(), err.read_bytes())
    evidence.add(f"stdout of {label}", result.stdout)
    evidence.add(f"stderr of {label}", result.stderr)
    assert result.returncode == 0, (args, result.stderr.decode(errors="replace")[-2000:])
    return result


class RawRecords(logging.Handler):
    """Every record of the program's loggers, kept before any handler masks it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self.lock_:
            self.records.append(record)

    def texts(self) -> Iterator[str]:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        with self.lock_:
            records = list(self.records)
        for record in records:
            yield formatter.format(record) + (
                formatter.formatException(record.exc_info) if record.exc_info else ""
            )


@pytest.fixture
def program_logging(home: Home) -> Iterator[RawRecords]:
    """The program's own logging setup (file in the home, stderr), plus a raw view of every record."""
    raw = RawRecords()
    setup_logging(home, verbose=True, to_stderr=True)
    root = logging.getLogger("tui_currents")
    root.handlers.insert(0, raw)
    try:
        yield raw
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        root.propagate = True
        root.setLevel(logging.NOTSET)


class Smtp:
    """A real SMTP server on 127.0.0.1 that refuses the first login and keeps every email."""

    def __init__(self) -> None:
        self.emails: list[bytes] = []
        self.logins: list[bool] = []
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self._authenticate,
            auth_require_tls=False,
            ready_timeout=5.0,
        )

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.password == SMTP_PASSWORD.encode()
            and len(self.logins) > 0  # the first attempt is refused, so the failure path runs too
        )
        self.logins.append(ok)
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.emails.append(bytes(envelope.original_content or envelope.content))
        return "250 OK"


def every_file(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.exists():
            yield from (p for p in root.rglob("*") if p.is_file())


def flat_records(n: int) -> list[dict]:
    gen = DemoGenerator(seed=11, flat=True)
    records = []
    for k in range(n):
        record = gen.event(anonymous=False)
        record["id"] = f"imported-{k}"
        records.append(record)
    return records


async def test_no_secret_is_found_anywhere_but_encrypted_in_the_keyring(
    home: Home,
    tmp_path: Path,
    program_logging: RawRecords,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "TUI_CURRENTS_KEYRING_PASSPHRASE", KEYRING_PASSPHRASE
    )  # this session's, every process's
    evidence = Evidence()
    scratch = tmp_path / "scratch"  # command outputs and Avro files: outside both homes
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(REPO)
    smtp = Smtp()
    smtp.controller.start()
    try:
        async with SegmentSandbox(write_keys={WRITE_KEY}, reject_unknown_keys=True) as sandbox:
            # --- setting up as a user does: secrets only on standard input
            await asyncio.to_thread(
                run_cli, ["workspace", "add", WORKSPACE, "--receiver-token-stdin"], evidence, scratch,
                env=env, stdin=RECEIVER_TOKEN + "\n",
            )  # fmt: skip
            await asyncio.to_thread(
                run_cli,
                ["connector", "add", CONNECTOR, "--workspace", WORKSPACE, "--email", "ops@example.com",
                 "--endpoint", sandbox.url, "--events", "all", "--write-key-stdin"],
                evidence, scratch, env=env, stdin=REFUSED_WRITE_KEY + "\n",
            )  # fmt: skip
            cfg = config.load(home)
            cfg.smtp = config.SmtpSettings(
                host="127.0.0.1", port=smtp.port, from_address="tui-currents@example.com",
                username=SMTP_USER, security="none",
            )  # fmt: skip
            config.save(home, cfg)
            secrets = Secrets(home)  # the encrypted keyring file of this home
            secrets.set_smtp_password(SMTP_PASSWORD)

            engine = Engine(
                home, secrets, EngineOptions(receiver_port=0, alert_interval=0.3, delivery_overrides=FAST)
            )
            await engine.start()
            try:
                events = [dict(e, id=f"posted-{n}") for n, e in enumerate(DemoGenerator(seed=5).batch(40))]
                for event in events:
                    event["user"]["external_user_id"] = event["user"]["external_user_id"] or "someone"
                invalid = [dict(events[0], id=None), dict(events[1], time="soon"), "not an event"]
                url = f"{engine.receiver_url}/currents/{WORKSPACE}"
                async with httpx.AsyncClient(timeout=10.0) as client:
                    good = {"Authorization": f"Bearer {RECEIVER_TOKEN}"}
                    response = await client.post(url, json={"events": events + invalid}, headers=good)
                    assert response.status_code == 200
                    # The token presented every wrong way a client might: refused, and never written down.
                    for wrong in (
                        {"headers": {"Authorization": f"Basic {RECEIVER_TOKEN}"}},
                        {"headers": {"Authorization": f"Bearer {RECEIVER_TOKEN}x"}},
                        {"headers": {"Authorization": f"Bearer {RECEIVER_TOKEN.swapcase()}"}},
                        {"headers": {"X-Token": RECEIVER_TOKEN}},
                        {"params": {"token": RECEIVER_TOKEN}},
                    ):
                        response = await client.post(url, content=b"{}", **wrong)
                        assert response.status_code == 401
                        evidence.add(
                            "an answer to a wrong token", response.content + str(response.headers).encode()
                        )
                    elsewhere = f"{engine.receiver_url}/currents/other"
                    assert (await client.post(elsewhere, content=b"{}", headers=good)).status_code == 401

                # Segment refuses the first key: the connector says so, and an alert email goes out.
                assert await wait_for(
                    lambda: (
                        getattr(engine.store.states().get(CONNECTOR), "state", None) == "credentials rejected"
                    ),
                    timeout=20,
                )
                assert await wait_for(lambda: len(smtp.emails) >= 1, timeout=20), smtp.logins
                assert smtp.logins[0] is False and True in smtp.logins

                status = await asyncio.to_thread(run_cli, ["status", "--json"], evidence, scratch, env=env)
                report = orjson.loads(status.stdout)
                assert any(c["name"] == CONNECTOR for c in report["connectors"])
                await asyncio.to_thread(
                    run_cli, ["connector", "edit", CONNECTOR, "--write-key-stdin"], evidence, scratch,
                    env=env, stdin=WRITE_KEY + "\n",
                )  # fmt: skip
                assert await wait_for(lambda: sandbox.accepted_count == len(events), timeout=30), (
                    sandbox.accepted_count,
                    engine.store.states().get(CONNECTOR),
                    engine.store.backlog(CONNECTOR),
                    sandbox.violations[-3:],
                )

                write_export(scratch / "avro", flat_records(30))
                avro = str(scratch / "avro")
                await asyncio.to_thread(
                    run_cli, ["import", avro, "--workspace", WORKSPACE], evidence, scratch, env=env
                )
                assert await wait_for(lambda: sandbox.accepted_count == len(events) + 30, timeout=30)

                from tui_currents.tui.backend import Backend

                console = Backend(home, secrets, start_engine=False)
                await console.start()
                try:
                    exported, written = console.export_dead_letters()
                finally:
                    await console.stop()
                assert written == len(invalid)
                assert exported.is_relative_to(home.root)

                # While the engine runs: the store's WAL holds the latest writes.
                running = [p for p in every_file(home.root) if p != home.keyring_file]
                assert home.store_file.with_name(home.store_file.name + "-wal") in running
                for path in running:
                    evidence.add(f"{path} (engine running)", path.read_bytes())
                for name in ("engine", "secrets", "config", "store"):
                    evidence.add(f"repr of the {name}", repr(getattr(engine, name, None)))
                # The engine runs in this process: what it started (its mapping worker) is below it.
                assert peek(os.getpid(), "this engine", evidence, itself=False)
            finally:
                await engine.stop()
    finally:
        smtp.controller.stop()

    # --- the demo, in a home of its own, as a user starts it
    demo_home = tmp_path / "demo-home"
    demo_env = {**env, "TUI_CURRENTS_HOME": str(demo_home)}
    demo_out, demo_err = scratch / "demo-out", scratch / "demo-err"
    with demo_out.open("wb") as out, demo_err.open("wb") as err:
        demo = subprocess.Popen(
            [sys.executable, "-m", "tui_currents", "run", "--demo", "--port", "0", "--demo-rate", "200"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=demo_env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and b"engine started" not in demo_err.read_bytes():
                assert demo.poll() is None, demo_err.read_bytes().decode(errors="replace")[-2000:]
                peek(demo.pid, "tui-currents run --demo", evidence)
                await asyncio.sleep(0.1)
            assert b"engine started" in demo_err.read_bytes()
            evidence.processes_seen += 1
            for _ in range(20):  # two seconds of demo traffic, watched
                peek(demo.pid, "tui-currents run --demo", evidence)
                await asyncio.sleep(0.1)
        finally:
            demo.send_signal(signal.SIGTERM)
            try:
                demo.wait(timeout=20)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait(timeout=10)
    assert demo.returncode == 0, demo_err.read_bytes().decode(errors="replace")[-2000:]
    evidence.add("stdout of tui-currents run --demo", demo_out.read_bytes())
    evidence.add("stderr of tui-currents run --demo", demo_err.read_bytes())
    # The demo's receiver token is in its keyring; its write key lives in the demo's memory only, so it
    # is looked for by its shape.
    demo_vault = Secrets(Home.at(demo_home), backend="file", passphrase=DEMO_KEYRING_PASSPHRASE)
    demo_secrets = {"the demo's receiver token": demo_vault.get_receiver_token(DEMO_WORKSPACE)}
    assert all(demo_secrets.values())

    # --- the search
    keyrings = [home.keyring_file, demo_home / "keyring.cfg"]
    for keyring_file in keyrings:
        assert keyring_file.is_file()
    for path in every_file(home.root, demo_home):
        where = f"{path} (encrypted keyring)" if path in keyrings else str(path)
        evidence.add(where, path.read_bytes())
    for text in program_logging.texts():
        evidence.add("a log record", text)
    captured = capfd.readouterr()
    evidence.add("this process's stdout", captured.out)
    evidence.add("this process's stderr", captured.err)
    for n, mail in enumerate(smtp.emails):
        evidence.add(f"alert email {n}", mail)
    screenshots = [p for p in (REPO / "screenshots").glob("*") if p.is_file()]
    for shot in screenshots:
        evidence.add(f"screenshot {shot.name}", shot.read_bytes())

    assert evidence.processes_seen >= 6
    assert evidence.children_seen >= 2  # the mapping workers of both engines, at least
    assert home.log_file.stat().st_size > 0 and any(
        "refused the write key" in t for t in program_logging.texts()
    )
    leaks = evidence.leaks({**SENTINELS, **demo_secrets})
    assert not leaks, "\n".join(leaks[:20])
    shown = [where for where, data in evidence.items if DEMO_WRITE_KEY_SHAPE.search(data)]
    assert not shown, f"a demo write key is readable in {shown[:5]}"

    # --- every file the app made is private to the user
    loose, checked = [], 0
    for root in (home.root, demo_home):
        for path in [root, *root.rglob("*")]:
            mode = stat.S_IMODE(path.lstat().st_mode)
            checked += 1
            wanted = 0o700 if path.is_dir() else 0o600
            if mode != wanted:
                loose.append(f"{oct(mode)} {path.relative_to(root.parent)}")
    assert not loose, loose
    print(
        f"\n{len(evidence.items)} places searched ({sum(len(d) for _, d in evidence.items):,} bytes) for "
        f"{len(SENTINELS) + len(demo_secrets)} secrets in {len(encodings(WRITE_KEY))} forms each; "
        f"{evidence.processes_seen} processes watched; {len(smtp.emails)} alert emails; "
        f"{len(screenshots)} screenshots; {checked} files and folders all 0600/0700"
    )


def test_the_search_finds_a_secret_however_it_is_written() -> None:
    """The search above must be able to fail: each way a secret can be written down is found, inside
    other text, at every base64 alignment."""
    for secret in SENTINELS.values():
        raw = secret.encode()
        written = [
            b"key=" + raw + b";",
            b"Authorization: Basic " + base64.b64encode(raw + b":"),
            b"x" + base64.b64encode(b"a" + raw + b"b"),
            base64.b64encode(b"ab" + raw),
            base64.urlsafe_b64encode(b"{" + raw + b"}"),
            b"?token=" + quote(secret, safe="").encode(),
            b"q=" + quote_plus(secret).encode(),
            secret.encode("utf-16-le"),
            raw.hex().upper().encode(),
        ]
        for n, data in enumerate(written):
            evidence = Evidence()
            evidence.add("sample", b"...before..." + data + b"...after...")
            assert evidence.leaks({"secret": secret}), (secret, n)
    clean = Evidence()
    clean.add("sample", WRITE_KEY[:-1].encode() + b" " + base64.b64encode(RECEIVER_TOKEN[:20].encode()))
    assert not clean.leaks(SENTINELS)
