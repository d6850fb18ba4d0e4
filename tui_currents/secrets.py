"""Write keys, receiver tokens and the SMTP password, kept in a keyring and never anywhere else.

Where they live, in order:

1. Read-only overrides from the environment, for containers: ``TUI_CURRENTS_WRITE_KEY_<CONNECTOR>`` and
   ``TUI_CURRENTS_RECEIVER_TOKEN_<WORKSPACE>`` (the name upper-cased, other characters as ``_``).
2. The OS keyring (macOS Keychain, Windows Credential Manager, GNOME Keyring/KWallet through Secret
   Service) when `keyring` finds one. File-based keyrings (plaintext or otherwise) are not taken for one.
3. Otherwise an encrypted file in the home (keyrings.cryptfile: Argon2 + AES-GCM), unlocked with a
   passphrase from ``TUI_CURRENTS_KEYRING_PASSPHRASE`` or given by the caller.

``TUI_CURRENTS_KEYRING=os|file`` (or the `backend` argument) forces one of the two. A home whose
encrypted file already exists keeps using it when a passphrase is at hand.

Values are cached in memory for the process (the encrypted file derives a key on every read, about half
a second); a change another process makes is picked up on the next read (file) or within a few seconds
(OS keyring). Secret values never appear in reprs, exceptions or log lines.

`Secrets` is the one way in. The keyring itself (its cache, the encrypted file, its lock and its errors)
is in `tui_currents.keyring_file`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets as token_source
import sys
import threading
from pathlib import Path
from typing import IO, Any

from tui_currents.keyring_file import (
    PASSPHRASE_ENV,
    Concealed,
    SecretsUnavailable,
    Vault,
    unlock_file,
)
from tui_currents.logs import register_secret
from tui_currents.paths import Home

BACKEND_ENV = "TUI_CURRENTS_KEYRING"
WRITE_KEY_ENV_PREFIX = "TUI_CURRENTS_WRITE_KEY_"
RECEIVER_TOKEN_ENV_PREFIX = "TUI_CURRENTS_RECEIVER_TOKEN_"
SMTP_PASSWORD_USER = "smtp-password"
WEBHOOK_URL_USER = "alert-webhook-url"
CLUSTER_PASSPHRASE_USER = "cluster-passphrase"
CLUSTER_PASSPHRASE_ENV = "TUI_CURRENTS_CLUSTER_PASSPHRASE"  # for services: overrides the keyring's
# systemd's LoadCredential= puts the passphrase in a file of this name in $CREDENTIALS_DIRECTORY.
PASSPHRASE_CREDENTIAL = "keyring-passphrase"

MIN_RECEIVER_TOKEN_CHARS = 16
_RECEIVER_TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9+/=._~-]+")  # Base64 plus -._~, as Braze accepts
_HINT_MIN_CHARS = 12  # shorter secrets get no visible tail: four characters would give too much away


class PassphraseRequired(SecretsUnavailable):
    """The encrypted keyring file is the way to go, but no passphrase was given (a terminal can ask)."""


def env_name_part(name: str) -> str:
    """A connector or workspace name as it appears in an environment variable: upper-case, others as _."""
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def write_key_env_var(connector: str) -> str:
    """The environment variable that overrides a connector's write key."""
    return WRITE_KEY_ENV_PREFIX + env_name_part(connector)


def receiver_token_env_var(workspace: str) -> str:
    """The environment variable that overrides a workspace's receiver token."""
    return RECEIVER_TOKEN_ENV_PREFIX + env_name_part(workspace)


def generate_receiver_token() -> str:
    """A new random receiver token (URL-safe Base64, 256 bits), in the alphabet Braze accepts."""
    return token_source.token_urlsafe(32)


def credential_passphrase() -> str | None:
    """The keyring passphrase systemd passed with `LoadCredential=keyring-passphrase:...`, if any."""
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        return None
    try:
        text = (Path(folder) / PASSPHRASE_CREDENTIAL).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return text.rstrip("\r\n") or None


def read_secret_from_stdin(stream: IO[str] | None = None) -> str:
    """Read one secret from standard input (for ``--write-key-stdin``): the trailing newline is dropped;
    empty input or several lines are refused with a ValueError that never quotes the input."""
    text = (stream or sys.stdin).read()
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text.strip():
        raise ValueError(
            'nothing was read from standard input; pipe the secret in, e.g. `printf %s "$KEY" | ...`'
        )
    if "\n" in text or "\r" in text:
        raise ValueError("standard input held more than one line; give only the secret")
    return text


# Unlocking the encrypted file costs an Argon2 derivation: each file is unlocked once per process and
# passphrase. The OS keyring backend object is shared the same way.
_registry_lock = threading.Lock()
_file_vaults: dict[str, tuple[bytes, Vault]] = {}
_os_vault: tuple[Any, Vault] | None = None


def _is_os_keyring(backend: Any) -> bool:
    """True for keyring's own OS backends (Keychain, Windows, Secret Service, libsecret, KWallet)."""
    from keyring.backends import chainer, fail, null

    if isinstance(backend, fail.Keyring | null.Keyring | chainer.ChainerBackend):
        return False
    if not type(backend).__module__.startswith("keyring.backends."):
        return False  # keyrings.alt / keyrings.cryptfile files and other plug-ins are not OS keyrings
    try:
        return float(backend.priority) > 0
    except Exception:
        return False


def _backend_label(backend: Any) -> str:
    return f"{type(backend).__module__}.{type(backend).__name__}"


def find_os_keyring(candidates: list[Any] | None = None) -> tuple[Any | None, str]:
    """The best usable OS keyring backend and "", or None and the reason none is usable.

    `candidates` defaults to what `keyring` would use (a chain is looked into, member by member).
    """
    if candidates is None:
        import keyring
        from keyring.backends import chainer

        current = keyring.get_keyring()
        candidates = list(current.backends) if isinstance(current, chainer.ChainerBackend) else [current]
    usable = [b for b in candidates if _is_os_keyring(b)]
    if usable:
        return max(usable, key=lambda b: float(b.priority)), ""
    offered = ", ".join(_backend_label(b) for b in candidates) or "nothing"
    return None, f"no OS keyring was found (keyring offers: {offered})"


def _env_overrides_present() -> bool:
    return any(
        name.startswith((WRITE_KEY_ENV_PREFIX, RECEIVER_TOKEN_ENV_PREFIX)) and value
        for name, value in os.environ.items()
    )


class Secrets:
    """The write keys, receiver tokens and SMTP password of one home.

    The keyring is chosen, and an existing encrypted file unlocked, when this is created, so problems
    surface early as SecretsUnavailable (or its PassphraseRequired / WrongPassphrase); a new encrypted
    file is only created when the first secret is stored. When environment overrides are set, a missing
    keyring is only reported once something needs it.
    """

    def __init__(
        self,
        home: Home | str | os.PathLike[str] | None = None,
        *,
        backend: str | None = None,
        passphrase: str | None = None,
        lazy: bool = False,
    ):
        self.home = Home.resolve(home)
        chosen = (backend or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
        if chosen not in ("auto", "os", "file"):
            source = "backend" if backend else BACKEND_ENV
            raise SecretsUnavailable(f"{source} must be 'os' or 'file' (or unset to choose), not {chosen!r}.")
        self.choice = chosen
        given = passphrase if passphrase is not None else os.environ.get(PASSPHRASE_ENV)
        if given is None:
            given = credential_passphrase()
        self._passphrase = Concealed(given or None)
        register_secret(given)
        self._vault: Vault | None = None
        self._problem: SecretsUnavailable | None = None
        self._opening = threading.Lock()
        # `lazy`: open (and unlock) the keyring at the first use rather than now. Unlocking the encrypted
        # file derives its key (about a second), which the demo's fixed passphrase cannot get wrong, so
        # its first screen need not wait for it.
        self._opened = False
        if not lazy:
            self._open_once(raise_problem=True)

    def _open_once(self, *, raise_problem: bool) -> None:
        with self._opening:
            if self._opened:
                return
            try:
                self._vault = self._open()
            except SecretsUnavailable as exc:
                if raise_problem and not _env_overrides_present():
                    raise
                self._problem = exc  # the overrides may be all this process needs
            self._opened = True

    def __repr__(self) -> str:
        where = self._vault.name if self._vault else "unavailable"
        return f"<Secrets {where} home={self.home.root}>"

    __str__ = __repr__

    # ------------------------------------------------------------------ choosing the keyring

    @property
    def backend_name(self) -> str | None:
        """Which keyring is used: "os" or "file"; None when only environment overrides can be read."""
        return self._vault.name if self._vault else None

    @property
    def description(self) -> str:
        """Where secrets are stored, in words (for the TUI's settings and the CLI)."""
        if self._vault:
            return self._vault.description
        return "environment variables only (no keyring available)"

    def _open(self) -> Vault:
        keyring_file = self.home.keyring_file
        if self.choice == "file":
            return self._open_file()
        if self.choice == "os":
            found, reason = find_os_keyring()
            if found is None:
                raise SecretsUnavailable(
                    f"The OS keyring was asked for, but {reason}. Run in a desktop "
                    "session with a keyring, or keep secrets in the encrypted file instead: "
                    f"set {BACKEND_ENV}=file and {PASSPHRASE_ENV}."
                )
            return self._open_os(found)
        # auto: a home that already has an encrypted file keeps it; else the OS keyring; else the file.
        if self._passphrase.value and keyring_file.exists():
            return self._open_file()
        found, reason = find_os_keyring()
        if found is not None:
            return self._open_os(found)
        if self._passphrase.value:
            return self._open_file()
        if keyring_file.exists():
            raise PassphraseRequired(
                f"The write keys and receiver tokens of this home are in the encrypted file {keyring_file} "
                f"({reason}). Give its passphrase in {PASSPHRASE_ENV}, or start tui-currents in a "
                "terminal to be asked for it."
            )
        raise PassphraseRequired(
            f"No keyring is available to keep write keys and receiver tokens: {reason}. Either set "
            f"{PASSPHRASE_ENV} to keep them in the encrypted file {keyring_file} (for services and "
            "containers); or run in a desktop session with a keyring (GNOME Keyring, KWallet, macOS "
            "Keychain, Windows Credential Manager); or give each one in the environment as "
            f"{WRITE_KEY_ENV_PREFIX}<CONNECTOR> and {RECEIVER_TOKEN_ENV_PREFIX}<WORKSPACE> (names "
            "upper-cased, other characters as _)."
        )

    def _open_os(self, backend: Any) -> Vault:
        global _os_vault
        with _registry_lock:
            if _os_vault is None or _os_vault[0] is not backend:
                description = f"the OS keyring ({type(backend).__name__})"
                _os_vault = (backend, Vault(backend, name="os", description=description))
            return _os_vault[1]

    def _open_file(self) -> Vault:
        path = self.home.keyring_file
        passphrase = self._passphrase.value
        if not passphrase or not passphrase.strip():
            action = "unlock" if path.exists() else "create"
            raise PassphraseRequired(
                f"The encrypted keyring file {path} needs a passphrase to {action} it: set "
                f"{PASSPHRASE_ENV}, or start tui-currents in a terminal to be asked for it."
            )
        digest = hashlib.sha256(passphrase.encode("utf-8")).digest()
        key = str(path)
        with _registry_lock:
            cached = _file_vaults.get(key)
            if cached is not None and hmac.compare_digest(cached[0], digest):
                return cached[1]
            # An existing file is unlocked now, so a wrong passphrase is reported up front; a new one is
            # only created when the first secret is stored.
            concealed = Concealed(passphrase)
            # Reading only (a new file is written in one go, under the lock, when the first secret is stored).
            backend = unlock_file(path, passphrase) if path.exists() else None
            vault = Vault(
                backend,
                name="file",
                description=f"the encrypted keyring file {path}",
                file=path,
                opener=lambda: unlock_file(path, concealed.value or ""),
            )
            _file_vaults[key] = (digest, vault)
            return vault

    def _require_vault(self) -> Vault:
        if not self._opened:
            self._open_once(raise_problem=False)
        if self._vault is None:
            assert self._problem is not None
            raise type(self._problem)(str(self._problem))
        return self._vault

    # ------------------------------------------------------------------ generic

    def _get(self, username: str, env_var: str | None, what: str) -> str | None:
        if env_var:
            value = os.environ.get(env_var)
            if value:
                register_secret(value)
                return value
        value = self._require_vault().get(username, what)
        register_secret(value)
        return value

    def _source(self, username: str, env_var: str, what: str) -> str | None:
        if os.environ.get(env_var):
            return "environment"
        return "keyring" if self._get(username, None, what) is not None else None

    def _set(self, username: str, value: str, what: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"the {what} is empty")
        register_secret(value)
        self._require_vault().set(username, value, what)

    def version(self) -> object:
        """A value that changes whenever stored secrets may have changed: for the encrypted file its
        identity, time and size (one stat, cheap enough for every request); for the OS keyring, every few
        seconds. Lets a caller keep what it derived from secrets until they may have changed."""
        if self._vault is None:
            return None  # environment overrides only: fixed for the life of the process
        return self._vault.version()

    @staticmethod
    def generate_receiver_token() -> str:
        """A new random receiver token (not stored; pass it to `set_receiver_token`)."""
        return generate_receiver_token()

    @staticmethod
    def hint(value: str | None) -> str | None:
        """The last four characters after an ellipsis ("…abcd") for recognising a stored secret; just
        "…" for short values; None when nothing is stored."""
        if not value:
            return None
        return "…" + value[-4:] if len(value) >= _HINT_MIN_CHARS else "…"

    # ------------------------------------------------------------------ write keys

    def get_write_key(self, connector: str) -> str | None:
        """The connector's Segment write key: its environment override, else the keyring; None if unset."""
        return self._get(
            f"write-key:{connector}", write_key_env_var(connector), f"write key of {connector!r}"
        )

    def set_write_key(self, connector: str, value: str) -> None:
        """Store the connector's write key in the keyring (an environment override still wins on reads)."""
        if isinstance(value, str) and any(ch.isspace() for ch in value):
            raise ValueError(f"the write key of {connector!r} contains whitespace; give the key alone")
        self._set(f"write-key:{connector}", value, f"write key of {connector!r}")

    def delete_write_key(self, connector: str) -> None:
        """Remove the connector's write key from the keyring (no error if none is stored)."""
        self._require_vault().delete(f"write-key:{connector}", f"write key of {connector!r}")

    def has_write_key(self, connector: str) -> bool:
        return self.get_write_key(connector) is not None

    def write_key_hint(self, connector: str) -> str | None:
        """A hint like "…abcd" for the editor, or None when the connector has no write key."""
        return self.hint(self.get_write_key(connector))

    def write_key_source(self, connector: str) -> str | None:
        """Where the write key comes from: "environment" (an override is set), "keyring", or None."""
        return self._source(
            f"write-key:{connector}", write_key_env_var(connector), f"write key of {connector!r}"
        )

    # ------------------------------------------------------------------ receiver tokens

    def get_receiver_token(self, workspace: str) -> str | None:
        """The bearer token Braze must send to /currents/<workspace>; None if unset."""
        return self._get(
            f"receiver-token:{workspace}",
            receiver_token_env_var(workspace),
            f"receiver token of {workspace!r}",
        )

    def set_receiver_token(self, workspace: str, value: str) -> None:
        """Store a workspace's receiver token (Base64 characters plus -._~, at least 16 of them)."""
        what = f"receiver token of {workspace!r}"
        if isinstance(value, str) and value and not _RECEIVER_TOKEN_ALPHABET.fullmatch(value):
            raise ValueError(f"the {what} may only hold letters, digits and + / = . _ ~ -")
        if isinstance(value, str) and value and len(value) < MIN_RECEIVER_TOKEN_CHARS:
            raise ValueError(f"the {what} is too short: use at least {MIN_RECEIVER_TOKEN_CHARS} characters")
        self._set(f"receiver-token:{workspace}", value, what)

    def delete_receiver_token(self, workspace: str) -> None:
        self._require_vault().delete(f"receiver-token:{workspace}", f"receiver token of {workspace!r}")

    def has_receiver_token(self, workspace: str) -> bool:
        return self.get_receiver_token(workspace) is not None

    def receiver_token_hint(self, workspace: str) -> str | None:
        return self.hint(self.get_receiver_token(workspace))

    def receiver_token_source(self, workspace: str) -> str | None:
        return self._source(
            f"receiver-token:{workspace}",
            receiver_token_env_var(workspace),
            f"receiver token of {workspace!r}",
        )

    # ------------------------------------------------------------------ SMTP password

    def get_smtp_password(self) -> str | None:
        return self._get(SMTP_PASSWORD_USER, None, "SMTP password")

    def set_smtp_password(self, value: str) -> None:
        self._set(SMTP_PASSWORD_USER, value, "SMTP password")

    def delete_smtp_password(self) -> None:
        self._require_vault().delete(SMTP_PASSWORD_USER, "SMTP password")

    def has_smtp_password(self) -> bool:
        return self.get_smtp_password() is not None

    # ------------------------------------------------------------------ alert webhook

    def get_webhook_url(self) -> str | None:
        """The alert webhook's URL (it holds its own credential, as Slack's do); None if unset."""
        return self._get(WEBHOOK_URL_USER, None, "alert webhook URL")

    def set_webhook_url(self, value: str) -> None:
        self._set(WEBHOOK_URL_USER, value, "alert webhook URL")

    def delete_webhook_url(self) -> None:
        self._require_vault().delete(WEBHOOK_URL_USER, "alert webhook URL")

    # ------------------------------------------------------------------ cluster passphrase

    def get_cluster_passphrase(self) -> str | None:
        """The passphrase that opens the cluster's sealed secrets: its environment override, else the
        keyring; None if unset."""
        return self._get(CLUSTER_PASSPHRASE_USER, CLUSTER_PASSPHRASE_ENV, "cluster passphrase")

    def set_cluster_passphrase(self, value: str) -> None:
        self._set(CLUSTER_PASSPHRASE_USER, value, "cluster passphrase")

    def delete_cluster_passphrase(self) -> None:
        self._require_vault().delete(CLUSTER_PASSPHRASE_USER, "cluster passphrase")
