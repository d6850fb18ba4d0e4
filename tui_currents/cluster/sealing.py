"""Secrets sealed for the shared configuration: a key derived from the cluster passphrase, AES-GCM.

Write keys and receiver tokens travel through NATS and rest in its KV bucket only sealed:

- the key is derived from the cluster passphrase with Argon2id (argon2-cffi's `hash_secret_raw`); the salt
  and the cost parameters are stored beside the sealed values (`SealingParameters`, KV key `sealing`), so
  every member derives the same key, and a future change of the costs leaves older clusters readable;
- each value is sealed with AES-256-GCM (cryptography), a fresh random 96-bit nonce per value, and the
  value's KV key as associated data: a sealed value moved to another key does not open;
- a verifier (a known text sealed at cluster creation) tells a wrong passphrase from a damaged value
  before anything is written.

The passphrase never leaves the process: it is read from `TUI_CURRENTS_CLUSTER_PASSPHRASE` or the
instance's keyring (Secrets.get_cluster_passphrase) and only the derived key is kept, in memory.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

import orjson
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tui_currents.logs import register_secret

FORMAT = 1  # the first byte of every sealed value
NONCE_BYTES = 12
KEY_BYTES = 32
SALT_BYTES = 16
VERIFIER_KEY = "sealing.verifier"  # associated data of the verifier
VERIFIER_TEXT = b"tui-currents cluster passphrase check"
# OWASP's first Argon2id choice (2023): 64 MiB, 3 passes; about a quarter of a second here, once per process.
TIME_COST = 3
MEMORY_COST_KIB = 64 * 1024
PARALLELISM = 4


class SealingError(Exception):
    """A sealed value cannot be opened; the message says why (never quoting the value)."""


class WrongClusterPassphrase(SealingError):
    """The passphrase given is not the cluster's."""


@dataclass(frozen=True)
class SealingParameters:
    """How the cluster's key is derived (Argon2id salt and costs), and the verifier sealed with it."""

    salt: bytes
    time_cost: int = TIME_COST
    memory_cost: int = MEMORY_COST_KIB
    parallelism: int = PARALLELISM
    verifier: bytes = b""

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "format": FORMAT,
                "kdf": "argon2id",
                "salt": base64.b64encode(self.salt).decode(),
                "time_cost": self.time_cost,
                "memory_cost": self.memory_cost,
                "parallelism": self.parallelism,
                "verifier": base64.b64encode(self.verifier).decode(),
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> SealingParameters:
        try:
            plain = orjson.loads(data)
            if plain.get("kdf") != "argon2id" or plain.get("format") != FORMAT:
                raise SealingError(
                    "the cluster's secrets are sealed in a format this version does not know; "
                    "upgrade tui-currents on this machine"
                )
            return cls(
                salt=base64.b64decode(plain["salt"]),
                time_cost=int(plain["time_cost"]),
                memory_cost=int(plain["memory_cost"]),
                parallelism=int(plain["parallelism"]),
                verifier=base64.b64decode(plain["verifier"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise SealingError(
                f"the cluster's sealing parameters are damaged ({type(error).__name__})"
            ) from None


class Sealer:
    """Seals and opens values with the key derived from the cluster passphrase."""

    def __init__(self, passphrase: str, parameters: SealingParameters):
        if not passphrase:
            raise WrongClusterPassphrase("the cluster passphrase is empty")
        register_secret(passphrase)
        self.parameters = parameters
        key = hash_secret_raw(
            secret=passphrase.encode("utf-8"),
            salt=parameters.salt,
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_cost,
            parallelism=parameters.parallelism,
            hash_len=KEY_BYTES,
            type=Type.ID,
        )
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Sealer(<key hidden>)"

    @classmethod
    def create(cls, passphrase: str) -> Sealer:
        """A sealer for a new cluster: a fresh salt, the default costs, a verifier sealed with the key."""
        sealer = cls(passphrase, SealingParameters(salt=os.urandom(SALT_BYTES)))
        verifier = sealer.seal(VERIFIER_KEY, VERIFIER_TEXT)
        sealer.parameters = SealingParameters(
            salt=sealer.parameters.salt,
            time_cost=sealer.parameters.time_cost,
            memory_cost=sealer.parameters.memory_cost,
            parallelism=sealer.parameters.parallelism,
            verifier=verifier,
        )
        return sealer

    @classmethod
    def unlock(cls, passphrase: str, parameters: SealingParameters) -> Sealer:
        """A sealer for an existing cluster; WrongClusterPassphrase when the verifier does not open."""
        sealer = cls(passphrase, parameters)
        try:
            ok = sealer.open(VERIFIER_KEY, parameters.verifier) == VERIFIER_TEXT
        except SealingError:
            ok = False
        if not ok:
            raise WrongClusterPassphrase(
                "the cluster passphrase is wrong (it does not open the cluster's secrets)"
            )
        return sealer

    def seal(self, key: str, value: bytes) -> bytes:
        """`value` sealed for the KV key `key`: format byte, random nonce, AES-GCM ciphertext and tag."""
        nonce = os.urandom(NONCE_BYTES)
        return bytes([FORMAT]) + nonce + self._aead.encrypt(nonce, value, key.encode("utf-8"))

    def open(self, key: str, sealed: bytes) -> bytes:
        """The value sealed for `key`; SealingError when it was sealed with another key, for another KV key,
        or was changed."""
        if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[0] != FORMAT:
            raise SealingError(f"the sealed value of {key!r} is damaged or in an unknown format")
        nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, key.encode("utf-8"))
        except InvalidTag:
            raise SealingError(
                f"the sealed value of {key!r} does not open with the cluster's key (changed or moved)"
            ) from None
