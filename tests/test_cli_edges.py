"""CLI edges: a suggestion for a group or category typed short, an unknown dead-letter id, a folder with
no Avro file, a transform of a field no event type has."""

from __future__ import annotations

from pathlib import Path

from tests.support import cli_in_process
from tui_currents.paths import Home
from tui_currents.store import Store

from .test_cli import add_connector


def test_events_typed_short_get_a_suggestion(home: Home) -> None:
    cli_in_process(home.root, "workspace", "add", "prod")
    result = add_connector(home.root, "A", "Push", key="key-a-123456")
    assert result.returncode == 2
    assert "did you mean `Push notification`" in result.stderr


def test_retrying_an_unknown_dead_letter_id_names_it_and_exits_2(home: Home) -> None:
    Store(home.store_file).close()  # an empty store: no dead letter at all
    result = cli_in_process(home.root, "dead-letters", "retry", "--id", "987654321")
    assert result.returncode == 2
    assert "987654321" in result.stderr and "nothing was put back" in result.stderr


def test_a_folder_without_avro_files_says_only_avro_is_read(home: Home, tmp_path: Path) -> None:
    cli_in_process(home.root, "workspace", "add", "prod")
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "events.json").write_text("{}")
    result = cli_in_process(home.root, "import", str(folder), "--workspace", "prod")
    assert result.returncode == 2
    assert "only Avro files" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_transform_of_an_unknown_field_is_warned_about(home: Home) -> None:
    cli_in_process(home.root, "workspace", "add", "prod")
    result = add_connector(home.root, "A", "Email", "--transform", "bogus_field=hash", key="key-a-123456")
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "bogus_field" in result.stderr
    known = add_connector(home.root, "B", "SMS", "--transform", "email_address=hash", key="key-b-123456")
    assert "warning" not in known.stderr
