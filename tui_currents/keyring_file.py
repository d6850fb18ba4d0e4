"""The keyring secrets are kept in, below `Secrets`: one backend (the OS keyring or the encrypted file) with
the process's cache of what was read from it, and the encrypted keyring file itself.

The encrypted file is keyrings.cryptfile's (Argon2 + AES-GCM), written whole and atomically (0600) on every
change. Each write or delete holds an OS lock on ``keyring.cfg.lock`` beside it and starts from the file as
it is at that moment, so processes storing secrets at once never drop each other's. A file that disappears
or is damaged while secrets are in use is reported as KeyringUnreadable, never taken for "nothing stored",
and is never overwritten. Secret values never appear in reprs, exceptions or log lines.

The file records the Argon2id cost its values are sealed with (`tui_currents.keyring_cost`), chosen when it
is created; every reader and writer derives keys with what the file says.
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from tui_currents.keyring_cost import LEGACY_COST, CostError, KdfCost, cost_for_new_file, parse_record
from tui_currents.paths import PRIVATE_FILE_MODE, exclusive_lock, make_private_dir, write_private

SERVICE = "tui-currents"
PASSPHRASE_ENV = "TUI_CURRENTS_KEYRING_PASSPHRASE"

# How long a value read from the OS keyring is trusted before it is read again (another process may
# change it; the OS keyring is cheap to ask, unlike the encrypted file, whose changes show in its mtime).
OS_CACHE_SECONDS = 5.0


class SecretsUnavailable(Exception):
    """No keyring can be used, or the keyring failed; the message says why and what to do."""


class WrongPassphrase(SecretsUnavailable):
    """The passphrase given does not unlock the encrypted keyring file."""


class KeyringUnreadable(SecretsUnavailable):
    """Secrets are stored but cannot be read now: the keyring file went missing, is damaged or does not
    decrypt, or the keyring failed. Unlike a None answer ("nothing stored"), this says nothing about
    whether a secret exists: a receiver must ask the sender to retry rather than refuse it."""


class _DamagedFile(Exception):
    """The keyring file is not a whole keyring file; the message (no values) says what is wrong."""


_SETTINGS_SECTION = "keyring_2Dsetting"  # "keyring-setting" as keyrings.cryptfile escapes it
_REFERENCE_OPTION = "password_20reference"
_COST_OPTION = "kdf"  # the Argon2id cost record (keyring_cost.KdfCost.record)


def lock_file_for(keyring_file: Path) -> Path:
    """The lock file that serialises writes of `keyring_file` between processes."""
    return keyring_file.with_name(keyring_file.name + ".lock")


class Concealed:
    """Holds a sensitive string so that repr(), vars() and tracebacks of the holder do not show it."""

    __slots__ = ("value",)

    def __init__(self, value: str | None):
        self.value = value

    def __repr__(self) -> str:
        return "<concealed>" if self.value else "<none>"


def _safe_reason(exc: BaseException) -> str:
    # Only the kind of failure: a backend's own message is not trusted to leave values out.
    if isinstance(exc, _DamagedFile):
        return str(exc)  # our own words, without values
    if isinstance(exc, OSError):
        return f"{exc.strerror or type(exc).__name__}" + (f" ({exc.filename})" if exc.filename else "")
    return type(exc).__name__


class Vault:
    """One keyring backend plus the process's cache of what was read from it."""

    def __init__(
        self,
        backend: Any,
        *,
        name: str,
        description: str,
        file: Path | None = None,
        opener: Callable[[], Any] | None = None,
    ):
        self.backend = backend  # None until `opener` has unlocked (or created) the file
        self._opener = opener
        self.name = name  # "os" | "file"
        self.description = description
        self._file = file
        self._lock = threading.RLock()
        self._values: dict[str, tuple[Concealed, float]] = {}
        self._stamp = self._file_stamp()
        # Once the file has existed, its disappearance means secrets were lost, not that none were stored.
        self._had_file = self._stamp is not None

    def __repr__(self) -> str:
        return f"<keyring {self.name}: {self.description}>"

    def _unlocked(self) -> Any:
        if self.backend is None:
            assert self._opener is not None
            self.backend = self._opener()
        return self.backend

    def _nothing_stored(self) -> bool:
        # A keyring file that does not exist yet holds nothing: no need to create it just to read.
        return self.backend is None and self._file is not None and not self._file.exists()

    def _missing_file(self) -> bool:
        """The keyring file existed while this process used it and is gone now."""
        return self._file is not None and self._had_file and self._stamp is None

    def _gone(self, what: str) -> KeyringUnreadable:
        return KeyringUnreadable(
            f"Could not read the {what}: the encrypted keyring file {self._file} is missing. Put it back "
            "(from a backup), or store the write keys and receiver tokens again."
        )

    def version(self) -> object:
        """A value that changes whenever what is stored may have changed (for the file: one stat)."""
        if self._file is not None:
            return self._file_stamp()
        return int(time.monotonic() // OS_CACHE_SECONDS)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Thread lock, plus the file's OS lock between processes, with the cache checked against the
        file as it is now (another process may have written just before the lock was taken)."""
        with self._lock:
            if self._file is None:
                yield
                return
            with exclusive_lock(lock_file_for(self._file)):
                self._check_file_changed()
                yield
                # Our own write, stamped while no other process can write: the cache stays valid.
                self._stamp = self._file_stamp()
                self._had_file = self._had_file or self._stamp is not None

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self._file is None:
            return None
        try:
            st = self._file.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _fresh(self, read_at: float) -> bool:
        if self._file is not None:
            return True  # the file's stamp is checked instead
        return time.monotonic() - read_at < OS_CACHE_SECONDS

    def _check_file_changed(self) -> None:
        if self._file is not None:
            stamp = self._file_stamp()
            if stamp != self._stamp:
                self._values.clear()
                self._stamp = stamp

    def get(self, username: str, what: str) -> str | None:
        with self._lock:
            self._check_file_changed()
            cached = self._values.get(username)
            if cached is not None and self._fresh(cached[1]):
                return cached[0].value
            if self._missing_file():
                raise self._gone(what)
            if self._nothing_stored():
                return None
            backend = self._unlocked()
            try:
                value: str | None = backend.get_password(SERVICE, username)
            except Exception as exc:
                if self._file is not None and not self._file.exists():
                    raise self._gone(what) from None
                raise KeyringUnreadable(
                    f"Could not read the {what} from {self.description}: {_safe_reason(exc)}. Nothing was "
                    "changed; put back a good copy of the file, or unlock the keyring."
                ) from None
            self._values[username] = (Concealed(value), time.monotonic())
            self._had_file = self._had_file or self._file is not None
            return value

    def set(self, username: str, value: str, what: str) -> None:
        with self._lock:
            try:
                if self._file is None:
                    self._unlocked().set_password(SERVICE, username, value)
                else:
                    self._set_in_file(self._file, username, value)
            except SecretsUnavailable:
                raise  # already says what and what to do (a damaged file, a wrong passphrase)
            except Exception as exc:
                raise SecretsUnavailable(
                    f"Could not store the {what} in {self.description}: {_safe_reason(exc)}. "
                    "The previous value, if any, is unchanged."
                ) from None
            self._values[username] = (Concealed(value), time.monotonic())

    def _set_in_file(self, file: Path, username: str, value: str) -> None:
        with exclusive_lock(lock_file_for(file)):
            backend = self._unlocked()  # creates the file on first use: one process at a time
        # Encrypting derives a key (Argon2, up to seconds at the default cost): done before taking the lock,
        # so that concurrent writers wait only for each other's read-modify-write of the file.
        sealed = backend.seal(SERVICE, username, value)
        with self._writing():
            if not file.exists():
                # Gone since it was unlocked: a new file, as on first use, with the cost `sealed` was made
                # with (the cost of the file it replaces).
                backend.start_file()
            if not backend.write_sealed(SERVICE, username, sealed):
                # The file was replaced by one of another cost since sealing: seal again, for it.
                backend.write_sealed(SERVICE, username, backend.seal(SERVICE, username, value))

    def delete(self, username: str, what: str) -> None:
        from keyring.errors import PasswordDeleteError

        with self._lock:
            try:
                with self._writing():
                    if self._nothing_stored() or (self._file is not None and not self._file.exists()):
                        return  # no file: nothing stored to remove
                    with contextlib.suppress(PasswordDeleteError):  # not stored: already the wanted outcome
                        self._unlocked().delete_password(SERVICE, username)
            except Exception as exc:
                raise SecretsUnavailable(
                    f"Could not remove the {what} from {self.description}: {_safe_reason(exc)}."
                ) from None
            self._values[username] = (Concealed(None), time.monotonic())


class Sealed(NamedTuple):
    """A value encrypted for the keyring file (no plaintext), and the cost its key was derived with."""

    text: str
    cost: KdfCost

    def __repr__(self) -> str:
        return f"<sealed value, {self.cost}>"


@functools.cache
def _crypt_file_class() -> type:
    """keyrings.cryptfile's CryptFileKeyring with atomic 0600 writes (the stock one rewrites in place)."""
    from jaraco.classes import properties
    from keyring.errors import PasswordDeleteError
    from keyrings.cryptfile.cryptfile import CryptFileKeyring
    from keyrings.cryptfile.escape import escape

    class PrivateCryptFileKeyring(CryptFileKeyring):
        cost: KdfCost  # what keys are derived with: the library's, until a file's record says otherwise

        def __init__(self) -> None:
            super().__init__()
            self._set_cost(LEGACY_COST)

        @properties.classproperty
        @classmethod
        def priority(cls) -> float:
            # Only ever used here, with our file and passphrase: keep it out of keyring's own detection.
            raise RuntimeError("used by tui-currents directly, not offered as a default keyring")

        def _read_config(self) -> configparser.RawConfigParser:
            """The file as it is now, checked whole: a damaged file raises _DamagedFile, so that it is
            neither taken for "nothing stored" nor overwritten. A missing file reads as empty."""
            config = configparser.RawConfigParser()
            try:
                with open(self.file_path, encoding="utf-8") as handle:
                    text = handle.read()
            except FileNotFoundError:
                return config
            except UnicodeDecodeError:
                raise _DamagedFile("it is not a text file") from None
            if not text.strip():
                raise _DamagedFile("it is empty")
            # configparser ends every section with a blank line; a file cut short does not.
            if not text.endswith("\n\n"):
                raise _DamagedFile("it ends in the middle of an entry (cut short?)")
            try:
                config.read_string(text, source=str(self.file_path))
            except configparser.Error:
                raise _DamagedFile("it is not a keyring file") from None
            if not config.has_option(_SETTINGS_SECTION, _REFERENCE_OPTION):
                raise _DamagedFile("its keyring settings are missing")
            return config

        def _use_cost_of(self, config: configparser.RawConfigParser) -> KdfCost:
            """Derive keys with the cost `config` (the file as read) records; a file without the record
            has the library's cost (every file written before it existed). A missing file (no sections)
            changes nothing. A damaged or absurd record raises _DamagedFile, never falls back."""
            if config.sections():
                record = config.get(_SETTINGS_SECTION, _COST_OPTION, fallback=None)
                try:
                    cost = LEGACY_COST if record is None else parse_record(record)
                except CostError as exc:
                    raise _DamagedFile(f"its key derivation cost record is unusable: {exc}") from None
                self._set_cost(cost)
            return self.cost

        def _set_cost(self, cost: KdfCost) -> None:
            self.cost = cost
            # What the library's _create_cipher reads.
            self.time_cost = cost.time_cost
            self.memory_cost = cost.memory_kib
            self.parallelism = cost.parallelism

        def _check_file(self) -> bool:
            # The stock check takes a damaged file for "no file" and starts a new one over it.
            config = self._read_config()
            if not config.sections():
                return False
            self._use_cost_of(config)
            with contextlib.suppress(AttributeError):  # a file without a scheme is accepted, as stock
                self._check_scheme(config)  # takes the AES mode the file was written with
            self._check_version(config)
            return True

        def _init_file(self) -> None:
            # Written in one go (the stock version writes three times, showing half a file to readers).
            if os.path.exists(self.file_path):
                self._read_config()  # raises _DamagedFile: an existing file is never started over
            # Security: the cost is chosen here only, when a new file is created; an existing file is
            # always opened with the cost it records, so a setting can never weaken it.
            try:
                self._set_cost(cost_for_new_file())
            except CostError as exc:
                raise SecretsUnavailable(str(exc)) from None
            self.start_file()

        def start_file(self) -> None:
            """Write a new, empty keyring file for the passphrase set, recording the cost in use (the caller
            holds the lock)."""
            config = configparser.RawConfigParser()
            config.add_section(_SETTINGS_SECTION)
            config.set(_SETTINGS_SECTION, _COST_OPTION, self.cost.record())
            assoc = self._generate_assoc("keyring-setting", "password reference")
            sealed = self.encrypt(b"password reference value", assoc)
            config.set(_SETTINGS_SECTION, _REFERENCE_OPTION, "\n" + base64.encodebytes(sealed).decode())
            config.set(_SETTINGS_SECTION, escape("scheme"), self.scheme)
            config.set(_SETTINGS_SECTION, escape("version"), self.version)
            self._save_config(config)

        def seal(self, service: str, username: str, password: str) -> Sealed:
            """`password` encrypted as set_password would store it, for write_sealed under the lock."""
            config = self._read_config()
            cost = self._use_cost_of(config)
            self._check_version(config)  # the file's version decides the associated data
            assoc = self._generate_assoc(service, username)
            text = "\n" + base64.encodebytes(self.encrypt(password.encode("utf-8"), assoc)).decode()
            return Sealed(text, cost)

        def write_sealed(self, service: str, username: str, sealed: Sealed) -> bool:
            """Store a value from `seal` into the file as it is now (the caller holds the lock); False,
            nothing written, if the file now records another cost than the value was sealed with."""
            config = self._read_config()
            if config.sections() and self._use_cost_of(config) != sealed.cost:
                return False
            self._save_value(config, service, username, sealed.text)
            return True

        def get_password(self, service: str, username: str) -> str | None:
            # As the stock reader, over the checked file (the stock one reads a damaged file as empty),
            # with the cost the file records.
            config = self._read_config()
            self._use_cost_of(config)
            self._check_version(config)
            assoc = self._generate_assoc(service, username)
            try:
                sealed = base64.decodebytes(config.get(escape(service), escape(username)).encode())
            except (configparser.NoOptionError, configparser.NoSectionError):
                return None
            plain: bytes
            try:
                plain = self.decrypt(sealed, assoc)
                return plain.decode("utf-8")
            except ValueError:
                plain = self.decrypt(sealed)  # entries written without associated data
                return plain.decode("utf-8")

        def _save_config(self, config: configparser.RawConfigParser) -> None:
            from io import StringIO

            buffer = StringIO()
            config.write(buffer)
            write_private(self.file_path, buffer.getvalue())

        def _write_config_value(self, service: str, key: str, value: str) -> None:
            self._save_value(self._read_config(), service, key, value)

        def _save_value(
            self, config: configparser.RawConfigParser, service: str, key: str, value: str
        ) -> None:
            """`config` (the file as read) with `value` stored under `service` and `key`, saved."""
            section = escape(service)
            if not config.has_section(section):
                config.add_section(section)
            config.set(section, escape(key), value)
            self._save_config(config)

        def delete_password(self, service: str, username: str) -> None:
            config = self._read_config()
            try:
                removed = config.remove_option(escape(service), escape(username))
            except configparser.NoSectionError:
                removed = False
            if not removed:
                raise PasswordDeleteError("not found")
            self._save_config(config)

    return PrivateCryptFileKeyring


def unlock_file(path: Path, passphrase: str) -> Any:
    """The encrypted keyring file at `path`, unlocked with `passphrase` (created if it does not exist);
    a damaged file, a wrong passphrase or another failure is a SecretsUnavailable, the file left as is."""
    make_private_dir(path.parent)
    if path.exists():
        os.chmod(path, PRIVATE_FILE_MODE)
    backend = _crypt_file_class()()
    backend.file_path = str(path)
    try:
        backend.keyring_key = passphrase  # unlocks an existing file, or creates a new one
    except _DamagedFile as exc:
        raise KeyringUnreadable(
            f"{path} could not be opened as an encrypted keyring ({exc}); it was left untouched. Put "
            "back a good copy of it, or move it away and store the write keys and receiver tokens again."
        ) from None
    except ValueError as exc:
        if "MAC check failed" in str(exc) or "Incorrect Password" in str(exc):
            raise WrongPassphrase(
                f"The passphrase does not unlock {path}. Nothing was changed. Give the passphrase "
                f"the file was created with ({PASSPHRASE_ENV} or the prompt); if it is lost, move the "
                "file away and store the write keys and receiver tokens again."
            ) from None
        raise SecretsUnavailable(
            f"{path} could not be opened as an encrypted keyring ({_safe_reason(exc)}); it was left "
            "untouched. Move it away to start a new one."
        ) from None
    except SecretsUnavailable:
        raise  # says what and what to do (a cost setting that cannot be used)
    except Exception as exc:
        raise SecretsUnavailable(
            f"{path} could not be opened as an encrypted keyring ({_safe_reason(exc)}); it was left "
            "untouched. Move it away to start a new one."
        ) from None
    return backend
