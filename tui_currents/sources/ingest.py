"""The path every source shares: raw Currents records of one workspace -> each connector's fate -> the store.

Each record is normalised once and mapped only for the connectors that select its type (a lookup table
built when the configuration changes; connectors with equal rules share one mapping); the whole batch is
committed in one transaction. The other connectors' fates ("not selected", and "unsupported" or "not
forwardable" for types no connector can forward) are counted in bulk: one outcome per connector, event type
and fate for the whole batch, which becomes counters (the same figures as one per event) and, for events
no connector takes, one tail line per batch saying how many and why. A workspace with no enabled connector
still has its events counted (under the connector name "", "no connector"), and the invalid ones kept as
dead letters: nothing a source hands over disappears without a trace.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tui_currents.mapping import ConnectorRules, Fate, Outcome, depends_on_rules, map_event, normalise

if TYPE_CHECKING:  # annotations only: mapping and import workers import this module, not the configuration
    from tui_currents.config import Config
    from tui_currents.outbox import Outbox

NO_CONNECTOR = ""  # the connector name events of a workspace without enabled connectors are counted under
_NO_CONNECTOR_RULES = ConnectorRules(selected=frozenset())

# The one fate that describes an event across its workspace's connectors: the first that applies.
# Connectors of a workspace never select the same event type, so "queued" by one and "not selected" by
# the others is the normal case and reads as "queued".
FATE_ORDER = (
    Fate.QUEUED, Fate.REJECTED, Fate.ANONYMOUS, Fate.NOT_SELECTED, Fate.NOT_FORWARDABLE, Fate.UNSUPPORTED,
)  # fmt: skip
_RANK = {fate: rank for rank, fate in enumerate(FATE_ORDER)}
Routes = tuple[tuple[str, ConnectorRules], ...]  # a workspace's enabled connectors and their rules
_NOT_SELECTED, _REJECTED = Fate.NOT_SELECTED, Fate.REJECTED


@dataclass(frozen=True, slots=True)
class _TypeRoute:
    """Where events of one type go: the connectors selecting it, grouped by equal rules (one mapping per
    group), and the workspace's other connectors, for which the events are counted as not selected."""

    groups: tuple[tuple[tuple[str, ...], ConnectorRules], ...]
    others: tuple[str, ...]


class RouteTable:
    """A workspace's enabled connectors as a lookup by event type, built once per configuration."""

    __slots__ = ("by_type", "connectors", "routes", "rules")

    def __init__(self, routes: Routes):
        self.routes = routes
        self.connectors: tuple[str, ...] = tuple(name for name, _ in routes) or (NO_CONNECTOR,)
        self.rules: dict[str, ConnectorRules] = dict(routes) or {NO_CONNECTOR: _NO_CONNECTOR_RULES}
        groups_of: dict[str, list[tuple[list[str], ConnectorRules]]] = {}
        for name, rules in routes:
            for event_type in rules.selected:
                if not depends_on_rules(event_type):  # every connector gets the same fate: no route
                    continue
                groups = groups_of.setdefault(event_type, [])
                for names, shared in groups:
                    if shared == rules:
                        names.append(name)
                        break
                else:
                    groups.append(([name], rules))
        self.by_type: dict[str, _TypeRoute] = {}
        for event_type, groups in groups_of.items():
            selecting = {name for names, _ in groups for name in names}
            self.by_type[event_type] = _TypeRoute(
                tuple((tuple(names), rules) for names, rules in groups),
                tuple(name for name in self.connectors if name not in selecting),
            )


_TABLES_KEPT = 8
_tables: list[tuple[Routes, RouteTable]] = []  # the latest tables built for `route` callers given Routes


def route_table(routes: Routes) -> RouteTable:
    """The lookup table of these routes, built once while the same routes keep coming (a mapping worker is
    handed the routes with each batch)."""
    for known, table in _tables:
        if known is routes:
            return table
    for known, table in _tables:
        if known == routes:
            return table
    table = RouteTable(routes)
    _tables.insert(0, (routes, table))
    del _tables[_TABLES_KEPT:]
    return table


class UnknownWorkspace(LookupError):
    """Events were handed over for a workspace the config does not have."""


@dataclass(slots=True)
class IngestSummary:
    """What happened to one batch: one fate per event (see FATE_ORDER), by event type, and what the
    store did (newly queued vs duplicates of messages already queued or delivered)."""

    events: int = 0
    by_fate: Counter[str] = field(default_factory=Counter)
    by_type: dict[str, Counter[str]] = field(default_factory=dict)
    queued: int = 0  # outbox rows written (0 for a dry run)
    duplicates: int = 0  # queued messages that were already in the outbox or recently delivered


class Ingestor:
    """Routes raw records of a workspace to its enabled connectors and commits them to the store.

    The engine swaps the configuration with `update_config`; a batch already being ingested finishes with
    the configuration it started with. Thread-safe to call from worker threads (the store serialises
    commits).
    """

    def __init__(self, config: Config, store: Outbox):
        self.store = store
        self._routes: dict[str, RouteTable] = {}
        self.update_config(config)

    def update_config(self, config: Config) -> None:
        """Use this configuration for the batches that start from now on."""
        routes: dict[str, RouteTable] = {}
        for workspace in config.workspaces:
            routes[workspace.name] = RouteTable(
                tuple((c.name, c.rules()) for c in config.connectors_of(workspace.name) if c.enabled)
            )
        self._routes = routes  # one assignment: readers see the old table or the new one, never a mix

    def has_workspace(self, workspace: str) -> bool:
        """Whether the configuration has this workspace."""
        return workspace in self._routes

    def require_workspace(self, workspace: str) -> None:
        """Raise UnknownWorkspace, naming the workspaces there are, unless the configuration has this one."""
        self.connector_rules(workspace)

    def connectors_of(self, workspace: str) -> list[str]:
        """The enabled connectors events of this workspace go to (empty: counted under NO_CONNECTOR)."""
        return [name for name, _ in self.connector_rules(workspace)]

    def connector_rules(self, workspace: str) -> Routes:
        """The workspace's enabled connectors and their rules; UnknownWorkspace if there is no such one."""
        return self._table(workspace).routes

    def _table(self, workspace: str) -> RouteTable:
        try:
            return self._routes[workspace]
        except KeyError:
            known = ", ".join(repr(name) for name in self._routes) or "none yet"
            raise UnknownWorkspace(
                f"there is no workspace named {workspace!r} (workspaces: {known}); add it first"
            ) from None

    def route(
        self, workspace: str, records: Sequence[object]
    ) -> tuple[list[tuple[str, Outcome]], IngestSummary]:
        """Map every record for the enabled connectors of the workspace that select it, without storing
        anything: the (connector, outcome) items `commit` takes, and the summary of the events' fates."""
        return route(workspace, self._table(workspace), records)

    def ingest(self, workspace: str, records: Sequence[object], *, source: str) -> IngestSummary:
        """Map the records and commit them in ONE transaction; returns what happened to them.

        Raises UnknownWorkspace, or StoreUnavailable when nothing could be stored (then the source must not
        acknowledge the records)."""
        items, summary = self.route(workspace, records)
        if items:
            result = self.store.commit(items, source=source)
            summary.queued = result.queued
            summary.duplicates = result.duplicates
        return summary


def route(
    workspace: str, connectors: Routes | RouteTable, records: Sequence[object]
) -> tuple[list[tuple[str, Outcome]], IngestSummary]:
    """Map every record for the connectors (a workspace's enabled ones) that select its type: the
    (connector, outcome) items the store commits, and the summary of the events' fates. The fates of the
    other connectors come as one outcome per connector, event type and fate for the batch (see
    `Outcome.tally`). Pure: runs anywhere."""
    table = connectors if isinstance(connectors, RouteTable) else route_table(connectors)
    by_type, everyone = table.by_type, table.connectors
    items: list[tuple[str, Outcome]] = []
    append = items.append
    tally: dict[tuple[str, str], int] = {}  # (event type, fate) -> events
    taken_by_none: dict[str, list] = {}  # event type -> [its first event, events]: no connector maps them
    passed_over: dict[str, list] = {}  # event type -> [its first event, events]: some other connectors do
    for record in records:
        event = normalise(record)
        event_type = event.event_type
        where = by_type.get(event_type)
        if where is None:
            seen = taken_by_none.get(event_type) if event_type else None
            if seen is not None:
                seen[1] += 1
                fate = seen[2]
            else:
                outcome = map_event(event, _NO_CONNECTOR_RULES)  # its fate for every connector
                fate = outcome.fate
                if fate is _REJECTED:  # a dead letter for each connector, as each would have mapped it
                    for name in everyone:
                        append((name, outcome))
                else:
                    taken_by_none[event_type] = [event, 1, fate]
        else:
            fate = _NOT_SELECTED
            for names, rules in where.groups:
                outcome = map_event(event, rules)
                for name in names:
                    append((name, outcome))
                if _RANK[outcome.fate] < _RANK[fate]:
                    fate = outcome.fate
            if where.others:
                seen = passed_over.get(event_type)
                if seen is None:
                    passed_over[event_type] = [event, 1]
                else:
                    seen[1] += 1
        key = (event_type, fate)
        tally[key] = tally.get(key, 0) + 1
    for event, n, _ in taken_by_none.values():
        for name in everyone:
            # Each connector's own outcome for the first of them (its reason, its Segment event name),
            # standing for all: one tail line for the batch says how many and why.
            outcome = map_event(event, table.rules[name])
            if name == NO_CONNECTOR and outcome.fate is _NOT_SELECTED:
                outcome.reason = (
                    f"workspace {workspace!r} has no enabled connector, so the event goes nowhere"
                )
            outcome.tally = n
            append((name, outcome))
    for event_type, (event, n) in passed_over.items():
        counted = Outcome(_NOT_SELECTED, event, tally=n)  # counted only: the tail shows them where they go
        for name in by_type[event_type].others:
            append((name, counted))
    summary = IngestSummary(events=len(records))
    for (event_type, fate), n in tally.items():
        summary.by_fate[str(fate)] += n
        summary.by_type.setdefault(event_type, Counter())[str(fate)] += n
    return items, summary
