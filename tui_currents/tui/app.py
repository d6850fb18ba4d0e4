"""The Textual app: screens for connectors, the editor, the live tail, health and dead letters.

Everything the screens need from the rest of the program goes through `Backend`. Themes are data files
(themes/*.toml and the home's themes folder); keys can be remapped in the config's [ui.keymap] by binding
id; every action is also in the command palette (ctrl+p), named by area.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Callable, Iterable
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.screen import Screen

from tui_currents import config as config_module
from tui_currents.outbox import StoreUnavailable
from tui_currents.paths import Home
from tui_currents.secrets import Secrets, SecretsUnavailable
from tui_currents.tui import themes as theme_files
from tui_currents.tui.backend import Backend
from tui_currents.tui.commands import CurrentsCommands
from tui_currents.tui.messages import BackendReady
from tui_currents.tui.screens.base import ViewScreen
from tui_currents.tui.screens.connectors import ConnectorsScreen
from tui_currents.tui.screens.modals import ConfirmScreen, HelpScreen, KeyHelp

HELP_FILE = "help.md"
# The other views are imported when first opened: the first screen does not wait for them.
VIEW_MODULES = ("dead_letters", "editor", "health", "tail")
# Container allocations (net of frees) between the garbage collector's young collections, once started;
# Python's default is 700. Measured with the engine forwarding at full speed (bench/bench_tui.py, ten runs):
# at 700 the app's process ran 886-2,162 collections per run, 7-16 of them full (17-28 ms of CPU each,
# lasting 68-414 ms on busy cores); at 10,000, 6-44 collections and no full one, with the same peak RSS
# (objects that die within a batch are freed by their reference counts before the collector sees them,
# and cycles wait for at most 10,000 allocations).
YOUNG_COLLECTION_THRESHOLD = 10_000


def help_sections() -> dict[str, str]:
    """help.md split at its level-2 headings: {screen help id: markdown}."""
    from importlib import resources  # only when the help opens

    text = resources.files("tui_currents.tui").joinpath(HELP_FILE).read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    current = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("## "):
            if current is not None:
                sections[current] = "\n".join(lines).strip()
            current, lines = line[3:].strip(), []
        elif current is not None:
            lines.append(line)
    if current is not None:
        sections[current] = "\n".join(lines).strip()
    return sections


class CurrentsApp(App[int]):
    """tui-currents: connectors from Braze Currents to Segment, kept by keyboard."""

    CSS_PATH = "app.tcss"
    TITLE = "tui-currents"
    COMMANDS = App.COMMANDS | {CurrentsCommands}
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("f1,question_mark", "help", "Help", id="app.help"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
    ]

    def __init__(
        self,
        backend: Backend,
        *,
        clock: Callable[[], float] | None = None,
        poll_interval: float = 0.15,
        refresh_interval: float = 1.0,
    ) -> None:
        self.backend = backend
        self.clock = clock or backend.clock
        self.poll_interval = poll_interval
        self.refresh_interval = refresh_interval
        self.theme_problems: list[theme_files.ThemeProblem] = []
        self.keymap_problems: list[str] = []
        self.backend_ready = False
        self.last_export: Path | None = None  # the last dead-letter export, shown on that screen
        self._gc_thresholds: tuple[int, int, int] | None = None  # Python's, restored when the app ends
        super().__init__()
        self._load_themes()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Notifications carry names, paths and errors verbatim: no markup unless asked."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # ------------------------------------------------------------------ start and stop

    def _load_themes(self) -> None:
        found, problems = theme_files.load_themes(
            [theme_files.bundled_themes_dir(), self.backend.home.themes_dir]
        )
        for theme in found.values():
            self.register_theme(theme)
        self._theme_file_names = set(found)
        self.theme_problems = problems
        self.theme = theme_files.DEFAULT_THEME if theme_files.DEFAULT_THEME in found else "textual-dark"
        self._read_ui_settings()

    @property
    def our_themes(self) -> list[str]:
        """The themes from theme files (bundled and the user's), by name."""
        return sorted(self._theme_file_names)

    def get_default_screen(self) -> Screen:
        return ConnectorsScreen()

    def on_mount(self) -> None:
        self._apply_keymap()
        for title, message, severity in self._ui_notes:
            self.notify(message, title=title, severity=severity, timeout=15)
        # The backend (the engine, the store) starts once the first frame is on the terminal: the screen
        # shows at once, and fills in when the backend is ready (BackendReady).
        self.call_after_refresh(self._run_backend)

    def _run_backend(self) -> None:
        self.run_worker(self._start_backend(), group="backend", exclusive=True)

    async def _start_backend(self) -> None:
        try:
            await self.backend.start()
        except Exception as exc:  # the app still opens and says why nothing runs
            self.backend.engine_problem = f"the engine could not start: {exc}"
        self.backend_ready = True
        self._settle_garbage_collector()
        if self.backend.engine_problem:
            self.notify(self.backend.engine_problem, title="Engine", severity="warning", timeout=12)
        if self.theme_problems:
            listed = "\n".join(f"- {p}" for p in self.theme_problems)
            self.notify(
                f"These theme files were skipped:\n{listed}\nFix them in {self.backend.home.themes_dir}.",
                title="Themes",
                severity="warning",
                timeout=12,
            )
        for screen in self.screen_stack:
            screen.post_message(BackendReady())

    def _settle_garbage_collector(self) -> None:
        """Everything loaded so far lives as long as the app: freeze it, so the collector does not walk it
        again and again (pauses of ~100 ms between keypresses under load otherwise); and collect the young
        generation less often (YOUNG_COLLECTION_THRESHOLD), so that objects in flight are not promoted
        into the generation whose collections walk everything."""
        gc.freeze()
        if self._gc_thresholds is None:
            self._gc_thresholds = gc.get_threshold()
            _, middle, oldest = self._gc_thresholds
            gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, oldest)

    def _restore_garbage_collector(self) -> None:
        if self._gc_thresholds is not None:
            gc.set_threshold(*self._gc_thresholds)
            self._gc_thresholds = None

    def _read_ui_settings(self) -> None:
        """[ui] of the config file, read before the first frame so the chosen theme shows from the start."""
        # (title, message, severity), shown once mounted
        self._ui_notes: list[tuple[str, str, SeverityLevel]] = []
        self._keymap: dict[str, str] = {}
        try:
            cfg = self.backend.load_config()
        except config_module.ConfigError as exc:
            self._ui_notes.append(("Config", str(exc), "error"))
            return
        wanted = cfg.ui.theme
        # The config's default theme name means "not chosen": the app's own default applies.
        if wanted and wanted != config_module.UiSettings().theme:
            if wanted in self.available_themes:
                self.theme = wanted
            else:
                self._ui_notes.append(
                    (
                        "Themes",
                        f"Theme {wanted!r} from [ui] theme was not found; using {self.theme!r}. "
                        f"Themes: {', '.join(self.our_themes)}.",
                        "warning",
                    )
                )
        self._keymap = dict(cfg.ui.keymap)

    def _apply_keymap(self) -> None:
        if not self._keymap:
            return
        known = binding_ids(self)
        unknown = sorted(set(self._keymap) - known)
        if unknown:
            self.keymap_problems = unknown
            self.notify(
                f"[ui.keymap] names unknown key ids: {', '.join(unknown)}. The help (F1) lists the ids.",
                title="Keys",
                severity="warning",
                timeout=12,
            )
        self.set_keymap({k: v for k, v in self._keymap.items() if k in known})

    async def action_quit(self) -> None:
        await self.backend.stop()
        self.exit(0)

    async def on_unmount(self) -> None:
        await self.backend.stop()
        self._restore_garbage_collector()

    # ------------------------------------------------------------------ shared actions

    def action_help(self) -> None:
        screen = self.screen
        if isinstance(screen, HelpScreen):
            return
        help_id, title = ("connectors", "tui-currents")
        if isinstance(screen, ViewScreen):
            help_id, title = screen.help_topic()
        intro = help_sections().get(help_id, "")
        self.push_screen(HelpScreen(title, intro, keys_for(screen)))

    def set_theme(self, name: str, *, remember: bool = True) -> None:
        """Switch theme now and, by default, remember it in [ui] theme."""
        self.theme = name
        if remember:
            try:
                self.backend.save_ui(theme=name)
            except config_module.ConfigError as exc:
                self.notify(f"Theme applied but not saved: {exc}", severity="warning")

    # ------------------------------------------------------------------ operations (keys and palette)

    def new_connector(self) -> None:
        """Open the editor for a new connector."""
        self.run_worker(self._open_editor(None), group="editor", exclusive=True)

    def edit_connector(self, name: str) -> None:
        """Open the editor on an existing connector."""
        self.run_worker(self._open_editor(name), group="editor", exclusive=True)

    async def _open_editor(self, name: str | None) -> None:
        from tui_currents.tui.screens.editor import EditorScreen

        backend = self.backend
        try:
            cfg = await backend.run(backend.load_config)
            original = cfg.connector(name) if name is not None else None
        except (config_module.ConfigError, KeyError) as exc:
            self.notify(str(exc.args[0] if isinstance(exc, KeyError) else exc), severity="error", timeout=12)
            return
        hint = None
        if name is not None:
            try:
                hint = await backend.run(backend.write_key_hint, name)
            except SecretsUnavailable as exc:
                self.notify(f"The keyring cannot be read: {exc}", severity="warning", timeout=12)

        def closed(saved: str | None) -> None:
            if saved:
                self.refresh_current()

        await self.push_screen(
            EditorScreen(original, write_key_hint=hint, workspaces=[w.name for w in cfg.workspaces]), closed
        )

    async def set_paused(self, name: str, paused: bool) -> None:
        """Pause or resume a connector's delivery (events keep being queued while paused)."""
        try:
            await self.backend.set_paused(name, paused)
        except config_module.ConfigError as exc:
            self.notify(str(exc), title="Not changed", severity="error", timeout=12)
            return
        if paused:
            self.notify(f"Paused {name!r}: events are still received and queued, not sent.")
        else:
            self.notify(f"Resumed {name!r}: queued events are being sent.")

    def delete_connector(self, name: str) -> None:
        """Ask, then remove a connector from the config. Events still queued for it are named in the question
        and, on yes, moved to the dead letters (reason "connector removed"): none is orphaned unseen."""
        self.run_worker(self._confirm_delete(name), group="delete-connector", exclusive=True)

    async def _confirm_delete(self, name: str) -> None:
        try:
            queued = await self.backend.queued_events(name)
        except Exception as exc:  # a store problem: say it, delete nothing
            self.notify(f"Not deleted: {exc}", title="Not deleted", severity="error", timeout=12)
            return

        async def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                moved = await self.backend.delete_connector(name)
            except (config_module.ConfigError, StoreUnavailable) as exc:
                self.notify(str(exc), title="Not deleted", severity="error", timeout=12)
                return
            note = f" {moved:,} queued events moved to the dead letters." if moved else ""
            self.notify(f"Deleted connector {name!r}.{note}")
            self.refresh_current()

        if queued:
            detail = (
                f"{queued:,} events are still queued for it, not yet sent. Deleting moves them to the dead "
                'letters (reason "connector removed"), where they can be exported or retried. To send them '
                "first, answer No and delete it once its backlog is 0. Its write key stays in the keyring."
            )
            yes = f"Delete, dead-letter {queued:,}"
        else:
            detail = (
                "It stops forwarding now; nothing is queued for it. Its write key stays in the keyring, so "
                "creating it again under the same name picks it up."
            )
            yes = "Delete"
        self.push_screen(ConfirmScreen(f"Delete connector {name!r}?", detail, yes=yes, danger=True), answered)

    async def send_test_events(self, name: str) -> None:
        """Ask (naming the connector, its destination and how many), then send one marked test event of
        each selected type through the connector."""
        from tui_currents import test_events

        backend = self.backend
        try:
            connector = (await backend.run(backend.load_config)).connector(name)
        except (config_module.ConfigError, KeyError) as exc:
            self.notify(str(exc.args[0] if isinstance(exc, KeyError) else exc), severity="error", timeout=12)
            return
        if not backend.engine_running:
            self.notify(
                "No engine is running, so nothing can be sent; start one with `tui-currents run`.",
                title="Test events",
                severity="warning",
                timeout=12,
            )
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                message = backend.send_test_events(name)
            except Exception as exc:  # a store or config problem: say it, keep the app running
                self.notify(f"Test events not sent: {exc}", severity="error", timeout=12)
                return
            self.notify(message, title="Test events")

        self.push_screen(
            ConfirmScreen(test_events.question(connector), test_events.NOTE, yes="Send"), answered
        )

    def open_tail(self, connector: str | None) -> None:
        from tui_currents.tui.screens.tail import TailScreen

        self.open_view(TailScreen(connector))

    def open_health(self) -> None:
        from tui_currents.tui.screens.health import HealthScreen

        self.open_view(HealthScreen())

    def open_workspaces(self) -> None:
        from tui_currents.tui.screens.workspaces import WorkspacesScreen

        self.open_view(WorkspacesScreen())

    def open_dead_letters(self) -> None:
        from tui_currents.tui.screens.dead_letters import DeadLettersScreen

        self.open_view(DeadLettersScreen())

    def retry_dead_letters(self, *, ids: list[int] | None = None, connector: str | None = None) -> None:
        """Requeue dead letters (all of them after a confirmation)."""

        async def go(yes: bool | None = True) -> None:
            if not yes:
                return
            try:
                message = self.backend.retry_dead_letters(connector=connector, ids=ids)
            except Exception as exc:  # StoreUnavailable and the like
                self.notify(f"Not requeued: {exc}", severity="error", timeout=12)
                return
            self.notify(message, title="Dead letters")
            self.refresh_current()

        if ids is not None:
            self.run_worker(go(), group="retry")
            return
        self.push_screen(
            ConfirmScreen(
                "Retry every dead letter" + (f" of {connector!r}?" if connector else "?"),
                "Do this after fixing the cause (a write key, a destination). Events rejected while mapping "
                "have no Segment message and stay.",
                yes="Retry all",
            ),
            go,
        )

    async def export_dead_letters(self) -> None:
        """Write the dead letters as JSON lines into the home and say where."""
        try:
            path, written = await self.backend.run(self.backend.export_dead_letters)
        except Exception as exc:  # disk full, permissions
            self.notify(f"Not exported: {exc}", severity="error", timeout=12)
            return
        self.notify(f"Exported {written} dead letters to {path}", title="Dead letters", timeout=15)
        self.last_export = path

    def refresh_current(self) -> None:
        """Reload what the current screen shows."""
        screen = self.screen
        if isinstance(screen, ViewScreen):
            self.run_worker(screen.reload(), group="refresh")

    def show_home(self) -> None:
        """Back to the connectors screen."""
        while len(self.screen_stack) > 1:
            self.pop_screen()

    def open_view(self, screen: Screen) -> None:
        """Open a view on top of the connectors screen (any other view is closed first)."""
        self.show_home()
        self.push_screen(screen)


HIDDEN_ACTIONS = {"focus_next", "focus_previous", "copy_text"}


def keys_for(screen: Screen) -> list[KeyHelp]:
    """The keys active on a screen (focused widget, screen, app) as the user has them mapped; the keys of
    one binding share a row."""
    app = screen.app
    rows: dict[tuple[int, str], list] = {}
    for _key, active in screen.active_bindings.items():
        binding = active.binding
        if binding.system or not binding.description or binding.action.split(".")[-1] in HIDDEN_ACTIONS:
            continue
        node = active.node
        where = "everywhere" if node is app else ("this screen" if node is screen else _node_name(node))
        group = (id(node), binding.id or binding.action)
        shown = app.get_key_display(binding)
        if group in rows:
            if shown not in rows[group][0]:
                rows[group][0].append(shown)
            continue
        desc = binding.tooltip or binding.description
        rows[group] = [[shown], desc, where, binding.id]
    items = [
        KeyHelp(", ".join(keys), desc, where, binding_id) for keys, desc, where, binding_id in rows.values()
    ]

    def order(item: KeyHelp) -> int:
        # This screen's own keys first, then the focused widget's, then the app's; generic widget
        # navigation (no id) last.
        if item.where == "this screen":
            return 0
        if item.where == "everywhere":
            return 2
        return 1 if item.binding_id else 3

    return sorted(items, key=order)


def _node_name(node: object) -> str:
    names = {"EventTree": "event tree", "TailView": "tail", "DataTable": "table", "FilterBox": "filter"}
    return names.get(type(node).__name__, type(node).__name__.lower())


def binding_ids(app: App) -> set[str]:
    """Every binding id this app defines (for checking [ui.keymap])."""
    # Bindings are read from the classes, so every view must be imported, opened yet or not.
    for name in VIEW_MODULES:
        importlib.import_module(f"tui_currents.tui.screens.{name}")
    ids: set[str] = set()

    def walk(classes: Iterable[type]) -> None:
        for cls in classes:
            for binding in getattr(cls, "BINDINGS", []):
                if isinstance(binding, Binding) and binding.id:
                    ids.add(binding.id)
            walk(cls.__subclasses__())

    from textual.dom import DOMNode

    walk([DOMNode])
    return {i for i in ids if i.split(".")[0] in ID_AREAS}


ID_AREAS = {
    "app",
    "connectors",
    "editor",
    "event_tree",
    "filter",
    "tail",
    "tail_screen",
    "health",
    "dead_letters",
    "confirm",
    "message",
    "help",
}


def run_app(home: Home, secrets: Secrets, *, demo: bool = False, demo_rate: float | None = None) -> int:
    """Open the TUI on a home; runs the engine in-process unless a service already runs it."""
    backend = Backend(home, secrets, demo=demo, demo_rate=demo_rate)
    app = CurrentsApp(backend)
    result = app.run()
    return int(result or 0)
