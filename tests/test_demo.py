"""The demo generator: every supported type, Braze's documented fields, valid ids and times, pacing."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from zoneinfo import ZoneInfo

import pytest

from tui_currents import catalog
from tui_currents.mapping import ConnectorRules, Fate, map_event, normalise
from tui_currents.sources.demo import DemoGenerator

pytestmark = pytest.mark.timeout(30)

SUPPORTED = {e.event_type for e in catalog.CATALOG if e.supported}
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
HEX24 = re.compile(r"^[0-9a-f]{24}$")
# Fields that Braze sends as null in some events (desktop email clients have no device model, most opens
# are not machine opens, web users have no advertising id).
NULLABLE = {"device_model", "machine_open", "ad_id", "ad_id_type"}


def fields_of(event: dict) -> dict:
    return {**event["properties"], **event["user"], "id": event["id"], "time": event["time"]}


def test_every_supported_type_appears_within_20000_events():
    events = DemoGenerator(seed=3).batch(20_000)
    seen = Counter(e["event_type"] for e in events)
    assert set(seen) == SUPPORTED
    # Email and push are the bulk of real Currents traffic; webhooks and uninstalls are rare.
    groups = Counter(catalog.find(t).group for t in seen.elements())
    assert groups["Email"] > groups["SMS"] and groups["Push notification"] > groups["Content Card"]
    assert groups["Email"] > 5 * groups["Webhook"]


@pytest.mark.parametrize("event_type", sorted(catalog.REQUIRED_FIELDS))
def test_catalog_fields_are_present_with_sensible_values(event_type):
    generator = DemoGenerator(seed=11)
    for _ in range(20):
        event = generator.event(event_type)
        assert event["event_type"] == event_type
        fields = fields_of(event)
        for name in ("id", "user_id", "time", *catalog.required_fields(event_type)):
            assert name in fields, f"{event_type} lacks {name}"
            if name not in NULLABLE:
                assert fields[name] is not None and fields[name] != "", f"{event_type}: {name} is empty"
        uuid.UUID(event["id"])
        assert HEX24.match(event["user"]["user_id"])
        assert isinstance(event["time"], int) and abs(event["time"] - time.time()) < 60
        ZoneInfo(event["user"]["timezone"])
        for name in ("to_phone_number", "from_phone_number", "user_phone_number", "inbound_phone_number"):
            if name in fields:
                assert E164.match(fields[name]), f"{event_type}: {name}={fields[name]!r}"
        if "email_address" in fields:
            assert fields["email_address"].endswith("@example.com")
        if "platform" in fields:
            assert fields["platform"] in {"ios", "android", "web"}
        if "abort_log" in fields:
            assert len(fields["abort_log"]) <= 128


def test_documented_values():
    generator = DemoGenerator(seed=5)
    statuses = {
        generator.event("users.behaviors.subscription.GlobalStateChange")["properties"]["subscription_status"]
        for _ in range(60)
    }
    assert statuses == {"Subscribed", "Unsubscribed", "Opted In"}
    versions = {
        generator.event("users.messages.inappmessage.Abort")["properties"]["version"] for _ in range(30)
    }
    assert versions == {"legacy", "triggered"}
    entry = generator.event("users.canvas.Entry")["properties"]
    assert isinstance(entry["in_control_group"], bool)
    conversion = generator.event("users.campaigns.Conversion")["properties"]
    assert isinstance(conversion["conversion_behavior"], str) and conversion[
        "conversion_behavior"
    ].startswith("{")
    assert isinstance(conversion["conversion_behavior_index"], int)
    assert generator.event("users.messages.pushnotification.IosForeground")["properties"]["platform"] == "ios"
    assert isinstance(generator.event("users.messages.whatsapp.Read")["time"], int)


def test_aliases_and_additional_events_can_be_asked_for():
    generator = DemoGenerator(seed=1)
    assert generator.event("users_canvas_abort")["event_type"] == "users.canvas.Abort"
    for entry in catalog.CATALOG:
        if not entry.supported:
            assert generator.event(entry.event_type)["event_type"] == entry.event_type


def test_ids_are_unique_and_a_seed_repeats_them():
    first = DemoGenerator(seed=42, clock=lambda: 1_700_000_000).batch(500)
    again = DemoGenerator(seed=42, clock=lambda: 1_700_000_000).batch(500)
    other = DemoGenerator(seed=43, clock=lambda: 1_700_000_000).batch(500)
    assert first == again
    assert [e["id"] for e in first] != [e["id"] for e in other]
    assert len({e["id"] for e in first}) == 500


@pytest.mark.parametrize("share", [0.15, 0.4])
def test_anonymous_share_is_roughly_as_set(share):
    events = DemoGenerator(seed=9, anonymous_share=share).batch(5_000)
    anonymous = sum(e["user"]["external_user_id"] is None for e in events) / len(events)
    assert abs(anonymous - share) < 0.03
    assert all(e["user"]["user_id"] for e in events)


def test_anonymous_can_be_forced_either_way():
    generator = DemoGenerator(seed=2, anonymous_share=0.0)
    assert generator.event("users.messages.email.Send", anonymous=True)["user"]["external_user_id"] is None
    assert all(generator.event(anonymous=False)["user"]["external_user_id"] for _ in range(50))


def test_weights_by_group_and_by_type():
    only_sms = DemoGenerator(seed=4, weights={"Email": 0, "Push notification": 0, "SMS": 1000})
    groups = Counter(catalog.find(e["event_type"]).group for e in only_sms.batch(2_000))
    assert groups["Email"] == groups["Push notification"] == 0
    assert groups["SMS"] > 1_800
    just_one = DemoGenerator(seed=4, event_types=["users.messages.email.Open", "users.messages.email.Send"])
    assert {e["event_type"] for e in just_one.batch(200)} == {
        "users.messages.email.Open",
        "users.messages.email.Send",
    }
    with pytest.raises(ValueError, match="Emial"):
        DemoGenerator(weights={"Emial": 2})
    with pytest.raises(ValueError, match="unknown event type"):
        DemoGenerator(event_types=["users.messages.email.Sent"])


def test_every_generated_event_maps_to_a_segment_call():
    rules = ConnectorRules(selected=frozenset(SUPPORTED), include_anonymous=True)
    for event in DemoGenerator(seed=8).batch(3_000):
        outcome = map_event(normalise(event), rules)
        assert outcome.fate is Fate.QUEUED, (event["event_type"], outcome.reason)


def test_flat_shape_for_avro():
    generator = DemoGenerator(seed=6, flat=True)
    rules = ConnectorRules(selected=frozenset(SUPPORTED), include_anonymous=True)
    for event_type in sorted(SUPPORTED):
        record = generator.event(event_type)
        assert "user" not in record and "properties" not in record
        for name in ("id", "user_id", "time", "timezone", *catalog.required_fields(event_type)):
            assert name in record, f"{event_type} lacks {name}"
        group = catalog.find(event_type).group
        assert ("device_id" in record) == (group not in ("Email", "SMS"))
        if group in ("Content Card", "In-app message"):
            assert "dispatch_id" not in record
        if record.get("canvas_step_id") and group not in ("Canvas", "Exit", "Experiment step"):
            assert "canvas_step_message_variation_id" in record
        assert map_event(normalise(record), rules).fate is Fate.QUEUED


async def test_stream_paces_2000_events_per_second():
    generator = DemoGenerator(seed=1)
    received = 0
    sizes = []
    started = time.monotonic()

    async def consume():
        nonlocal received
        async for batch in generator.stream(2_000):
            received += len(batch)
            sizes.append(len(batch))

    task = asyncio.create_task(consume())
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    elapsed = time.monotonic() - started
    assert abs(received - 2_000 * elapsed) <= 250, (received, elapsed)
    assert max(sizes) <= 100


async def test_stream_catches_up_without_drift_and_stops_at_total():
    generator = DemoGenerator(seed=1)
    started = time.monotonic()
    got = 0
    async for batch in generator.stream(1_000, total=600):
        got += len(batch)
        if got == len(batch):
            time.sleep(0.2)  # a slow consumer: the missed events must come, in batches of at most 100
        assert len(batch) <= 100
    elapsed = time.monotonic() - started
    assert got == 600
    assert 0.58 <= elapsed <= 1.3
