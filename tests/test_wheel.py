"""The install story: the wheel built from this source holds the themes and the TUI's CSS, and installed in
a fresh venv it runs `tui-currents --version` and `tui-currents events`.

No network: the wheel is built without build isolation (this environment's setuptools), installed with
`--no-index --no-deps`, and the fresh venv finds the dependencies already installed here through a .pth
line (after its own site-packages, so the package itself comes from the wheel)."""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tui_currents import __version__, catalog

REPO = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "tests", "bench", "screenshots"
)


def run(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    # Run away from the source tree, which `python -c` would otherwise import from.
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=Path(args[0]).anchor
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=SKIP)  # the build leaves nothing in the working tree
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        work / "dist",
        source,
    )
    (built,) = (work / "dist").glob("tui_currents-*.whl")
    return built


def test_the_wheel_holds_the_themes_and_the_tui_css(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    themes = {p.name for p in (REPO / "themes").glob("*.toml")}
    assert themes and {f"tui_currents/themes/{t}" for t in themes} <= names
    css = {str(p.relative_to(REPO)) for p in (REPO / "tui_currents").rglob("*.tcss")}
    assert css and css <= names
    assert "tui_currents/tui/help.md" in names
    assert f"tui_currents-{__version__}.dist-info/entry_points.txt" in names


def test_the_wheel_holds_every_module_of_the_package(wheel: Path) -> None:
    # pyproject.toml lists the packages by name: a new subpackage left out would be missing from installs.
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(REPO)) for p in (REPO / "tui_currents").rglob("*.py")}
    assert modules and not modules - names, sorted(modules - names)


def test_a_fresh_venv_installed_from_the_wheel_runs_the_command(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-index", "--no-deps", wheel)
    fresh_site = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    )
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    (fresh_site / "zz-dependencies.pth").write_text("\n".join(sorted(here)) + "\n")

    command = venv / "bin" / "tui-currents"
    version = run(command, "--version")
    assert version.stdout.strip() == f"tui-currents {__version__}"
    events = run(command, "events", "--json")
    assert len(json.loads(events.stdout)) == len(catalog.CATALOG)
    assert "Braze event type" in run(command, "events").stdout
    where = run(
        python,
        "-c",
        "import tui_currents, pathlib; p = pathlib.Path(tui_currents.__file__).parent; "
        "print(p); print((p / 'tui' / 'app.tcss').is_file(), "
        "sorted(x.name for x in (p / 'themes').glob('*.toml')))",
    ).stdout.splitlines()
    assert Path(where[0]).is_relative_to(venv)  # the package itself comes from the wheel
    assert where[1].startswith("True") and "currents-dark.toml" in where[1]
