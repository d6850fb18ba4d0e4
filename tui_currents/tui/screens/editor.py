"""The connector editor: one screen to create ("Launch") or change ("Update") a connector.

Every change is checked as it is typed, with the same rules the config file is saved with (the overlap rule
included), and the reason appears under the field. A running connector keeps running while it is updated:
the engine applies the new settings to events received from then on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.suggester import SuggestFromList
from textual.timer import Timer
from textual.widgets import Button, Checkbox, Collapsible, Input, Label, RadioSet, Static, TextArea

from tui_currents import catalog
from tui_currents.tui.backend import ConfigError, Connector, FieldError, SecretsUnavailable
from tui_currents.tui.screens.base import ViewScreen
from tui_currents.tui.screens.modals import ConfirmScreen
from tui_currents.tui.widgets.event_tree import EventPicker, EventTree
from tui_currents.tui.widgets.toggles import TextCheckbox, TextRadioButton

DEMO_DESTINATION_NOTE = (
    "Demo: whatever is chosen here, this connector delivers only to the local sandbox, and its write key "
    "stays in the demo's own keyring."
)
REGION_BUTTONS = (("us", "US"), ("eu", "EU"), ("custom", "Custom endpoint"))
# Form fields, in the order errors are listed; the names are Connector's (plus write_key).
FIELDS = (
    "name",
    "contact_email",
    "workspace",
    "write_key",
    "region",
    "endpoint",
    "include_anonymous",
    "name_overrides",
    "field_transforms",
    "events",
)
FIELD_LABELS = {
    "name": "Integration name",
    "contact_email": "Contact email",
    "workspace": "Braze workspace",
    "write_key": "Segment write key",
    "region": "Segment region",
    "endpoint": "Custom endpoint",
    "name_overrides": "Name overrides",
    "field_transforms": "Field transforms",
    "events": "Event types",
}


def anonymous_hint(included: bool) -> str:
    """What the anonymous-users switch does, as it is set now."""
    if included:
        return "On: events of users without an external id are sent, with only an anonymousId."
    return "Off: events of users without an external id are counted but not sent."


def parse_pairs(text: str, what: str) -> tuple[dict[str, str], list[str]]:
    """Lines of `key = value` (blank lines and # comments skipped) -> a dict and per-line problems."""
    pairs: dict[str, str] = {}
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or not value.strip():
            problems.append(f"line {number}: expected {what}")
            continue
        pairs[key.strip()] = value.strip()
    return pairs, problems


def format_pairs(pairs: Mapping[str, str]) -> str:
    return "\n".join(f"{k} = {v}" for k, v in pairs.items())


class EditorScreen(ViewScreen):
    """Create or edit one connector."""

    HELP_ID = "editor"
    REFRESH = False
    BINDINGS = [
        # One key, named after what it does here; check_action shows the one that applies.
        Binding("ctrl+s", "save('launch')", "Launch", id="editor.save", priority=True),
        Binding("ctrl+s", "save('update')", "Update", id="editor.save", priority=True),
        Binding("escape", "cancel", "Cancel", id="editor.cancel"),
    ]

    def __init__(
        self, original: Connector | None, *, write_key_hint: str | None, workspaces: list[str]
    ) -> None:
        self.original = original
        self.creating = original is None
        self.TITLE_TEXT = "New connector" if original is None else f"Edit {original.name}"
        self.write_key_hint = write_key_hint
        self.known_workspaces = workspaces
        self.touched: set[str] = set()
        self.errors: list[FieldError] = []
        self._check_timer: Timer | None = None
        self._saving = False
        self._key_missing = False  # set by a save that found no key typed, stored or in the environment
        super().__init__()

    # ------------------------------------------------------------------ layout

    def compose_view(self) -> ComposeResult:
        c = self.original or Connector(
            name="",
            workspace=self.known_workspaces[0] if len(self.known_workspaces) == 1 else "",
            contact_email="",
        )
        with VerticalScroll(id="editor-form"):
            yield from self._row(
                "name",
                Input(
                    c.name,
                    id="name",
                    placeholder="e.g. Production to Segment",
                    compact=True,
                    disabled=not self.creating,
                ),
                hint=None
                if self.creating
                else "The name identifies the connector's queue and key; it cannot change.",
            )
            yield from self._row(
                "contact_email",
                Input(c.contact_email, id="contact_email", placeholder="e.g. ops@example.com", compact=True),
            )
            yield from self._row(
                "workspace",
                Input(
                    c.workspace,
                    id="workspace",
                    placeholder="Braze workspace (a new name adds it)",
                    compact=True,
                    suggester=SuggestFromList(self.known_workspaces, case_sensitive=True)
                    if self.known_workspaces
                    else None,
                ),
                hint=("Known: " + ", ".join(self.known_workspaces))
                if self.known_workspaces
                else "A new name adds the workspace.",
            )
            key_hint = (
                f"A write key is stored (ends {self.write_key_hint}); leave empty to keep it."
                if self.write_key_hint
                else (
                    "No write key is stored yet."
                    if not self.creating
                    else "Segment: Source > Settings > API Keys."
                )
            )
            yield from self._row(
                "write_key",
                Input(
                    "",
                    id="write_key",
                    password=True,
                    placeholder="paste the source's write key",
                    compact=True,
                ),
                hint=key_hint,
            )
            region = c.region if c.region in ("us", "eu", "custom") else "us"
            with Horizontal(classes="form-row"):
                yield Label(FIELD_LABELS["region"], classes="form-label")
                with Vertical(classes="form-field"):
                    with RadioSet(id="region", compact=True):
                        for value, label in REGION_BUTTONS:
                            yield TextRadioButton(label, value=value == region, id=f"region-{value}")
                    if self.currents_app.backend.demo:
                        yield Static(DEMO_DESTINATION_NOTE, id="demo-destination", classes="field-hint")
                    yield Static(classes="field-error", id="error-region")
            yield from self._row(
                "endpoint",
                Input(
                    c.endpoint or "",
                    id="endpoint",
                    placeholder="e.g. https://segment-proxy.example.com",
                    compact=True,
                ),
                classes="endpoint-row",
            )
            with Horizontal(classes="form-row"):
                yield Label("Anonymous users", classes="form-label")
                with Vertical(classes="form-field"):
                    yield TextCheckbox(
                        "Include events from anonymous users",
                        c.include_anonymous,
                        id="include_anonymous",
                        compact=True,
                    )
                    yield Static(
                        anonymous_hint(c.include_anonymous), id="anonymous-hint", classes="field-hint"
                    )
            with Collapsible(
                title="Advanced: name overrides and field transforms",
                id="advanced",
                collapsed=not (c.name_overrides or c.field_transforms),
            ):
                yield Label(
                    "Name overrides: one line each, event type = Segment event name", classes="field-hint"
                )
                yield TextArea(
                    format_pairs(c.name_overrides), id="name_overrides", classes="pairs", tab_behavior="focus"
                )
                yield Static(classes="field-error", id="error-name_overrides")
                yield Label(
                    "Field transforms: one line each, field = redact, or field = hash", classes="field-hint"
                )
                yield TextArea(
                    format_pairs(c.field_transforms),
                    id="field_transforms",
                    classes="pairs",
                    tab_behavior="focus",
                )
                yield Static(classes="field-error", id="error-field_transforms")
            yield Label("Event types to forward", classes="section-title")
            yield Static(classes="field-error", id="error-events")
            yield EventPicker(c.events, name_overrides=c.name_overrides, id="events")
            with Horizontal(id="editor-buttons"):
                yield Button(
                    "Launch (ctrl+s)" if self.creating else "Update (ctrl+s)",
                    id="save",
                    variant="primary",
                    compact=True,
                )
                yield Button("Cancel (esc)", id="cancel", compact=True)
                yield Static(id="save-status")

    def _row(self, field: str, widget, *, hint: str | None = None, classes: str = "") -> ComposeResult:
        with Horizontal(classes=f"form-row {classes}".strip()):
            yield Label(FIELD_LABELS[field], classes="form-label")
            with Vertical(classes="form-field"):
                yield widget
                if hint:
                    yield Static(Text(hint), classes="field-hint", id=f"hint-{field}")
                yield Static(classes="field-error", id=f"error-{field}")

    def on_mount(self) -> None:
        super().on_mount()
        self._show_endpoint()
        first = self.query_one("#name" if self.creating else "#contact_email", Input)
        first.focus()
        if not self.creating:
            self._schedule_check(immediate=True)
        self._as_opened = self._form_state()

    def _form_state(self) -> tuple[dict, str]:
        """What the form says now, to tell whether anything was changed since it opened."""
        connector, write_key, _ = self.form()
        return dataclasses.asdict(connector), write_key

    @property
    def changed(self) -> bool:
        """True once the form differs from what it showed when opened (typing a change back undoes it)."""
        return self._form_state() != getattr(self, "_as_opened", None)

    # ------------------------------------------------------------------ reading the form

    @property
    def chosen_region(self) -> str:
        pressed = self.query_one("#region", RadioSet).pressed_button
        return pressed.id.removeprefix("region-") if pressed is not None and pressed.id else "us"

    def form(self) -> tuple[Connector, str, list[FieldError]]:
        """The connector as the form stands, the write key typed (may be empty), and parse problems."""
        problems: list[FieldError] = []
        overrides, bad = parse_pairs(
            self.query_one("#name_overrides", TextArea).text, "`event type = Segment name`"
        )
        problems += [FieldError("name_overrides", p) for p in bad]
        transforms, bad = parse_pairs(
            self.query_one("#field_transforms", TextArea).text, "`field = redact` or `field = hash`"
        )
        problems += [FieldError("field_transforms", p) for p in bad]
        overrides = {catalog.canonical_name(k): v for k, v in overrides.items()}
        region = self.chosen_region
        base = self.original or Connector(name="", workspace="", contact_email="")
        connector = dataclasses.replace(
            base,
            name=self.query_one("#name", Input).value.strip(),
            contact_email=self.query_one("#contact_email", Input).value.strip(),
            workspace=self.query_one("#workspace", Input).value.strip(),
            region=region,
            endpoint=(self.query_one("#endpoint", Input).value.strip() or None)
            if region == "custom"
            else None,
            include_anonymous=self.query_one("#include_anonymous", Checkbox).value,
            events=sorted(self.query_one(EventPicker).selected, key=_catalog_order),
            name_overrides=overrides,
            field_transforms=transforms,
            # Unknown fields (enabled, retention, in-flight limit, gzip) are kept as they were.
        )
        return connector, self.query_one("#write_key", Input).value, problems

    @property
    def _replacing(self) -> str | None:
        """The name of the connector being edited (None when creating one)."""
        return self.original.name if self.original is not None else None

    def check(self) -> list[FieldError]:
        """Every problem with the form now (parse problems, the config's rules, a missing write key)."""
        connector, write_key, problems = self.form()
        try:
            problems += self.currents_app.backend.validate(connector, replacing=self._replacing)
        except ConfigError as exc:
            problems.append(FieldError("name", f"the config file cannot be read: {exc}"))
        if write_key and any(ch.isspace() for ch in write_key):
            problems.append(FieldError("write_key", "contains spaces or line breaks; paste the key alone"))
        elif not write_key and not self.write_key_hint and self._key_missing:
            problems.append(FieldError("write_key", "paste the write key of the Segment source to send to"))
        return problems

    # ------------------------------------------------------------------ live checking

    def _schedule_check(self, *, immediate: bool = False) -> None:
        if self._check_timer is not None:
            self._check_timer.stop()
        if immediate:
            self._run_check()
        else:
            self._check_timer = self.set_timer(0.25, self._run_check)

    def _run_check(self, *, show_all: bool = False) -> list[FieldError]:
        self.errors = self.check()
        self._show_errors(show_all=show_all)
        return self.errors

    def _show_errors(self, *, show_all: bool) -> None:
        by_field: dict[str, list[str]] = {}
        for error in self.errors:
            by_field.setdefault(error.field if error.field in FIELDS else "name", []).append(error.message)
        for field in FIELDS:
            try:
                box = self.query_one(f"#error-{field}", Static)
            except Exception:
                continue
            messages = by_field.get(field, [])
            # Untouched fields stay quiet until the first save attempt; the overlap rule always shows.
            visible = (
                show_all
                or field in self.touched
                or (field == "events" and any("already forwards" in m for m in messages))
            )
            if messages and visible:
                box.update(Text("\n".join(f"✖ {m}" for m in messages)))
                box.display = True
            else:
                box.update("")
                box.display = False
        status = self.query_one("#save-status", Static)
        if show_all and self.errors:
            count = len(self.errors)
            status.update(Text(f"Not saved: {count} problem{'s' if count > 1 else ''} to fix above."))
        elif not self.errors:
            status.update("Ready." if self.creating else "Ready: updating keeps the connector running.")
        else:
            status.update("")

    def _touch(self, field: str) -> None:
        self.touched.add(field)
        self._schedule_check()

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        if event.input.id in FIELDS:
            self._touch(event.input.id)

    @on(TextArea.Changed)
    def _pairs_changed(self, event: TextArea.Changed) -> None:
        if event.text_area.id in FIELDS:
            self._touch(event.text_area.id)
            if event.text_area.id == "name_overrides":
                overrides, _ = parse_pairs(event.text_area.text, "")
                self.query_one(EventTree).set_name_overrides(
                    {catalog.canonical_name(k): v for k, v in overrides.items()}
                )

    @on(RadioSet.Changed, "#region")
    def _region_changed(self) -> None:
        self._show_endpoint()
        self._touch("region")

    @on(Checkbox.Changed, "#include_anonymous")
    def _anonymous_changed(self, event: Checkbox.Changed) -> None:
        self.query_one("#anonymous-hint", Static).update(anonymous_hint(event.value))
        self._touch("include_anonymous")

    @on(EventTree.Changed)
    def _events_changed(self) -> None:
        self._touch("events")

    def _show_endpoint(self) -> None:
        for row in self.query(".endpoint-row"):
            row.display = self.chosen_region == "custom"

    # ------------------------------------------------------------------ saving

    @on(Button.Pressed, "#save")
    async def _save_pressed(self) -> None:
        await self.action_save()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "save" and parameters:
            return parameters[0] == ("launch" if self.creating else "update")
        return super().check_action(action, parameters)

    async def action_save(self, _verb: str = "") -> None:
        if self._saving:
            return
        if self._check_timer is not None:
            self._check_timer.stop()
        connector, write_key, _ = self.form()
        # Saving reads and writes the keyring (the encrypted file takes a second or two): show it is at work
        # from the first moment, over the form, until it is done.
        self._saving = True
        self._show_saving(True)
        try:
            await self._save(connector, write_key)
        finally:
            self._saving = False
            if self.is_attached:
                self._show_saving(False)

    def _show_saving(self, saving: bool) -> None:
        if saving:
            self.query_one("#save-status", Static).update("Saving… (the keyring takes a moment)")
        self.query_one("#editor-form").loading = saving

    async def _save(self, connector: Connector, write_key: str) -> None:
        if not write_key and not self.write_key_hint and connector.name:
            # No key typed: one may already be stored (a connector deleted and created again) or given by
            # an environment override. One keyring read, at save time only.
            try:
                self.write_key_hint = await self.currents_app.backend.run(
                    self.currents_app.backend.write_key_hint, connector.name
                )
            except SecretsUnavailable:
                self.write_key_hint = None
        self._key_missing = not write_key and not self.write_key_hint
        errors = self._run_check(show_all=True)
        if errors:
            self._show_saving(False)  # the form takes focus again
            self._focus_first_error()
            return
        try:
            message = await self.currents_app.backend.save_connector(
                connector, original=self._replacing, write_key=write_key or None
            )
        except (ConfigError, ValueError, SecretsUnavailable) as exc:
            self.query_one("#save-status", Static).update(Text(f"Not saved: {exc}"))
            self.app.notify(str(exc), title="Not saved", severity="error", timeout=15)
            return
        if not self.creating:
            message += " It kept running; the new settings apply to events received from now on."
        self.app.notify(message, title="Connector", timeout=8)
        self.dismiss(connector.name)

    def _focus_first_error(self) -> None:
        fields = {e.field for e in self.errors}
        for field in FIELDS:
            if field not in fields:
                continue
            target = {"events": "#event-tree", "region": "#region"}.get(field, f"#{field}")
            if field in ("name_overrides", "field_transforms"):
                self.query_one("#advanced", Collapsible).collapsed = False
            try:
                widget = self.query_one(target)
            except Exception:
                continue
            if widget.focusable:
                widget.focus()
                return

    def action_cancel(self) -> None:
        if not self.changed:
            self.dismiss(None)
            return

        def answered(discard: bool | None) -> None:
            if discard:
                self.dismiss(None)

        self.app.push_screen(
            ConfirmScreen("Discard your changes?", "Nothing has been saved.", yes="Discard", danger=True),
            answered,
        )


def _catalog_order(event_type: str) -> int:
    for index, entry in enumerate(catalog.CATALOG):
        if entry.event_type == event_type:
            return index
    return len(catalog.CATALOG)
