"""Mapping Currents records to Segment track messages, checked against messages written by hand from the
reference's mapping rules (section 4.1), one per catalog event type."""

from __future__ import annotations

import math
import random

import orjson
import pytest

from tests.fixtures.currents_events import (
    ANDROID_APP_ID,
    APP_GROUP_ID,
    BRAZE_ID,
    CAMPAIGN,
    CANVAS,
    DEVICE_ID,
    EVENTS,
    EXTERNAL_ID,
    IOS_APP_ID,
    SUBSCRIPTION_GROUP_ID,
    TIMEZONE,
    event,
)
from tui_currents import LIBRARY_NAME, __version__, catalog
from tui_currents.mapping import ConnectorRules, CurrentsEvent, Fate, map_event, normalise
from tui_currents.segment import MAX_MESSAGE_BYTES

EVERY_TYPE = frozenset(e.event_type for e in catalog.CATALOG)
ALL = ConnectorRules(selected=EVERY_TYPE)
ALL_WITH_ANONYMOUS = ConnectorRules(selected=EVERY_TYPE, include_anonymous=True)


def message_id(number: int) -> str:
    return f"0b6f8e1c-2a3d-4b5e-8f70-{number:012d}"


def track(
    name: str,
    number: int,
    timestamp: str,
    properties: dict,
    *,
    traits: dict | None = None,
    device: dict | None = None,
    anonymous_id: str | None = BRAZE_ID,
    user_id: str | None = EXTERNAL_ID,
    device_id: str | None = DEVICE_ID,
) -> dict:
    """A Segment track message as the reference describes it (device_id is a property: our decision)."""
    props = dict(properties)
    if device_id is not None:
        props["device_id"] = device_id
    context: dict = {"library": {"name": LIBRARY_NAME, "version": __version__}}
    if traits:
        context["traits"] = traits
    if device:
        context["device"] = device
    message = {"type": "track", "event": name, "messageId": message_id(number), "timestamp": timestamp}
    if user_id is not None:
        message["userId"] = user_id
    if anonymous_id is not None:
        message["anonymousId"] = anonymous_id
    message["properties"] = props
    message["context"] = context
    return message


ANA = {"email": "ana.lopez@example.com"}
US_PHONE = {"phone": "+14155550123"}
UK_PHONE = {"phone": "+447700900123"}
ABORT_LIQUID = {"abort_type": "liquid_abort_message"}

EXPECTED: dict[str, dict] = {
    "users.behaviors.Uninstall": track(
        "Application Uninstalled",
        0,
        "2024-05-31T16:08:37.000Z",
        {"app_group_id": APP_GROUP_ID, "app_id": IOS_APP_ID},
    ),
    "users.behaviors.subscription.GlobalStateChange": track(
        "Global Subscription State Changed",
        1,
        "2024-05-31T16:09:38.000Z",
        {
            "app_group_id": APP_GROUP_ID,
            "subscription_status": "Unsubscribed",
            "state_change_source": "Preference center",
            "channel": "email",
            "channel_identifier": "ana.lopez@example.com",
        },
        traits=ANA,
    ),
    # email_address is null: no trait. phone_number is not one of the phone-trait fields: a property.
    "users.behaviors.subscriptiongroup.StateChange": track(
        "Subscription Group State Changed",
        2,
        "2024-05-31T16:10:39.000Z",
        {
            "app_group_id": APP_GROUP_ID,
            "subscription_group_id": SUBSCRIPTION_GROUP_ID,
            "subscription_status": "Subscribed",
            "phone_number": "+14155550123",
            "channel": "sms",
            "state_change_source": "SMS",
        },
    ),
    "users.campaigns.Abort": track(
        "Campaign Aborted",
        3,
        "2024-05-31T16:11:40.000Z",
        {**CAMPAIGN, **ABORT_LIQUID, "abort_log": "no purchase in the last 30 days"},
    ),
    "users.campaigns.Conversion": track(
        "Campaign Converted",
        4,
        "2024-05-31T16:12:41.000Z",
        {
            **CAMPAIGN,
            "conversion_behavior": '{"type": "purchase", "product_id": "premium-annual"}',
            "conversion_behavior_index": 0,
        },
    ),
    "users.campaigns.EnrollInControl": track(
        "Campaign Control Group Entered",
        5,
        "2024-05-31T16:13:42.000Z",
        {
            "app_group_id": APP_GROUP_ID,
            "campaign_id": "6581f0e2c3d4a5b6c7d8e9f0",
            "campaign_name": "Summer sale announcement",
            "message_variation_id": "6581f0e2c3d4a5b6c7d8e9f2",
            "message_variation_name": "Control group",
        },
    ),
    "users.canvas.Abort": track(
        "Canvas Aborted",
        6,
        "2024-05-31T16:14:43.000Z",
        {**CANVAS, "abort_type": "rate_limit", "abort_log": "frequency cap reached"},
    ),
    "users.canvas.Conversion": track(
        "Canvas Converted",
        7,
        "2024-05-31T16:15:44.000Z",
        {
            **CANVAS,
            "conversion_behavior": '{"type": "custom_event", "name": "completed_profile"}',
            "conversion_behavior_index": 1,
        },
    ),
    "users.canvas.Entry": track(
        "Canvas Entered",
        8,
        "2024-05-31T16:16:45.000Z",
        {
            "app_group_id": APP_GROUP_ID,
            "canvas_id": "6602a1b2c3d4e5f6a7b8c9d0",
            "canvas_name": "Onboarding journey",
            "canvas_variation_id": "6602a1b2c3d4e5f6a7b8c9d1",
            "canvas_variation_name": "Variant 1",
            "in_control_group": False,
        },
    ),
    "users.canvas.exit.MatchedAudience": track(
        "Exit Matched Audience",
        9,
        "2024-05-31T16:17:46.000Z",
        {
            "app_group_id": APP_GROUP_ID,
            "canvas_id": "6602a1b2c3d4e5f6a7b8c9d0",
            "canvas_name": "Onboarding journey",
            "canvas_variation_id": "6602a1b2c3d4e5f6a7b8c9d1",
            "canvas_step_id": "6602a1b2c3d4e5f6a7b8c9d3",
        },
    ),
    "users.canvas.exit.PerformedEvent": track(
        "Exit Performed Event",
        10,
        "2024-05-31T16:18:47.000Z",
        {
            "app_group_id": APP_GROUP_ID,
            "canvas_id": "6602a1b2c3d4e5f6a7b8c9d0",
            "canvas_name": "Onboarding journey",
            "canvas_variation_id": "6602a1b2c3d4e5f6a7b8c9d1",
            "canvas_step_id": "6602a1b2c3d4e5f6a7b8c9d4",
        },
    ),
    "users.canvas.experimentstep.Conversion": track(
        "Experiment Step Converted",
        11,
        "2024-05-31T16:19:48.000Z",
        {
            **CANVAS,
            "experiment_step_id": "6602a1b2c3d4e5f6a7b8c9e0",
            "experiment_split_id": "6602a1b2c3d4e5f6a7b8c9e1",
            "experiment_split_name": "Path A",
            "conversion_behavior": '{"type": "purchase"}',
            "conversion_behavior_index": 0,
        },
    ),
    "users.canvas.experimentstep.SplitEntry": track(
        "Experiment Split Entered",
        12,
        "2024-05-31T16:20:49.000Z",
        {
            **CANVAS,
            "experiment_step_id": "6602a1b2c3d4e5f6a7b8c9e0",
            "experiment_split_id": "6602a1b2c3d4e5f6a7b8c9e2",
            "experiment_split_name": "Control",
            "in_control_group": True,
        },
    ),
    "users.messages.contentcard.Abort": track(
        "Content Card Aborted",
        13,
        "2024-05-31T16:21:50.000Z",
        {**CAMPAIGN, **ABORT_LIQUID, "abort_log": "card expired before send"},
    ),
    "users.messages.contentcard.Click": track(
        "Content Card Clicked",
        14,
        "2024-05-31T16:22:51.000Z",
        {
            **CAMPAIGN,
            "card_id": "NjY1OWY1YTFiMmMzZDRlNWY2YTdiOGM5",
            "app_id": IOS_APP_ID,
            "os_version": "iOS 17.5",
            "ad_id": "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
            "ad_id_type": "idfa",
            "ad_tracking_enabled": False,
        },
        device={"model": "iPhone 15", "type": "ios"},
    ),
    "users.messages.contentcard.Dismiss": track(
        "Content Card Dismissed",
        15,
        "2024-05-31T16:23:52.000Z",
        {
            **CANVAS,
            "card_id": "NjY1OWY1YTFiMmMzZDRlNWY2YTdiOGNh",
            "app_id": ANDROID_APP_ID,
            "os_version": "Android 14",
        },
        device={"model": "Pixel 8", "type": "android"},
    ),
    "users.messages.contentcard.Impression": track(
        "Content Card Viewed",
        16,
        "2024-05-31T16:24:53.000Z",
        {
            **CAMPAIGN,
            "card_id": "NjY1OWY1YTFiMmMzZDRlNWY2YTdiOGM5",
            "app_id": "e0f1a2b3-c4d5-4e6f-8a7b-8c9d0e1f2a3b",
            "os_version": "Mac OS X 14.5",
        },
        device={"type": "web"},
    ),
    "users.messages.contentcard.Send": track(
        "Content Card Sent",
        17,
        "2024-05-31T16:25:54.000Z",
        {**CAMPAIGN, "card_id": "NjY1OWY1YTFiMmMzZDRlNWY2YTdiOGM5"},
    ),
    "users.messages.email.Abort": track(
        "Email Aborted",
        18,
        "2024-05-31T16:26:55.000Z",
        {**CAMPAIGN, **ABORT_LIQUID, "abort_log": "missing first_name attribute"},
        traits=ANA,
    ),
    "users.messages.email.Bounce": track(
        "Email Bounced",
        19,
        "2024-05-31T16:27:56.000Z",
        {
            **CAMPAIGN,
            "bounce_reason": "550 5.1.1 The email account that you tried to reach does not exist",
            "esp": "sendgrid",
            "is_drop": False,
        },
        traits={"email": "old.address@example.net"},
    ),
    "users.messages.email.Click": track(
        "Email Link Clicked",
        20,
        "2024-05-31T16:28:57.000Z",
        {
            **CAMPAIGN,
            "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15",
            "device_class": "mobile",
            "device_os": "iOS",
            "browser": "Mobile Safari",
            "mailbox_provider": "Gmail",
            "is_amp": False,
            "link_url": "https://shop.example.com/summer?utm_source=braze",
            "link_id": "aa01",
            "link_alias": "hero_cta",
            "is_suspected_bot_click": False,
        },
        traits=ANA,
        device={"model": "iPhone"},
    ),
    "users.messages.email.Delivery": track(
        "Email Delivered",
        21,
        "2024-05-31T16:29:58.000Z",
        {**CAMPAIGN, "esp": "sendgrid"},
        traits=ANA,
    ),
    "users.messages.email.MarkAsSpam": track(
        "Email Marked as Spam",
        22,
        "2024-05-31T16:30:59.000Z",
        {**CANVAS, "user_agent": "Yahoo Feedback Loop"},
        traits=ANA,
    ),
    "users.messages.email.Open": track(
        "Email Opened",
        23,
        "2024-05-31T16:32:00.000Z",
        {
            **CAMPAIGN,
            "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36",
            "device_class": "mobile",
            "device_os": "Android",
            "browser": "Chrome Mobile",
            "mailbox_provider": "Gmail",
            "is_amp": False,
        },
        traits=ANA,
        device={"model": "Pixel 7"},
    ),
    "users.messages.email.Send": track(
        "Email Sent", 24, "2024-05-31T16:33:01.000Z", {**CAMPAIGN}, traits=ANA
    ),
    "users.messages.email.SoftBounce": track(
        "Email Soft Bounced",
        25,
        "2024-05-31T16:34:02.000Z",
        {
            **CANVAS,
            "bounce_reason": "452 4.2.2 The email account that you tried to reach is over quota",
            "esp": "sparkpost",
        },
        traits=ANA,
    ),
    "users.messages.email.Unsubscribe": track(
        "Unsubscribed", 26, "2024-05-31T16:35:03.000Z", {**CAMPAIGN}, traits=ANA
    ),
    "users.messages.inappmessage.Abort": track(
        "In-App Message Aborted",
        27,
        "2024-05-31T16:36:04.000Z",
        {
            **CAMPAIGN,
            "version": "triggered",
            **ABORT_LIQUID,
            "abort_log": "user already purchased",
            "os_version": "iPadOS 17.5",
        },
        device={"model": "iPad Pro", "type": "ios"},
    ),
    "users.messages.inappmessage.Click": track(
        "In-App Message Clicked",
        28,
        "2024-05-31T16:37:05.000Z",
        {**CAMPAIGN, "app_id": ANDROID_APP_ID, "button_id": "1", "os_version": "Android 13"},
        device={"model": "Galaxy S23", "type": "android"},
    ),
    "users.messages.inappmessage.Impression": track(
        "In-App Message Viewed",
        29,
        "2024-05-31T16:38:06.000Z",
        {**CANVAS, "app_id": IOS_APP_ID, "os_version": "iOS 17.4"},
        device={"model": "iPhone 14", "type": "ios"},
    ),
    # Push Abort is not one of the device-context types: platform stays a property.
    "users.messages.pushnotification.Abort": track(
        "Push Notification Aborted",
        30,
        "2024-05-31T16:39:07.000Z",
        {**CAMPAIGN, "platform": "ios", **ABORT_LIQUID, "abort_log": "no push token for this app"},
    ),
    "users.messages.pushnotification.Bounce": track(
        "Push Notification Bounced",
        31,
        "2024-05-31T16:40:08.000Z",
        {**CAMPAIGN, "app_id": ANDROID_APP_ID, "platform": "android"},
    ),
    "users.messages.pushnotification.IosForeground": track(
        "Ios Foreground Push Opened",
        32,
        "2024-05-31T16:41:09.000Z",
        {**CAMPAIGN, "app_id": IOS_APP_ID},
        device={"model": "iPhone 15 Pro", "type": "ios"},
    ),
    "users.messages.pushnotification.Open": track(
        "Push Notification Tapped",
        33,
        "2024-05-31T16:42:10.000Z",
        {
            **CANVAS,
            "app_id": ANDROID_APP_ID,
            "button_action_type": "URI",
            "button_string": "Shop now",
        },
        device={"model": "Galaxy S24", "type": "android"},
    ),
    "users.messages.pushnotification.Send": track(
        "Push Notification Sent",
        34,
        "2024-05-31T16:43:11.000Z",
        {**CAMPAIGN, "app_id": IOS_APP_ID, "platform": "ios"},
    ),
    "users.messages.sms.Abort": track(
        "SMS Aborted",
        35,
        "2024-05-31T16:44:12.000Z",
        {
            **CAMPAIGN,
            "subscription_group_id": SUBSCRIPTION_GROUP_ID,
            **ABORT_LIQUID,
            "abort_log": "quiet hours",
        },
        traits=US_PHONE,
    ),
    "users.messages.sms.CarrierSend": track(
        "SMS Sent to Carrier",
        36,
        "2024-05-31T16:45:13.000Z",
        {**CAMPAIGN, "from_phone_number": "+14155559876", "subscription_group_id": SUBSCRIPTION_GROUP_ID},
        traits=US_PHONE,
    ),
    "users.messages.sms.Delivery": track(
        "SMS Delivered",
        37,
        "2024-05-31T16:46:14.000Z",
        {
            **CAMPAIGN,
            "from_phone_number": "+14155559876",
            "subscription_group_id": SUBSCRIPTION_GROUP_ID,
            "is_sms_fallback": False,
        },
        traits=US_PHONE,
    ),
    "users.messages.sms.DeliveryFailure": track(
        "SMS Delivery Failed",
        38,
        "2024-05-31T16:47:15.000Z",
        {
            **CAMPAIGN,
            "from_phone_number": "+14155559876",
            "subscription_group_id": SUBSCRIPTION_GROUP_ID,
            "error": "Unknown destination handset",
            "provider_error_code": "30005",
        },
        traits=US_PHONE,
    ),
    # No Braze user id (allowed on InboundReceive): no anonymousId; no device either.
    "users.messages.sms.InboundReceive": track(
        "SMS Inbound Received",
        39,
        "2024-05-31T16:48:16.000Z",
        {
            "app_group_id": APP_GROUP_ID,
            "subscription_group_id": SUBSCRIPTION_GROUP_ID,
            "inbound_phone_number": "+14155559876",
            "action": "Unsubscribed",
            "message_body": "STOP",
            "media_urls": ["https://media.example.com/mms/1.jpg"],
        },
        traits=US_PHONE,
        anonymous_id=None,
        device_id=None,
    ),
    "users.messages.sms.Rejection": track(
        "SMS Rejected",
        40,
        "2024-05-31T16:49:17.000Z",
        {
            **CAMPAIGN,
            "from_phone_number": "+14155559876",
            "subscription_group_id": SUBSCRIPTION_GROUP_ID,
            "error": "Attempt to send to unsubscribed recipient",
            "provider_error_code": "21610",
        },
        traits=US_PHONE,
    ),
    "users.messages.sms.Send": track(
        "SMS Sent",
        41,
        "2024-05-31T16:50:18.000Z",
        {**CAMPAIGN, "subscription_group_id": SUBSCRIPTION_GROUP_ID},
        traits=US_PHONE,
    ),
    # `url` is renamed on Email Click only.
    "users.messages.sms.ShortLinkClick": track(
        "SMS Short Link Clicked",
        42,
        "2024-05-31T16:51:19.000Z",
        {
            **CAMPAIGN,
            "subscription_group_id": SUBSCRIPTION_GROUP_ID,
            "url": "https://shop.example.com/summer",
            "short_url": "https://brz.ai/a1b2c3",
            "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X)",
        },
        traits=US_PHONE,
    ),
    "users.messages.webhook.Abort": track(
        "Webhook Aborted",
        43,
        "2024-05-31T16:52:20.000Z",
        {**CAMPAIGN, "abort_type": "connected_content_abort", "abort_log": "endpoint answered 503"},
    ),
    "users.messages.webhook.Send": track("Webhook Sent", 44, "2024-05-31T16:53:21.000Z", {**CANVAS}),
    "users.messages.whatsapp.Abort": track(
        "WhatsApp Aborted",
        45,
        "2024-05-31T16:54:22.000Z",
        {**CAMPAIGN, **ABORT_LIQUID, "abort_log": "template not approved"},
        traits=UK_PHONE,
    ),
    "users.messages.whatsapp.Delivery": track(
        "WhatsApp Delivered",
        46,
        "2024-05-31T16:55:23.000Z",
        {**CAMPAIGN, "from_phone_number": "+447700900999", "subscription_group_id": SUBSCRIPTION_GROUP_ID},
        traits=UK_PHONE,
    ),
    "users.messages.whatsapp.Failure": track(
        "WhatsApp Failed",
        47,
        "2024-05-31T16:56:24.000Z",
        {
            **CAMPAIGN,
            "from_phone_number": "+447700900999",
            "provider_error_code": "131026",
            "provider_error_title": "Message undeliverable",
        },
        traits=UK_PHONE,
    ),
    "users.messages.whatsapp.InboundReceive": track(
        "WhatsApp Inbound Received",
        48,
        "2024-05-31T16:57:25.000Z",
        {
            "app_group_id": APP_GROUP_ID,
            "subscription_group_id": SUBSCRIPTION_GROUP_ID,
            "inbound_phone_number": "+447700900999",
            "action": "None",
            "message_body": "Where is my order?",
        },
        traits=UK_PHONE,
    ),
    "users.messages.whatsapp.Read": track(
        "WhatsApp Read",
        49,
        "2024-05-31T16:58:26.000Z",
        {**CAMPAIGN, "from_phone_number": "+447700900999"},
        traits=UK_PHONE,
    ),
    "users.messages.whatsapp.Send": track(
        "WhatsApp Sent",
        50,
        "2024-05-31T16:59:27.000Z",
        {**CANVAS, "from_phone_number": "+447700900999", "subscription_group_id": SUBSCRIPTION_GROUP_ID},
        traits=UK_PHONE,
    ),
    # Braze's five with Segment names beyond its connector (catalog.ADDITIONAL_TYPES), forwarded because ALL
    # selects them. The common rules, plus the extended category's device fields.
    "users.messages.email.Deferral": track(
        "Email Deferred",
        51,
        "2024-05-31T17:00:28.000Z",
        {**CAMPAIGN, "esp": "sendgrid", "deferral_reason": "421 4.7.0 Try again later"},
        traits=ANA,
    ),
    "users.messages.webhook.Failure": track(
        "Webhook Failed",
        52,
        "2024-05-31T17:01:29.000Z",
        {**CAMPAIGN, "error": "connection timed out", "url": "https://hooks.example.com/braze"},
    ),
    "users.messages.whatsapp.Click": track(
        "WhatsApp Tracked Link Clicked",
        53,
        "2024-05-31T17:02:30.000Z",
        {**CAMPAIGN, "url": "https://shop.example.com/order/123", "user_phone_number": "+447700900123"},
    ),
    "users.messages.featureflag.Impression": track(
        "Feature Flag Experiment Impressed",
        54,
        "2024-05-31T17:03:31.000Z",
        {
            "app_group_id": APP_GROUP_ID,
            "feature_flag_id_name": "new_checkout",
            "app_id": IOS_APP_ID,
        },
        device={"type": "ios"},
    ),
    "users.canvasstep.Progression": track(
        "Canvas Step Progression",
        55,
        "2024-05-31T17:04:32.000Z",
        {**CANVAS, "progression_type": "Progressed", "next_step_id": "6602a1b2c3d4e5f6a7b8c9d5"},
    ),
}


def flat(record: dict) -> dict:
    """The same event as a flat Avro record (what Braze writes to cloud storage), without event_type."""
    out = {"id": record["id"], "time": record["time"]}
    for key in ("user_id", "external_user_id", "device_id", "timezone"):
        out[key] = record["user"].get(key)
    out.update(record["properties"])
    return out


def queued(record: object, rules: ConnectorRules = ALL):
    outcome = map_event(normalise(record), rules)
    assert outcome.fate is Fate.QUEUED, outcome.reason
    return outcome


def rejection(record: object, rules: ConnectorRules = ALL) -> str:
    outcome = map_event(normalise(record), rules)
    assert outcome.fate is Fate.REJECTED
    assert outcome.message is None and outcome.encoded is None
    return outcome.reason


# --- one exact message per catalog event type ---------------------------------------------------------------


def test_every_catalog_type_has_a_fixture_and_an_expected_message():
    # The other extended types have theirs in tests/test_extended_mapping.py.
    assert list(EVENTS) == [e.event_type for e in catalog.CATALOG]
    assert list(EXPECTED) == [
        e.event_type for e in catalog.CATALOG if e.supported or e.event_type in catalog.ADDITIONAL_TYPES
    ]


@pytest.mark.parametrize("event_type", list(EXPECTED))
def test_http_event_maps_to_the_expected_message(event_type):
    outcome = queued(event(event_type))
    assert outcome.message == EXPECTED[event_type]
    assert orjson.loads(outcome.encoded) == EXPECTED[event_type]
    assert outcome.segment_event == EXPECTED[event_type]["event"]
    assert outcome.reason is None


@pytest.mark.parametrize("event_type", list(EXPECTED))
def test_flat_avro_record_maps_to_the_same_message(event_type):
    record = {"event_type": event_type, **flat(event(event_type))}
    assert queued(record).message == EXPECTED[event_type]


def test_avro_only_field_and_unknown_fields():
    record = flat(event("users.messages.email.Send"))
    record["event_type"] = "users.messages.email.Send"
    record["canvas_step_message_variation_id"] = "6602a1b2c3d4e5f6a7b8c9f0"  # Avro only; Braze omits it
    record["future_field"] = {"added": "by Braze", "nested": None}  # unknown: kept, nested null kept
    record["future_null"] = None  # top-level null: dropped
    message = queued(record).message
    assert message["properties"] == {
        **CAMPAIGN,
        "device_id": DEVICE_ID,
        "future_field": {"added": "by Braze", "nested": None},
    }


def test_mapping_does_not_change_the_event_or_the_record():
    record = event("users.messages.contentcard.Click")
    before = orjson.dumps(record)
    normalised = normalise(record)
    properties_before = dict(normalised.properties)
    map_event(normalised, ConnectorRules(EVERY_TYPE, field_transforms={"app_id": "redact"}))
    assert orjson.dumps(record) == before
    assert normalised.properties == properties_before
    assert normalised.raw is record


# --- normalise ----------------------------------------------------------------------------------------------


def test_normalise_http_shape():
    normalised = normalise(event("users.messages.email.Send"))
    assert normalised.event_type == "users.messages.email.Send"
    assert normalised.id == message_id(24)
    assert normalised.time == 1717173181
    assert (normalised.user_id, normalised.external_user_id) == (BRAZE_ID, EXTERNAL_ID)
    assert (normalised.device_id, normalised.timezone) == (DEVICE_ID, TIMEZONE)
    assert normalised.properties == {**CAMPAIGN, "email_address": "ana.lopez@example.com"}


def test_normalise_flat_shape_equals_http_shape():
    http = normalise(event("users.messages.sms.Delivery"))
    avro = normalise(
        {"event_type": "users.messages.sms.Delivery", **flat(event("users.messages.sms.Delivery"))}
    )
    for name in ("event_type", "id", "time", "user_id", "external_user_id", "device_id", "timezone"):
        assert getattr(http, name) == getattr(avro, name)
    assert http.properties == avro.properties


def test_envelope_fields_win_over_same_named_properties():
    record = event("users.messages.email.Send")
    record["properties"]["id"] = "not-the-id"
    record["properties"]["user_id"] = "not-the-user"
    normalised = normalise(record)
    assert normalised.id == message_id(24)
    assert normalised.user_id == BRAZE_ID
    assert "id" not in normalised.properties and "user_id" not in normalised.properties


def test_numeric_user_ids_become_text_and_empty_ones_absent():
    record = event("users.messages.email.Send")
    record["user"]["external_user_id"] = 8812
    record["user"]["user_id"] = ""
    normalised = normalise(record)
    assert normalised.external_user_id == "8812"
    assert normalised.user_id is None
    message = queued(record).message
    assert message["userId"] == "8812"
    assert "anonymousId" not in message


def event_attributes(normalised: CurrentsEvent) -> tuple:
    return (
        normalised.event_type,
        normalised.id,
        normalised.time,
        normalised.user_id,
        normalised.external_user_id,
        normalised.device_id,
        normalised.timezone,
        normalised.properties,
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.update(extra_envelope_field="kept"),  # an unknown envelope field
        lambda r: r["user"].update(user_extra="kept"),  # an unknown `user` field
        lambda r: r.update(timezone=r["user"].pop("timezone")),  # a `user` field in the envelope
        lambda r: r["properties"].update(user="not the user object"),  # a property named like the object
    ],
)
def test_usual_and_unusual_http_layouts_normalise_alike(change):
    """The usual HTTP layout is read field by field; any other is merged. Both give the same event."""
    usual = event("users.messages.contentcard.Click")
    unusual = event("users.messages.contentcard.Click")
    change(unusual)
    expected = {**usual["properties"]}
    for key in ("extra_envelope_field", "user_extra"):
        if key in unusual or key in unusual["user"]:
            expected[key] = "kept"
    if "user" in unusual["properties"]:
        expected["user"] = "not the user object"
    assert event_attributes(normalise(unusual)) == (*event_attributes(normalise(usual))[:7], expected)
    assert queued(unusual).message["context"] == queued(usual).message["context"]


def test_falsy_fields_are_kept_and_nulls_dropped():
    record = event("users.messages.email.Send")
    record["properties"] = {"flag": False, "count": 0, "note": "", "empty": [], "gone": None}
    properties = queued(record).message["properties"]
    assert properties == {"flag": False, "count": 0, "note": "", "empty": [], "device_id": DEVICE_ID}


def test_messages_own_their_properties_and_context():
    record = event("users.messages.contentcard.Click")
    before = orjson.dumps(record)
    first, second = queued(record).message, queued(record).message
    first["properties"]["added"] = 1
    first["context"]["device"]["model"] = "changed"
    first["context"]["extra"] = 2
    assert orjson.dumps(record) == before
    assert second == EXPECTED["users.messages.contentcard.Click"]


@pytest.mark.parametrize(
    "record",
    [
        None,
        17,
        "users.messages.email.Send",
        [{"event_type": "users.messages.email.Send"}],
        {},
        {"user": 5, "properties": [1, 2]},
        {"event_type": None, "user": None, "properties": None},
        {"event_type": 3.5},
        {("tuple", "key"): 1},
    ],
)
def test_normalise_and_map_never_raise(record):
    outcome = map_event(normalise(record), ALL)
    assert outcome.fate is Fate.REJECTED
    assert outcome.reason


def test_map_event_never_raises_on_a_malformed_event_object():
    broken = CurrentsEvent("users.messages.email.Send", "id-1", 1717171717, "u", "x", None, None, None, None)
    outcome = map_event(broken, ALL)
    assert outcome.fate is Fate.REJECTED
    assert "could not be mapped" in outcome.reason


# --- aliases, unknown and unselected types ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "canonical", "name"),
    [
        ("users_campaigns_abort", "users.campaigns.Abort", "Campaign Aborted"),
        ("users_canvas_abort", "users.canvas.Abort", "Canvas Aborted"),
    ],
)
def test_underscore_aliases_map_like_the_dotted_name(alias, canonical, name):
    record = event(canonical)
    record["event_type"] = alias
    assert normalise(record).event_type == canonical
    outcome = queued(record, ConnectorRules(selected=frozenset({canonical})))
    assert outcome.message["event"] == name


def test_unknown_event_type_is_unsupported_even_when_selected():
    record = event("users.messages.email.Send")
    record["event_type"] = "users.messages.hologram.Send"
    outcome = map_event(
        normalise(record), ConnectorRules(selected=frozenset({"users.messages.hologram.Send"}))
    )
    assert outcome.fate is Fate.UNSUPPORTED
    assert outcome.message is None
    assert "users.messages.hologram.Send" in outcome.reason


def test_unselected_type_is_not_selected():
    rules = ConnectorRules(selected=frozenset({"users.messages.email.Send"}))
    outcome = map_event(normalise(event("users.messages.email.Open")), rules)
    assert outcome.fate is Fate.NOT_SELECTED
    assert outcome.message is None
    assert "users.messages.email.Open" in outcome.reason


def test_additional_event_is_forwarded_only_when_selected():
    deferral = event("users.messages.email.Deferral")
    supported_only = ConnectorRules(selected=frozenset(catalog.supported_types()))
    assert map_event(normalise(deferral), supported_only).fate is Fate.NOT_SELECTED
    opted_in = ConnectorRules(selected=frozenset({"users.messages.email.Deferral"}))
    assert queued(deferral, opted_in).message == EXPECTED["users.messages.email.Deferral"]


def test_unsupported_check_comes_before_validation():
    outcome = map_event(normalise({"event_type": "users.messages.hologram.Send"}), ALL)
    assert outcome.fate is Fate.UNSUPPORTED


def test_selection_check_comes_before_validation():
    rules = ConnectorRules(selected=frozenset({"users.messages.email.Open"}))
    outcome = map_event(normalise({"event_type": "users.messages.email.Send"}), rules)
    assert outcome.fate is Fate.NOT_SELECTED


# --- anonymous users ----------------------------------------------------------------------------------------


def anonymous_send() -> dict:
    record = event("users.messages.email.Send")
    del record["user"]["external_user_id"]
    return record


def test_anonymous_user_is_filtered_when_the_connector_leaves_them_out():
    outcome = map_event(normalise(anonymous_send()), ALL)
    assert outcome.fate is Fate.ANONYMOUS
    assert outcome.message is None
    assert "external_user_id" in outcome.reason


def test_anonymous_user_is_sent_with_anonymous_id_only_when_included():
    message = queued(anonymous_send(), ALL_WITH_ANONYMOUS).message
    expected = track("Email Sent", 24, "2024-05-31T16:33:01.000Z", {**CAMPAIGN}, traits=ANA, user_id=None)
    assert message == expected
    assert "userId" not in message


def test_known_user_is_sent_whether_or_not_anonymous_users_are_included():
    record = event("users.messages.email.Send")
    assert queued(record, ALL).message == queued(record, ALL_WITH_ANONYMOUS).message


# --- overrides and transforms -------------------------------------------------------------------------------


def test_name_override_replaces_the_segment_event_name():
    rules = ConnectorRules(
        selected=EVERY_TYPE, name_overrides={"users.messages.email.MarkAsSpam": "Email Marked As Spam"}
    )
    outcome = queued(event("users.messages.email.MarkAsSpam"), rules)
    assert outcome.message["event"] == "Email Marked As Spam"
    assert outcome.segment_event == "Email Marked As Spam"
    # Other types keep their catalog name.
    assert queued(event("users.messages.email.Send"), rules).message["event"] == "Email Sent"


def test_override_applies_to_aliased_types():
    record = event("users.canvas.Abort")
    record["event_type"] = "users_canvas_abort"
    rules = ConnectorRules(selected=EVERY_TYPE, name_overrides={"users.canvas.Abort": "Journey Aborted"})
    assert queued(record, rules).message["event"] == "Journey Aborted"


def test_redact_applies_where_the_field_ends_up():
    rules = ConnectorRules(
        selected=EVERY_TYPE,
        field_transforms={"email_address": "redact", "abort_log": "redact", "device_model": "redact"},
    )
    message = queued(event("users.messages.email.Abort"), rules).message
    assert message["context"]["traits"] == {"email": "[REDACTED]"}
    assert message["properties"]["abort_log"] == "[REDACTED]"
    click = queued(event("users.messages.email.Click"), rules).message
    assert click["context"]["device"] == {"model": "[REDACTED]"}


def test_hash_is_sha256_hex_of_the_text_or_json_form():
    rules = ConnectorRules(
        selected=EVERY_TYPE,
        field_transforms={
            "email_address": "hash",
            "external_user_id": "hash",
            "content_card_id": "hash",
            "conversion_behavior_index": "hash",
            "ad_tracking_enabled": "hash",
        },
    )
    email = queued(event("users.messages.email.Send"), rules).message
    assert email["context"]["traits"]["email"] == (
        "53fdd27c13c87b89296422dd99e14d02656dbcacefed01d3b53a56313adf3a98"
    )
    assert email["userId"] == "26edb154dc1742f7574a49a6f6ee96c8867ff0fa7e36ec020163e5f29751cab1"
    assert email["anonymousId"] == BRAZE_ID
    card = queued(event("users.messages.contentcard.Click"), rules).message
    # Transforms name Braze's field; the value is hashed before the rename to card_id.
    assert card["properties"]["card_id"] == "9a2fa9fa79411797704690748b5d0b635cb30c55845bd9788506737cd468e804"
    assert card["properties"]["ad_tracking_enabled"] == (
        "fcbcf165908dd18a9e49f7ff27810176db8e9f63b4352213741664245224f8aa"  # sha256 of "false"
    )
    conversion = queued(event("users.campaigns.Conversion"), rules).message
    assert conversion["properties"]["conversion_behavior_index"] == (
        "5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9"  # sha256 of "0"
    )


def test_transforms_never_touch_id_or_time_and_leave_nulls_null():
    rules = ConnectorRules(
        selected=EVERY_TYPE, field_transforms={"id": "redact", "time": "hash", "ad_id": "redact"}
    )
    message = queued(event("users.messages.contentcard.Dismiss"), rules).message
    assert message == EXPECTED["users.messages.contentcard.Dismiss"]


def test_unknown_transform_kind_is_a_rejection_naming_the_field():
    rules = ConnectorRules(selected=EVERY_TYPE, field_transforms={"email_address": "encrypt"})
    reason = rejection(event("users.messages.email.Send"), rules)
    assert "email_address" in reason and "encrypt" in reason and "redact" in reason


# --- time ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time", "timestamp"),
    [
        (946684800, "2000-01-01T00:00:00.000Z"),
        (1477502783, "2016-10-26T17:26:23.000Z"),
        (1717171717.25, "2024-05-31T16:08:37.250Z"),
        (1717171717.9996, "2024-05-31T16:08:38.000Z"),
        ("1717171717", "2024-05-31T16:08:37.000Z"),
        (" 1717171717.5 ", "2024-05-31T16:08:37.500Z"),
    ],
)
def test_time_becomes_iso_8601_utc_with_milliseconds(time, timestamp):
    record = event("users.messages.whatsapp.Send")
    record["time"] = time
    assert queued(record).message["timestamp"] == timestamp


# --- rejections ---------------------------------------------------------------------------------------------


MISSING = object()


def with_changes(**changes) -> dict:
    """The Email Send fixture with top-level fields replaced, or removed when given MISSING."""
    record = event("users.messages.email.Send")
    for key, value in changes.items():
        if value is MISSING:
            record.pop(key, None)
        else:
            record[key] = value
    return record


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ([1, 2], "the record is not a JSON object (it is a list)"),
        ("text", "the record is not a JSON object (it is text)"),
        (with_changes(event_type=MISSING), "missing required field `event_type`"),
        (with_changes(event_type=""), "missing required field `event_type`"),
        (with_changes(event_type=7), "`event_type` must be text, not a number"),
        (with_changes(id=MISSING), "missing required field `id`"),
        (with_changes(id=""), "missing required field `id`"),
        (with_changes(id=12345), "`id` must be text, not a number"),
        (with_changes(id="x" * 101), "`id` is 101 characters long; Segment accepts at most 100"),
        (with_changes(time=MISSING), "missing required field `time`"),
        (with_changes(time=True), "`time` must be a number of UNIX seconds, not true/false"),
        (with_changes(time=[1]), "`time` must be a number of UNIX seconds, not a list"),
        (with_changes(time="yesterday"), "`time` must be a number of UNIX seconds, not 'yesterday'"),
        (with_changes(time=math.nan), "`time` must be a number of UNIX seconds, not nan"),
        (with_changes(time="inf"), "`time` must be a number of UNIX seconds, not 'inf'"),
        (
            with_changes(time=1717171717000),
            "`time` 1717171717000 is not a date in UNIX seconds (was it sent in milliseconds?)",
        ),
        (
            with_changes(user={"device_id": DEVICE_ID}),
            "neither `user_id` nor `external_user_id` is set, so Segment cannot tell whose event it is",
        ),
        (with_changes(user={"user_id": ["a"]}), "`user_id` must be text, not a list"),
        (
            with_changes(user={"user_id": BRAZE_ID, "external_user_id": {"id": 1}}),
            "`external_user_id` must be text, not an object",
        ),
    ],
)
def test_rejection_reasons(record, expected):
    assert rejection(record) == expected


def test_id_of_exactly_100_characters_is_accepted():
    assert queued(with_changes(id="x" * 100)).message["messageId"] == "x" * 100


def test_neither_user_id_is_rejected_even_when_anonymous_users_are_included():
    reason = rejection(with_changes(user={}), ALL_WITH_ANONYMOUS)
    assert reason.startswith("neither `user_id` nor `external_user_id`")


def test_missing_extra_fields_are_not_a_rejection():
    record = event("users.messages.email.Click")
    record["properties"] = {}
    message = queued(record).message
    assert message["properties"] == {"device_id": DEVICE_ID}
    assert "traits" not in message["context"] and "device" not in message["context"]


def test_oversize_message_is_rejected_with_its_size_and_the_limit():
    record = event("users.messages.email.Abort")
    record["properties"]["abort_log"] = "x" * MAX_MESSAGE_BYTES
    reason = rejection(record)
    assert reason.startswith("the Segment message would be 33,")
    assert "over Segment's limit of 32,768 bytes per message" in reason


def test_a_large_field_can_be_redacted_to_fit():
    record = event("users.messages.email.Abort")
    record["properties"]["abort_log"] = "x" * MAX_MESSAGE_BYTES
    rules = ConnectorRules(selected=EVERY_TYPE, field_transforms={"abort_log": "redact"})
    assert queued(record, rules).message["properties"]["abort_log"] == "[REDACTED]"


def test_value_json_cannot_hold_is_rejected():
    record = event("users.messages.email.Send")
    record["properties"]["weird"] = object()
    assert rejection(record).startswith("the event holds a value that cannot be written as JSON")


def test_avro_bytes_become_text():
    record = event("users.messages.email.Send")
    record["properties"]["raw_header"] = b"X-Mailer: Braze"
    assert queued(record).message["properties"]["raw_header"] == "X-Mailer: Braze"


def test_rename_never_overwrites_an_existing_field():
    record = event("users.messages.contentcard.Send")
    record["properties"]["card_id"] = "already-here"
    properties = queued(record).message["properties"]
    assert properties["card_id"] == "already-here"
    assert properties["content_card_id"] == "NjY1OWY1YTFiMmMzZDRlNWY2YTdiOGM5"


# --- properties over every type -----------------------------------------------------------------------------


def test_every_type_in_many_variations_gives_a_valid_segment_message():
    rng = random.Random(20240531)
    optional_keys = ("external_user_id", "device_id", "timezone")
    checked = 0
    for event_type in EXPECTED:
        for _ in range(20):
            record = event(event_type)
            for key in optional_keys:
                # Keep one of the two user ids: without both, the event is rightly rejected.
                if rng.random() < 0.3 and (key != "external_user_id" or "user_id" in record["user"]):
                    record["user"].pop(key, None)
            for key in list(record["properties"]):
                if rng.random() < 0.2:
                    record["properties"][key] = None
            record["time"] = rng.choice(
                [rng.randrange(946_684_800, 1_700_000_000), rng.uniform(946_684_800, 1.7e9)]
            )
            if rng.random() < 0.5:
                record = {"event_type": event_type, **flat(record)}
            outcome = map_event(normalise(record), ALL_WITH_ANONYMOUS)
            assert outcome.fate is Fate.QUEUED, outcome.reason
            message = outcome.message
            assert len(outcome.encoded) <= MAX_MESSAGE_BYTES
            assert orjson.loads(outcome.encoded) == message
            assert message["type"] == "track"
            assert message["event"] == catalog.find(event_type).segment_event
            assert message["messageId"] == record["id"]
            assert message["timestamp"].endswith("Z") and len(message["timestamp"]) == 24
            assert message.get("userId") or message.get("anonymousId")
            assert None not in message["properties"].values()
            assert not {"timezone", "sending_ip", "push_token", "email_address"} & set(message["properties"])
            checked += 1
    assert checked == 20 * len(EXPECTED)
