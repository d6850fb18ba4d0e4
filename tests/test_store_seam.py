"""Everything above the queue talks to it through `tui_currents.outbox` (the contract) and
`outbox_home.open_outbox` (the one place a home's queue is opened), never the SQLite store itself, so a
cluster queue can take its place. The few modules that still import `tui_currents.store` are listed here,
each with why."""

from __future__ import annotations

import ast
from pathlib import Path

import tui_currents

PACKAGE = Path(tui_currents.__file__).parent

ALLOWED = {
    # Opens a home's queue: the one module that picks the implementation.
    "outbox_home.py": "opens the SQLite store",
    # Side tables of the store's file, owned by the store (their SQL is in store/), not part of the queue.
    "control.py": "engine commands and presence: store/control_table.py",
    "webhook.py": "the webhook's cursor over the alert log: store/webhook_cursor.py",
    "alerts/monitor.py": "the alert log and the rules' memory: store/alert_log.py",
    "alerts/records.py": "reads the alert log: store/alert_log.py",
    # To move to the contract (outbox.py, outbox_home.open_outbox).
    "engine.py": "the alert monitor it starts takes the store's alert log (a type only)",
    "sources/avro_import.py": "the imported-files ledger, a side table: store/import_ledger.py",
    # The second implementation of the contract shares the first one's dead-letter rules and format.
    "cluster/committing.py": "the dead-letter caps per request and per event: store/dead_letter_caps.py",
    "cluster/burial.py": "the dead-letter caps and the JSON-lines export: store/dead_letters.py",
    "cluster/migration.py": "reads the single box's SQLite queue that `cluster init` carries over",
}


def imports_store(path: Path) -> bool:
    """Whether a module imports `tui_currents.store` (or a part of it), wherever in the file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "tui_currents":
                names += [f"tui_currents.{alias.name}" for alias in node.names]
        else:
            continue
        if any(name == "tui_currents.store" or name.startswith("tui_currents.store.") for name in names):
            return True
    return False


def modules_above_the_store() -> list[str]:
    return sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] != "store"
    )


def test_only_the_listed_modules_import_the_store() -> None:
    modules = modules_above_the_store()
    assert "status.py" in modules and "tui/app.py" in modules  # the walk found the package
    importing = {m for m in modules if imports_store(PACKAGE / m)}
    assert importing - ALLOWED.keys() == set(), "use tui_currents.outbox / outbox_home.open_outbox instead"


def test_the_list_holds_no_module_that_no_longer_needs_it() -> None:
    # A module that stopped importing the store leaves the list, so that it cannot start again unseen.
    stale = {m for m in ALLOWED if not (PACKAGE / m).exists() or not imports_store(PACKAGE / m)}
    assert stale == set()
