"""Mapping the Currents event types beyond Braze's Segment connector, checked against messages written by
hand from Segment's semantic specs (Native Mobile, E-commerce v2, Common Fields) and docs/EVENTS.md."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest

from tests.fixtures.currents_events import (
    ANDROID_APP_ID,
    APP_GROUP_ID,
    CAMPAIGN,
    CANVAS,
    EVENTS,
    IOS_APP_ID,
    SESSION_ID,
    SUBSCRIPTION_GROUP_ID,
    event,
)
from tests.test_mapping import ALL, ALL_WITH_ANONYMOUS, EXPECTED, flat, queued, rejection, track
from tests.test_sandbox import KEY, basic, body
from tui_currents import catalog
from tui_currents.mapping import ConnectorRules, Fate, map_event, normalise
from tui_currents.sandbox import SegmentSandbox
from tui_currents.segment import MAX_MESSAGE_BYTES, MAX_MESSAGE_ID_CHARS

EVENTS_DOC = Path(__file__).parents[1] / "docs" / "EVENTS.md"
NUMBERS = {event_type: int(record["id"].rsplit("-", 1)[1]) for event_type, record in EVENTS.items()}
IOS = {"advertisingId": "6D92078A-8246-4BA4-AE5B-76104861E7DC", "adTrackingEnabled": True}
IOS |= {"model": "iPhone15,2", "type": "ios"}
IOS_OS = {"version": "iOS 17.5.1"}
ANDROID = {"model": "Pixel 8", "type": "android"}
ANDROID_OS = {"version": "Android 14"}
ANA = {"email": "ana.lopez@example.com"}
US_PHONE = {"phone": "+14155550123"}
UK_PHONE = {"phone": "+447700900123"}
ABORT_LIQUID = {"abort_type": "liquid_abort_message"}


def iso(seconds: int) -> str:
    """Segment's ISO-8601 UTC form of UNIX seconds, with milliseconds."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def expect(
    event_type: str,
    name: str,
    properties: dict,
    *,
    traits: dict | None = None,
    device: dict | None = None,
    os: dict | None = None,
    location: dict | None = None,
) -> dict:
    """The track message of the fixture of `event_type`, with the context objects the extended rules fill."""
    message = track(
        name, NUMBERS[event_type], iso(EVENTS[event_type]["time"]), properties, traits=traits, device=device
    )
    if os:
        message["context"]["os"] = os
    if location:
        message["context"]["location"] = location
    return message


EXTENDED_EXPECTED: dict[str, dict] = {
    e: m
    for e, m in (
        (
            "users.behaviors.CustomEvent",
            expect(
                "users.behaviors.CustomEvent",
                "Added To Wishlist",
                {
                    "app_group_id": APP_GROUP_ID,
                    "ad_id_type": "ios_idfa",
                    "sku": "SKU-4411",
                    "size": "M",
                    "tags": ["summer"],
                    # The custom property keeps its name; Braze's own field gives way.
                    "app_id": "custom-app",
                    "braze_app_id": IOS_APP_ID,
                },
                device=IOS,
                os=IOS_OS,
            ),
        ),
        (
            "users.behaviors.Purchase",
            expect(
                "users.behaviors.Purchase",
                "Order Completed",
                {
                    "app_group_id": APP_GROUP_ID,
                    "app_id": IOS_APP_ID,
                    "ad_id_type": "ios_idfa",
                    "products": [{"product_id": "SKU-4411", "price": 9.99, "quantity": 3}],
                    "revenue": 29.97,
                    "currency": "EUR",
                    "purchase_properties": {"color": "navy", "gift": False},
                },
                device=IOS,
                os=IOS_OS,
            ),
        ),
        *(
            (
                event_type,
                expect(
                    event_type,
                    name,
                    {
                        "app_group_id": APP_GROUP_ID,
                        "app_id": ANDROID_APP_ID,
                        "session_id": SESSION_ID,
                        **extra,
                    },
                    device=ANDROID,
                    os=ANDROID_OS,
                ),
            )
            for event_type, name, extra in (
                ("users.behaviors.app.FirstSession", "Application Installed", {}),
                ("users.behaviors.app.SessionStart", "Application Opened", {}),
                ("users.behaviors.app.SessionEnd", "Application Backgrounded", {"duration": 312.4}),
            )
        ),
        (
            "users.behaviors.InstallAttribution",
            expect(
                "users.behaviors.InstallAttribution",
                "Install Attributed",
                {"app_group_id": APP_GROUP_ID, "campaign": {"source": "Facebook Ads"}},
            ),
        ),
        (
            "users.behaviors.Location",
            expect(
                "users.behaviors.Location",
                "Location Recorded",
                {"app_group_id": APP_GROUP_ID, "app_id": IOS_APP_ID, "ad_id_type": "ios_idfa"},
                device=IOS,
                os=IOS_OS,
                location={
                    "latitude": 52.520008,
                    "longitude": 13.404954,
                    "altitude": 34.0,
                    "accuracy": 12.5,
                    "altitudeAccuracy": 3.0,
                },
            ),
        ),
        (
            "users.behaviors.pushnotification.TokenStateChange",
            expect(
                "users.behaviors.pushnotification.TokenStateChange",
                "Push Token State Changed",
                {
                    "app_group_id": APP_GROUP_ID,
                    "app_id": ANDROID_APP_ID,
                    "push_token_state": "active",
                    "push_token_foreground_push_disabled": False,
                },
                device=ANDROID,
                os=ANDROID_OS,
            ),
        ),
        (
            "users.behaviors.liveactivity.PushToStartTokenChange",
            expect(
                "users.behaviors.liveactivity.PushToStartTokenChange",
                "Live Activity Push To Start Token Changed",
                {
                    "app_group_id": APP_GROUP_ID,
                    "app_id": IOS_APP_ID,
                    "activity_attributes_type": "DeliveryAttributes",
                    "push_token_state": "active",
                },
            ),
        ),
        (
            "users.behaviors.liveactivity.UpdateTokenChange",
            expect(
                "users.behaviors.liveactivity.UpdateTokenChange",
                "Live Activity Update Token Changed",
                {
                    "app_group_id": APP_GROUP_ID,
                    "app_id": IOS_APP_ID,
                    "activity_id": "order-123-delivery",
                    "push_token_state": "active",
                },
            ),
        ),
        (
            "users.messages.banner.Abort",
            expect(
                "users.messages.banner.Abort",
                "Banner Aborted",
                {**CAMPAIGN, **ABORT_LIQUID, "abort_log": "no banner content"},
            ),
        ),
        (
            "users.messages.banner.Click",
            expect(
                "users.messages.banner.Click",
                "Banner Clicked",
                {
                    **CAMPAIGN,
                    "app_id": IOS_APP_ID,
                    "ad_id_type": "ios_idfa",
                    "banner_placement_id": "home_top",
                    "button_id": "0",
                },
                device=IOS,
                os=IOS_OS,
            ),
        ),
        (
            "users.messages.banner.Dismiss",
            expect(
                "users.messages.banner.Dismiss",
                "Banner Dismissed",
                {**CAMPAIGN, "app_id": ANDROID_APP_ID, "banner_placement_id": "home_top"},
                device=ANDROID,
                os=ANDROID_OS,
            ),
        ),
        (
            "users.messages.banner.Impression",
            expect(
                "users.messages.banner.Impression",
                "Banner Viewed",
                {
                    **CAMPAIGN,
                    "app_id": IOS_APP_ID,
                    "ad_id_type": "ios_idfa",
                    "banner_placement_id": "home_top",
                },
                device=IOS,
                os=IOS_OS,
            ),
        ),
        (
            "users.messages.line.Abort",
            expect(
                "users.messages.line.Abort",
                "LINE Message Aborted",
                {**CAMPAIGN, "abort_type": "rate_limit", "abort_log": "over the send limit"},
            ),
        ),
        (
            "users.messages.line.Click",
            expect(
                "users.messages.line.Click",
                "LINE Message Clicked",
                {
                    **CAMPAIGN,
                    "line_id": "U4af4980629",
                    "url": "https://shop.example.com/sale",
                    "short_url": "https://brz.ai/a1",
                },
            ),
        ),
        (
            "users.messages.line.InboundReceive",
            expect(
                "users.messages.line.InboundReceive",
                "LINE Inbound Received",
                {"app_group_id": APP_GROUP_ID, "line_id": "U4af4980629", "message_body": "STOP"},
            ),
        ),
        (
            "users.messages.line.Retry",
            expect(
                "users.messages.line.Retry",
                "LINE Message Retried",
                {**CAMPAIGN, "line_id": "U4af4980629", "retry_count": 1},
            ),
        ),
        (
            "users.messages.line.Send",
            expect(
                "users.messages.line.Send",
                "LINE Message Sent",
                {**CANVAS, "line_id": "U4af4980629", "subscription_group_id": SUBSCRIPTION_GROUP_ID},
            ),
        ),
        (
            "users.messages.rcs.Abort",
            expect(
                "users.messages.rcs.Abort",
                "RCS Message Aborted",
                {**CAMPAIGN, **ABORT_LIQUID, "abort_log": "no offer"},
            ),
        ),
        (
            "users.messages.rcs.Click",
            expect(
                "users.messages.rcs.Click",
                "RCS Message Clicked",
                {**CAMPAIGN, "url": "https://shop.example.com/sale"},
                traits=US_PHONE,
            ),
        ),
        (
            "users.messages.rcs.Delivery",
            expect(
                "users.messages.rcs.Delivery",
                "RCS Message Delivered",
                {**CAMPAIGN, "from_phone_number": "+14155550100"},
                traits=US_PHONE,
            ),
        ),
        (
            "users.messages.rcs.InboundReceive",
            expect(
                "users.messages.rcs.InboundReceive",
                "RCS Inbound Received",
                {
                    "app_group_id": APP_GROUP_ID,
                    "inbound_phone_number": "+14155550100",
                    "message_body": "Yes please",
                },
                traits=US_PHONE,
            ),
        ),
        (
            "users.messages.rcs.Read",
            expect("users.messages.rcs.Read", "RCS Message Read", dict(CAMPAIGN), traits=US_PHONE),
        ),
        (
            "users.messages.rcs.Rejection",
            expect(
                "users.messages.rcs.Rejection",
                "RCS Message Rejected",
                {**CAMPAIGN, "error": "not RCS capable", "provider_error_code": "4001"},
                traits=US_PHONE,
            ),
        ),
        (
            "users.messages.rcs.Send",
            expect(
                "users.messages.rcs.Send",
                "RCS Message Sent",
                {**CANVAS, "subscription_group_id": SUBSCRIPTION_GROUP_ID},
                traits=US_PHONE,
            ),
        ),
        (
            "users.messages.liveactivity.Outcome",
            expect(
                "users.messages.liveactivity.Outcome",
                "Live Activity Outcome Recorded",
                {
                    **CAMPAIGN,
                    "app_id": IOS_APP_ID,
                    "activity_id": "order-123-delivery",
                    "outcome": "delivered",
                },
            ),
        ),
        (
            "users.messages.liveactivity.Send",
            expect(
                "users.messages.liveactivity.Send",
                "Live Activity Sent",
                {**CAMPAIGN, "app_id": IOS_APP_ID, "activity_id": "order-123-delivery"},
                device={"type": "ios"},
            ),
        ),
        (
            "users.messages.email.Retry",
            expect("users.messages.email.Retry", "Email Retried", {**CAMPAIGN, "retry_count": 2}, traits=ANA),
        ),
        (
            "users.messages.pushnotification.Retry",
            expect(
                "users.messages.pushnotification.Retry",
                "Push Notification Retried",
                {**CAMPAIGN, "app_id": ANDROID_APP_ID, "retry_count": 1},
                device={"type": "android"},
            ),
        ),
        (
            "users.messages.sms.Retry",
            expect(
                "users.messages.sms.Retry", "SMS Retried", {**CAMPAIGN, "retry_count": 1}, traits=US_PHONE
            ),
        ),
        (
            "users.messages.webhook.Retry",
            expect("users.messages.webhook.Retry", "Webhook Retried", {**CANVAS, "retry_count": 3}),
        ),
        (
            "users.messages.whatsapp.Retry",
            expect(
                "users.messages.whatsapp.Retry",
                "WhatsApp Retried",
                {**CAMPAIGN, "retry_count": 1},
                traits=UK_PHONE,
            ),
        ),
        (
            "users.canvas.costep.Send",
            expect(
                "users.canvas.costep.Send",
                "Canvas Step Sent",
                {**CANVAS, "channel": "email", "message_variation_id": "6581f0e2c3d4a5b6c7d8e9f2"},
            ),
        ),
    )
}
NOT_FORWARDABLE = [e.event_type for e in catalog.CATALOG if not e.forwardable]
EXTENDED = [e.event_type for e in catalog.CATALOG if e.category == catalog.EXTENDED]

# Every event type Braze documents for Currents (its Segment list, the five it names for Segment without
# exporting them, and the types of the reference's section 4.4), written out apart from the catalog so that
# a type the catalog lacks fails below.
BRAZE_DOCUMENTED = (
    "users.behaviors.Uninstall",
    "users.behaviors.subscription.GlobalStateChange",
    "users.behaviors.subscriptiongroup.StateChange",
    "users.campaigns.Abort",
    "users.campaigns.Conversion",
    "users.campaigns.EnrollInControl",
    "users.canvas.Abort",
    "users.canvas.Conversion",
    "users.canvas.Entry",
    "users.canvas.exit.MatchedAudience",
    "users.canvas.exit.PerformedEvent",
    "users.canvas.experimentstep.Conversion",
    "users.canvas.experimentstep.SplitEntry",
    "users.messages.contentcard.Abort",
    "users.messages.contentcard.Click",
    "users.messages.contentcard.Dismiss",
    "users.messages.contentcard.Impression",
    "users.messages.contentcard.Send",
    "users.messages.email.Abort",
    "users.messages.email.Bounce",
    "users.messages.email.Click",
    "users.messages.email.Delivery",
    "users.messages.email.MarkAsSpam",
    "users.messages.email.Open",
    "users.messages.email.Send",
    "users.messages.email.SoftBounce",
    "users.messages.email.Unsubscribe",
    "users.messages.email.Deferral",
    "users.messages.email.Retry",
    "users.messages.inappmessage.Abort",
    "users.messages.inappmessage.Click",
    "users.messages.inappmessage.Impression",
    "users.messages.pushnotification.Abort",
    "users.messages.pushnotification.Bounce",
    "users.messages.pushnotification.IosForeground",
    "users.messages.pushnotification.Open",
    "users.messages.pushnotification.Send",
    "users.messages.pushnotification.Retry",
    "users.messages.sms.Abort",
    "users.messages.sms.CarrierSend",
    "users.messages.sms.Delivery",
    "users.messages.sms.DeliveryFailure",
    "users.messages.sms.InboundReceive",
    "users.messages.sms.Rejection",
    "users.messages.sms.Send",
    "users.messages.sms.ShortLinkClick",
    "users.messages.sms.Retry",
    "users.messages.webhook.Abort",
    "users.messages.webhook.Send",
    "users.messages.webhook.Failure",
    "users.messages.webhook.Retry",
    "users.messages.whatsapp.Abort",
    "users.messages.whatsapp.Delivery",
    "users.messages.whatsapp.Failure",
    "users.messages.whatsapp.InboundReceive",
    "users.messages.whatsapp.Read",
    "users.messages.whatsapp.Send",
    "users.messages.whatsapp.Click",
    "users.messages.whatsapp.Retry",
    "users.messages.featureflag.Impression",
    "users.canvasstep.Progression",
    "users.behaviors.CustomEvent",
    "users.behaviors.Purchase",
    "users.behaviors.app.FirstSession",
    "users.behaviors.app.SessionStart",
    "users.behaviors.app.SessionEnd",
    "users.behaviors.Location",
    "users.behaviors.InstallAttribution",
    "users.behaviors.pushnotification.TokenStateChange",
    "users.behaviors.liveactivity.PushToStartTokenChange",
    "users.behaviors.liveactivity.UpdateTokenChange",
    "users.profile.Update",
    "users.UserDeleteRequest",
    "users.UserOrphan",
    "users.RandomBucketNumberUpdate",
    "users.messages.banner.Abort",
    "users.messages.banner.Click",
    "users.messages.banner.Dismiss",
    "users.messages.banner.Impression",
    "users.messages.line.Abort",
    "users.messages.line.Click",
    "users.messages.line.InboundReceive",
    "users.messages.line.Retry",
    "users.messages.line.Send",
    "users.messages.rcs.Abort",
    "users.messages.rcs.Click",
    "users.messages.rcs.Delivery",
    "users.messages.rcs.InboundReceive",
    "users.messages.rcs.Read",
    "users.messages.rcs.Rejection",
    "users.messages.rcs.Send",
    "users.messages.liveactivity.Outcome",
    "users.messages.liveactivity.Send",
    "users.canvas.costep.Send",
    "agentconsole.AgentExecuted",
    "agentconsole.ToolInvocation",
)


# --- one exact message per new type -------------------------------------------------------------------------


def test_every_extended_type_has_a_fixture_and_an_expected_message_or_a_reason():
    assert set(EXTENDED) <= set(EVENTS)
    expected_somewhere = set(EXTENDED_EXPECTED) | {t for t in EXPECTED if t in EXTENDED}
    assert expected_somewhere | set(NOT_FORWARDABLE) == set(EXTENDED)
    assert not expected_somewhere & set(NOT_FORWARDABLE)


@pytest.mark.parametrize("event_type", list(EXTENDED_EXPECTED))
def test_http_event_maps_to_the_expected_message(event_type):
    outcome = queued(event(event_type))
    assert outcome.message == EXTENDED_EXPECTED[event_type]
    assert orjson.loads(outcome.encoded) == EXTENDED_EXPECTED[event_type]
    assert outcome.segment_event == EXTENDED_EXPECTED[event_type]["event"]


@pytest.mark.parametrize("event_type", list(EXTENDED_EXPECTED))
def test_flat_avro_record_maps_to_the_same_message(event_type):
    record = {"event_type": event_type, **flat(event(event_type))}
    assert queued(record).message == EXTENDED_EXPECTED[event_type]


@pytest.mark.parametrize("event_type", NOT_FORWARDABLE)
@pytest.mark.parametrize("selected", [frozenset(), frozenset(NOT_FORWARDABLE)])
def test_types_never_sent_are_not_forwardable_with_the_catalogs_reason(event_type, selected):
    outcome = map_event(
        normalise(event(event_type)), ConnectorRules(selected=selected, include_anonymous=True)
    )
    assert outcome.fate is Fate.NOT_FORWARDABLE
    assert outcome.message is None and outcome.encoded is None
    assert outcome.reason == catalog.find(event_type).reason


def test_every_type_braze_documents_maps_to_a_well_formed_message_or_has_a_documented_reason():
    assert len(BRAZE_DOCUMENTED) == len(set(BRAZE_DOCUMENTED)) == 96
    documentation = EVENTS_DOC.read_text(encoding="utf-8")
    for event_type in BRAZE_DOCUMENTED:
        assert catalog.find(event_type) is not None, event_type
        outcome = map_event(normalise(event(event_type)), ALL)
        if outcome.fate is Fate.NOT_FORWARDABLE:
            assert outcome.reason and outcome.reason in documentation, event_type
            continue
        assert outcome.fate is Fate.QUEUED, (event_type, outcome.reason)
        message = orjson.loads(outcome.encoded)
        assert message["type"] == "track"
        assert isinstance(message["event"], str) and message["event"].strip(), event_type
        assert 0 < len(message["messageId"]) <= MAX_MESSAGE_ID_CHARS
        assert message.get("userId") or message.get("anonymousId")
        assert datetime.strptime(message["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert len(outcome.encoded) <= MAX_MESSAGE_BYTES


def test_the_51_keep_braze_connectors_device_mapping():
    # Braze's connector maps device_model and platform only, and only on some types: os_version and the
    # advertising fields of a content card click stay properties.
    message = queued(event("users.messages.contentcard.Click")).message
    assert message == EXPECTED["users.messages.contentcard.Click"]
    assert "os" not in message["context"]
    assert {"os_version", "ad_id", "ad_tracking_enabled"} <= set(message["properties"])


def test_extended_types_in_many_variations_give_valid_segment_messages():
    rng = random.Random(20261207)
    forwardable = [t for t in EXTENDED if t not in NOT_FORWARDABLE]
    for event_type in forwardable:
        for _ in range(20):
            record = event(event_type)
            if rng.random() < 0.3:
                record["user"].pop("external_user_id")
            for key in list(record["properties"]):
                if key != "name" and rng.random() < 0.2:
                    record["properties"][key] = None
            if rng.random() < 0.5:
                record = {"event_type": event_type, **flat(record)}
            outcome = map_event(normalise(record), ALL_WITH_ANONYMOUS)
            assert outcome.fate is Fate.QUEUED, (event_type, outcome.reason)
            message = orjson.loads(outcome.encoded)
            assert message == outcome.message
            assert message["messageId"] == record["id"]
            assert None not in message["properties"].values()
            assert not {"push_token", "timezone", "email_address", "platform", "ad_id"} & set(
                message["properties"]
            )


# --- custom events ------------------------------------------------------------------------------------------


def test_custom_event_properties_from_storage_json_text():
    # Braze's storage exports carry a custom event's properties as JSON text in `properties`.
    record = {"event_type": "users.behaviors.CustomEvent", **flat(event("users.behaviors.CustomEvent"))}
    record["properties"] = orjson.dumps(record.pop("custom_properties")).decode()
    assert queued(record).message == EXTENDED_EXPECTED["users.behaviors.CustomEvent"]


def test_custom_property_collisions_move_brazes_field_aside_again_and_again():
    record = event("users.behaviors.CustomEvent")
    record["properties"]["braze_app_id"] = "already here"
    record["properties"]["custom_properties"] = {"app_id": "mine", "braze_app_id": "mine too"}
    properties = queued(record).message["properties"]
    # The custom properties keep their names; Braze's two fields are prefixed until their name is free.
    assert properties["app_id"] == "mine"
    assert properties["braze_app_id"] == "mine too"
    assert {properties["braze_braze_app_id"], properties["braze_braze_braze_app_id"]} == {
        IOS_APP_ID,
        "already here",
    }


def test_custom_properties_that_are_not_an_object_are_kept_as_they_came():
    record = event("users.behaviors.CustomEvent")
    record["properties"]["custom_properties"] = "not json {"
    properties = queued(record).message["properties"]
    assert properties["custom_properties"] == "not json {"


def test_a_hashed_custom_properties_field_stays_hashed():
    rules = ConnectorRules(selected=ALL.selected, field_transforms={"custom_properties": "hash"})
    properties = queued(event("users.behaviors.CustomEvent"), rules).message["properties"]
    assert len(properties["custom_properties"]) == 64 and "sku" not in properties


@pytest.mark.parametrize("name", [None, "", "  ", 42])
def test_a_custom_event_without_a_name_is_rejected_with_the_reason(name):
    record = event("users.behaviors.CustomEvent")
    record["properties"]["name"] = name
    assert "a custom event needs its `name`" in rejection(record)


def test_a_name_override_wins_over_the_custom_events_name():
    rules = ConnectorRules(
        selected=ALL.selected, name_overrides={"users.behaviors.CustomEvent": "Braze Custom Event"}
    )
    assert queued(event("users.behaviors.CustomEvent"), rules).message["event"] == "Braze Custom Event"


# --- purchases ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "quantity", "revenue"),
    [(9.99, None, 9.99), ("12.50", 2, 25), (0.1, 3, 0.3), (5, 4, 20)],
)
def test_purchase_revenue_is_price_times_quantity(price, quantity, revenue):
    record = event("users.behaviors.Purchase")
    record["properties"]["price"] = price
    record["properties"]["quantity"] = quantity
    properties = queued(record).message["properties"]
    assert properties["revenue"] == revenue
    assert properties["products"] == [{"product_id": "SKU-4411", "price": price, "quantity": quantity or 1}]


def test_purchase_without_a_usable_price_has_no_revenue():
    record = event("users.behaviors.Purchase")
    record["properties"]["price"] = "free"
    properties = queued(record).message["properties"]
    assert "revenue" not in properties
    assert properties["products"][0]["price"] == "free"


# --- through a Segment stand-in -----------------------------------------------------------------------------


async def test_every_forwardable_type_is_accepted_by_the_segment_stand_in():
    # The sandbox drops (with a recorded violation) what Segment would silently drop.
    encoded = [map_event(normalise(event(t)), ALL).encoded for t in catalog.resolve_events("all,extended")]
    batch = [orjson.loads(item) for item in encoded]
    async with SegmentSandbox({KEY}, reject_unknown_keys=True) as sandbox, httpx.AsyncClient() as client:
        response = await client.post(
            sandbox.url + "/v1/batch",
            content=orjson.dumps(body(batch, key=KEY)),
            headers={"Content-Type": "application/json", **basic(KEY)},
        )
        assert response.status_code == 200
        assert sandbox.violations == []
        assert sandbox.accepted_count == len(batch) == 90
        assert {"Order Completed", "Added To Wishlist", "Install Attributed"} <= {
            m["event"] for m in sandbox.recent(100)
        }
