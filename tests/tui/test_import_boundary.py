"""The screens, widgets and row types of the terminal app import only TUI-side modules: they reach the rest of
the program through `tui/backend.py` alone (never the store, the engine, the config or the keyring)."""

from __future__ import annotations

import ast
from pathlib import Path

import tui_currents.tui

TUI = Path(tui_currents.tui.__file__).parent
CHECKED = sorted([*TUI.glob("screens/*.py"), *TUI.glob("widgets/*.py"), TUI / "models.py"])
# Outside tui/, only this may be imported: the event-type catalog is data with no I/O (the editor's event
# tree and the health screen's type names are drawn from it).
ALLOWED_OUTSIDE = {"tui_currents.catalog"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top, in functions or for the type checker alike."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "tui_currents":  # `from tui_currents import config`
                names.update(f"tui_currents.{alias.name}" for alias in node.names)
    return names


def forbidden(names: set[str]) -> set[str]:
    return {
        name
        for name in names
        if (name == "tui_currents" or name.startswith("tui_currents."))
        and not name.startswith("tui_currents.tui")
        and name not in ALLOWED_OUTSIDE
        and name != "tui_currents"  # only its submodules count (listed above)
    }


def test_screens_and_widgets_import_only_tui_modules() -> None:
    assert len(CHECKED) > 10  # the walk found the package
    offenders = {
        str(path.relative_to(TUI)): sorted(bad)
        for path in CHECKED
        if (bad := forbidden(imported_modules(path)))
    }
    assert offenders == {}, f"import these through tui/backend.py or tui/models.py instead: {offenders}"


def test_the_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from tui_currents import catalog, config\n"
        "def f():\n    from tui_currents.store import Store\n"
        "import tui_currents.engine\n"
        "from tui_currents.tui.backend import ConfigError\n"
    )
    assert forbidden(imported_modules(sample)) == {
        "tui_currents.config",
        "tui_currents.store",
        "tui_currents.engine",
    }


def test_the_backend_imports_no_widget_or_screen() -> None:
    # The backend fills the rows of tui/models.py; what draws them is none of its business.
    names = imported_modules(TUI / "backend.py")
    assert not {n for n in names if n.startswith(("tui_currents.tui.widgets", "tui_currents.tui.screens"))}
