"""The encrypted keyring file's Argon2id cost: recorded in the file when it is created, and used by every
process that opens it later; files written before the record existed keep the library's cost.

The suite creates files at a low cost (tests/conftest.py); the tests of the shipped default unset that.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest
from keyrings.cryptfile.cryptfile import (
    DEFAULT_MEMORY_COST,
    DEFAULT_PARALLELISM,
    DEFAULT_TIME_COST,
    CryptFileKeyring,
)

from tests.conftest import TEST_KEYRING_KDF_COST
from tests.support import cli_in_process
from tui_currents import keyring_file
from tui_currents.keyring_cost import (
    DEFAULT_COST,
    NEW_FILE_COST_ENV,
    CostError,
    KdfCost,
    cost_for_new_file,
    parse_record,
    parse_setting,
)
from tui_currents.keyring_file import KeyringUnreadable
from tui_currents.paths import Home
from tui_currents.secrets import Secrets, SecretsUnavailable

PASSPHRASE = "cost tests passphrase 42"
WRITE_KEY = "wk_cost_Zq8Lm3Np7Rt2Vx5Yb9Cd4Fg6Hj1Ks0"
SETTINGS = "keyring_2Dsetting"  # "keyring-setting" as keyrings.cryptfile escapes it


def recorded(path: Path) -> str | None:
    """The cost record of a keyring file, read as plain text (None when it has none)."""
    config = configparser.RawConfigParser()
    config.read_string(path.read_text(encoding="utf-8"))
    return config.get(SETTINGS, "kdf", fallback=None)


def rewrite_record(path: Path, record: str | None) -> None:
    """Put `record` in the file's settings (None removes it), the rest of the file as it was."""
    config = configparser.RawConfigParser()
    config.read_string(path.read_text(encoding="utf-8"))
    if record is None:
        config.remove_option(SETTINGS, "kdf")
    else:
        config.set(SETTINGS, "kdf", record)
    with path.open("w", encoding="utf-8") as handle:
        config.write(handle)


def in_another_process(home: Path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in a new interpreter, `secrets` bound to the home's file keyring; `env` added
    (an empty value removes a variable)."""
    environ = {**os.environ, **env}
    for name in [name for name, value in env.items() if not value]:
        del environ[name]
    prelude = (
        "from tui_currents.secrets import Secrets\n"
        f"secrets = Secrets({str(home)!r}, backend='file', passphrase={PASSPHRASE!r})\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + script],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
    )


# ------------------------------------------------------------------------------------- the shipped default


def test_a_new_file_records_the_library_default_cost_and_other_processes_use_it(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real default, end to end: created, written and read here; read and written in another process
    that asks for a low cost for new files, which does not touch a file that exists."""
    monkeypatch.delenv(NEW_FILE_COST_ENV)
    secrets = Secrets(home, backend="file", passphrase=PASSPHRASE)
    secrets.set_write_key("Marketing", WRITE_KEY)
    assert secrets.get_write_key("Marketing") == WRITE_KEY

    expected = f"$argon2id$v=19$m={DEFAULT_MEMORY_COST},t={DEFAULT_TIME_COST},p={DEFAULT_PARALLELISM}"
    assert recorded(home.keyring_file) == expected
    assert (DEFAULT_COST.time_cost, DEFAULT_COST.memory_kib, DEFAULT_COST.parallelism) == (15, 65536, 2)
    assert (DEFAULT_TIME_COST, DEFAULT_MEMORY_COST, DEFAULT_PARALLELISM) == (15, 65536, 2)

    other = in_another_process(
        home.root,
        "print(secrets.get_write_key('Marketing'))\n"
        "secrets.set_write_key('Billing', 'wk_billing_from_the_other_process_1')\n",
        **{NEW_FILE_COST_ENV: "m=1024,t=1,p=1"},
    )
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == WRITE_KEY
    assert recorded(home.keyring_file) == expected  # a setting never weakens a file that exists
    assert secrets.get_write_key("Billing") == "wk_billing_from_the_other_process_1"

    # keyrings.cryptfile itself, with its own defaults, still reads a default file.
    stock = CryptFileKeyring()
    stock.file_path = str(home.keyring_file)
    stock.keyring_key = PASSPHRASE
    assert stock.get_password("tui-currents", "write-key:Billing") == "wk_billing_from_the_other_process_1"


def test_a_file_without_a_record_opens_with_the_library_cost_and_keeps_it(home: Home) -> None:
    """Every file written before the record existed: keyrings.cryptfile's own backend with its defaults
    writes one; it opens unchanged, whatever the setting for new files says, and stays readable by it."""
    home.keyring_file.parent.mkdir(parents=True, exist_ok=True)
    stock = CryptFileKeyring()
    stock.file_path = str(home.keyring_file)
    stock.keyring_key = PASSPHRASE
    stock.set_password("tui-currents", "write-key:Marketing", WRITE_KEY)
    assert recorded(home.keyring_file) is None

    secrets = Secrets(home, backend="file", passphrase=PASSPHRASE)  # the suite's low setting is set
    assert secrets.get_write_key("Marketing") == WRITE_KEY
    secrets.set_write_key("Billing", "wk_billing_stored_by_tui_currents_22")
    assert recorded(home.keyring_file) is None

    # The library, with its defaults, reads what was stored (it reads the file anew on every call).
    assert stock.get_password("tui-currents", "write-key:Billing") == "wk_billing_stored_by_tui_currents_22"


# --------------------------------------------------------------------------------- a lower cost for tests


def test_the_setting_makes_new_files_cheaper_and_readers_follow_the_file_not_their_setting(
    home: Home,
) -> None:
    secrets = Secrets(home, backend="file", passphrase=PASSPHRASE)
    secrets.set_write_key("Marketing", WRITE_KEY)
    assert recorded(home.keyring_file) == parse_setting(TEST_KEYRING_KDF_COST).record()

    # A process without the setting (the library's default) reads it: the cost comes from the file.
    other = in_another_process(
        home.root,
        "print(secrets.get_write_key('Marketing'))\n"
        "secrets.set_receiver_token('prod', 'rt_from_the_other_process_0123456789')\n",
        **{NEW_FILE_COST_ENV: ""},
    )
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == WRITE_KEY
    assert secrets.get_receiver_token("prod") == "rt_from_the_other_process_0123456789"
    assert recorded(home.keyring_file) == parse_setting(TEST_KEYRING_KDF_COST).record()


def test_the_suite_creates_cheap_keyring_files_in_its_own_and_in_child_processes(home: Home) -> None:
    assert parse_setting(TEST_KEYRING_KDF_COST).memory_kib < DEFAULT_COST.memory_kib
    done = subprocess.run(
        [sys.executable, "-m", "tui_currents", "--home", str(home.root), "workspace", "add", "prod"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert recorded(home.keyring_file) == parse_setting(TEST_KEYRING_KDF_COST).record()


def test_a_file_replaced_by_one_of_another_cost_is_followed(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process moves the file away and starts a new one at another cost: this process's open
    keyring reads and writes the new one with the new file's cost."""
    secrets = Secrets(home, backend="file", passphrase=PASSPHRASE)
    secrets.set_write_key("Marketing", WRITE_KEY)
    home.keyring_file.rename(home.keyring_file.with_name("old.cfg"))
    made = in_another_process(
        home.root,
        "secrets.set_write_key('Marketing', 'wk_in_the_new_file_44444444')\n",
        **{NEW_FILE_COST_ENV: "m=2048,t=1,p=1"},
    )
    assert made.returncode == 0, made.stderr
    assert recorded(home.keyring_file) == KdfCost(time_cost=1, memory_kib=2048, parallelism=1).record()
    assert secrets.get_write_key("Marketing") == "wk_in_the_new_file_44444444"
    secrets.set_write_key("Billing", "wk_billing_in_the_new_file_555555")
    check = in_another_process(home.root, "print(secrets.get_write_key('Billing'))\n")
    assert check.stdout.strip() == "wk_billing_in_the_new_file_555555", check.stderr


def test_a_value_sealed_for_a_file_that_was_replaced_meanwhile_is_sealed_again(home: Home) -> None:
    """Sealing happens before the file's lock is taken; if the file is replaced by one of another cost in
    between, the value is sealed again under the lock rather than stored with the wrong cost."""
    secrets = Secrets(home, backend="file", passphrase=PASSPHRASE)
    secrets.set_write_key("Marketing", WRITE_KEY)
    vault = secrets._require_vault()
    backend = vault._unlocked()
    real_seal = backend.seal
    calls: list[KdfCost] = []

    def seal_then_replace_the_file(service: str, username: str, password: str) -> keyring_file.Sealed:
        sealed = real_seal(service, username, password)
        calls.append(sealed.cost)
        if len(calls) == 1:  # another process starts a new file at another cost, before our lock
            home.keyring_file.unlink()
            made = in_another_process(
                home.root,
                "secrets.set_write_key('Other', 'wk_other_in_the_new_file_66666')\n",
                **{NEW_FILE_COST_ENV: "m=2048,t=1,p=1"},
            )
            assert made.returncode == 0, made.stderr
        return sealed

    backend.seal = seal_then_replace_the_file
    secrets.set_write_key("Billing", "wk_billing_sealed_twice_77777777")
    assert [cost.memory_kib for cost in calls] == [parse_setting(TEST_KEYRING_KDF_COST).memory_kib, 2048]
    check = in_another_process(
        home.root, "print(secrets.get_write_key('Billing'), secrets.get_write_key('Other'))\n"
    )
    assert check.stdout.split() == ["wk_billing_sealed_twice_77777777", "wk_other_in_the_new_file_66666"]


# ------------------------------------------------------------------------------ bad settings, bad records


@pytest.mark.parametrize(
    "setting, reason",
    [
        ("fast", "give it as m=<KiB>,t=<passes>,p=<lanes>"),
        ("m=1024,t=1", "give all three of m, t and p"),
        ("m=1024,t=1,p=1,x=3", "give it as m=<KiB>,t=<passes>,p=<lanes>"),
        ("m=1024,t=1,t=2,p=1", "give it as m=<KiB>,t=<passes>,p=<lanes>"),
        ("m=lots,t=1,p=1", "m must be a whole number, not 'lots'"),
        ("m=512,t=1,p=1", "m (memory) must be from 1024 to 4194304 KiB, not 512"),
        ("m=1024,t=0,p=1", "t (passes) must be from 1 to 100, not 0"),
        ("m=1024,t=1,p=0", "p (lanes) must be from 1 to 64, not 0"),
        ("m=99999999,t=1,p=1", "m (memory) must be from 1024 to 4194304 KiB"),
    ],
)
def test_a_bad_setting_is_a_one_line_error_and_creates_no_file(
    home: Home, monkeypatch: pytest.MonkeyPatch, setting: str, reason: str
) -> None:
    monkeypatch.setenv(NEW_FILE_COST_ENV, setting)
    secrets = Secrets(home, backend="file", passphrase=PASSPHRASE)
    with pytest.raises(SecretsUnavailable) as caught:
        secrets.set_write_key("Marketing", WRITE_KEY)
    message = str(caught.value)
    assert message.startswith(f"{NEW_FILE_COST_ENV} is not usable (") and reason in message
    assert "no keyring file was created" in message and "\n" not in message and WRITE_KEY not in message
    assert not home.keyring_file.exists()


def test_the_command_line_says_what_is_wrong_with_the_setting_in_one_line(home: Home) -> None:
    done = cli_in_process(home.root, "workspace", "add", "prod", env={NEW_FILE_COST_ENV: "m=64,t=1,p=1"})
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert f"{NEW_FILE_COST_ENV} is not usable (m (memory) must be from 1024" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not home.keyring_file.exists()


def test_the_setting_is_not_read_for_a_file_that_exists(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = Secrets(home, backend="file", passphrase=PASSPHRASE)
    secrets.set_write_key("Marketing", WRITE_KEY)
    monkeypatch.setenv(NEW_FILE_COST_ENV, "nonsense")
    other = in_another_process(home.root, "print(secrets.get_write_key('Marketing'))\n")
    assert other.returncode == 0 and other.stdout.strip() == WRITE_KEY, other.stderr


@pytest.mark.parametrize(
    "record, reason",
    [
        ("$argon2id$v=19$m=65536,t=100000,p=2", "t (passes) must be from 1 to 100, not 100000"),
        ("$argon2id$v=19$m=8,t=1,p=1", "m (memory) must be from 1024"),
        ("$argon2id$v=16$m=65536,t=15,p=2", "Argon2 version 16"),
        ("$argon2i$v=19$m=65536,t=15,p=2", "not of the form"),
        ("$scrypt$ln=16,r=8,p=1", "not of the form"),
        ("", "not of the form"),
    ],
)
def test_a_damaged_or_absurd_record_is_unreadable_never_the_default(
    home: Home, record: str, reason: str
) -> None:
    secrets = Secrets(home, backend="file", passphrase=PASSPHRASE)
    secrets.set_write_key("Marketing", WRITE_KEY)
    good = home.keyring_file.read_bytes()
    rewrite_record(home.keyring_file, record)
    damaged = home.keyring_file.read_bytes()

    # An open keyring reading it, and a process opening it, both say why; nothing is written over it.
    with pytest.raises(KeyringUnreadable) as caught:
        secrets.get_write_key("Billing")
    assert "key derivation cost record is unusable" in str(caught.value) and reason in str(caught.value)
    with pytest.raises(SecretsUnavailable):
        secrets.set_write_key("Billing", "wk_never_stored_888888888")
    with pytest.raises(KeyringUnreadable, match="key derivation cost record is unusable") as opening:
        keyring_file.unlock_file(home.keyring_file, PASSPHRASE)
    assert reason in str(opening.value) and "\n" not in str(opening.value)
    assert home.keyring_file.read_bytes() == damaged

    other = in_another_process(home.root, "print(secrets.get_write_key('Marketing'))\n")
    assert other.returncode != 0 and "key derivation cost record is unusable" in other.stderr

    home.keyring_file.write_bytes(good)
    assert secrets.get_write_key("Marketing") == WRITE_KEY


# ------------------------------------------------------------------------------------------- the formats


def test_records_and_settings_read_back_what_was_written() -> None:
    cost = KdfCost(time_cost=3, memory_kib=19456, parallelism=1)
    assert cost.record() == "$argon2id$v=19$m=19456,t=3,p=1"
    assert parse_record(cost.record()) == cost
    assert parse_setting("t=3, p=1 ,m=19456") == cost
    assert cost_for_new_file({}) == DEFAULT_COST == cost_for_new_file({NEW_FILE_COST_ENV: "  "})
    assert cost_for_new_file({NEW_FILE_COST_ENV: "m=19456,t=3,p=1"}) == cost
    with pytest.raises(CostError, match=f"^{NEW_FILE_COST_ENV} is not usable"):
        cost_for_new_file({NEW_FILE_COST_ENV: "m=1,t=1,p=1"})
