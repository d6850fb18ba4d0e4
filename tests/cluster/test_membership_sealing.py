"""Sealing: Argon2id key from the cluster passphrase, AES-GCM per value bound to its KV key, a verifier
for a wrong passphrase; and the passphrase's place in the keyring or the environment."""

from __future__ import annotations

import pytest

from tui_currents.cluster.sealing import Sealer, SealingError, SealingParameters, WrongClusterPassphrase
from tui_currents.paths import Home
from tui_currents.secrets import CLUSTER_PASSPHRASE_ENV, Secrets

PASSPHRASE = "correct horse battery staple"
KEY = b"wk_live_0123456789abcdef"


def test_a_sealed_value_opens_with_the_same_passphrase_on_another_member() -> None:
    first = Sealer.create(PASSPHRASE)
    sealed = first.seal("secret.write-key.61", KEY)
    assert KEY not in sealed
    params = SealingParameters.from_json(first.parameters.to_json())
    assert params.time_cost >= 3 and params.memory_cost >= 64 * 1024  # Argon2id costs kept with the salt
    second = Sealer.unlock(PASSPHRASE, params)
    assert second.open("secret.write-key.61", sealed) == KEY


def test_each_seal_uses_a_fresh_nonce() -> None:
    sealer = Sealer.create(PASSPHRASE)
    assert sealer.seal("k", KEY) != sealer.seal("k", KEY)


def test_a_wrong_passphrase_is_told_by_the_verifier() -> None:
    params = SealingParameters.from_json(Sealer.create(PASSPHRASE).parameters.to_json())
    with pytest.raises(WrongClusterPassphrase) as caught:
        Sealer.unlock("wrong horse", params)
    assert "wrong" in str(caught.value) and "wrong horse" not in str(caught.value)


def test_a_value_moved_to_another_key_or_changed_does_not_open() -> None:
    sealer = Sealer.create(PASSPHRASE)
    sealed = sealer.seal("secret.write-key.61", KEY)
    with pytest.raises(SealingError):
        sealer.open("secret.write-key.62", sealed)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealingError):
        sealer.open("secret.write-key.61", tampered)
    assert repr(sealer) == "Sealer(<key hidden>)"


def test_the_passphrase_lives_in_the_keyring_or_the_environment(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = Secrets(home)
    assert secrets.get_cluster_passphrase() is None
    secrets.set_cluster_passphrase(PASSPHRASE)
    assert Secrets(home).get_cluster_passphrase() == PASSPHRASE
    assert PASSPHRASE.encode() not in home.keyring_file.read_bytes()
    monkeypatch.setenv(CLUSTER_PASSPHRASE_ENV, "from the environment")
    assert Secrets(home).get_cluster_passphrase() == "from the environment"
    monkeypatch.delenv(CLUSTER_PASSPHRASE_ENV)
    secrets.delete_cluster_passphrase()
    assert Secrets(home).get_cluster_passphrase() is None
