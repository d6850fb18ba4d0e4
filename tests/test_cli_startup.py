"""Start-up of a light command: `tui-currents --help`, `status` and `events` import none of the libraries only
other commands need (the TUI, the HTTP servers and clients, NATS, Avro, metrics, the event loop), so that
they answer in a fraction of a second. Each is checked in a fresh interpreter, as a user starts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tui_currents import config
from tui_currents.config.model import Connector, Workspace
from tui_currents.paths import Home
from tui_currents.secrets import write_key_env_var

# Imported by the commands that need them (run, the TUI, import, sandbox, cluster), never at start-up.
HEAVY = ("textual", "aiohttp", "httpx", "nats", "fastavro", "prometheus_client", "asyncio", "email")

# Runs the CLI's main as `python -m tui_currents` does, then writes the names of the modules it loaded.
PROBE = """
import sys
from tui_currents.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
loaded = sorted(sys.modules)
import json
with open(OUT, "w") as out:
    json.dump(loaded, out)
"""


def modules_loaded_by(home: Home, tmp_path: Path, *args: str) -> set[str]:
    """The modules a fresh `tui-currents --home HOME ARGS` has imported when it ends."""
    out = tmp_path / "modules.json"
    code = PROBE.replace("OUT", repr(str(out)))
    result = subprocess.run(
        [sys.executable, "-c", code, "--home", str(home.root), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, write_key_env_var("Marketing"): "test-write-key-0123456789"},
    )
    assert out.exists(), result.stderr
    return set(json.loads(out.read_text()))


@pytest.mark.parametrize(
    "args", [["--help"], ["status", "--help"], ["status"], ["status", "--json"], ["events"]], ids=" ".join
)
def test_a_light_command_imports_no_heavy_library(home: Home, tmp_path: Path, args: list[str]) -> None:
    config.add_workspace(home, Workspace("prod"))
    email = ["users.messages.email.Send"]
    marketing = Connector(name="Marketing", workspace="prod", contact_email="ops@example.com", events=email)
    config.add_connector(home, marketing)
    loaded = modules_loaded_by(home, tmp_path, *args)
    assert "tui_currents.cli" in loaded  # the probe did run the CLI
    assert sorted(set(HEAVY) & loaded) == []
