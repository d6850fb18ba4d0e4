"""The alert rules alone: readings over time in, alerts and recoveries out. No SQLite, no SMTP, no clock.

Each scenario is a table of checks: the minute of the check, the connector's reading then, and what the
rules must raise (an alert, a recovery, or nothing). The memory is carried from one check to the next as
the monitor does, through its JSON text.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tui_currents.alerts.rules import AlertKind, Memory, Phase, Reading, Thresholds, step
from tui_currents.outbox import Backlog, ConnectorState, ConnectorStatus, DeadLetter

T0 = 1_717_200_000.0
MINUTE = 60.0
HOUR = 60 * MINUTE
DAY = 24 * HOUR
ALERT, RECOVERY = Phase.ALERT, Phase.RECOVERY
REJECTED, RUNNING, IDLE, PAUSED = (
    ConnectorStatus.CREDENTIALS_REJECTED,
    ConnectorStatus.RUNNING,
    ConnectorStatus.IDLE,
    ConnectorStatus.PAUSED,
)


def at(minute: float) -> float:
    return T0 + minute * MINUTE


@dataclass(frozen=True)
class R:
    """A reading, written briefly: times in minutes from T0."""

    state: str | None = None
    state_since: float = 0.0
    waiting: int = 0
    oldest: float | None = None  # minute the oldest waiting event was received
    delivered: int = 0
    dead: int = 0
    dead_at: tuple[float, ...] = ()  # minutes the newest dead letters came, newest first
    active: bool = True
    retention_days: int = 30
    asked: list[int] = field(default_factory=list, compare=False)  # how many dead letters were looked up
    enabled: bool = True
    token: str | None = None  # why the workspace's receiver token cannot be read
    token_since: float = 0.0  # minute the engine first recorded it

    def reading(self) -> Reading:
        def newest(n: int) -> list[DeadLetter]:
            self.asked.append(n)
            return [
                DeadLetter(i, "c", None, "t", "why", at(m), 0, None, None)
                for i, m in enumerate(self.dead_at[:n])
            ]

        return Reading(
            state=None if self.state is None else ConnectorState(self.state, since=at(self.state_since)),
            backlog=Backlog(
                self.waiting, self.waiting * 100, None if self.oldest is None else at(self.oldest), 0
            ),
            delivered=self.delivered,
            dead_lettered=self.dead,
            active=self.active,
            retention_days=self.retention_days,
            newest_dead_letters=newest,
            enabled=self.enabled,
            token_problem=self.token,
            token_problem_since=None if self.token is None else at(self.token_since),
        )


DEFAULTS = Thresholds()
GONE = "the encrypted keyring file is missing. Put it back (from a backup)."


def run(
    kind: AlertKind, checks: list[tuple[float, R]], thresholds: Thresholds = DEFAULTS
) -> tuple[list[Phase | None], Memory]:
    """Step the rules through the checks; returns what each check raised, and the last memory."""
    text: str | None = None
    raised: list[Phase | None] = []
    memory = Memory()
    for minute, reading in checks:
        memory = Memory.from_json(text) if text is not None else Memory()
        result = step(kind, memory, reading.reading(), at(minute), thresholds)
        raised.append(result.phase)
        text = result.memory.to_json()
        memory = result.memory
    return raised, memory


# (name, kind, [(minute of the check, reading, expected)], thresholds)
SCENARIOS = [
    (
        "a rejected key alerts once, and recovers only when Segment accepted a batch",
        AlertKind.CREDENTIALS,
        [
            (0, R(RUNNING, waiting=5, oldest=0, delivered=10), None),
            (1, R(REJECTED, waiting=5, oldest=0, delivered=10), ALERT),
            (2, R(REJECTED, waiting=9, oldest=0, delivered=10), None),
            (3, R(RUNNING, waiting=9, oldest=0, delivered=10), None),  # new key, not yet proven
            (4, R(PAUSED, waiting=9, oldest=0, delivered=10), None),  # paused: cannot tell
            (5, R(RUNNING, waiting=2, oldest=4, delivered=17), RECOVERY),
            (6, R(RUNNING, waiting=0, delivered=19), None),
        ],
    ),
    (
        "a rejected key recovers when the connector is idle with nothing left to prove it with",
        AlertKind.CREDENTIALS,
        [
            (0, R(REJECTED, waiting=3, oldest=0), ALERT),
            (1, R(IDLE, waiting=0), RECOVERY),
        ],
    ),
    (
        "a backlog alerts past the limit and recovers below half of it, not at the limit",
        AlertKind.BACKLOG,
        [
            (0, R(RUNNING, waiting=5, oldest=0), None),
            (59, R(RUNNING, waiting=5, oldest=0), None),
            (60, R(RUNNING, waiting=5, oldest=0), ALERT),
            (90, R(RUNNING, waiting=5, oldest=50), None),  # 40 minutes old: still over half the limit
            (100, R(RUNNING, waiting=5, oldest=71), RECOVERY),  # 29 minutes old
            (101, R(RUNNING, waiting=0), None),
        ],
    ),
    (
        "a paused connector's backlog does not alert (waiting is expected), and resuming counts",
        AlertKind.BACKLOG,
        [
            (0, R(PAUSED, waiting=5, oldest=0, active=False), None),
            (120, R(PAUSED, waiting=5, oldest=0, active=False), None),
            (121, R(RUNNING, waiting=5, oldest=0), ALERT),
            (122, R(RUNNING, waiting=0), RECOVERY),
        ],
    ),
    (
        "events nearing their expiry alert even for a paused connector",
        AlertKind.RETENTION,
        [
            (0, R(PAUSED, waiting=5, oldest=0, active=False, retention_days=1), None),
            (0.8 * DAY / MINUTE - 1, R(PAUSED, waiting=5, oldest=0, active=False, retention_days=1), None),
            (0.8 * DAY / MINUTE, R(PAUSED, waiting=5, oldest=0, active=False, retention_days=1), ALERT),
            (DAY / MINUTE, R(PAUSED, waiting=5, oldest=0, active=False, retention_days=1), None),
            (DAY / MINUTE + 1, R(RUNNING, waiting=0, retention_days=1), RECOVERY),
        ],
    ),
    (
        "dead letters seen first are not news; new ones alert, and recover after an hour of quiet",
        AlertKind.DEAD_LETTERS,
        [
            (0, R(RUNNING, dead=5), None),
            (10, R(RUNNING, dead=7, dead_at=(9, 8, 1)), ALERT),
            (40, R(RUNNING, dead=9), None),  # more of the same episode
            (99, R(RUNNING, dead=9), None),  # 59 minutes quiet
            (100, R(RUNNING, dead=9), RECOVERY),
            (101, R(RUNNING, dead=9), None),
        ],
    ),
    (
        "a store reset (the counter went down) is a new first sight, not dead letters",
        AlertKind.DEAD_LETTERS,
        [
            (0, R(RUNNING, dead=50), None),
            (1, R(RUNNING, dead=0), None),
            (2, R(RUNNING, dead=1, dead_at=(2,)), ALERT),
        ],
    ),
    (
        "a flapping condition alerts at most once per rate-limit window; a held-back alert owes no recovery",
        AlertKind.CREDENTIALS,
        [
            (0, R(REJECTED), ALERT),
            (5, R(IDLE), RECOVERY),
            (10, R(REJECTED), None),  # within 30 minutes of the last alert
            (12, R(IDLE), None),  # nothing was sent for this episode: no recovery either
            (29, R(REJECTED), None),
            (30, R(REJECTED), ALERT),  # the same episode, once the window has passed
            (31, R(IDLE), RECOVERY),
        ],
    ),
    (
        "an unreadable receiver token alerts after a minute, even for a paused connector, and recovers",
        AlertKind.RECEIVER_TOKEN,
        [
            (0, R(RUNNING), None),
            (0.5, R(RUNNING, token=GONE, token_since=0.45), None),  # a 3-second blip...
            (0.6, R(RUNNING), None),  # ...gone by the next check: it mailed no one
            (1, R(PAUSED, active=False, token=GONE, token_since=1), None),
            (1.9, R(PAUSED, active=False, token=GONE, token_since=1), None),  # 54 seconds
            (2, R(PAUSED, active=False, token=GONE, token_since=1), ALERT),
            (30, R(PAUSED, active=False, token=GONE, token_since=1), None),  # still unreadable: no second
            (31, R(PAUSED, active=False), RECOVERY),
            (32, R(RUNNING), None),
        ],
    ),
    (
        "an unreadable receiver token does not alert for a disabled connector (it takes no events)",
        AlertKind.RECEIVER_TOKEN,
        [
            (0, R(enabled=False, active=False, token=GONE, token_since=0), None),
            (10, R(enabled=False, active=False, token=GONE, token_since=0), None),
            (11, R(RUNNING, token=GONE, token_since=0), ALERT),  # enabled again, still unreadable
            (12, R(RUNNING), RECOVERY),
        ],
    ),
    (
        "shorter thresholds are followed",
        AlertKind.BACKLOG,
        [
            (0, R(RUNNING, waiting=1, oldest=0), None),
            (5, R(RUNNING, waiting=1, oldest=0), ALERT),
        ],
    ),
]


@pytest.mark.parametrize(
    ("kind", "checks", "thresholds"),
    [
        pytest.param(
            kind, checks, Thresholds(backlog_age=5 * MINUTE) if "shorter" in name else Thresholds(), id=name
        )
        for name, kind, checks in SCENARIOS
    ],
)
def test_readings_over_time_raise_alerts_and_recoveries(
    kind: AlertKind, checks: list[tuple[float, R, Phase | None]], thresholds: Thresholds
) -> None:
    raised, _ = run(kind, [(minute, reading) for minute, reading, _ in checks], thresholds)
    expected = [phase for _, _, phase in checks]
    assert [(minute, got) for (minute, _, _), got in zip(checks, raised, strict=True)] == [
        (minute, want) for (minute, _, _), want in zip(checks, expected, strict=True)
    ]


def test_an_alert_remembers_when_its_condition_began() -> None:
    _, memory = run(AlertKind.CREDENTIALS, [(0, R(RUNNING)), (7, R(REJECTED, state_since=3))])
    assert memory.active and memory.alerted and memory.since == at(3) and memory.last_alert_at == at(7)

    _, memory = run(AlertKind.BACKLOG, [(90, R(RUNNING, waiting=2, oldest=20))])
    assert memory.since == at(20)

    _, memory = run(AlertKind.RECEIVER_TOKEN, [(9, R(RUNNING, token=GONE, token_since=4))])
    assert memory.alerted and memory.since == at(4)


def test_new_dead_letters_begin_when_the_first_of_them_came_and_only_then_are_looked_up() -> None:
    first, rise, more = R(RUNNING, dead=5), R(RUNNING, dead=8, dead_at=(9, 6, 4, 1)), R(RUNNING, dead=9)
    _, memory = run(AlertKind.DEAD_LETTERS, [(0, first), (10, rise), (11, more)])
    assert memory.since == at(4)  # the oldest of the 3 new ones, not the older 4th
    assert first.asked == [] and rise.asked == [3] and more.asked == []
    assert memory.episode_start == 5 and memory.mark == 9 and memory.last_rise_at == at(11)


def test_too_many_new_dead_letters_are_not_looked_up() -> None:
    many = R(RUNNING, dead=1000, dead_at=(1,))
    _, memory = run(AlertKind.DEAD_LETTERS, [(0, R(RUNNING, dead=0)), (10, many)])
    assert many.asked == [] and memory.since == at(10)


def test_a_clock_set_back_does_not_silence_alerts() -> None:
    memory = Memory(last_alert_at=at(60))  # an alert "in the future": the clock went back since
    result = step(AlertKind.CREDENTIALS, memory, R(REJECTED).reading(), at(0), Thresholds())
    assert result.phase is ALERT


def test_an_unreadable_token_recorded_just_after_the_check_began_is_in_the_grace() -> None:
    # The engine records problems from another thread: one may bear a time a little after `now`.
    raised, _ = run(AlertKind.RECEIVER_TOKEN, [(1, R(RUNNING, token=GONE, token_since=1.01))])
    assert raised == [None]
    raised, _ = run(AlertKind.RECEIVER_TOKEN, [(1, R(RUNNING, token=GONE, token_since=60))])
    assert raised == [ALERT]  # an hour ahead: the clock was set back


def test_a_step_leaves_the_memory_it_was_given_as_it_was() -> None:
    memory = Memory()
    result = step(AlertKind.CREDENTIALS, memory, R(REJECTED, delivered=4).reading(), at(0), Thresholds())
    assert result.phase is ALERT and result.memory.active and result.memory.mark == 4
    assert memory == Memory()


def test_a_memory_survives_its_json_and_ignores_unknown_keys() -> None:
    memory = Memory(active=True, since=at(1), alerted=True, last_alert_at=at(2), mark=3, last_rise_at=at(4))
    assert Memory.from_json(memory.to_json()) == memory
    assert Memory.from_json('{"active": true, "from_a_later_version": 1}') == Memory(active=True)


def test_the_rules_and_the_wording_do_no_io() -> None:
    package = Path(__file__).parent.parent / "tui_currents" / "alerts"
    io = {"sqlite3", "smtplib", "socket", "ssl", "tui_currents.store", "tui_currents.paths", "asyncio"}
    for module in ("rules.py", "wording.py"):
        tree = ast.parse((package / module).read_text())
        imported = {
            alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {name for name in imported if name.split(".")[0] in io or name.startswith(tuple(io))}, (
            module
        )


def test_nothing_in_the_alerts_package_opens_the_store_file_itself() -> None:
    package = Path(__file__).parent.parent / "tui_currents" / "alerts"
    for source in package.glob("*.py"):
        assert "sqlite3" not in source.read_text(), source.name
