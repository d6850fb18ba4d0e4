"""An import's summary adds up: read = queued + duplicate + filtered + unsupported + rejected, per event
type and in total; the tail shows a duplicate as `duplicate`, never as queued."""

from __future__ import annotations

import re
from pathlib import Path

from tui_currents.paths import Home
from tui_currents.sources.avro_schemas import write_export
from tui_currents.sources.demo import DemoGenerator
from tui_currents.store import Store

from .test_cli import add_connector, cli

EMAIL_SEND = "users.messages.email.Send"


def test_records_sharing_one_id_are_counted_as_duplicates(home: Home, tmp_path: Path) -> None:
    # Braze's sample export files give every record one id.
    assert cli(home.root, "workspace", "add", "prod").returncode == 0
    assert add_connector(home.root, "A", "Email", key="key-a-123456").returncode == 0
    generator = DemoGenerator(seed=5, flat=True)
    records = [generator.event(EMAIL_SEND, anonymous=False) for _ in range(49)]
    for record in records:
        record["id"] = "same-id-in-every-sample-record"
    write_export(tmp_path / "export", records)
    result = cli(home.root, "import", str(tmp_path / "export"), "--workspace", "prod")
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("Read "))
    numbers = [int(n.replace(",", "")) for n in re.findall(r"[\d,]+", line)]
    assert numbers[0] == sum(numbers[1:]) == 49
    assert "queued 1 " in line and "duplicate 48 " in line
    header = next(x for x in result.stdout.splitlines() if x.startswith("Event type"))
    assert "Duplicate" in header
    with Store(home.store_file, readonly=True) as store:
        fates = [row.fate for row in store.tail(limit=100)]
    assert fates.count("duplicate") == 48 and fates.count("queued") == 1
