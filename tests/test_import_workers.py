"""The import's worker processes: what they load, and how the files are shared between them."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)


def test_a_worker_starts_without_the_configuration_or_secrets_code() -> None:
    # A worker only reads and maps: loading the configuration, keyring and logging code would cost each
    # worker a tenth of a second of CPU at every import, and it has no use for secrets.
    script = "import sys, tui_currents.sources.import_workers; print(*sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    assert "tui_currents.sources.avro_files" in loaded
    unneeded = tuple(f"tui_currents.{name}" for name in ("config", "secrets", "keyring_file", "logs"))
    unwanted = [module for module in loaded if module.startswith(unneeded)]
    assert unwanted == []
