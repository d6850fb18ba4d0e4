"""The demo never posts outside: every connector created in it delivers to the local sandbox; its home is
its own, said on screen, and `demo --reset` empties it (and only it)."""

from __future__ import annotations

import pytest

from tests.support import wait_for
from tui_currents import config, demo_setup
from tui_currents.engine import Engine, EngineOptions
from tui_currents.paths import Home
from tui_currents.secrets import write_key_env_var
from tui_currents.sources.demo import DemoGenerator

from .test_cli import cli

pytestmark = pytest.mark.timeout(60)
EMAIL_SEND = "users.messages.email.Send"


@pytest.mark.parametrize("region,endpoint", [("eu", None), ("us", None), ("custom", "https://example.com")])
async def test_a_connector_made_in_the_demo_delivers_only_to_the_sandbox(
    home: Home, monkeypatch: pytest.MonkeyPatch, region: str, endpoint: str | None
) -> None:
    config.add_workspace(home, config.Workspace("mine"))
    config.add_connector(
        home,
        config.Connector(
            name="Mine",
            workspace="mine",
            contact_email="me@example.com",
            region=region,
            endpoint=endpoint,
            events=[EMAIL_SEND],
            include_anonymous=True,
        ),
    )
    monkeypatch.setenv(write_key_env_var("Mine"), "a-key-typed-in-the-demo")
    engine = Engine(
        home,
        demo_setup.demo_secrets(home),
        EngineOptions(demo=True, start_receiver=False, delivery_overrides={"idle_poll_seconds": 0.05}),
    )
    await engine.start()
    try:
        record = DemoGenerator(seed=3).event(EMAIL_SEND)
        engine.ingest("mine", [record], source="test")
        delivered = await wait_for(
            lambda: any(m.get("messageId") == record["id"] for m in engine.sandbox.accepted), timeout=15
        )
        assert delivered, "the demo connector's event never reached the local sandbox"
    finally:
        await engine.stop()


def test_reset_empties_the_demo_home_and_refuses_any_other(home: Home, tmp_path) -> None:
    demo = Home.at(tmp_path / "demo").ensure()
    demo_setup.mark_demo_home(demo)
    config.add_workspace(demo, config.Workspace("left-over"))
    (demo.root / "logs").mkdir(exist_ok=True)
    (demo.root / "logs" / "old.log").write_text("old")
    demo_setup.reset(demo)
    assert not demo.config_file.exists() and not (demo.root / "logs" / "old.log").exists()
    assert demo_setup.is_demo_home(demo)

    # A real home is never emptied: the command refuses with exit 2 and leaves it whole.
    config.add_workspace(home, config.Workspace("prod"))
    refused = cli(home.root, "demo", "--reset")
    assert refused.returncode == 2
    assert "not a demo home" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert [w.name for w in config.load(home).workspaces] == ["prod"]
