"""The `tui-currents` command as a user scripts it, on a real home: real subprocesses where the process is
the point (signals, a second engine, secrets kept out of what a process prints), the CLI's main function
in this process where a test checks what a command prints, exits with and writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import cli_in_process
from tui_currents import catalog, config
from tui_currents.paths import Home
from tui_currents.secrets import Secrets
from tui_currents.sources.avro_schemas import write_export
from tui_currents.sources.demo import DemoGenerator
from tui_currents.store import Store

SENTINEL_KEY = "cli-test-write-key-SENTINEL-9f8e7d"


def cli(home: Path, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui_currents", "--home", str(home), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )


def add_connector(
    home: Path,
    name: str,
    events: str,
    *extra: str,
    key: str,
    email: str = "ops@example.com",
    region: str = "us",
    run: Callable[..., subprocess.CompletedProcess] = cli_in_process,
) -> subprocess.CompletedProcess:
    """`connector add` in workspace prod, the write key given on stdin as a script would (`run`: in this
    process, or `cli` for a real subprocess)."""
    return run(
        home, "connector", "add", name, "--workspace", "prod", "--email", email, "--region", region,
        "--events", events, *extra, "--write-key-stdin", stdin=key,
    )  # fmt: skip


def test_events_json_lists_the_whole_catalog(home: Home) -> None:
    result = cli_in_process(home.root, "events", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert len(entries) == len(catalog.CATALOG)
    assert set(entries[0]) == {"event_type", "category", "group", "segment_event", "supported", "forwardable"}
    by_type = {e["event_type"]: e for e in entries}
    assert by_type["users.messages.email.Click"]["segment_event"] == "Email Link Clicked"
    assert by_type["users.messages.email.Deferral"]["supported"] is False
    # `supported`: Braze's Segment connector exports it; `forwardable`: tui-currents sends it.
    assert sum(e["supported"] for e in entries) == 51
    purchase = by_type["users.behaviors.Purchase"]
    assert (purchase["supported"], purchase["forwardable"], purchase["segment_event"]) == (
        False,
        True,
        "Order Completed",
    )
    assert purchase["category"] == "Beyond Braze's Segment connector" and "reason" not in purchase
    deletion = by_type["users.UserDeleteRequest"]
    assert deletion["forwardable"] is False
    assert deletion["reason"] == catalog.not_forwardable_reason("users.UserDeleteRequest")
    table = cli_in_process(home.root, "events")
    assert "Push Notification Tapped" in table.stdout and "Application Opened" in table.stdout
    assert f"users.UserDeleteRequest: {deletion['reason']}" in table.stdout


def test_connector_add_scripted_stores_the_key_only_in_the_keyring(home: Home) -> None:
    assert cli_in_process(home.root, "workspace", "add", "prod").returncode == 0
    result = add_connector(
        home.root,
        "Marketing",
        "Email,users.behaviors.Uninstall",
        region="eu",
        key=SENTINEL_KEY + "\n",
        run=cli,
    )
    assert result.returncode == 0, result.stderr
    assert SENTINEL_KEY not in result.stdout + result.stderr
    cfg = config.load(home)
    connector = cfg.connector("Marketing")
    assert connector.batch_url() == "https://events.eu1.segmentapis.com/v1/batch"
    assert "users.behaviors.Uninstall" in connector.events and "users.messages.email.Send" in connector.events
    assert SENTINEL_KEY not in home.config_file.read_text()
    assert Secrets(home).get_write_key("Marketing") == SENTINEL_KEY
    shown = json.loads(cli(home.root, "connector", "show", "Marketing", "--json").stdout)
    assert shown["write_key_stored"] is True and SENTINEL_KEY not in json.dumps(shown)


def test_validation_errors_exit_2_with_one_line(home: Home) -> None:
    cli_in_process(home.root, "workspace", "add", "prod")
    bad_events = add_connector(home.root, "A", "Emial", key="k" * 20)
    assert bad_events.returncode == 2
    assert "Emial" in bad_events.stderr and len(bad_events.stderr.strip().splitlines()) == 1
    missing = cli_in_process(home.root, "connector", "add", "A", "--workspace", "prod")
    assert missing.returncode == 2 and "--email" in missing.stderr
    bad_email = add_connector(home.root, "A", "Email", email="not-an-address", key="k" * 20)
    assert bad_email.returncode == 2 and "email" in bad_email.stderr.lower()


def test_overlap_is_refused_naming_both_connectors(home: Home) -> None:
    cli_in_process(home.root, "workspace", "add", "prod")
    assert add_connector(home.root, "A", "Email", key="key-a-123456").returncode == 0
    second = add_connector(home.root, "B", "users.messages.email.Open,SMS", key="key-b-123456")
    assert second.returncode == 2
    assert "'A'" in second.stderr and "users.messages.email.Open" in second.stderr
    assert [c.name for c in config.load(home).connectors] == ["A"]


def test_malformed_config_is_reported_with_line_and_left_untouched(home: Home) -> None:
    home.config_file.write_text("# mine\n[[connectors]]\nname = = 'x'\nworkspace = 'prod'\n")
    before = home.config_file.read_bytes()
    result = cli_in_process(home.root, "connector", "list")
    assert result.returncode == 2
    assert "line 3" in result.stderr and "column" in result.stderr
    assert home.config_file.read_bytes() == before


def test_import_reports_per_type_and_is_idempotent(home: Home, tmp_path: Path) -> None:
    cli_in_process(home.root, "workspace", "add", "prod")
    added = add_connector(home.root, "A", "all", "--include-anonymous", key="key-a-123456")
    assert added.returncode == 0, added.stderr
    gen = DemoGenerator(seed=4, flat=True)
    records = [gen.event() for _ in range(500)]
    write_export(tmp_path / "export", records)
    first = cli_in_process(home.root, "import", str(tmp_path / "export"), "--workspace", "prod")
    assert first.returncode == 0, first.stderr
    assert "500" in first.stdout and "queued" in first.stdout.lower()
    store = Store(home.store_file, readonly=True)
    assert store.backlog("A").messages == 500
    again = cli_in_process(home.root, "import", str(tmp_path / "export"), "--workspace", "prod")
    assert again.returncode == 0
    assert store.backlog("A").messages == 500
    dry = cli_in_process(
        home.root,
        "import",
        str(tmp_path / "export"),
        "--workspace",
        "prod",
        "--dry-run",
        "--since",
        "nonsense",
    )
    assert dry.returncode == 2 and "--since" in dry.stderr


def test_run_stops_cleanly_on_sigterm_and_status_reads_it(home: Home) -> None:
    env = os.environ.copy()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tui_currents",
            "--home",
            str(home.root),
            "run",
            "--demo",
            "--port",
            "0",
            "--demo-rate",
            "200",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        report = None
        while time.monotonic() < deadline:
            time.sleep(0.5)
            status = cli_in_process(home.root, "status", "--json")
            if status.returncode == 0:
                report = json.loads(status.stdout)
                if (
                    report["engine"]["running"]
                    and report["connectors"]
                    and report["connectors"][0]["delivered"]
                ):
                    break
        if not (report and report["engine"]["running"]):
            proc.kill()
            pytest.fail(f"the engine did not come up: {report}\n{proc.communicate()[1][-3000:]}")
        assert report["connectors"][0]["delivered"] > 0
        second = cli(home.root, "run", "--demo", "--port", "0", timeout=30)
        assert second.returncode == 1 and "already running" in second.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, err = proc.communicate()
    assert "engine stopped" in err
    after = json.loads(cli_in_process(home.root, "status", "--json").stdout)
    assert after["engine"]["running"] is False


def test_dead_letters_list_export_and_retry(home: Home, tmp_path: Path) -> None:
    from tui_currents.mapping import ConnectorRules, map_event, normalise

    rules = ConnectorRules(selected=frozenset(catalog.supported_types()), include_anonymous=True)
    gen = DemoGenerator(seed=12)
    good = [gen.event("users.messages.email.Send", anonymous=False) for _ in range(3)]
    broken = {"event_type": "users.messages.email.Send", "id": "no-user-at-all", "time": 1717171717}
    store = Store(home.store_file)
    store.commit([("A", map_event(normalise(e), rules)) for e in [*good, broken]], source="test")
    rows = store.lease("A", max_messages=10, max_bytes=475_000, lease_seconds=60)
    store.dead_letter("A", [rows[0].seq], reason="Segment rejected this message: 400 Bad Request")
    store.close()

    listed = cli_in_process(home.root, "dead-letters", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)
    assert {d["message_id"] for d in letters} == {good[0]["id"], "no-user-at-all"}
    assert {d["message_id"]: d["can_retry"] for d in letters} == {
        good[0]["id"]: True,
        "no-user-at-all": False,
    }
    assert all(d["reason"] for d in letters)

    out = tmp_path / "dead.jsonl"
    exported = cli_in_process(home.root, "dead-letters", "export", str(out))
    assert exported.returncode == 0 and out.stat().st_mode & 0o777 == 0o600
    assert len(out.read_text().splitlines()) == 2

    retried = cli_in_process(home.root, "dead-letters", "retry", "--connector", "A")
    assert retried.returncode == 0 and retried.stdout.startswith("1 ")
    again = Store(home.store_file, readonly=True)
    assert again.backlog("A").messages == 3  # the two still queued, and the one put back
    assert [d.message_id for d in again.dead_letters("A")] == ["no-user-at-all"]


def test_smtp_password_goes_to_the_keyring_from_stdin(home: Home) -> None:
    secret = "smtp-password-SENTINEL-4b3a"
    stored = cli(home.root, "smtp", "password", stdin=secret + "\n")
    assert stored.returncode == 0, stored.stderr
    assert secret not in stored.stdout + stored.stderr
    assert Secrets(home).get_smtp_password() == secret
    assert cli(home.root, "smtp", "forget-password").returncode == 0
    assert Secrets(home).get_smtp_password() is None
