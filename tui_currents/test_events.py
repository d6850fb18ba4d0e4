"""Test events: what "Send test events" sends, where to, and how each message says it is a test.

Test events go to the connector's real Segment source, so they must be unmistakable there: every message
has `properties.test_event = true` and its `userId`/`anonymousId` start with `test-`, whatever the
connector's field transforms do. Segment users can filter them out on those.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import orjson

from tui_currents import catalog, segment
from tui_currents.config import CUSTOM_REGION, Connector
from tui_currents.mapping import Fate, Outcome, map_event, normalise

TEST_ID_PREFIX = "test-"
TEST_PROPERTY = "test_event"


def event_types(connector: Connector) -> list[str]:
    """The event types one test event each is generated for: the connector's selection, once each."""
    return list(dict.fromkeys(catalog.canonical_name(t) for t in connector.events))


def count(connector: Connector) -> int:
    """How many test events "Send test events" sends through `connector`."""
    return queued(build(connector, seed=0))


def destination(connector: Connector) -> str:
    """Where the connector's events go, in words: `Segment US (https://api.segment.io)` or the endpoint."""
    if connector.region == CUSTOM_REGION and connector.endpoint:
        return f"the custom endpoint {connector.endpoint}"
    base = segment.REGION_ENDPOINTS.get(connector.region, connector.region)
    return f"Segment {connector.region.upper()} ({base})"


def question(connector: Connector) -> str:
    """The confirmation asked before sending: connector, destination and how many events."""
    n = count(connector)
    return (
        f"Send {n} test event{'s' if n != 1 else ''} through {connector.name!r} to {destination(connector)}?"
    )


NOTE = (
    "Each is marked as a test: properties.test_event = true, and userId/anonymousId start with "
    f"{TEST_ID_PREFIX!r}, so they can be filtered out in Segment."
)


def _test_id(value: object) -> object:
    if isinstance(value, str) and value and not value.startswith(TEST_ID_PREFIX):
        return TEST_ID_PREFIX + value
    return value


def mark(outcome: Outcome) -> Outcome:
    """Make a queued outcome's Segment message unmistakably a test (in place; returned for chaining)."""
    message = outcome.message
    if outcome.fate is not Fate.QUEUED or message is None:
        return outcome
    for key in ("userId", "anonymousId"):
        if key in message:
            message[key] = _test_id(message[key])
    properties = message.get("properties")
    if not isinstance(properties, dict):
        properties = message["properties"] = {}
    properties[TEST_PROPERTY] = True
    outcome.encoded = orjson.dumps(message)
    return outcome


def build(connector: Connector, *, seed: int | None = None) -> list[Outcome]:
    """One generated, marked event of each selected type, mapped with the connector's rules."""
    from tui_currents.sources.demo import DemoGenerator

    rules = connector.rules()
    generator = DemoGenerator(seed=int(time.time()) if seed is None else seed)
    outcomes = []
    for event_type in event_types(connector):
        record = generator.event(event_type, anonymous=False)
        user = record.get("user")
        if isinstance(user, dict):  # the tail shows the event's own ids: they say "test" there too
            for key in ("user_id", "external_user_id"):
                user[key] = _test_id(user.get(key))
        record.setdefault("properties", {})[TEST_PROPERTY] = True
        outcomes.append(mark(map_event(normalise(record), rules)))
    return outcomes


def queued(outcomes: Iterable[Outcome]) -> int:
    """How many of `outcomes` will be sent."""
    return sum(1 for o in outcomes if o.fate is Fate.QUEUED)
