"""The Argon2id cost of the encrypted keyring file, recorded in the file itself.

Every value in the file is sealed with a key derived from the passphrase by Argon2id, so every read and write
pays that cost. The cost is chosen when a file is created and written into it, in the PHC string form
Argon2 hashes use (``$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>``); every process that opens the file
later uses what the file says. A file written before the record existed has the costs keyrings.cryptfile
used for every file (``LEGACY_COST``), and new files get the same unless
``TUI_CURRENTS_NEW_KEYRING_KDF_COST`` asks for less (tests, small devices).

Security: the setting is read only when a new file is created, never when one is opened, so it can never
weaken a file that exists; a file's record is checked against the same bounds when it is read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

NEW_FILE_COST_ENV = "TUI_CURRENTS_NEW_KEYRING_KDF_COST"

ARGON2_VERSION = 19  # 0x13, the only version argon2-cffi derives keys with

# Bounds for the setting and for a file's record. The floor keeps the derivation Argon2id with at least one
# pass over 1 MiB; the ceilings catch a damaged record that would otherwise hang or exhaust memory.
MIN_TIME_COST, MAX_TIME_COST = 1, 100
MIN_MEMORY_KIB, MAX_MEMORY_KIB = 1024, 4 * 1024 * 1024  # 1 MiB .. 4 GiB
MIN_PARALLELISM, MAX_PARALLELISM = 1, 64

_RECORD = re.compile(r"\$argon2id\$v=(\d{1,3})\$m=(\d{1,10}),t=(\d{1,10}),p=(\d{1,10})")
_SETTING_EXAMPLE = "m=65536,t=15,p=2"


class CostError(ValueError):
    """A cost setting or record that cannot be used; the message says which part is wrong."""


@dataclass(frozen=True)
class KdfCost:
    """Argon2id's cost: passes over memory (KiB), computed in parallel lanes."""

    time_cost: int
    memory_kib: int
    parallelism: int

    def __post_init__(self) -> None:
        for name, value, low, high, unit in (
            ("t (passes)", self.time_cost, MIN_TIME_COST, MAX_TIME_COST, ""),
            ("m (memory)", self.memory_kib, MIN_MEMORY_KIB, MAX_MEMORY_KIB, " KiB"),
            ("p (lanes)", self.parallelism, MIN_PARALLELISM, MAX_PARALLELISM, ""),
        ):
            if not low <= value <= high:
                raise CostError(f"{name} must be from {low} to {high}{unit}, not {value}")

    def record(self) -> str:
        """The form written into the keyring file (PHC string parameters, as in an Argon2 hash)."""
        return f"$argon2id$v={ARGON2_VERSION}$m={self.memory_kib},t={self.time_cost},p={self.parallelism}"

    def __str__(self) -> str:
        return f"Argon2id, {self.time_cost} passes over {self.memory_kib} KiB, {self.parallelism} lanes"


# What keyrings.cryptfile derives keys with: every file written before the record existed, and new files
# unless the setting asks for less.
LEGACY_COST = KdfCost(time_cost=15, memory_kib=64 * 1024, parallelism=2)
DEFAULT_COST = LEGACY_COST


def parse_record(text: str) -> KdfCost:
    """The cost a keyring file records; a CostError says what is wrong with a damaged or absurd record."""
    found = _RECORD.fullmatch(text.strip())
    if found is None:
        raise CostError("it is not of the form $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>")
    version, memory, passes, lanes = (int(part) for part in found.groups())
    if version != ARGON2_VERSION:
        raise CostError(f"it asks for Argon2 version {version}; only {ARGON2_VERSION} is known")
    return KdfCost(time_cost=passes, memory_kib=memory, parallelism=lanes)


def parse_setting(text: str) -> KdfCost:
    """A cost given as ``m=<KiB>,t=<passes>,p=<lanes>`` (any order, each once)."""
    values: dict[str, int] = {}
    for part in text.split(","):
        name, sep, number = part.strip().partition("=")
        name = name.strip()
        if not sep or name not in ("m", "t", "p") or name in values:
            raise CostError(f"give it as m=<KiB>,t=<passes>,p=<lanes>, e.g. {_SETTING_EXAMPLE}")
        try:
            values[name] = int(number.strip())
        except ValueError:
            raise CostError(f"{name} must be a whole number, not {number.strip()[:20]!r}") from None
    if len(values) != 3:
        raise CostError(f"give all three of m, t and p, e.g. {_SETTING_EXAMPLE}")
    return KdfCost(time_cost=values["t"], memory_kib=values["m"], parallelism=values["p"])


def cost_for_new_file(environ: Mapping[str, str] | None = None) -> KdfCost:
    """The cost to create a new keyring file with: the setting, when given, else the default. Never used
    for a file that exists (the cost is only chosen at creation, so a setting cannot weaken a file)."""
    text = (os.environ if environ is None else environ).get(NEW_FILE_COST_ENV, "").strip()
    if not text:
        return DEFAULT_COST
    try:
        return parse_setting(text)
    except CostError as exc:
        raise CostError(
            f"{NEW_FILE_COST_ENV} is not usable ({exc}); no keyring file was created. Fix it, "
            "or unset it for the default cost."
        ) from None
