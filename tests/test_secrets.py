"""Write keys, receiver tokens and the SMTP password through a real keyring backend (the encrypted file).

The suite's keyring files are cheap to open (tests/conftest.py), but the tests still share one unlocked
keyring file per module and use distinct connector names.
"""

from __future__ import annotations

import base64
import configparser
import io
import os
import re
import stat
import time

import keyring
import pytest
from keyring.backends import fail, null
from keyrings.cryptfile.cryptfile import CryptFileKeyring
from keyrings.cryptfile.file import PlaintextKeyring

from tui_currents import keyring_file, logs
from tui_currents.keyring_cost import parse_record
from tui_currents.keyring_file import KeyringUnreadable, WrongPassphrase
from tui_currents.paths import Home
from tui_currents.secrets import (
    PassphraseRequired,
    Secrets,
    SecretsUnavailable,
    find_os_keyring,
    read_secret_from_stdin,
    receiver_token_env_var,
    write_key_env_var,
)

PASSPHRASE = "correct horse battery staple 7"
WRITE_KEY = "wk_9fQ2rT7yUx3LmN8pZa1BcD4eFg6Hj0Kq"
TOKEN = "rt_Q1w2E3r4T5y6U7i8O9p0-._~AsDfGhJk"


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Secrets:
    """One unlocked keyring file for the module (the Argon2 unlock is paid once)."""
    home = Home.at(tmp_path_factory.mktemp("shared-home")).ensure()
    return Secrets(home, backend="file", passphrase=PASSPHRASE)


def stock_keyring(secrets: Secrets) -> CryptFileKeyring:
    """keyrings.cryptfile's own backend on the same file: an independent reader and writer, given the
    Argon2id cost the file records (the suite creates files at a low cost, see tests/conftest.py)."""
    config = configparser.RawConfigParser()
    config.read(secrets.home.keyring_file)
    cost = parse_record(config.get("keyring_2Dsetting", "kdf"))
    backend = CryptFileKeyring()
    backend.time_cost, backend.memory_cost, backend.parallelism = (
        cost.time_cost,
        cost.memory_kib,
        cost.parallelism,
    )
    backend.file_path = str(secrets.home.keyring_file)
    backend.keyring_key = PASSPHRASE
    return backend


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ------------------------------------------------------------------------------------------------ file


def with_marketing_key(secrets: Secrets) -> None:
    if secrets.get_write_key("Marketing") != WRITE_KEY:  # read from memory once stored
        secrets.set_write_key("Marketing", WRITE_KEY)


def test_write_key_is_stored_encrypted_in_a_private_file(shared):
    with_marketing_key(shared)
    assert shared.backend_name == "file"
    assert shared.get_write_key("Marketing") == WRITE_KEY
    assert shared.has_write_key("Marketing") and not shared.has_write_key("Nobody")
    assert shared.write_key_hint("Marketing") == "…" + WRITE_KEY[-4:]
    assert shared.write_key_source("Marketing") == "keyring"
    assert shared.write_key_hint("Nobody") is None and shared.write_key_source("Nobody") is None

    path = shared.home.keyring_file
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    raw = path.read_bytes()
    assert WRITE_KEY.encode() not in raw
    assert base64.b64encode(WRITE_KEY.encode()) not in raw
    assert PASSPHRASE.encode() not in raw


def test_the_file_is_readable_by_keyrings_cryptfile_and_changes_from_elsewhere_are_seen(shared):
    with_marketing_key(shared)
    other = stock_keyring(shared)
    assert other.get_password("tui-currents", "write-key:Marketing") == WRITE_KEY

    # Another process stores a key: the cache must not hide the change.
    assert shared.get_write_key("Billing") is None
    other.set_password("tui-currents", "write-key:Billing", "wk_billing_from_elsewhere_1111")
    assert shared.get_write_key("Billing") == "wk_billing_from_elsewhere_1111"
    started = time.perf_counter()
    assert shared.get_write_key("Billing") == "wk_billing_from_elsewhere_1111"
    assert time.perf_counter() - started < 0.1  # served from memory, no Argon2 derivation


def test_an_unreadable_file_is_never_taken_for_nothing_stored_nor_overwritten(tmp_path):
    """Deleted, cut short or emptied under a running process: reads raise KeyringUnreadable (not None, which
    means "not stored"), writes refuse a damaged file and leave it as it is, and opening it says what is
    wrong. A good copy put back reads again; after a deletion, storing a secret starts a new file."""
    home = Home.at(tmp_path / "home").ensure()
    vault = Secrets(home, backend="file", passphrase=PASSPHRASE)
    vault.set_receiver_token("prod", TOKEN)
    path = home.keyring_file
    good = path.read_bytes()
    assert vault.get_receiver_token("prod") == TOKEN and vault.get_receiver_token("staging") is None

    for how, damaged in (("cut short", good[: len(good) // 2]), ("emptied", b"")):
        path.write_bytes(damaged)
        with pytest.raises(KeyringUnreadable) as caught:
            vault.get_receiver_token("staging")
        assert str(path) in str(caught.value) and TOKEN not in str(caught.value), how
        with pytest.raises(SecretsUnavailable):
            vault.set_write_key("Marketing", WRITE_KEY)
        assert path.read_bytes() == damaged, how  # never overwritten
        with pytest.raises(KeyringUnreadable, match="left untouched"):
            Secrets(home, backend="file", passphrase=PASSPHRASE + " (another process)")
        path.write_bytes(good)
        assert vault.get_receiver_token("prod") == TOKEN

    path.unlink()
    with pytest.raises(KeyringUnreadable, match="is missing"):
        vault.get_receiver_token("prod")
    vault.set_write_key("Marketing", WRITE_KEY)  # a new file, as on first use
    assert stock_keyring(vault).get_password("tui-currents", "write-key:Marketing") == WRITE_KEY
    assert vault.get_receiver_token("prod") is None  # that one went with the deleted file
    assert mode(path) == 0o600 and mode(keyring_file.lock_file_for(path)) == 0o600


def test_nothing_is_created_until_a_secret_is_stored(home):
    fresh = Secrets(home)  # the conftest selects the file backend with a test passphrase
    assert fresh.backend_name == "file"
    assert fresh.get_write_key("Marketing") is None and not fresh.has_receiver_token("prod")
    fresh.delete_write_key("Marketing")
    assert not home.keyring_file.exists()


def test_delete_write_keys(shared):
    shared.set_write_key("New name", "wk_delete_me_0123456789")
    assert shared.get_write_key("New name") == "wk_delete_me_0123456789"
    shared.delete_write_key("New name")
    shared.delete_write_key("New name")  # deleting what is not there is fine
    assert not shared.has_write_key("New name")
    assert "New name" not in shared.home.keyring_file.read_text()


def test_receiver_tokens_and_smtp_password(shared):
    generated = {Secrets.generate_receiver_token() for _ in range(5)}
    assert len(generated) == 5
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43,}", t) for t in generated)

    shared.set_receiver_token("prod", TOKEN)
    shared.set_smtp_password("smtp pass with spaces")
    assert shared.get_receiver_token("prod") == TOKEN
    assert shared.has_receiver_token("prod") and not shared.has_receiver_token("staging")
    assert shared.receiver_token_hint("prod") == "…" + TOKEN[-4:]
    assert shared.get_smtp_password() == "smtp pass with spaces"
    shared.delete_smtp_password()
    assert not shared.has_smtp_password()
    assert TOKEN.encode() not in shared.home.keyring_file.read_bytes()

    for bad in ("short-token", "has spaces in the token value", "bad!chars?in=the=token=value"):
        with pytest.raises(ValueError) as caught:
            shared.set_receiver_token("prod", bad)
        assert bad not in str(caught.value)
    with pytest.raises(ValueError) as caught:
        shared.set_write_key("Marketing", "two words in a key")
    assert "two words" not in str(caught.value)
    with pytest.raises(ValueError):
        shared.set_write_key("Marketing", "")
    assert shared.get_write_key("Marketing") == WRITE_KEY


def test_wrong_passphrase_is_a_clear_error_and_changes_nothing(shared):
    with_marketing_key(shared)
    before = shared.home.keyring_file.read_bytes()
    wrong = "definitely-not-the-passphrase-42"
    with pytest.raises(WrongPassphrase) as caught:
        Secrets(shared.home, backend="file", passphrase=wrong)
    message = str(caught.value)
    assert f"does not unlock {shared.home.keyring_file}" in message
    assert wrong not in message and PASSPHRASE not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert shared.home.keyring_file.read_bytes() == before
    assert isinstance(caught.value, SecretsUnavailable)  # the CLI's single except clause covers it


def test_a_home_with_a_keyring_file_opens_with_the_passphrase_from_the_environment(shared, monkeypatch):
    with_marketing_key(shared)
    monkeypatch.delenv("TUI_CURRENTS_KEYRING")  # auto: the existing file wins when a passphrase is at hand
    monkeypatch.setenv("TUI_CURRENTS_KEYRING_PASSPHRASE", PASSPHRASE)
    again = Secrets(shared.home)
    assert again.backend_name == "file"
    assert again.get_write_key("Marketing") == WRITE_KEY


# ------------------------------------------------------------------------------------------------ env


def test_environment_overrides_win_and_need_no_keyring(home, monkeypatch, shared):
    with_marketing_key(shared)
    assert write_key_env_var("Marketing EU-2") == "TUI_CURRENTS_WRITE_KEY_MARKETING_EU_2"
    assert receiver_token_env_var("prod-eu") == "TUI_CURRENTS_RECEIVER_TOKEN_PROD_EU"

    monkeypatch.setenv(write_key_env_var("Marketing"), "wk_from_the_environment_000")
    assert shared.get_write_key("Marketing") == "wk_from_the_environment_000"
    assert shared.write_key_source("Marketing") == "environment"

    # A container: no passphrase, no OS keyring, only overrides. Reading works; storing explains why not.
    monkeypatch.delenv("TUI_CURRENTS_KEYRING")
    monkeypatch.delenv("TUI_CURRENTS_KEYRING_PASSPHRASE")
    monkeypatch.setenv(receiver_token_env_var("prod-eu"), TOKEN)
    bare = Secrets(home)
    assert bare.backend_name is None
    assert bare.get_write_key("Marketing") == "wk_from_the_environment_000"
    assert bare.get_receiver_token("prod-eu") == TOKEN
    with pytest.raises(PassphraseRequired, match="TUI_CURRENTS_KEYRING_PASSPHRASE"):
        bare.get_write_key("Other")
    with pytest.raises(PassphraseRequired):
        bare.set_write_key("Other", "wk_cannot_be_stored_here_00")
    assert not home.keyring_file.exists()


# ------------------------------------------------------------------------------------------------ choice


def test_the_fail_backend_is_not_an_os_keyring(home, monkeypatch):
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        assert find_os_keyring()[0] is None
        with pytest.raises(SecretsUnavailable) as caught:
            Secrets(home, backend="os")
        assert not isinstance(caught.value, PassphraseRequired)
        assert "OS keyring" in str(caught.value) and "TUI_CURRENTS_KEYRING=file" in str(caught.value)

        monkeypatch.delenv("TUI_CURRENTS_KEYRING")
        monkeypatch.delenv("TUI_CURRENTS_KEYRING_PASSPHRASE")
        with pytest.raises(PassphraseRequired) as caught:
            Secrets(home)
        message = str(caught.value)
        for option in (
            "TUI_CURRENTS_KEYRING_PASSPHRASE",
            "desktop session",
            "TUI_CURRENTS_WRITE_KEY_<CONNECTOR>",
            "TUI_CURRENTS_RECEIVER_TOKEN_<WORKSPACE>",
            str(home.keyring_file),
        ):
            assert option in message
    finally:
        keyring.set_keyring(previous)
    assert keyring.get_keyring() is previous


def test_file_keyrings_are_not_taken_for_an_os_keyring():
    plaintext = PlaintextKeyring()
    found, reason = find_os_keyring([plaintext, CryptFileKeyring(), null.Keyring(), fail.Keyring()])
    assert found is None
    assert "PlaintextKeyring" in reason and "CryptFileKeyring" in reason

    previous = keyring.get_keyring()
    keyring.set_keyring(plaintext)
    try:
        assert find_os_keyring()[0] is None
    finally:
        keyring.set_keyring(previous)


def test_values_from_a_non_file_keyring_are_read_again_after_a_few_seconds(tmp_path, monkeypatch):
    # No OS keyring exists here, so a real plaintext file backend stands in for one, held the way an OS
    # keyring is held (no file to watch): another process's change shows once the cached value ages out.
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "plain.cfg")
    vault = keyring_file.Vault(backend, name="os", description="a stand-in keyring")
    vault.set("write-key:Marketing", "wk_first_value_000000", "write key")
    backend.set_password("tui-currents", "write-key:Marketing", "wk_second_value_11111")
    assert vault.get("write-key:Marketing", "write key") == "wk_first_value_000000"
    monkeypatch.setattr(keyring_file, "OS_CACHE_SECONDS", 0.0)
    assert vault.get("write-key:Marketing", "write key") == "wk_second_value_11111"
    vault.delete("write-key:Marketing", "write key")
    assert backend.get_password("tui-currents", "write-key:Marketing") is None


def test_our_file_backend_is_not_offered_to_keyrings_own_detection():
    from keyring.backend import get_all_keyring

    private_class = keyring_file._crypt_file_class()
    assert not any(isinstance(backend, private_class) for backend in get_all_keyring())


def test_backend_selection_errors(home, monkeypatch):
    monkeypatch.setenv("TUI_CURRENTS_KEYRING", "vault")
    with pytest.raises(SecretsUnavailable, match="TUI_CURRENTS_KEYRING must be 'os' or 'file'"):
        Secrets(home)
    monkeypatch.setenv("TUI_CURRENTS_KEYRING", "file")
    monkeypatch.delenv("TUI_CURRENTS_KEYRING_PASSPHRASE")
    with pytest.raises(PassphraseRequired) as caught:
        Secrets(home)
    assert str(home.keyring_file) in str(caught.value) and "TUI_CURRENTS_KEYRING_PASSPHRASE" in str(
        caught.value
    )
    with pytest.raises(PassphraseRequired):
        Secrets(home, backend="file", passphrase="   ")
    assert not home.keyring_file.exists()


# ------------------------------------------------------------------------------------------------ leaks


def test_no_secret_in_repr_str_vars_or_errors(shared):
    with_marketing_key(shared)
    texts = [repr(shared), str(shared), repr(vars(shared)), repr(shared._vault), repr(vars(shared._vault))]
    for text in texts:
        assert WRITE_KEY not in text and PASSPHRASE not in text

    # Values read or stored are registered with the log masking.
    assert logs.mask(f"sending with {WRITE_KEY} now") == "sending with [secret] now"

    # A store that fails says so without the value (here a folder stands where the file must go).
    keyring_file = shared.home.keyring_file
    before = keyring_file.read_bytes()
    kept = keyring_file.with_name("kept.cfg")
    keyring_file.rename(kept)
    keyring_file.mkdir()
    (keyring_file / "in-the-way").write_text("")
    secret = "wk_never_in_a_message_5555"
    try:
        with pytest.raises(SecretsUnavailable) as caught:
            shared.set_write_key("Marketing", secret)
    finally:
        (keyring_file / "in-the-way").unlink()
        keyring_file.rmdir()
        kept.rename(keyring_file)
    assert "Could not store the write key of 'Marketing'" in str(caught.value)
    assert secret not in str(caught.value) and caught.value.__cause__ is None
    assert keyring_file.read_bytes() == before


# ------------------------------------------------------------------------------------------------ stdin


@pytest.mark.parametrize(
    ("given", "read"), [("wk_abc\n", "wk_abc"), ("wk_abc\r\n", "wk_abc"), ("wk_abc", "wk_abc")]
)
def test_read_secret_from_stdin(given, read):
    assert read_secret_from_stdin(io.StringIO(given)) == read


@pytest.mark.parametrize("given", ["", "\n", "   \n", "wk_first\nwk_second\n"])
def test_read_secret_from_stdin_refuses_empty_or_several_lines(given):
    with pytest.raises(ValueError) as caught:
        read_secret_from_stdin(io.StringIO(given))
    assert "wk_first" not in str(caught.value)
