"""The event tree: tri-state parents, keyboard, filter, selection count, Segment names beside Braze types."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from tui_currents import catalog
from tui_currents.tui.widgets.event_tree import (
    CHECK_GLYPHS,
    EXTENDED_NOTE,
    NOT_FORWARDABLE_GLYPH,
    Branch,
    Check,
    EventPicker,
    EventTree,
)

pytestmark = pytest.mark.timeout(60)

EMAIL = [e.event_type for e in catalog.CATALOG if e.category == "Messages" and e.group == "Email"]
SUPPORTED = {e.event_type for e in catalog.CATALOG if e.supported}
EXTENDED = set(catalog.extended_types())
NOT_FORWARDABLE = {e.event_type for e in catalog.CATALOG if not e.forwardable}


class PickerApp(App):
    def __init__(self, selected=(), overrides=None):
        super().__init__()
        self.selected = selected
        self.overrides = overrides
        self.changes: list[frozenset[str]] = []

    def compose(self) -> ComposeResult:
        yield EventPicker(self.selected, name_overrides=self.overrides)

    def on_mount(self) -> None:
        self.query_one(EventTree).focus()

    def on_event_tree_changed(self, message: EventTree.Changed) -> None:
        self.changes.append(message.selected)


def node_for(tree: EventTree, key: str):
    for node in tree._walk_nodes():
        data = node.data
        if isinstance(data, Branch) and data.key == key:
            return node
        if not isinstance(data, Branch) and data is not None and data.event_type == key:
            return node
    raise AssertionError(f"no node {key!r} shown")


def label_text(tree: EventTree, node) -> str:
    return tree.render_label(node, tree.rich_style, tree.rich_style).plain


async def test_parent_states_follow_their_leaves():
    app = PickerApp(selected=EMAIL[:2])
    async with app.run_test(size=(100, 40)):
        tree = app.query_one(EventTree)
        messages = node_for(tree, "Messages")
        email = node_for(tree, "Messages/Email")
        sms = node_for(tree, "Messages/SMS")
        assert tree.state_of(email) is Check.SOME
        assert tree.state_of(messages) is Check.SOME
        assert tree.state_of(sms) is Check.NONE
        tree.set_selected(EMAIL)
        assert tree.state_of(email) is Check.ALL
        assert tree.state_of(messages) is Check.SOME  # other groups of Messages are still off
        # The glyphs carry the state without colour.
        assert label_text(tree, email).startswith(f"▶ {CHECK_GLYPHS[Check.ALL]} Email")
        assert CHECK_GLYPHS[Check.SOME] in label_text(tree, messages)
        assert f"{len(EMAIL)}/{len(EMAIL)}" in label_text(tree, email)


async def test_space_on_a_parent_toggles_its_whole_branch_and_back():
    app = PickerApp()
    async with app.run_test(size=(100, 40)) as pilot:
        tree = app.query_one(EventTree)
        tree.move_cursor(node_for(tree, "Messages/Email"))
        await pilot.press("space")
        assert tree.selected == frozenset(EMAIL)
        await pilot.press("space")
        assert tree.selected == frozenset()
        # A partly selected branch goes to all first.
        tree.set_selected(EMAIL[:1])
        await pilot.press("space")
        assert tree.selected == frozenset(EMAIL)
        assert app.changes and app.changes[-1] == frozenset(EMAIL)


async def test_keys_move_expand_and_toggle_leaves():
    app = PickerApp()
    async with app.run_test(size=(100, 40)) as pilot:
        tree = app.query_one(EventTree)
        email = node_for(tree, "Messages/Email")
        tree.move_cursor(email)
        await pilot.pause()
        assert not email.is_expanded
        await pilot.press("enter")
        assert email.is_expanded
        await pilot.press("right")  # on an open branch: to its first child
        assert tree.cursor_node.data.event_type == EMAIL[0]
        await pilot.press("space")
        assert tree.selected == {EMAIL[0]}
        await pilot.press("j", "enter")  # enter on a leaf toggles it
        assert tree.selected == {EMAIL[0], EMAIL[1]}
        await pilot.press("k")
        assert tree.cursor_node.data.event_type == EMAIL[0]
        await pilot.press("left")  # on a leaf: to its parent
        assert tree.cursor_node is email
        await pilot.press("left")  # on an open branch: close it
        assert not email.is_expanded


async def test_all_selects_what_the_all_spec_selects_and_the_summary_counts_both_parts():
    app = PickerApp()
    async with app.run_test(size=(100, 40)) as pilot:
        tree = app.query_one(EventTree)
        summary = app.query_one("#event-summary")
        await pilot.press("a")
        # The tree and `--events all` agree: Braze's 51, nothing beyond them.
        assert tree.selected == SUPPORTED == set(catalog.resolve_events("all"))
        text = str(summary.render())
        assert f"51/51 of Braze's connector · 0/{len(EXTENDED)} beyond it" in text
        tree.move_cursor(node_for(tree, catalog.EXTENDED))
        await pilot.press("space")
        assert tree.selected == set(catalog.resolve_events("all,extended"))
        assert f"51/51 of Braze's connector · {len(EXTENDED)}/{len(EXTENDED)} beyond it" in str(
            summary.render()
        )
        await pilot.press("n")
        assert tree.selected == frozenset()
        assert "0/51 of Braze's connector · 0/" in str(summary.render())


async def test_types_beyond_the_connector_are_their_own_labelled_closed_branch_off_by_default():
    app = PickerApp(selected=sorted(SUPPORTED))
    async with app.run_test(size=(160, 40)):
        tree = app.query_one(EventTree)
        beyond = node_for(tree, catalog.EXTENDED)
        assert not beyond.is_expanded
        assert tree.state_of(beyond) is Check.NONE
        label = label_text(tree, beyond)
        assert f"Beyond Braze's Segment connector  0/{len(EXTENDED)}" in label and EXTENDED_NOTE in label
        leaves = {leaf.event_type for leaf in beyond.data.leaves}
        assert leaves == EXTENDED | NOT_FORWARDABLE
        # Braze's own categories count only Braze's types.
        assert not any(catalog.EXTENDED in label_text(tree, n) for n in tree.root.children[:-1])


async def test_types_never_sent_show_the_reason_and_cannot_be_ticked():
    app = PickerApp(selected=["users.UserDeleteRequest", "users.messages.email.Send"])
    async with app.run_test(size=(200, 40)) as pilot:
        tree = app.query_one(EventTree)
        assert tree.selected == {"users.messages.email.Send"}
        users = node_for(tree, f"{catalog.EXTENDED}/Users")
        tree.move_cursor(node_for(tree, catalog.EXTENDED))
        await pilot.press("enter")
        tree.move_cursor(users)
        await pilot.press("enter")
        deletion = node_for(tree, "users.UserDeleteRequest")
        label = label_text(tree, deletion)
        assert label.startswith(f"{NOT_FORWARDABLE_GLYPH} not forwardable")
        assert catalog.not_forwardable_reason("users.UserDeleteRequest") in label
        assert label_text(tree, users).endswith(f"{NOT_FORWARDABLE_GLYPH} Users  not forwardable")
        tree.move_cursor(deletion)
        await pilot.press("space")
        tree.move_cursor(users)
        await pilot.press("space")
        assert tree.selected == {"users.messages.email.Send"}


async def test_filter_by_braze_type_or_segment_name_keeps_the_selection():
    app = PickerApp(selected=["users.messages.sms.Send"])
    async with app.run_test(size=(100, 40)) as pilot:
        tree = app.query_one(EventTree)
        await pilot.press("slash", *"spam")
        shown = {n.data.event_type for n in tree._walk_nodes() if not isinstance(n.data, Branch)}
        assert shown == {"users.messages.email.MarkAsSpam"}
        await pilot.press("enter")  # keep the filter, back to the tree
        assert app.focused is tree
        await pilot.press("a")  # "all" means all that is shown
        assert tree.selected == {"users.messages.sms.Send", "users.messages.email.MarkAsSpam"}
        # By Segment name, case-insensitively.
        tree.set_filter("content card viewed")
        shown = {n.data.event_type for n in tree._walk_nodes() if not isinstance(n.data, Branch)}
        assert shown == {"users.messages.contentcard.Impression"}
        await pilot.press("escape")  # escape in the tree drops the filter
        assert tree.filter_text == ""
        assert len([n for n in tree._walk_nodes() if not isinstance(n.data, Branch)]) > 1
        assert tree.selected == {"users.messages.sms.Send", "users.messages.email.MarkAsSpam"}


async def test_escape_in_the_filter_box_clears_and_closes_it():
    app = PickerApp()
    async with app.run_test(size=(100, 40)) as pilot:
        tree = app.query_one(EventTree)
        box = app.query_one("#event-filter")
        await pilot.press("slash", *"whatsapp")
        assert box.display and app.focused is box
        await pilot.press("escape")
        assert not box.display
        assert tree.filter_text == ""
        assert app.focused is tree


async def test_leaves_show_the_segment_name_beside_the_braze_type_and_overrides():
    app = PickerApp(overrides={"users.messages.email.MarkAsSpam": "Email Marked As Spam"})
    async with app.run_test(size=(120, 40)) as pilot:
        tree = app.query_one(EventTree)
        tree.move_cursor(node_for(tree, "Messages/Email"))
        await pilot.press("enter")
        send = label_text(tree, node_for(tree, "users.messages.email.Send"))
        assert "Email Sent" in send and "users.messages.email.Send" in send
        spam = label_text(tree, node_for(tree, "users.messages.email.MarkAsSpam"))
        assert "Email Marked As Spam" in spam and "Email Marked as Spam" not in spam
