"""The live tail: a bounded ring of event lines drawn with Textual's Line API.

Lines arrive in batches (`append`), are kept in a ring of `max_lines`, and only the rows on screen are
rendered, each once, into cached strips. There is no widget per event, so tens of thousands of events a
second cost one list extend per poll and a screenful of rendering per frame.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import var
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui_currents.tui.models import TailLine

# What happened to an event, in the words the tail shows. The store's fates map onto these.
FATE_KINDS = {
    "queued": "pending",
    "retrying": "warning",
    "delivered": "good",
    "dead letter": "bad",
    "rejected": "bad",
    "not selected": "filtered",
    "anonymous": "filtered",
    "unsupported": "filtered",
    "not forwardable": "filtered",
    "duplicate": "filtered",
}
FATE_WIDTH = 12


@dataclass(frozen=True, slots=True)
class TailFilter:
    """Which lines to show: any of these event types and fates (empty: all) containing this text."""

    event_types: frozenset[str] = field(default_factory=frozenset)
    fates: frozenset[str] = field(default_factory=frozenset)
    text: str = ""

    @property
    def active(self) -> bool:
        return bool(self.event_types or self.fates or self.text.strip())

    def accepts(self, line: TailLine) -> bool:
        if self.event_types and line.event_type not in self.event_types:
            return False
        if self.fates and line.fate not in self.fates:
            return False
        needle = self.text.strip().casefold()
        if needle:
            haystack = (
                line.event_type,
                line.segment_event or "",
                line.user or "",
                line.reason or "",
                line.connector,
            )
            return any(needle in part.casefold() for part in haystack)
        return True

    def describe(self) -> str:
        """A short description for a status line ("" when nothing is filtered)."""
        parts = []
        if self.event_types:
            parts.append("type: " + ", ".join(sorted(t.rsplit(".", 1)[-1] for t in self.event_types)))
        if self.fates:
            parts.append("fate: " + ", ".join(sorted(self.fates)))
        if self.text.strip():
            parts.append(f'text: "{self.text.strip()}"')
        return "; ".join(parts)


_seq_key = attrgetter("seq")


def _clip_right(text: str, width: int) -> str:
    if width <= 0:
        return ""
    if len(text) <= width:
        return text.ljust(width)
    return text[: width - 1] + "…"


def _clip_left(text: str, width: int) -> str:
    """Keep the end of a dotted event type, its most telling part."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text.ljust(width)
    return "…" + text[-(width - 1) :]


def _clip_middle(text: str, width: int) -> str:
    """Keep the start and the last word of a Segment event name: "Push Notification Tapped" and "...Sent"
    differ by their end, so the cut goes in the middle ("Push Notif… Tapped")."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text.ljust(width)
    head, _, last = text.rpartition(" ")
    room = width - len(last) - 2  # "…" and a space
    if not head or room < 1:
        return _clip_left(text, width)
    return (head[:room].rstrip() + "… " + last).ljust(width)


@dataclass(frozen=True, slots=True)
class Columns:
    """Column widths for one terminal width."""

    time: int
    connector: int
    event_type: int
    segment: int
    user: int
    fate: int

    @classmethod
    def fit(cls, width: int, *, show_connector: bool) -> Columns:
        wide = width >= 100
        time, fate = 8, 14 if wide else 13
        connector = (16 if wide else 10) if show_connector else 0
        user = 16 if wide else 12
        gaps = 4 + (1 if connector else 0)
        rest = max(width - time - fate - user - connector - gaps, 16)
        # Wide terminals give the spare room to the fate, where dead-letter reasons are.
        event_type = min(rest * 11 // 20, 40)
        segment = min(rest - event_type, 28)
        return cls(time, connector, event_type, segment, user, fate + rest - event_type - segment)


class TailView(ScrollView, can_focus=True):
    """Newest line at the bottom; follows new lines unless the user moved up."""

    DEFAULT_CSS = """
    TailView {
        background: $surface;
        height: 1fr;
        overflow-x: hidden;
        overflow-y: scroll;
        & > .tail-view--header { color: $text-muted; text-style: bold; }
        & > .tail-view--time { color: $text-muted; }
        & > .tail-view--type { color: $text-muted; }
        & > .tail-view--segment { color: $text; }
        & > .tail-view--user { color: $text-muted; }
        & > .tail-view--pending { color: $text; }
        & > .tail-view--warning { color: $warning; text-style: bold; }
        & > .tail-view--good { color: $success; }
        & > .tail-view--bad { color: $error; text-style: bold; }
        & > .tail-view--filtered { color: $text-disabled; }
        & > .tail-view--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    }
    """
    COMPONENT_CLASSES = {
        "tail-view--header",
        "tail-view--time",
        "tail-view--type",
        "tail-view--segment",
        "tail-view--user",
        "tail-view--pending",
        "tail-view--warning",
        "tail-view--good",
        "tail-view--bad",
        "tail-view--filtered",
        "tail-view--cursor",
    }
    BINDINGS = [
        Binding("up,k", "cursor_up", "Up", show=False, id="tail.up"),
        Binding("down,j", "cursor_down", "Down", show=False, id="tail.down"),
        Binding("pageup", "page_up", "Page up", show=False, id="tail.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="tail.page_down"),
        Binding("home", "first", "First", show=False, id="tail.first"),
        Binding("end,G", "follow", "Follow", id="tail.follow"),
        Binding("enter", "choose", "Message", id="tail.message"),
    ]

    following: var[bool] = var(True, init=False)
    """Whether the view sticks to the newest line."""

    class Moved(Message):
        """The cursor moved or following started or stopped."""

    class Chosen(Message):
        """The user pressed enter on a line."""

        def __init__(self, view: TailView, line: TailLine) -> None:
            super().__init__()
            self.view = view
            self.line = line

        @property
        def control(self) -> TailView:
            return self.view

    def __init__(
        self,
        *,
        max_lines: int = 5_000,
        show_connector: bool = True,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.max_lines = max_lines
        self.show_connector = show_connector
        self._lines: list[TailLine] = []
        self._view: list[TailLine] = self._lines
        self._filter = TailFilter()
        self._cursor_seq: int | None = None
        self._by_key: dict[tuple[str, str], TailLine] = {}
        self._strips: LRUCache[tuple, Strip] = LRUCache(512)
        self._styles: dict[str, Style] = {}
        self.received = 0  # lines ever appended, for the status line

    # ------------------------------------------------------------------ data

    @property
    def lines(self) -> Sequence[TailLine]:
        """The lines shown (after the filter), oldest first."""
        return self._view

    @property
    def filter(self) -> TailFilter:
        return self._filter

    @property
    def cursor_line(self) -> TailLine | None:
        index = self._cursor_index()
        return self._view[index] if index is not None else None

    def append(self, lines: Iterable[TailLine]) -> int:
        """Add a batch of lines (oldest first); update lines change the fate of the line they name.
        Returns how many new lines were taken."""
        fresh: list[TailLine] = []
        changed: list[TailLine] = []
        index = self._by_key
        for line in lines:
            if line.update:
                original = index.get(line.key) if line.key is not None else None
                if original is not None:
                    original.fate, original.reason = line.fate, line.reason
                    changed.append(original)
                continue
            fresh.append(line)
            if line.key is not None:
                index[line.key] = line
        if not fresh and not changed:
            return 0
        self.received += len(fresh)
        follow = self.following
        self._lines.extend(fresh)
        dropped_all = len(self._lines) - self.max_lines
        if dropped_all > 0:
            for gone in self._lines[:dropped_all]:
                if gone.key is not None and index.get(gone.key) is gone:
                    del index[gone.key]
            del self._lines[:dropped_all]
        shifted = max(dropped_all, 0)
        if self._view is not self._lines:
            accepts = self._filter.accepts
            self._refilter_changed(changed)
            self._view.extend(line for line in fresh if accepts(line))
            oldest = self._lines[0].seq if self._lines else 0
            dropped_view = bisect_left(self._view, oldest, key=_seq_key)
            if dropped_view:
                del self._view[:dropped_view]
            shifted = dropped_view
        self._resized(follow, shifted)
        return len(fresh)

    def _refilter_changed(self, changed: list[TailLine]) -> None:
        """A line whose fate changed may now pass the filter or stop passing it."""
        accepts = self._filter.accepts
        view = self._view
        for line in changed:
            at = bisect_left(view, line.seq, key=_seq_key)
            present = at < len(view) and view[at] is line
            wanted = accepts(line)
            if wanted and not present:
                view.insert(at, line)
            elif present and not wanted:
                del view[at]

    def clear(self) -> None:
        self._lines.clear()
        self._by_key.clear()
        self._view = self._lines if not self._filter.active else []
        self._cursor_seq = None
        self._strips.clear()
        self._resized(True, 0)

    def set_filter(self, tail_filter: TailFilter) -> None:
        """Show only lines the filter accepts (the ring keeps everything; clearing the filter shows it)."""
        self._filter = tail_filter
        self._view = (
            [line for line in self._lines if tail_filter.accepts(line)] if tail_filter.active else self._lines
        )
        self._strips.clear()
        self._resized(self.following, 0, rebuilt=True)

    # ------------------------------------------------------------------ geometry

    def _resized(self, follow: bool, shifted: int, *, rebuilt: bool = False) -> None:
        # Row 0 is the column header, so the content is one row taller than the line count.
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._view) + 1)
        if follow:
            self._cursor_seq = None
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
            self.set_reactive(TailView.following, True)
        elif rebuilt:
            self._scroll_cursor_into_view()
        elif shifted:
            # Older lines left the ring: keep the lines under the user's eyes where they were.
            self.scroll_to(y=max(self.scroll_y - shifted, 0), animate=False, immediate=True)
        self.refresh()

    @property
    def _page(self) -> int:
        return max(self.size.height - 1, 1)

    def _cursor_index(self) -> int | None:
        if self._cursor_seq is None or not self._view:
            return None
        index = bisect_left(self._view, self._cursor_seq, key=_seq_key)
        if index >= len(self._view):
            return len(self._view) - 1
        return index

    def select(self, seq: int) -> bool:
        """Put the cursor on the shown line with this seq (stops following); False if it is not shown."""
        index = bisect_left(self._view, seq, key=_seq_key)
        if index >= len(self._view) or self._view[index].seq != seq:
            return False
        self._set_cursor(index)
        return True

    def _set_cursor(self, index: int) -> None:
        if not self._view:
            return
        index = max(0, min(index, len(self._view) - 1))
        self._cursor_seq = self._view[index].seq
        self.following = False
        self._scroll_cursor_into_view()
        self.refresh()
        self.post_message(self.Moved())

    def _scroll_cursor_into_view(self) -> None:
        index = self._cursor_index()
        if index is None:
            return
        top = int(self.scroll_y)
        if index < top:
            self.scroll_to(y=index, animate=False, immediate=True)
        elif index >= top + self._page:
            self.scroll_to(y=index - self._page + 1, animate=False, immediate=True)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        # Scrolling (wheel, scrollbar) to the bottom resumes following; scrolling up stops it.
        was = self.following
        if new < self.max_scroll_y:
            self.set_reactive(TailView.following, False)
        elif self._cursor_seq is None:
            self.set_reactive(TailView.following, True)
        if was != self.following:
            self.post_message(self.Moved())

    def watch_following(self, following: bool) -> None:
        if following:
            self._cursor_seq = None
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
            self.refresh()
        self.post_message(self.Moved())

    def on_resize(self) -> None:
        self._strips.clear()
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._view) + 1)
        if self.following:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)

    # ------------------------------------------------------------------ actions

    def action_cursor_up(self) -> None:
        index = self._cursor_index()
        self._set_cursor(len(self._view) - 1 if index is None else index - 1)

    def action_cursor_down(self) -> None:
        index = self._cursor_index()
        if index is None:
            return
        if index >= len(self._view) - 1:
            self.following = True
        else:
            self._set_cursor(index + 1)

    def action_page_up(self) -> None:
        index = self._cursor_index()
        self._set_cursor((len(self._view) if index is None else index) - self._page)

    def action_page_down(self) -> None:
        index = self._cursor_index()
        if index is None:
            return
        if index + self._page >= len(self._view):
            self.following = True
        else:
            self._set_cursor(index + self._page)

    def action_first(self) -> None:
        self._set_cursor(0)

    def action_follow(self) -> None:
        self.following = True

    def action_choose(self) -> None:
        line = self.cursor_line
        if line is None and self._view:
            line = self._view[-1]
        if line is not None:
            self.post_message(self.Chosen(self, line))

    # ------------------------------------------------------------------ rendering

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._strips.clear()

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(f"tail-view--{name}")
        return style

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        columns = Columns.fit(width, show_connector=self.show_connector)
        if y == 0:
            return self._header(columns, width, base)
        index = int(self.scroll_y) + y - 1
        if index >= len(self._view):
            return Strip.blank(width, base)
        line = self._view[index]
        is_cursor = line.seq == self._cursor_seq
        key = (line.seq, line.fate, width, is_cursor)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._strips[key] = self._strip(line, columns, width, base, is_cursor)
        return strip

    def _header(self, columns: Columns, width: int, base: Style) -> Strip:
        parts = [_clip_right("UTC", columns.time)]
        if columns.connector:
            parts.append(_clip_right("connector", columns.connector))
        parts += [
            _clip_right("Braze event type", columns.event_type),
            _clip_right("Segment event", columns.segment),
            _clip_right("user", columns.user),
            "fate",
        ]
        return Strip([Segment(_clip_right(" ".join(parts), width), base + self._style("header"))], width)

    @property
    def position(self) -> str:
        """Where the view is, for a status line: "following" or "line 12 of 400"."""
        if self.following:
            return "following"
        index = self._cursor_index()
        return f"line {index + 1 if index is not None else '-'} of {len(self._view)} (end: follow)"

    def _strip(self, line: TailLine, columns: Columns, width: int, base: Style, is_cursor: bool) -> Strip:
        stamp = datetime.fromtimestamp(line.at, UTC).strftime("%H:%M:%S")
        kind = FATE_KINDS.get(line.fate, "pending")
        fate_text = line.fate if not line.reason else f"{line.fate}: {line.reason}"
        segments = [Segment(stamp + " ", base + self._style("time"))]
        if columns.connector:
            segments.append(
                Segment(_clip_right(line.connector, columns.connector) + " ", base + self._style("user"))
            )
        segments += [
            Segment(_clip_left(line.event_type, columns.event_type) + " ", base + self._style("type")),
            Segment(
                _clip_middle(line.segment_event or "-", columns.segment) + " ", base + self._style("segment")
            ),
            Segment(_clip_right(line.user or "-", columns.user) + " ", base + self._style("user")),
        ]
        used = sum(len(s.text) for s in segments)
        segments.append(Segment(_clip_right(fate_text, max(width - used, 0)), base + self._style(kind)))
        if is_cursor:
            cursor = self._style("cursor")
            segments = [Segment(s.text, cursor if s.style is None else s.style + cursor) for s in segments]
        return Strip(segments, width)
