"""What people see of the outbox: backlog per connector, connector states, counters."""

from __future__ import annotations

import time

from tui_currents.outbox import Backlog, ConnectorState
from tui_currents.store import counter_log
from tui_currents.store.base import StoreBase


class Observation(StoreBase):
    """Backlog, states and counters, cheap to read at any size."""

    def backlog(self, connector: str) -> Backlog:
        """How many messages (and bytes) wait in the connector's outbox, since when, and its dead letters."""
        row = self._read(
            "SELECT messages, bytes, dead_letters FROM backlog WHERE connector = ?", (connector,)
        )
        oldest = self._read(
            "SELECT enqueued_at FROM outbox INDEXED BY outbox_waiting"
            " WHERE connector = ? AND finished_at IS NULL ORDER BY seq LIMIT 1",
            (connector,),
        )
        messages, size, dead = row[0] if row else (0, 0, 0)
        return Backlog(messages, size, oldest[0][0] if oldest and messages else None, dead)

    # ----------------------------------------------------------------------------------------- states

    def set_state(self, connector: str, state: ConnectorState) -> None:
        """Record a connector's delivery state for every reader."""
        kept = "The connector keeps running; only its displayed state is stale."
        with self._write("record a connector's state", kept, durable=False) as db:
            db.execute(
                "INSERT INTO connector_states (connector, state, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (connector) DO UPDATE SET state = excluded.state,"
                " updated_at = excluded.updated_at",
                (connector, state.to_json(), time.time()),
            )

    def states(self) -> dict[str, ConnectorState]:
        """Every connector's last recorded state."""
        rows = self._read("SELECT connector, state FROM connector_states ORDER BY connector")
        return {name: ConnectorState.from_json(text) for name, text in rows}

    def receiver_problems(self) -> dict[str, tuple[str, float]]:
        """Per workspace, why the running engine cannot read its receiver token and since when (as the engine
        records them with `Control.set_receiver_problems`); empty when every token can be read."""
        rows = self._read("SELECT workspace, problem, since FROM receiver_problems ORDER BY workspace")
        return {workspace: (problem, since) for workspace, problem, since in rows}

    # --------------------------------------------------------------------------------------- counters

    def counters(self, connector: str | None = None) -> dict[str, dict[str, dict[str, int]]]:
        """Counters as {connector: {event type: {name: n}}}, for one connector or all."""
        if connector is None:
            rows = self._read_counters("SELECT connector, event_type, name, n FROM counters", (), None)
        else:
            rows = self._read_counters(
                "SELECT connector, event_type, name, n FROM counters WHERE connector = ?",
                (connector,),
                connector,
            )
        out: dict[str, dict[str, dict[str, int]]] = {}
        for name, event_type, counter, n in rows:
            per_type = out.setdefault(name, {}).setdefault(event_type, {})
            per_type[counter] = per_type.get(counter, 0) + n
        return out

    def counter_totals(self, connector: str | None = None) -> dict[str, int]:
        """Counters summed over event types: {name: n}, for one connector or all."""
        sql = "SELECT '', '', name, sum(n) FROM counters"
        params: tuple = ()
        if connector is not None:
            sql, params = sql + " WHERE connector = ?", (connector,)
        sql += " GROUP BY name"
        totals: dict[str, int] = {}
        for _, _, name, n in self._read_counters(sql, params, connector):
            totals[name] = totals.get(name, 0) + int(n)
        return totals

    def _read_counters(self, sql: str, params: tuple, connector: str | None) -> list[tuple]:
        """Rows of `sql` (connector, event type, name, n) and the changes still in the counter log, read
        from one snapshot."""
        with self._reading() as db:
            db.execute("BEGIN")
            try:
                rows = db.execute(sql, params).fetchall()
                rows.extend(counter_log.pending(db, connector))
            finally:
                db.execute("COMMIT")
        return rows
