"""A checkbox tree of the event catalog: category > group > event type, with tri-state parents.

The selection lives in a set of event-type names, apart from the tree's nodes, so a filter can rebuild the
visible tree without losing what was chosen. Check marks are text ("[x]", "[-]", "[ ]") so they read in any
terminal, with or without colour.

The types beyond Braze's Segment connector are one closed branch of their own, labelled as such; `a`
selects what `all` selects (Braze's 51), never them. Types that are never sent show "n/a" and the reason,
and cannot be ticked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Label, Tree
from textual.widgets.tree import TreeNode

from tui_currents import catalog
from tui_currents.catalog import EventType


class Check(StrEnum):
    """How much of a branch is selected."""

    NONE = "none"
    SOME = "some"
    ALL = "all"


CHECK_GLYPHS = {Check.NONE: "[ ]", Check.SOME: "[-]", Check.ALL: "[x]"}
NOT_FORWARDABLE_GLYPH = "n/a"
NOT_FORWARDABLE_LABEL = "not forwardable"
# Beside the extended category's name, so that nobody takes it for Braze's own list.
EXTENDED_NOTE = "not Braze's list · not in `all`"


@dataclass(frozen=True, slots=True)
class Branch:
    """A category or group node; `key` is stable across rebuilds ("Messages" or "Messages/Email")."""

    key: str
    title: str
    leaves: tuple[EventType, ...]


NodeData = Branch | EventType


def matches(event: EventType, text: str, name_overrides: Mapping[str, str] | None = None) -> bool:
    """Does an event type match a filter (its Braze type, Segment name or override, any case)?"""
    needle = text.strip().casefold()
    if not needle:
        return True
    names = [event.event_type, event.segment_event]
    if name_overrides and event.event_type in name_overrides:
        names.append(name_overrides[event.event_type])
    return any(needle in name.casefold() for name in names)


class EventTree(Tree[NodeData]):
    """The catalog as a checkbox tree. Posts `EventTree.Changed` whenever the selection changes."""

    DEFAULT_CSS = """
    EventTree {
        height: auto;
        max-height: 100%;
        & > .event-tree--all { color: $success; text-style: bold; }
        & > .event-tree--some { color: $warning; text-style: bold; }
        & > .event-tree--none { color: $text-muted; }
        & > .event-tree--segment { color: $text; }
        & > .event-tree--type { color: $text-muted; }
        & > .event-tree--count { color: $text-muted; }
        & > .event-tree--note { color: $text-warning; }
    }
    """
    COMPONENT_CLASSES = {
        "event-tree--all",
        "event-tree--some",
        "event-tree--none",
        "event-tree--segment",
        "event-tree--type",
        "event-tree--count",
        "event-tree--note",
    }
    BINDINGS = [
        Binding("space", "toggle_check", "Toggle", id="event_tree.toggle"),
        Binding("j", "cursor_down", "Down", show=False, id="event_tree.down"),
        Binding("k", "cursor_up", "Up", show=False, id="event_tree.up"),
        Binding("enter", "enter", "Expand", show=False, id="event_tree.enter"),
        Binding("right,l", "expand", "Expand", show=False, id="event_tree.expand"),
        Binding("left,h", "collapse", "Collapse", show=False, id="event_tree.collapse"),
        Binding("a", "select_all", "All of Braze's", id="event_tree.all"),
        Binding("n", "select_none", "None", id="event_tree.none"),
        Binding("slash", "filter", "Filter", id="event_tree.filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="event_tree.clear_filter"),
    ]

    class Changed(Message):
        """The selection changed."""

        def __init__(self, tree: EventTree, selected: frozenset[str]) -> None:
            super().__init__()
            self.tree = tree
            self.selected = selected

        @property
        def control(self) -> EventTree:
            return self.tree

    class FilterRequested(Message):
        """The user pressed the filter key; the surrounding picker shows its filter box."""

    class FilterCleared(Message):
        """The user dropped the filter from the tree (escape while a filter is on)."""

    def __init__(
        self,
        selected: Iterable[str] = (),
        *,
        name_overrides: Mapping[str, str] | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__("Events", id=id, classes=classes)
        # Set without watchers: the tree is not mounted yet, so it has no styles to repaint with.
        self.set_reactive(Tree.show_root, False)
        self.set_reactive(Tree.auto_expand, False)
        self.set_reactive(Tree.guide_depth, 3)
        self._categories = catalog.categories()
        # What can be ticked: every type tui-currents can send.
        self._all_types = frozenset(
            e.event_type
            for groups in self._categories.values()
            for g in groups.values()
            for e in g
            if e.forwardable
        )
        self._selected: set[str] = {catalog.canonical_name(name) for name in selected} & self._all_types
        self._name_overrides: dict[str, str] = dict(name_overrides or {})
        self._filter = ""
        # Categories of Braze's connector's types start open; the extended category starts closed.
        self._expanded: set[str] = {
            category for category, groups in self._categories.items() if self._branch_supported(groups)
        }
        self._build_nodes()

    # ------------------------------------------------------------------ data

    @staticmethod
    def _branch_supported(groups: Mapping[str, list[EventType]]) -> bool:
        return any(e.supported for events in groups.values() for e in events)

    @property
    def selected(self) -> frozenset[str]:
        """The selected event types (canonical Braze names)."""
        return frozenset(self._selected)

    @property
    def total(self) -> int:
        """How many event types the tree offers to tick."""
        return len(self._all_types)

    def counts(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(selected, offered) among Braze's connector's types, and among the types beyond it."""
        supported = {e.event_type for e in catalog.CATALOG if e.supported}
        chosen = len(self._selected & supported)
        return (chosen, len(supported)), (len(self._selected) - chosen, len(self._all_types) - len(supported))

    @property
    def filter_text(self) -> str:
        return self._filter

    def set_selected(self, selected: Iterable[str]) -> None:
        """Replace the selection (unknown names are ignored)."""
        self._selected = {catalog.canonical_name(name) for name in selected} & self._all_types
        self._selection_changed(None)

    def set_name_overrides(self, overrides: Mapping[str, str]) -> None:
        """Show these Segment names instead of the catalog's (a connector's name overrides)."""
        self._name_overrides = dict(overrides)
        self._refresh_all()

    def set_filter(self, text: str) -> None:
        """Show only event types whose Braze type or Segment name contains `text` (empty: all)."""
        if text == self._filter:
            return
        self._filter = text
        self._build_nodes()

    def state_of(self, node: TreeNode[NodeData]) -> Check:
        """The check state of any node: a leaf is all or none; a branch counts its whole branch."""
        data = node.data
        leaves = data.leaves if isinstance(data, Branch) else (data,) if data is not None else ()
        leaves = tuple(e for e in leaves if e.forwardable)
        chosen = sum(1 for e in leaves if e.event_type in self._selected)
        if chosen == 0:
            return Check.NONE
        return Check.ALL if chosen == len(leaves) else Check.SOME

    def segment_name(self, event: EventType) -> str:
        return self._name_overrides.get(event.event_type, event.segment_event)

    # ------------------------------------------------------------------ building

    def _build_nodes(self) -> None:
        cursor = self.cursor_node.data if self.cursor_node is not None else None
        self.clear()
        filtering = bool(self._filter.strip())
        for category, groups in self._categories.items():
            shown = {
                group: [e for e in events if matches(e, self._filter, self._name_overrides)]
                for group, events in groups.items()
            }
            shown = {group: events for group, events in shown.items() if events}
            if not shown:
                continue
            all_leaves = tuple(e for events in groups.values() for e in events)
            cat_node = self.root.add(
                category,
                data=Branch(category, category, all_leaves),
                expand=filtering or category in self._expanded,
            )
            for group, events in shown.items():
                key = f"{category}/{group}"
                if len(groups[group]) == 1 or (group == category and len(groups) == 1):
                    # A one-event group, or a group named like its only category ("Campaigns > Campaigns"),
                    # adds a line and no information: its event types sit under the category.
                    parent = cat_node
                else:
                    parent = cat_node.add(
                        group,
                        data=Branch(key, group, tuple(groups[group])),
                        expand=filtering or key in self._expanded,
                    )
                for event in events:
                    parent.add_leaf(event.event_type, data=event)
        self._restore_cursor(cursor)

    def _restore_cursor(self, data: NodeData | None) -> None:
        if data is None:
            self.cursor_line = 0 if self.root.children else -1
            return

        def find(node: TreeNode[NodeData]) -> TreeNode[NodeData] | None:
            for child in node.children:
                if child.data == data:
                    return child
                found = find(child)
                if found is not None:
                    return found
            return None

        target = find(self.root)
        if target is None:
            self.cursor_line = 0 if self.root.children else -1
        else:
            # Lines are rebuilt lazily; place the cursor once they exist.
            self.call_after_refresh(self.move_cursor, target, animate=False)

    def _walk_nodes(self, node: TreeNode[NodeData] | None = None) -> Iterable[TreeNode[NodeData]]:
        for child in (node or self.root).children:
            yield child
            yield from self._walk_nodes(child)

    def _visible_leaves(self, node: TreeNode[NodeData]) -> list[EventType]:
        """Leaves under a node as the tree currently shows them (the filter applies)."""
        if isinstance(node.data, EventType):
            return [node.data]
        return [n.data for n in self._walk_nodes(node) if isinstance(n.data, EventType)]

    # ------------------------------------------------------------------ rendering

    def render_label(self, node: TreeNode[NodeData], base_style: Style, style: Style) -> Text:
        text = self._label(node, base_style, styled=True)
        text.stylize(style)
        return text

    def get_label_width(self, node: TreeNode[NodeData]) -> int:
        # Measured without styles, so it also works before the widget is mounted.
        return self._label(node, Style(), styled=False).cell_len

    def _style(self, name: str, styled: bool) -> Style:
        return self.get_component_rich_style(f"event-tree--{name}", partial=True) if styled else Style()

    def _label(self, node: TreeNode[NodeData], base_style: Style, *, styled: bool) -> Text:
        data = node.data
        assert data is not None, "every shown node is a branch or an event type (the root is hidden)"
        state = self.state_of(node)
        text = Text(no_wrap=True, end="")
        if node.allow_expand:
            text.append(self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE, base_style)
        never_sent = not any(e.forwardable for e in (data.leaves if isinstance(data, Branch) else (data,)))
        if never_sent:
            text.append(NOT_FORWARDABLE_GLYPH, self._style("none", styled))
        else:
            text.append(CHECK_GLYPHS[state], self._style(state.value, styled))
        text.append(" ")
        if isinstance(data, Branch):
            text.append(data.title)
            offered = [e for e in data.leaves if e.forwardable]
            chosen = sum(1 for e in offered if e.event_type in self._selected)
            if offered:
                text.append(f"  {chosen}/{len(offered)}", self._style("count", styled))
            else:
                text.append(f"  {NOT_FORWARDABLE_LABEL}", self._style("count", styled))
            if data.key == catalog.EXTENDED:
                text.append(f"  {EXTENDED_NOTE}", self._style("note", styled))
        elif isinstance(data, EventType):
            width = self._segment_column_width(node)
            text.append(self._leaf_name(data).ljust(width), self._style("segment", styled))
            text.append("  ")
            text.append(data.event_type, self._style("type", styled))
            if not data.forwardable:
                text.append(f"  {data.reason}", self._style("count", styled))
        return text

    def _leaf_name(self, event: EventType) -> str:
        return self.segment_name(event) if event.forwardable else NOT_FORWARDABLE_LABEL

    def _segment_column_width(self, node: TreeNode[NodeData]) -> int:
        siblings = node.parent.children if node.parent is not None else [node]
        return max(len(self._leaf_name(s.data)) for s in siblings if isinstance(s.data, EventType))

    def _refresh_all(self) -> None:
        for node in self._walk_nodes():
            node.refresh()

    def _selection_changed(self, node: TreeNode[NodeData] | None) -> None:
        if node is None:
            self._refresh_all()
        else:
            # The node, everything under it and its ancestors show a different state now.
            touched = [node, *self._walk_nodes(node)]
            parent = node.parent
            while parent is not None and parent is not self.root:
                touched.append(parent)
                parent = parent.parent
            for each in touched:
                each.refresh()
        self.post_message(self.Changed(self, self.selected))

    # ------------------------------------------------------------------ actions

    def toggle(self, node: TreeNode[NodeData]) -> None:
        """Toggle a leaf, or a whole (visible) branch: all on unless all are already on. Types that are
        never sent are left alone."""
        leaves = {e.event_type for e in self._visible_leaves(node) if e.forwardable}
        if not leaves:
            return
        if leaves <= self._selected:
            self._selected -= leaves
        else:
            self._selected |= leaves
        self._selection_changed(node)

    def action_toggle_check(self) -> None:
        if self.cursor_node is not None:
            self.toggle(self.cursor_node)

    def action_enter(self) -> None:
        """Enter opens or closes a branch, and toggles a leaf."""
        node = self.cursor_node
        if node is None:
            return
        if node.allow_expand:
            self._set_expanded(node, not node.is_expanded)
        else:
            self.toggle(node)

    def action_expand(self) -> None:
        node = self.cursor_node
        if node is None or not node.allow_expand:
            return
        if node.is_expanded and node.children:
            self.move_cursor(node.children[0], animate=False)
        else:
            self._set_expanded(node, True)

    def action_collapse(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.allow_expand and node.is_expanded:
            self._set_expanded(node, False)
        elif node.parent is not None and node.parent is not self.root:
            self.move_cursor(node.parent, animate=False)

    def _set_expanded(self, node: TreeNode[NodeData], expanded: bool) -> None:
        key = node.data.key if isinstance(node.data, Branch) else None
        if expanded:
            node.expand()
            if key and not self._filter.strip():
                self._expanded.add(key)
        else:
            node.collapse()
            if key and not self._filter.strip():
                self._expanded.discard(key)

    def action_select_all(self) -> None:
        """Select what `all` selects (Braze's connector's types), or, under a filter, every forwardable type
        that matches it. The extended branch is ticked on its own."""
        shown = [e for e in self._visible_leaves(self.root) if e.forwardable]
        self._selected |= {e.event_type for e in shown if e.supported or self._filter.strip()}
        self._selection_changed(None)

    def action_select_none(self) -> None:
        """Clear every event type shown (all of them, or all that match the filter)."""
        self._selected -= {e.event_type for e in self._visible_leaves(self.root)}
        self._selection_changed(None)

    def action_filter(self) -> None:
        self.post_message(self.FilterRequested())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Escape only means "clear the filter" while there is one; otherwise it goes to the screen.
        if action == "clear_filter":
            return bool(self._filter.strip())
        return super().check_action(action, parameters)

    def action_clear_filter(self) -> None:
        self.post_message(self.FilterCleared())


class FilterBox(Input):
    """A filter input that escape clears and closes."""

    BINDINGS = [Binding("escape", "clear", "Clear filter", show=False, id="filter.clear")]

    class Cleared(Message):
        """The user asked to drop the filter."""

    def action_clear(self) -> None:
        self.post_message(self.Cleared())


class EventPicker(Vertical):
    """The event tree with a one-line summary and a filter box that `/` opens."""

    DEFAULT_CSS = """
    EventPicker {
        height: auto;
        & > #event-summary { color: $text-muted; height: 1; }
        & > #event-filter { display: none; height: 3; }
        & > #event-filter.-shown { display: block; }
        & > EventTree { height: auto; max-height: 18; }
    }
    """

    def __init__(
        self,
        selected: Iterable[str] = (),
        *,
        name_overrides: Mapping[str, str] | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self._initial = tuple(selected)
        self._overrides = dict(name_overrides or {})

    def compose(self) -> ComposeResult:
        yield Label("", id="event-summary")
        yield FilterBox(
            placeholder="filter: event type or Segment name (enter: keep, esc: clear)", id="event-filter"
        )
        yield EventTree(self._initial, name_overrides=self._overrides, id="event-tree")

    def on_mount(self) -> None:
        self._update_summary()

    @property
    def event_tree(self) -> EventTree:
        return self.query_one(EventTree)

    @property
    def selected(self) -> frozenset[str]:
        return self.event_tree.selected

    def _update_summary(self) -> None:
        tree = self.event_tree
        (braze, braze_total), (beyond, beyond_total) = tree.counts()
        parts = [f"{braze}/{braze_total} of Braze's connector", f"{beyond}/{beyond_total} beyond it"]
        if tree.filter_text.strip():
            parts.append(f'filter "{tree.filter_text.strip()}"')
        parts.append("a all · n none · / filter")
        self.query_one("#event-summary", Label).update(" · ".join(parts))

    @on(EventTree.Changed)
    def _changed(self) -> None:
        self._update_summary()

    @on(EventTree.FilterRequested)
    def _open_filter(self, event: EventTree.FilterRequested) -> None:
        event.stop()
        box = self.query_one("#event-filter", FilterBox)
        box.add_class("-shown")
        box.focus()

    @on(Input.Changed, "#event-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.event_tree.set_filter(event.value)
        self._update_summary()

    @on(Input.Submitted, "#event-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.event_tree.focus()

    @on(FilterBox.Cleared)
    @on(EventTree.FilterCleared)
    def _filter_cleared(self, event: Message) -> None:
        event.stop()
        box = self.query_one("#event-filter", FilterBox)
        box.value = ""
        box.remove_class("-shown")
        self.event_tree.set_filter("")
        self._update_summary()
        self.event_tree.focus()
