"""The connector editor by keyboard: create end to end (config file and keyring file), edit a selection,
inline reasons, the overlap rule shown before saving, the stored key kept when left empty."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tui_currents import catalog, config
from tui_currents.secrets import Secrets, write_key_env_var
from tui_currents.tui.screens.connectors import ConnectorsScreen
from tui_currents.tui.screens.editor import EditorScreen
from tui_currents.tui.widgets.event_tree import Branch, EventTree

from .helpers import EMAIL_AND_PUSH, make_app, ready, wait_until

pytestmark = pytest.mark.timeout(90)

WRITE_KEY = "sk_live_demo_0123456789abcdefWXYZ"
SMS = [e.event_type for e in catalog.CATALOG if e.group == "SMS"]


def error_text(screen, field: str) -> str:
    box = screen.query_one(f"#error-{field}")
    return str(box.render()) if box.display else ""


async def open_editor(pilot, key: str = "n") -> EditorScreen:
    await pilot.press(key)
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, EditorScreen))
    await pilot.pause(0.05)
    return pilot.app.screen


async def type_into(pilot, screen, field: str, text: str, *, keys: bool = False) -> None:
    """Fill a field: by key presses (`keys=True`), or by setting it as a paste would (faster)."""
    box = screen.query_one(f"#{field}", Input)
    box.focus()
    await pilot.pause()
    if keys:
        await pilot.press(*text)
    else:
        box.value = text
        await pilot.pause()


async def select_group(pilot, screen, key: str) -> None:
    tree = screen.query_one(EventTree)
    node = next(n for n in tree._walk_nodes() if isinstance(n.data, Branch) and n.data.key == key)
    tree.focus()
    tree.move_cursor(node)
    await pilot.pause()
    await pilot.press("space")


async def test_create_a_connector_end_to_end(home):
    secrets = Secrets(home)
    app = make_app(home, secrets=secrets)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = await open_editor(pilot)
        await type_into(pilot, screen, "name", "Production", keys=True)
        await type_into(pilot, screen, "contact_email", "ops@example.com")
        await type_into(pilot, screen, "workspace", "marketing")
        await type_into(pilot, screen, "write_key", WRITE_KEY)
        assert WRITE_KEY not in str(screen.query_one("#write_key").render())  # masked
        screen.query_one("#region").focus()
        await pilot.press("down", "enter")  # US -> EU
        screen.query_one("#include_anonymous").focus()
        await pilot.press("space")
        await select_group(pilot, screen, "Messages/Email")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConnectorsScreen), timeout=20)

    saved = config.load(home).connector("Production")
    assert saved.workspace == "marketing" and saved.contact_email == "ops@example.com"
    assert saved.region == "eu" and saved.endpoint is None and saved.include_anonymous
    assert set(saved.events) == {e.event_type for e in catalog.CATALOG if e.group == "Email" and e.supported}
    assert [w.name for w in config.load(home).workspaces] == ["marketing"]  # added on the way
    # The key is in the encrypted keyring file (read back through a fresh keyring), not in the config file.
    assert Secrets(home).get_write_key("Production") == WRITE_KEY
    assert WRITE_KEY not in home.config_file.read_text()
    assert Secrets(home).has_receiver_token("marketing")


async def test_reasons_show_next_to_the_fields_and_nothing_is_saved(home):
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = await open_editor(pilot)
        await type_into(pilot, screen, "contact_email", "not-an-email", keys=True)
        await wait_until(pilot, lambda: "not an email address" in error_text(screen, "contact_email"))
        assert error_text(screen, "name") == ""  # untouched fields stay quiet while typing
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: error_text(screen, "name") != "")
        assert "is empty" in error_text(screen, "name")
        assert "write key" in error_text(screen, "write_key")
        assert "at least one event type" in error_text(screen, "events")
        assert "Not saved" in str(screen.query_one("#save-status").render())
        assert isinstance(app.screen, EditorScreen)
    assert config.load(home).connectors == []


async def test_the_overlap_rule_shows_before_saving_and_refuses(seeded, monkeypatch):
    # The new connector's key comes from an environment override: the keyring file is tested above.
    monkeypatch.setenv(write_key_env_var("Second"), "wk_second_0123456789")
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = await open_editor(pilot)
        await type_into(pilot, screen, "name", "Second")
        await type_into(pilot, screen, "contact_email", "two@example.com")
        await type_into(pilot, screen, "workspace", "marketing")
        await select_group(pilot, screen, "Messages/Email")  # Production already forwards Email
        await wait_until(pilot, lambda: "already forwards" in error_text(screen, "events"))
        message = error_text(screen, "events")
        assert "'Production'" in message and "users.messages.email.Send" in message
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert isinstance(app.screen, EditorScreen)
        assert "Second" not in [c.name for c in config.load(seeded.home).connectors]
        # Choosing types nobody else forwards clears it, and the save goes through.
        await pilot.press("space")  # Email off again
        await select_group(pilot, screen, "Messages/WhatsApp")
        await wait_until(pilot, lambda: error_text(screen, "events") == "")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConnectorsScreen), timeout=20)
    second = config.load(seeded.home).connector("Second")
    assert {catalog.find(e).group for e in second.events} == {"WhatsApp"}


async def test_edit_a_selection_keeps_the_stored_key_and_the_name(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = await open_editor(pilot, "e")  # Production is the highlighted row
        assert screen.query_one("#name", Input).disabled
        hint = str(screen.query_one("#hint-write_key").render())
        assert "ends …abcd" in hint and "leave empty to keep it" in hint
        tree = screen.query_one(EventTree)
        assert tree.selected == frozenset(EMAIL_AND_PUSH)
        await select_group(pilot, screen, "Messages/Push notification")  # all on -> off
        assert tree.selected == frozenset(e for e in EMAIL_AND_PUSH if catalog.find(e).group == "Email")
        assert "Update" in str(screen.query_one("#save").render())
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConnectorsScreen), timeout=20)
        note = next(n for n in app._notifications if n.title == "Connector")
        assert "kept running" in note.message
    production = config.load(seeded.home).connector("Production")
    assert {catalog.find(e).group for e in production.events} == {"Email"}
    assert production.region == "us" and production.contact_email == "ops@example.com"


async def test_escape_with_changes_asks_before_discarding(seeded):
    from tui_currents.tui.screens.modals import ConfirmScreen

    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = await open_editor(pilot, "e")
        await type_into(pilot, screen, "contact_email", "x")
        screen.query_one("#contact_email").focus()
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await wait_until(pilot, lambda: app.screen is screen)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, ConnectorsScreen))
    assert config.load(seeded.home).connector("Production").contact_email == "ops@example.com"


async def test_custom_endpoint_and_overrides_in_the_advanced_section(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = await open_editor(pilot, "e")
        screen.query_one("#region").focus()
        await pilot.press("down", "down", "enter")  # US -> EU -> custom
        await wait_until(pilot, lambda: screen.query_one(".endpoint-row").display)
        await type_into(pilot, screen, "endpoint", "http://proxy.example.com")
        await wait_until(pilot, lambda: "https" in error_text(screen, "endpoint"))
        endpoint = screen.query_one("#endpoint", Input)
        endpoint.value = "https://proxy.example.com"
        overrides = screen.query_one("#name_overrides")
        overrides.text = "users.messages.email.MarkAsSpam = Email Marked As Spam\nnot a pair"
        await wait_until(pilot, lambda: "line 2" in error_text(screen, "name_overrides"))
        overrides.text = "users.messages.email.MarkAsSpam = Email Marked As Spam"
        await wait_until(pilot, lambda: error_text(screen, "name_overrides") == "")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConnectorsScreen), timeout=20)
    production = config.load(seeded.home).connector("Production")
    assert production.region == "custom" and production.endpoint == "https://proxy.example.com"
    assert production.name_overrides == {"users.messages.email.MarkAsSpam": "Email Marked As Spam"}
