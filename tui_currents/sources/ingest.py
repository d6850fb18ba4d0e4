"""The path every source shares: raw Currents records of one workspace -> each connector's fate -> the store.

Each record is normalised once, then mapped for every enabled connector of its workspace, and the whole
batch is committed in one transaction. A workspace with no enabled connector still has its events counted
(under the connector name "", "no connector"), and the invalid ones kept as dead letters: nothing a
source hands over disappears without a trace.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from tui_currents.config import Config
from tui_currents.mapping import ConnectorRules, Fate, Outcome, map_event, normalise
from tui_currents.store import Store

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

    def __init__(self, config: Config, store: Store):
        self.store = store
        self._routes: dict[str, Routes] = {}
        self.update_config(config)

    def update_config(self, config: Config) -> None:
        """Use this configuration for the batches that start from now on."""
        routes: dict[str, Routes] = {}
        for workspace in config.workspaces:
            routes[workspace.name] = tuple(
                (c.name, c.rules()) for c in config.connectors_of(workspace.name) if c.enabled
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
        """Map every record for every enabled connector of the workspace, without storing anything:
        the (connector, outcome) items `commit` takes, and the summary of the events' fates."""
        return route(workspace, self.connector_rules(workspace), records)

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
    workspace: str, connectors: Routes, records: Sequence[object]
) -> tuple[list[tuple[str, Outcome]], IngestSummary]:
    """Map every record for each of the connectors (a workspace's enabled ones): the (connector,
    outcome) items the store commits, and the summary of the events' fates. Pure: runs anywhere."""
    items: list[tuple[str, Outcome]] = []
    append = items.append
    tally: dict[tuple[str, str], int] = {}  # (event type, fate) -> events
    if not connectors:
        no_one = f"workspace {workspace!r} has no enabled connector, so the event goes nowhere"
        for record in records:
            outcome = map_event(normalise(record), _NO_CONNECTOR_RULES)
            if outcome.fate is Fate.NOT_SELECTED:
                outcome.reason = no_one
            append((NO_CONNECTOR, outcome))
            key = (outcome.event.event_type, outcome.fate)
            tally[key] = tally.get(key, 0) + 1
    elif len(connectors) == 1:
        [(name, rules)] = connectors
        for record in records:
            event = normalise(record)
            outcome = map_event(event, rules)
            append((name, outcome))
            key = (event.event_type, outcome.fate)
            tally[key] = tally.get(key, 0) + 1
    else:
        for record in records:
            event = normalise(record)
            best: Outcome | None = None
            for name, rules in connectors:
                outcome = map_event(event, rules)
                append((name, outcome))
                if best is None or _RANK[outcome.fate] < _RANK[best.fate]:
                    best = outcome
            assert best is not None  # there are connectors on this path
            key = (event.event_type, best.fate)
            tally[key] = tally.get(key, 0) + 1
    summary = IngestSummary(events=len(records))
    for (event_type, fate), n in tally.items():
        summary.by_fate[str(fate)] += n
        summary.by_type.setdefault(event_type, Counter())[str(fate)] += n
    return items, summary
