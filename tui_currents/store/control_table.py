"""The engine's command and presence tables in the store's file: consoles post commands, the engine takes
them and says it is alive (see `tui_currents.control`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from tui_currents.store.side_connection import connect

# What a console may ask for; anything else is ignored by the engine with a log line.
RELOAD = "reload"  # config or write keys changed
SEND_TEST_EVENTS = "send-test-events"  # args: {"connector": name}
RETRY_DEAD_LETTERS = "retry-dead-letters"  # args: {"connector": name | None, "ids": [..] | None}
KINDS = frozenset({RELOAD, SEND_TEST_EVENTS, RETRY_DEAD_LETTERS})


@dataclass(frozen=True, slots=True)
class Command:
    id: int
    kind: str
    args: dict


@dataclass(frozen=True, slots=True)
class Presence:
    """What a running engine says about itself, for consoles and `status`."""

    pid: int
    started_at: float
    heartbeat_at: float
    receiver: str | None
    demo: bool

    def alive(self, now: float | None = None, *, within: float = 5.0) -> bool:
        return ((now or time.time()) - self.heartbeat_at) <= within


class Control:
    """Post and take engine commands through the store's SQLite file."""

    def __init__(self, db_path: Path):
        """Open the command table in the store's file; StoreUnavailable (one line for people) when the file
        cannot be opened or written (read-only, damaged, a full disk)."""
        self._db = connect(db_path, "open the engine's command table")

    def close(self) -> None:
        self._db.close()

    def post(self, kind: str, **args: object) -> int:
        """Leave a command for the engine; returns its id."""
        if kind not in KINDS:
            raise ValueError(f"unknown engine command {kind!r}")
        cur = self._db.execute(
            "INSERT INTO engine_commands (at, kind, args) VALUES (?, ?, ?)",
            (time.time(), kind, json.dumps(args)),
        )
        assert cur.lastrowid is not None  # an INSERT always sets it
        return cur.lastrowid

    def taken(self, command_id: int) -> bool:
        """Whether the engine has taken this command (a command gone from the table was taken long ago)."""
        row = self._db.execute("SELECT taken_at FROM engine_commands WHERE id = ?", (command_id,)).fetchone()
        return row is None or row[0] is not None

    def take(self) -> list[Command]:
        """Claim every command not yet taken (engine side)."""
        now = time.time()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            rows = self._db.execute(
                "SELECT id, kind, args FROM engine_commands WHERE taken_at IS NULL ORDER BY id"
            ).fetchall()
            if rows:
                self._db.execute("UPDATE engine_commands SET taken_at = ? WHERE taken_at IS NULL", (now,))
            # Keep the table small: taken commands are history of no further use after an hour.
            self._db.execute("DELETE FROM engine_commands WHERE taken_at < ?", (now - 3600,))
        return [Command(id=r[0], kind=r[1], args=json.loads(r[2])) for r in rows]

    def beat(self, *, pid: int, started_at: float, receiver: str | None, demo: bool) -> None:
        """Engine side: say it is alive (called every second)."""
        self._db.execute(
            "INSERT INTO engine_presence (id, pid, started_at, heartbeat_at, receiver, demo)"
            " VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET pid = excluded.pid,"
            " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,"
            " receiver = excluded.receiver, demo = excluded.demo",
            (pid, started_at, time.time(), receiver, int(demo)),
        )

    def gone(self) -> None:
        """Engine side: a clean stop."""
        self._db.execute("DELETE FROM engine_presence")
        self._db.execute("DELETE FROM receiver_problems")

    def set_receiver_problems(self, problems: dict[str, str]) -> None:
        """Engine side: the workspaces whose receiver token cannot be read now, and why (no values)."""
        now = time.time()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            kept = {
                row[0]: row[1] for row in self._db.execute("SELECT workspace, since FROM receiver_problems")
            }
            self._db.execute("DELETE FROM receiver_problems")
            self._db.executemany(
                "INSERT INTO receiver_problems (workspace, problem, since) VALUES (?, ?, ?)",
                [(name, text, kept.get(name, now)) for name, text in problems.items()],
            )

    def receiver_problems(self) -> dict[str, str]:
        """Per workspace, why the running engine cannot read its receiver token (empty when all is well)."""
        rows = self._db.execute("SELECT workspace, problem FROM receiver_problems ORDER BY workspace")
        return {row[0]: row[1] for row in rows}

    def presence(self) -> Presence | None:
        row = self._db.execute(
            "SELECT pid, started_at, heartbeat_at, receiver, demo FROM engine_presence WHERE id = 1"
        ).fetchone()
        if row is None:
            return None
        return Presence(
            pid=row[0], started_at=row[1], heartbeat_at=row[2], receiver=row[3], demo=bool(row[4])
        )
