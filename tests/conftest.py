"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tui_currents.keyring_cost import NEW_FILE_COST_ENV
from tui_currents.paths import Home

# --- home and keyring isolation (paths, config, secrets) ------------------------------------------------
# Every test gets its own home and the encrypted-file keyring with a test passphrase, and keyring's
# process-wide backend is the fail backend, so no test can reach the real user's home or OS keyring.
# Keyring files the suite creates, in its own processes and in the CLI and engine processes it starts,
# record the cheapest Argon2id cost allowed (TEST_KEYRING_KDF_COST) instead of the default's ~0.6 s or
# more per keyring operation; tests/test_keyring_file_cost.py covers the default cost end to end. Tests that
# only need a write key or a receiver token to exist can still set the environment overrides, e.g.
#   monkeypatch.setenv(secrets.write_key_env_var("Marketing"), "test-write-key")

TEST_KEYRING_PASSPHRASE = "test passphrase (not a secret)"
TEST_KEYRING_KDF_COST = "m=1024,t=1,p=1"  # the floor keyring_cost allows


@pytest.fixture(autouse=True, scope="session")
def _cheap_new_keyring_files() -> Iterator[None]:
    """For the whole run, so that keyrings made by module-scoped fixtures (before `_isolated_home`) are
    cheap too; child processes inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(NEW_FILE_COST_ENV, TEST_KEYRING_KDF_COST)
        yield


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    import keyring
    from keyring.backends import fail

    folder = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TUI_CURRENTS_HOME", str(folder))
    monkeypatch.setenv("TUI_CURRENTS_KEYRING", "file")
    monkeypatch.setenv("TUI_CURRENTS_KEYRING_PASSPHRASE", TEST_KEYRING_PASSPHRASE)
    for name in list(os.environ):
        if name.startswith(("TUI_CURRENTS_WRITE_KEY_", "TUI_CURRENTS_RECEIVER_TOKEN_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield folder
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def home(_isolated_home: Path) -> Home:
    """The test's home (the same folder TUI_CURRENTS_HOME points at), folders created."""
    return Home.at(_isolated_home).ensure()


# --- the everyday loop ----------------------------------------------------------------------------------
# Tests that start processes, drive a terminal or run load are marked `slow`, by where they live, so that
# `pytest -m "not slow"` is a quick loop while the README's command (what CI runs) still runs everything.
SLOW = (
    "tests/reliability/",
    "tests/security/",
    "tests/e2e/",
    "tests/test_cli.py",
    "tests/tui/test_engine_in_process.py",
    "tests/tui/test_themes.py",
    "tests/test_metrics.py",
    "tests/test_systemd.py",
    "tests/test_logs.py",
    "tests/test_webhook.py",
    "tests/test_wheel.py",
    "tests/cluster/",
)


# --- two workers -----------------------------------------------------------------------------------------
# The README's command spreads tests over two xdist workers test by test (`--dist loadgroup`), so that a
# file of long tests does not hold one worker while the other waits. The tests of a file that use one of
# its module- or class-scoped fixtures (a built wheel, a keyring, a template home) stay together, on one
# worker, so that such a fixture is still made once.
SHARED_SCOPES = ("module", "class", "package")


def _shared_fixture_group(item: pytest.Item, where: str) -> str | None:
    """The xdist group of a test that uses a fixture shared by its file (its file's path), else None."""
    info = getattr(item, "_fixtureinfo", None)  # pytest's record of the fixtures a test uses
    if info is None:
        return None
    for definitions in info.name2fixturedefs.values():
        if definitions and definitions[-1].scope in SHARED_SCOPES:
            return where
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(config.rootpath)
    for item in items:
        where = Path(item.path).relative_to(root).as_posix()
        if where.startswith(SLOW):
            item.add_marker(pytest.mark.slow)
        group = _shared_fixture_group(item, where)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


# --- more shared fixtures below -------------------------------------------------------------------------
