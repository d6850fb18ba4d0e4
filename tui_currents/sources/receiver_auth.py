"""The receiver's token check: the same work for every request, and no keyring read on the request path.

Whether a workspace exists must not show in how long a refusal takes, so every request does the same
steps: hash the given token, look at the keyring's version (one stat), look the workspace up, and compare
digests with hmac.compare_digest: against the workspace's token digest, or against a per-process random
digest when the workspace is unknown or has no token. Token digests are kept per workspace until the
keyring changes (Secrets.version), so a known workspace costs no thread hop either; a token is read from
the keyring (in a worker thread) only after a change, and the engine does that ahead of requests.

A token that cannot be read (keyring file missing, damaged or locked) is not "no token": those requests are
answered 503 with Retry-After (Braze retries; on 401 it drops the batch), the workspace shows in
`problems()` for status and the TUI, and it is logged once when it starts and once when it ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tui_currents.logs import WarnOnce
from tui_currents.secrets import SecretsUnavailable, receiver_token_env_var

log = logging.getLogger("tui_currents.receiver")

TokenProvider = Callable[[str], str | None]
TokenVersion = Callable[[], object]
UNVERSIONED_SECONDS = 1.0  # how long a token read through a provider without a version is kept


class KeyringTrouble(Exception):
    """The workspace's token cannot be read now; the message says why and what to do (no values)."""


@dataclass(frozen=True, slots=True)
class _Entry:
    version: object
    digest: bytes | None  # sha256 of the token; None: no token stored
    problem: str | None = None  # why the token cannot be read


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def _problem_of(exc: Exception) -> str:
    # Our own messages say what happened and what to do, without values; anything else only by its type.
    if isinstance(exc, SecretsUnavailable):
        return str(exc)
    return f"the keyring failed ({type(exc).__name__}); check that it is unlocked"


class TokenCheck:
    """Checks bearer tokens against the workspaces' receiver tokens, kept as digests per workspace."""

    def __init__(
        self,
        token_provider: TokenProvider,
        token_version: TokenVersion | None = None,
        warnings: WarnOnce | None = None,
    ):
        self.token_provider = token_provider
        if token_version is None:
            owner = getattr(token_provider, "__self__", None)  # Secrets.get_receiver_token: its version
            token_version = getattr(owner, "version", None) or self._seconds
        self.token_version = token_version
        self.warnings = warnings or WarnOnce(log)
        self._dummy = hashlib.sha256(os.urandom(32)).digest()  # compared with when there is no token
        self._entries: dict[str, _Entry] = {}
        self._loading: dict[str, asyncio.Task[_Entry]] = {}

    @staticmethod
    def _seconds() -> object:
        return int(time.monotonic() // UNVERSIONED_SECONDS)

    async def authorised(self, workspace: str, known: bool, header: str) -> bool:
        """Whether `header` (the Authorization value) holds `workspace`'s token. `known`: the workspace is
        configured. Raises KeyringTrouble when its token cannot be read."""
        scheme, _, given = header.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return False
        offered = _digest(given)
        version = self.token_version()
        entry = self._entries.get(workspace) if known else None
        if known and (entry is None or entry.version != version):
            entry = await self._load(workspace, version)  # only after a change: the engine reads ahead
        expected = entry.digest if entry is not None and entry.digest is not None else self._dummy
        matches = hmac.compare_digest(offered, expected)
        if entry is None:
            self.warnings.warn(
                "unknown workspace",
                workspace[:80],
                "receiver: requests for %r, which is not a configured workspace, are answered 401 (logged "
                "once); check the URL in Braze's Currents settings",
                workspace[:80],
            )
            return False
        if entry.problem is not None:
            raise KeyringTrouble(entry.problem)
        if entry.digest is None:
            self.warnings.warn(
                "no receiver token",
                workspace,
                "receiver: workspace %r has no receiver token, so its requests are refused (401, logged "
                "once); store one for it in the keyring (the TUI's workspace screen) or set %s",
                workspace,
                receiver_token_env_var(workspace),
            )
            return False
        if not matches:
            self.warnings.warn(
                "wrong receiver token",
                workspace,
                "receiver: a request for %r carried a wrong receiver token (401, logged once); check the "
                "token in Braze's Currents settings",
                workspace,
            )
        return matches

    async def refresh(self, workspaces: Iterable[str]) -> None:
        """Read the tokens of these workspaces that changed since they were read (engine side, so that
        requests find them ready and an unreadable keyring shows before a request fails)."""
        version = self.token_version()
        for workspace in workspaces:
            entry = self._entries.get(workspace)
            if entry is None or entry.version != version:
                await self._load(workspace, version)

    def problems(self, workspaces: Iterable[str]) -> dict[str, str]:
        """Per workspace among `workspaces`, why its receiver token cannot be read now."""
        found = {}
        for workspace in workspaces:
            entry = self._entries.get(workspace)
            if entry is not None and entry.problem is not None:
                found[workspace] = entry.problem
        return found

    async def _load(self, workspace: str, version: object) -> _Entry:
        task = self._loading.get(workspace)
        if task is None:  # requests arriving meanwhile wait for the same read
            task = asyncio.create_task(asyncio.to_thread(self._read, workspace, version))
            self._loading[workspace] = task
            task.add_done_callback(lambda _: self._loading.pop(workspace, None))
        entry = await asyncio.shield(task)
        self._keep(workspace, entry)
        return entry

    def _read(self, workspace: str, version: object) -> _Entry:
        try:
            token = self.token_provider(workspace)
        except Exception as exc:
            return _Entry(version, None, _problem_of(exc))
        return _Entry(version, _digest(token) if token else None)

    def _keep(self, workspace: str, entry: _Entry) -> None:
        before = self._entries.get(workspace)
        if before is entry:
            return
        self._entries[workspace] = entry
        was_unreadable = before is not None and before.problem is not None
        if entry.problem is not None and not was_unreadable:
            log.error(
                "receiver: the receiver token of %r cannot be read: %s Its requests are answered 503 with "
                "Retry-After, so Braze keeps them and retries, until it can be read again.",
                workspace,
                entry.problem,
            )
        elif entry.problem is None and was_unreadable:
            log.warning(
                "receiver: the receiver token of %r can be read again; requests are accepted", workspace
            )
