"""The service's logs: JSON lines (`run --log-format json`, `[logs] format`), secrets masked in both formats,
and a log file that rotates within bounds."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime

import pytest

from tests.service_support import Service, free_port, service_env
from tui_currents import catalog, config
from tui_currents.logs import register_secret, setup_logging
from tui_currents.paths import Home
from tui_currents.sandbox import SegmentSandbox
from tui_currents.secrets import receiver_token_env_var, write_key_env_var

WORKSPACE = "prod"
TOKEN = "logs-test-receiver-token-0123456789"
KEY = "logs-test-write-key-0123456789"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    root = logging.getLogger("tui_currents")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.propagate = True


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("how", ["flag", "config"])
async def test_run_logs_one_json_object_per_line_with_connector_and_counts(home: Home, how: str) -> None:
    async with SegmentSandbox(write_keys={KEY}, reject_unknown_keys=True) as sandbox:
        config.add_workspace(home, config.Workspace(name=WORKSPACE))
        config.add_connector(
            home,
            config.Connector(
                name="Marketing",
                workspace=WORKSPACE,
                contact_email="ops@example.com",
                region="custom",
                endpoint=sandbox.url,
                events=catalog.resolve_events("Email"),
            ),
        )
        if how == "config":
            home.config_file.write_text(home.config_file.read_text() + '\n[logs]\nformat = "json"\n')
        env = service_env(
            TUI_CURRENTS_KEYRING="file",
            **{receiver_token_env_var(WORKSPACE): TOKEN, write_key_env_var("Marketing"): KEY},
        )
        port = free_port()
        args = [
            "--port",
            str(port),
            "--metrics-port",
            "0",
            *(["--log-format", "json"] if how == "flag" else []),
        ]
        service = Service(home.root, *args, env=env)
        try:
            await asyncio.to_thread(service.wait_http, f"http://127.0.0.1:{port}/healthz")
            # `connector test` asks the engine for one test event of each selected type: a log line naming
            # the connector and the count.
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tui_currents",
                    "--home",
                    str(home.root),
                    "connector",
                    "test",
                    "Marketing",
                    "--yes",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
            )
            assert result.returncode == 0, result.stderr
            expected = len(catalog.resolve_events("Email"))
            for _ in range(100):
                if sandbox.accepted_count >= expected and "test events" in service.stderr():
                    break
                await asyncio.sleep(0.1)
        finally:
            assert await asyncio.to_thread(service.stop) == 0
    lines = json_lines(service.stderr())
    assert lines, service.stderr()
    for line in lines:
        assert {"time", "level", "message", "logger"} <= set(line)
        assert datetime.fromisoformat(line["time"]).tzinfo is not None
        assert line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    sent = next(line for line in lines if "test events" in line["message"])
    assert sent["connector"] == "Marketing" and sent["events"] == expected
    assert any(line["message"] == "engine stopped" for line in lines)
    # The log file in the home holds the same JSON lines.
    file_lines = json_lines(home.log_file.read_text())
    assert any("test events" in line["message"] for line in file_lines)
    assert KEY not in service.stderr() and KEY not in home.log_file.read_text()


@pytest.mark.parametrize("log_format", ["human", "json"])
def test_secrets_are_masked_in_messages_fields_and_tracebacks(
    home: Home, log_format: str, restore_logging: None
) -> None:
    secret = f"sekrit-{log_format}-value-0123456789"
    register_secret(secret)
    setup_logging(home, to_stderr=False, log_format=log_format)
    log = logging.getLogger("tui_currents.test")
    log.warning("the key %s leaked into a message", secret)
    log.warning("a field", extra={"connector": f"name {secret}"})
    try:
        raise RuntimeError(f"an error quoting {secret}")
    except RuntimeError:
        log.exception("a traceback")
    for handler in logging.getLogger("tui_currents").handlers:
        handler.flush()
    text = home.log_file.read_text()
    assert secret not in text
    assert text.count("[secret]") >= (3 if log_format == "json" else 2)  # the human line shows no fields
    if log_format == "json":
        lines = json_lines(text)
        assert len(lines) == 3
        assert lines[1]["connector"] == "name [secret]"
        assert "RuntimeError" in lines[2]["exc_info"]


def test_the_log_file_rotates_within_its_bounds(home: Home, restore_logging: None) -> None:
    setup_logging(home, to_stderr=False, max_bytes=20_000, keep=2)
    log = logging.getLogger("tui_currents.test")
    for i in range(400):
        log.info("line %d %s", i, "x" * 400)
    files = sorted(home.log_file.parent.glob("tui-currents.log*"))
    assert [f.name for f in files] == ["tui-currents.log", "tui-currents.log.1", "tui-currents.log.2"]
    for file in files:
        assert file.stat().st_size <= 20_000
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert "line 399" in home.log_file.read_text()


def test_log_settings_are_checked_with_a_clear_message(home: Home) -> None:
    home.config_file.write_text('[logs]\nformat = "xml"\nkeep = -1\n')
    with pytest.raises(config.ConfigError) as error:
        config.load(home)
    assert "[logs] format: must be 'human' or 'json', not 'xml'" in str(error.value)
    assert "[logs] keep:" in str(error.value)
