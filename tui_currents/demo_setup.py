"""The demo: a workspace and connector that forward to a local Segment sandbox, so nothing leaves the machine.

The demo keeps its own home (unless one is given) with its own encrypted keyring file, so it never touches
a user's real configuration or keyring entries.
"""

from __future__ import annotations

import asyncio
import secrets as token_source
import shutil
from pathlib import Path

import platformdirs

from tui_currents import catalog, config
from tui_currents.paths import Home
from tui_currents.secrets import Secrets

DEMO_WORKSPACE = "demo"
DEMO_CONNECTOR = "Demo to local sandbox"
DEMO_EMAIL = "ops@example.com"
# The demo's keyring file only ever holds keys for the local sandbox, generated afresh on each run, so its
# passphrase protects nothing of value and can be fixed; real homes never use it.
DEMO_KEYRING_PASSPHRASE = "tui-currents-demo"


# A file in the root of every home the demo has used: `demo --reset` empties only such a home.
DEMO_MARKER = "DEMO-HOME"


def default_demo_home() -> Path:
    return Path(platformdirs.user_data_dir("tui-currents")) / "demo"


def mark_demo_home(home: Home) -> None:
    """Say in the home itself that it is the demo's (so a reset may empty it)."""
    marker = home.root / DEMO_MARKER
    if not marker.exists():
        marker.write_text("This folder is tui-currents' demo home; `tui-currents demo --reset` empties it.\n")


def is_demo_home(home: Home) -> bool:
    """True for a home the demo created or used: the default demo home, or one with the marker."""
    return (home.root / DEMO_MARKER).exists() or home.root == default_demo_home().absolute()


def reset(home: Home) -> None:
    """Empty a demo home (config, store, keyring file, logs) so the demo starts afresh.

    Raises ValueError for a home that is not the demo's: a real home is never emptied."""
    if not is_demo_home(home):
        raise ValueError(
            f"{home.root} is not a demo home, so it was left as it is; --reset only empties the demo's "
            "own home"
        )
    for folder in {home.root, home.data}:
        if not folder.exists():
            continue
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    home.ensure()
    mark_demo_home(home)


def demo_secrets(home: Home) -> Secrets:
    return Secrets(home, backend="file", passphrase=DEMO_KEYRING_PASSPHRASE, lazy=True)


async def start_sandbox_for(home: Home, secrets: Secrets):
    """Start the local Segment sandbox and point the demo connector at it (created on first run).

    Returns the sandbox and this run's write key for the demo connector. The key is generated for this run
    and accepted by this run's sandbox only, so it is kept in memory, not in the keyring (which would cost
    a slow key derivation at every start for nothing worth protecting)."""
    from tui_currents.sandbox import SegmentSandbox

    write_key = "demo_" + token_source.token_urlsafe(24)
    # Any key: connectors created in the demo deliver here too, with whatever key was typed for them.
    sandbox = SegmentSandbox(write_keys=None)
    await sandbox.start()
    cfg = config.load(home)
    if not any(w.name == DEMO_WORKSPACE for w in cfg.workspaces):
        cfg = config.add_workspace(home, config.Workspace(name=DEMO_WORKSPACE))
        # Storing it unlocks the keyring file (about a second): not on the event loop.
        await asyncio.to_thread(secrets.set_receiver_token, DEMO_WORKSPACE, secrets.generate_receiver_token())
    existing = next((c for c in cfg.connectors if c.name == DEMO_CONNECTOR), None)
    if existing is None:
        connector = config.Connector(
            name=DEMO_CONNECTOR,
            workspace=DEMO_WORKSPACE,
            contact_email=DEMO_EMAIL,
            region="custom",
            endpoint=sandbox.url,
            events=catalog.supported_types(),
            include_anonymous=True,
        )
        config.add_connector(home, connector)
    else:
        existing.endpoint = sandbox.url
        existing.region = "custom"
        config.update_connector(home, existing.name, existing)
    return sandbox, write_key
