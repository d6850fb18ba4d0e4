"""The Braze Currents event catalog: event types, their categories, groups and Segment event names.

Pure data plus lookups, no I/O. Besides names, the catalog holds, per event type, the fields Braze documents
for it (so validation, the demo generator and test fixtures share one source of truth) and the few
mapping specifics that differ between event types (which fields move into `context`, which are renamed).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class EventType:
    """One Braze Currents event type and the Segment `track` event it becomes."""

    event_type: str  # "users.messages.email.Send"
    category: str  # "Messages" | ... | EXTENDED
    group: str  # "Email"
    segment_event: str  # "Email Sent"; "" when the type is not forwardable
    supported: bool  # Braze's Segment connector exports it (the 51); False for the EXTENDED category
    forwardable: bool = True  # tui-currents can send it to Segment
    reason: str | None = None  # why it is deliberately not sent (only when not forwardable)
    rule: str = "braze"  # the mapping rule (extended_mapping.RULES); "braze" = Braze's connector's mapping


# Every Currents event type Braze documents beyond the 51 its Segment connector exports. Off by default, and
# never part of `all`: selected with `extended`, a group or a type name.
EXTENDED = "Beyond Braze's Segment connector"
# The category the five types of Braze's with Segment names (but not in its Segment list) were in before
# EXTENDED held them; still understood by `--events`.
ADDITIONAL_EVENTS = "Additional events"
ADDITIONAL_TYPES = (
    "users.messages.email.Deferral",
    "users.messages.webhook.Failure",
    "users.messages.whatsapp.Click",
    "users.messages.featureflag.Impression",
    "users.canvasstep.Progression",
)


def _supported(category: str, group: str, rows: tuple[tuple[str, str], ...]) -> list[EventType]:
    return [EventType(name, category, group, segment, True) for name, segment in rows]


def _extended(group: str, rule: str, rows: tuple[tuple[str, str], ...]) -> list[EventType]:
    return [EventType(name, EXTENDED, group, segment, False, rule=rule) for name, segment in rows]


def _not_forwardable(group: str, event_type: str, reason: str) -> EventType:
    return EventType(event_type, EXTENDED, group, "", False, forwardable=False, reason=reason, rule="")


# The custom event's own `name` is its Segment event name.
CUSTOM_EVENT_NAME = "(the custom event's name)"
_AGENT_REASON = (
    "it records Braze's AI agents at work, not something a user did; analyse it from Braze's storage exports"
)

# The types Braze documents beyond its Segment connector, in the tree's order. Segment's semantic specs
# name them where one applies (Native Mobile, E-commerce v2); the rest follow the catalog's style.
EXTENDED_TYPES: tuple[EventType, ...] = (
    *_extended("Custom events", "custom event", (("users.behaviors.CustomEvent", CUSTOM_EVENT_NAME),)),
    *_extended("Purchases", "purchase", (("users.behaviors.Purchase", "Order Completed"),)),
    *_extended(
        "Sessions",
        "app lifecycle",
        (
            ("users.behaviors.app.FirstSession", "Application Installed"),
            ("users.behaviors.app.SessionStart", "Application Opened"),
            ("users.behaviors.app.SessionEnd", "Application Backgrounded"),
        ),
    ),
    *_extended(
        "Install attribution",
        "install attribution",
        (("users.behaviors.InstallAttribution", "Install Attributed"),),
    ),
    *_extended("Location", "location", (("users.behaviors.Location", "Location Recorded"),)),
    *_extended(
        "Push and live activity tokens",
        "token change",
        (
            ("users.behaviors.pushnotification.TokenStateChange", "Push Token State Changed"),
            (
                "users.behaviors.liveactivity.PushToStartTokenChange",
                "Live Activity Push To Start Token Changed",
            ),
            ("users.behaviors.liveactivity.UpdateTokenChange", "Live Activity Update Token Changed"),
        ),
    ),
    *_extended(
        "Banner",
        "message",
        (
            ("users.messages.banner.Abort", "Banner Aborted"),
            ("users.messages.banner.Click", "Banner Clicked"),
            ("users.messages.banner.Dismiss", "Banner Dismissed"),
            ("users.messages.banner.Impression", "Banner Viewed"),
        ),
    ),
    *_extended(
        "LINE",
        "message",
        (
            ("users.messages.line.Abort", "LINE Message Aborted"),
            ("users.messages.line.Click", "LINE Message Clicked"),
            ("users.messages.line.InboundReceive", "LINE Inbound Received"),
            ("users.messages.line.Retry", "LINE Message Retried"),
            ("users.messages.line.Send", "LINE Message Sent"),
        ),
    ),
    *_extended(
        "RCS",
        "message",
        (
            ("users.messages.rcs.Abort", "RCS Message Aborted"),
            ("users.messages.rcs.Click", "RCS Message Clicked"),
            ("users.messages.rcs.Delivery", "RCS Message Delivered"),
            ("users.messages.rcs.InboundReceive", "RCS Inbound Received"),
            ("users.messages.rcs.Read", "RCS Message Read"),
            ("users.messages.rcs.Rejection", "RCS Message Rejected"),
            ("users.messages.rcs.Send", "RCS Message Sent"),
        ),
    ),
    *_extended(
        "Live activity",
        "message",
        (
            ("users.messages.liveactivity.Outcome", "Live Activity Outcome Recorded"),
            ("users.messages.liveactivity.Send", "Live Activity Sent"),
        ),
    ),
    *_extended(
        "Retries",
        "message",
        (
            ("users.messages.email.Retry", "Email Retried"),
            ("users.messages.pushnotification.Retry", "Push Notification Retried"),
            ("users.messages.sms.Retry", "SMS Retried"),
            ("users.messages.webhook.Retry", "Webhook Retried"),
            ("users.messages.whatsapp.Retry", "WhatsApp Retried"),
        ),
    ),
    # Braze has Segment names for these five but leaves them out of its Segment connector.
    *_extended("Email", "message", (("users.messages.email.Deferral", "Email Deferred"),)),
    *_extended("Webhook", "message", (("users.messages.webhook.Failure", "Webhook Failed"),)),
    *_extended("WhatsApp", "message", (("users.messages.whatsapp.Click", "WhatsApp Tracked Link Clicked"),)),
    *_extended(
        "Feature flag",
        "message",
        (("users.messages.featureflag.Impression", "Feature Flag Experiment Impressed"),),
    ),
    *_extended(
        "Canvas step",
        "message",
        (
            ("users.canvasstep.Progression", "Canvas Step Progression"),
            ("users.canvas.costep.Send", "Canvas Step Sent"),
        ),
    ),
    _not_forwardable(
        "Users",
        "users.profile.Update",
        "a profile change is a Segment identify, not a track, and tui-currents sends track calls only; "
        "send profile attributes to Segment from where they are set",
    ),
    _not_forwardable(
        "Users",
        "users.UserDeleteRequest",
        "a deletion request can never be a track call (it would store the user again); delete the user in "
        "Segment too, with a deletion request for the same userId in Segment's privacy settings or its API",
    ),
    _not_forwardable(
        "Users",
        "users.UserOrphan",
        "Braze merged this profile into another one, and Segment has no track event for that; link the two "
        "ids in Segment with an alias or identify call from your own code if it needs to know",
    ),
    _not_forwardable(
        "Users",
        "users.RandomBucketNumberUpdate",
        "the random bucket number is Braze's own sampling aid, not something a user did",
    ),
    _not_forwardable("Agent console", "agentconsole.AgentExecuted", _AGENT_REASON),
    _not_forwardable("Agent console", "agentconsole.ToolInvocation", _AGENT_REASON),
)


# Where Braze's event glossary (Segment tab) and Segment's older Braze-source page disagree on a Segment
# name, the glossary name is used; a connector can override any name.
CATALOG: tuple[EventType, ...] = (
    *_supported("Behaviors", "Uninstall", (("users.behaviors.Uninstall", "Application Uninstalled"),)),
    *_supported(
        "Behaviors",
        "Subscription",
        (("users.behaviors.subscription.GlobalStateChange", "Global Subscription State Changed"),),
    ),
    *_supported(
        "Behaviors",
        "Subscription group",
        (("users.behaviors.subscriptiongroup.StateChange", "Subscription Group State Changed"),),
    ),
    *_supported(
        "Campaigns",
        "Campaigns",
        (
            ("users.campaigns.Abort", "Campaign Aborted"),
            ("users.campaigns.Conversion", "Campaign Converted"),
            ("users.campaigns.EnrollInControl", "Campaign Control Group Entered"),
        ),
    ),
    *_supported(
        "Canvas",
        "Canvas",
        (
            ("users.canvas.Abort", "Canvas Aborted"),
            ("users.canvas.Conversion", "Canvas Converted"),
            ("users.canvas.Entry", "Canvas Entered"),
        ),
    ),
    *_supported(
        "Canvas",
        "Exit",
        (
            ("users.canvas.exit.MatchedAudience", "Exit Matched Audience"),
            ("users.canvas.exit.PerformedEvent", "Exit Performed Event"),
        ),
    ),
    *_supported(
        "Canvas",
        "Experiment step",
        (
            ("users.canvas.experimentstep.Conversion", "Experiment Step Converted"),
            ("users.canvas.experimentstep.SplitEntry", "Experiment Split Entered"),
        ),
    ),
    *_supported(
        "Messages",
        "Content Card",
        (
            ("users.messages.contentcard.Abort", "Content Card Aborted"),
            ("users.messages.contentcard.Click", "Content Card Clicked"),
            ("users.messages.contentcard.Dismiss", "Content Card Dismissed"),
            ("users.messages.contentcard.Impression", "Content Card Viewed"),
            ("users.messages.contentcard.Send", "Content Card Sent"),
        ),
    ),
    *_supported(
        "Messages",
        "Email",
        (
            ("users.messages.email.Abort", "Email Aborted"),
            ("users.messages.email.Bounce", "Email Bounced"),
            ("users.messages.email.Click", "Email Link Clicked"),
            ("users.messages.email.Delivery", "Email Delivered"),
            ("users.messages.email.MarkAsSpam", "Email Marked as Spam"),
            ("users.messages.email.Open", "Email Opened"),
            ("users.messages.email.Send", "Email Sent"),
            ("users.messages.email.SoftBounce", "Email Soft Bounced"),
            ("users.messages.email.Unsubscribe", "Unsubscribed"),
        ),
    ),
    *_supported(
        "Messages",
        "In-app message",
        (
            ("users.messages.inappmessage.Abort", "In-App Message Aborted"),
            ("users.messages.inappmessage.Click", "In-App Message Clicked"),
            ("users.messages.inappmessage.Impression", "In-App Message Viewed"),
        ),
    ),
    *_supported(
        "Messages",
        "Push notification",
        (
            ("users.messages.pushnotification.Abort", "Push Notification Aborted"),
            ("users.messages.pushnotification.Bounce", "Push Notification Bounced"),
            ("users.messages.pushnotification.IosForeground", "Ios Foreground Push Opened"),
            ("users.messages.pushnotification.Open", "Push Notification Tapped"),
            ("users.messages.pushnotification.Send", "Push Notification Sent"),
        ),
    ),
    *_supported(
        "Messages",
        "SMS",
        (
            ("users.messages.sms.Abort", "SMS Aborted"),
            ("users.messages.sms.CarrierSend", "SMS Sent to Carrier"),
            ("users.messages.sms.Delivery", "SMS Delivered"),
            ("users.messages.sms.DeliveryFailure", "SMS Delivery Failed"),
            ("users.messages.sms.InboundReceive", "SMS Inbound Received"),
            ("users.messages.sms.Rejection", "SMS Rejected"),
            ("users.messages.sms.Send", "SMS Sent"),
            ("users.messages.sms.ShortLinkClick", "SMS Short Link Clicked"),
        ),
    ),
    *_supported(
        "Messages",
        "Webhook",
        (
            ("users.messages.webhook.Abort", "Webhook Aborted"),
            ("users.messages.webhook.Send", "Webhook Sent"),
        ),
    ),
    *_supported(
        "Messages",
        "WhatsApp",
        (
            ("users.messages.whatsapp.Abort", "WhatsApp Aborted"),
            ("users.messages.whatsapp.Delivery", "WhatsApp Delivered"),
            ("users.messages.whatsapp.Failure", "WhatsApp Failed"),
            ("users.messages.whatsapp.InboundReceive", "WhatsApp Inbound Received"),
            ("users.messages.whatsapp.Read", "WhatsApp Read"),
            ("users.messages.whatsapp.Send", "WhatsApp Sent"),
        ),
    ),
    *EXTENDED_TYPES,
)

# Braze's glossary lists the two Abort events under these names.
ALIASES: Mapping[str, str] = MappingProxyType(
    {"users_campaigns_abort": "users.campaigns.Abort", "users_canvas_abort": "users.canvas.Abort"}
)

# ---------------------------------------------------------------------------------------------------------
# Fields, by event type (Braze's Currents glossary). Missing fields never make an event invalid: Braze may
# omit or null them, and the mapping forwards what is there.

# Present on (almost) every event. `user_id` is absent on SMS and WhatsApp InboundReceive.
COMMON_FIELDS = ("id", "user_id", "external_user_id", "time", "timezone", "device_id", "app_group_id")
# The campaign/Canvas tracking block: optional strings on message events.
TRACKING_FIELDS = (
    "campaign_id",
    "campaign_name",
    "message_variation_id",
    "message_variation_name",
    "canvas_id",
    "canvas_name",
    "canvas_variation_id",
    "canvas_variation_name",
    "canvas_step_id",
    "canvas_step_name",
    "send_id",
    "dispatch_id",
)

_ABORT = ("abort_type", "abort_log")
_EMAIL = ("email_address",)
_EMAIL_ENGAGEMENT = ("user_agent", "device_class", "device_os", "device_model", "browser", "mailbox_provider")
_EMAIL_BOUNCE = ("bounce_reason", "esp", "sending_ip")
_CARD_ENGAGEMENT = ("content_card_id", "app_id")
_CARD_DEVICE = ("platform", "os_version", "device_model", "ad_id", "ad_id_type", "ad_tracking_enabled")
_IAM_DEVICE = ("card_id", "button_id", "platform", "os_version", "device_model")
# `subscription_group_id` is listed for SMS events in general; outbound ones also carry `to_phone_number`.
_SMS_OUT = ("to_phone_number", "subscription_group_id")
_EXPERIMENT = ("experiment_step_id", "experiment_split_id", "experiment_split_name")

# The app and device fields of behaviour events (Braze's glossary, customer behavior events).
_APP_DEVICE = (
    "app_id",
    "platform",
    "os_version",
    "device_model",
    "ad_id",
    "ad_id_type",
    "ad_tracking_enabled",
)
_SESSION_DEVICE = ("platform", "os_version", "device_model")
# Extra fields each event type carries besides COMMON_FIELDS and TRACKING_FIELDS, as the glossary lists them.
REQUIRED_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "users.behaviors.Uninstall": ("app_id",),
        "users.behaviors.subscription.GlobalStateChange": ("subscription_status",),
        "users.behaviors.subscriptiongroup.StateChange": ("subscription_group_id", "subscription_status"),
        "users.campaigns.Abort": _ABORT,
        "users.campaigns.Conversion": ("campaign_id", "conversion_behavior", "conversion_behavior_index"),
        "users.campaigns.EnrollInControl": ("campaign_id",),
        "users.canvas.Abort": _ABORT,
        "users.canvas.Conversion": ("canvas_id", "canvas_variation_id"),
        "users.canvas.Entry": ("canvas_id", "canvas_variation_id", "in_control_group"),
        "users.canvas.exit.MatchedAudience": ("app_group_id", "canvas_id", "canvas_variation_id"),
        "users.canvas.exit.PerformedEvent": ("app_group_id", "canvas_id", "canvas_variation_id"),
        "users.canvas.experimentstep.Conversion": _EXPERIMENT,
        "users.canvas.experimentstep.SplitEntry": ("in_control_group", *_EXPERIMENT),
        "users.messages.contentcard.Abort": _ABORT,
        "users.messages.contentcard.Click": _CARD_ENGAGEMENT,
        "users.messages.contentcard.Dismiss": _CARD_ENGAGEMENT,
        "users.messages.contentcard.Impression": _CARD_ENGAGEMENT,
        "users.messages.contentcard.Send": ("content_card_id",),
        "users.messages.email.Abort": (*_EMAIL, *_ABORT),
        "users.messages.email.Bounce": (*_EMAIL, *_EMAIL_BOUNCE, "is_drop"),
        "users.messages.email.Click": (
            *_EMAIL,
            *_EMAIL_ENGAGEMENT,
            "is_amp",
            "url",
            "link_id",
            "link_alias",
            "is_suspected_bot_click",
        ),
        "users.messages.email.Delivery": _EMAIL,
        "users.messages.email.MarkAsSpam": _EMAIL,
        "users.messages.email.Open": (*_EMAIL, *_EMAIL_ENGAGEMENT, "is_amp", "machine_open"),
        "users.messages.email.Send": _EMAIL,
        "users.messages.email.SoftBounce": (*_EMAIL, *_EMAIL_BOUNCE),
        "users.messages.email.Unsubscribe": _EMAIL,
        "users.messages.inappmessage.Abort": ("version", *_ABORT),
        "users.messages.inappmessage.Click": ("app_id",),
        "users.messages.inappmessage.Impression": ("app_id",),
        "users.messages.pushnotification.Abort": ("platform", *_ABORT),
        "users.messages.pushnotification.Bounce": ("app_id",),
        "users.messages.pushnotification.IosForeground": ("app_id", "platform"),
        "users.messages.pushnotification.Open": ("app_id", "button_action_type", "button_string"),
        "users.messages.pushnotification.Send": ("app_id", "platform"),
        "users.messages.sms.Abort": (*_SMS_OUT, *_ABORT),
        "users.messages.sms.CarrierSend": _SMS_OUT,
        "users.messages.sms.Delivery": (*_SMS_OUT, "from_phone_number", "is_sms_fallback"),
        "users.messages.sms.DeliveryFailure": (*_SMS_OUT, "error", "provider_error_code"),
        "users.messages.sms.InboundReceive": (
            "app_group_id",
            "subscription_group_id",
            "user_phone_number",
            "inbound_phone_number",
            "action",
            "message_body",
        ),
        "users.messages.sms.Rejection": (*_SMS_OUT, "error", "provider_error_code"),
        "users.messages.sms.Send": _SMS_OUT,
        "users.messages.sms.ShortLinkClick": ("subscription_group_id", "url", "short_url"),
        "users.messages.webhook.Abort": _ABORT,
        "users.messages.webhook.Send": (),
        "users.messages.whatsapp.Abort": _ABORT,
        "users.messages.whatsapp.Delivery": ("from_phone_number",),
        "users.messages.whatsapp.Failure": (
            "from_phone_number",
            "provider_error_code",
            "provider_error_title",
        ),
        "users.messages.whatsapp.InboundReceive": ("inbound_phone_number", "action"),
        "users.messages.whatsapp.Read": ("from_phone_number",),
        "users.messages.whatsapp.Send": ("from_phone_number",),
        # EXTENDED: the fields the mapping rules read and the glossary's usual ones (abort reasons, email
        # address); every other field is forwarded as it comes.
        **{e.event_type: () for e in EXTENDED_TYPES},
        **{e.event_type: _ABORT for e in EXTENDED_TYPES if e.event_type.endswith(".Abort")},
        "users.behaviors.CustomEvent": ("name", "custom_properties"),
        "users.behaviors.Purchase": ("product_id", "price", "currency", "purchase_properties"),
        "users.behaviors.app.FirstSession": ("session_id", "app_id"),
        "users.behaviors.app.SessionStart": ("session_id", "app_id"),
        "users.behaviors.app.SessionEnd": ("session_id", "app_id"),
        "users.behaviors.InstallAttribution": ("source",),
        "users.behaviors.Location": ("latitude", "longitude"),
        "users.messages.email.Deferral": _EMAIL,
        "users.messages.email.Retry": _EMAIL,
    }
)

# Fields the glossary marks optional, plus the device and phone fields the Segment mapping (below) reads on
# event types whose glossary entry does not list them.
OPTIONAL_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "users.behaviors.subscription.GlobalStateChange": (
            "email_address",
            "state_change_source",
            "channel",
            "channel_identifier",
        ),
        "users.behaviors.subscriptiongroup.StateChange": (
            "email_address",
            "phone_number",
            "channel",
            "state_change_source",
        ),
        "users.messages.contentcard.Click": _CARD_DEVICE,
        "users.messages.contentcard.Dismiss": _CARD_DEVICE,
        "users.messages.contentcard.Impression": _CARD_DEVICE,
        "users.messages.inappmessage.Abort": ("platform", "os_version", "device_model"),
        "users.messages.inappmessage.Click": _IAM_DEVICE,
        "users.messages.inappmessage.Impression": _IAM_DEVICE,
        "users.messages.pushnotification.IosForeground": ("device_model",),
        "users.messages.pushnotification.Open": ("platform", "device_model"),
        "users.messages.sms.InboundReceive": ("media_urls",),
        "users.messages.sms.ShortLinkClick": ("user_phone_number",),
        "users.messages.whatsapp.Abort": ("to_phone_number",),
        "users.messages.whatsapp.Delivery": ("to_phone_number",),
        "users.messages.whatsapp.Failure": ("to_phone_number",),
        "users.messages.whatsapp.InboundReceive": ("user_phone_number",),
        "users.messages.whatsapp.Read": ("to_phone_number",),
        "users.messages.whatsapp.Send": ("to_phone_number",),
        "users.behaviors.CustomEvent": _APP_DEVICE,
        "users.behaviors.Purchase": ("quantity", *_APP_DEVICE),
        "users.behaviors.app.FirstSession": _SESSION_DEVICE,
        "users.behaviors.app.SessionStart": _SESSION_DEVICE,
        "users.behaviors.app.SessionEnd": ("duration", *_SESSION_DEVICE),
        "users.behaviors.Location": ("altitude", "ll_accuracy", "alt_accuracy", *_APP_DEVICE),
    }
)

# ---------------------------------------------------------------------------------------------------------
# Mapping specifics (how Braze's own Segment connector shapes each event type).

# Braze leaves these out of what it sends to Segment.
OMITTED_FIELDS = frozenset({"timezone", "sending_ip", "push_token", "canvas_step_message_variation_id"})
# Renamed on every event type.
COMMON_RENAMES: Mapping[str, str] = MappingProxyType({"content_card_id": "card_id"})
# Renamed on one event type only.
TYPE_RENAMES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {"users.messages.email.Click": MappingProxyType({"url": "link_url"})}
)
# `email_address` becomes context.traits.email on every event type that has it.
EMAIL_TRAIT_FIELD = "email_address"
# The field that becomes context.traits.phone, by event type.
PHONE_TRAIT_FIELD: Mapping[str, str] = MappingProxyType(
    {
        **{
            f"users.messages.sms.{name}": "to_phone_number"
            for name in ("Abort", "CarrierSend", "Delivery", "DeliveryFailure", "Rejection", "Send")
        },
        "users.messages.sms.InboundReceive": "user_phone_number",
        "users.messages.sms.ShortLinkClick": "user_phone_number",
        **{
            f"users.messages.whatsapp.{name}": "to_phone_number"
            for name in ("Abort", "Delivery", "Failure", "Read", "Send")
        },
        "users.messages.whatsapp.InboundReceive": "user_phone_number",
        # EXTENDED: the same rule on the newer channels and the retries.
        **{
            f"users.messages.{channel}": "to_phone_number"
            for channel in (
                "sms.Retry",
                "whatsapp.Retry",
                "rcs.Abort",
                "rcs.Delivery",
                "rcs.Read",
                "rcs.Rejection",
                "rcs.Send",
            )
        },
        "users.messages.rcs.Click": "user_phone_number",
        "users.messages.rcs.InboundReceive": "user_phone_number",
    }
)
# Event types whose `device_model` becomes context.device.model and `platform` context.device.type.
DEVICE_MODEL_AND_TYPE = frozenset(
    {
        "users.messages.contentcard.Click",
        "users.messages.contentcard.Dismiss",
        "users.messages.contentcard.Impression",
        "users.messages.inappmessage.Abort",
        "users.messages.inappmessage.Click",
        "users.messages.inappmessage.Impression",
        "users.messages.pushnotification.Open",
        "users.messages.pushnotification.IosForeground",
    }
)
# Event types whose `device_model` becomes context.device.model (their `platform`, if any, stays a property).
DEVICE_MODEL_ONLY = frozenset({"users.messages.email.Click", "users.messages.email.Open"})

# ---------------------------------------------------------------------------------------------------------
# Lookups

_BY_NAME: dict[str, EventType] = {e.event_type: e for e in CATALOG}
_BY_NAME.update({alias: _BY_NAME[name] for alias, name in ALIASES.items()})
_ORDER: dict[str, int] = {e.event_type: i for i, e in enumerate(CATALOG)}


def find(event_type: str) -> EventType | None:
    """The catalog entry of an event type (dotted name or Braze's underscore alias), or None if unknown."""
    return _BY_NAME.get(event_type) if isinstance(event_type, str) else None


def canonical_name(event_type: str) -> str:
    """The dotted name of an aliased event type (`users_canvas_abort` -> `users.canvas.Abort`); anything
    else is returned unchanged."""
    return ALIASES.get(event_type, event_type)


def supported_types() -> list[str]:
    """The names of every event type Braze's Segment connector exports (what `all` selects), in catalog
    order."""
    return [e.event_type for e in CATALOG if e.supported]


def extended_types() -> list[str]:
    """The forwardable event types beyond Braze's Segment connector (what `extended` selects), in catalog
    order."""
    return [e.event_type for e in CATALOG if e.category == EXTENDED and e.forwardable]


def not_forwardable_reason(event_type: str) -> str | None:
    """Why tui-currents deliberately does not send an event type; None when it can or does not know it."""
    entry = find(event_type)
    return entry.reason if entry is not None and not entry.forwardable else None


def categories() -> dict[str, dict[str, list[EventType]]]:
    """The catalog as an ordered tree, category -> group -> event types, for pickers."""
    tree: dict[str, dict[str, list[EventType]]] = {}
    for entry in CATALOG:
        tree.setdefault(entry.category, {}).setdefault(entry.group, []).append(entry)
    return tree


def required_fields(event_type: str) -> tuple[str, ...]:
    """The extra fields Braze documents as carried by an event type (empty for unknown types)."""
    return REQUIRED_FIELDS.get(canonical_name(event_type), ())


def optional_fields(event_type: str) -> tuple[str, ...]:
    """The extra fields an event type may carry (empty for unknown types)."""
    return OPTIONAL_FIELDS.get(canonical_name(event_type), ())


def _build_selectors() -> dict[str, tuple[str, ...]]:
    """Every name `resolve_events` understands, lower-cased, with the event types it stands for. Types
    that are not forwardable are in none of them (see resolve_events)."""
    selectors: dict[str, list[str]] = {}
    forwardable = [e for e in CATALOG if e.forwardable]
    # Group names first, so that category names (added later) win a clash: "Canvas" the category contains
    # "Canvas" the group. A group name shared by a supported group and an extended group ("Email") means
    # the supported one; `extended` or the type's own name selects the others.
    supported_groups = {e.group.lower() for e in CATALOG if e.supported}
    for entry in forwardable:
        key = entry.group.lower()
        if entry.supported or key not in supported_groups:
            selectors.setdefault(key, []).append(entry.event_type)
    categories_seen: dict[str, list[str]] = {}
    for entry in forwardable:
        categories_seen.setdefault(entry.category.lower(), []).append(entry.event_type)
    selectors.update(categories_seen)
    for entry in forwardable:
        selectors[entry.event_type.lower()] = [entry.event_type]
    for alias, name in ALIASES.items():
        selectors[alias] = [name]
    selectors["all"] = supported_types()
    selectors["extended"] = extended_types()
    selectors[ADDITIONAL_EVENTS.lower()] = list(ADDITIONAL_TYPES)
    return {key: tuple(names) for key, names in selectors.items()}


_SELECTORS = _build_selectors()
# The spellings offered in "did you mean" hints, keyed by their lower-case form.
_DISPLAY_NAMES: dict[str, str] = {
    **{e.group.lower(): e.group for e in CATALOG},
    **{e.category.lower(): e.category for e in CATALOG},
    **{e.event_type.lower(): e.event_type for e in CATALOG},
    **{alias: alias for alias in ALIASES},
    "all": "all",
    "extended": "extended",
}
# Names of the types that are never sent, and of the groups holding only such types, so that naming one
# says why rather than "unknown".
_NOT_FORWARDABLE: dict[str, str] = {
    e.event_type.lower(): f"`{e.event_type}` is not forwardable: {e.reason}"
    for e in CATALOG
    if not e.forwardable
}
_NOT_FORWARDABLE.update(
    {
        group.lower(): f"no event type of the group `{group}` is forwardable (`tui-currents events` says why)"
        for group in {e.group for e in CATALOG if not e.forwardable}
        if group.lower() not in _SELECTORS
    }
)


def resolve_events(spec: str) -> list[str]:
    """Resolve a comma-separated list of event types, group names and category names to event type names,
    without duplicates, in catalog order. `all` is every type Braze's Segment connector exports (the 51);
    `extended` every forwardable type beyond them; `all,extended` both.

    Names are matched case-insensitively. Raises ValueError naming the first unknown part, with the closest
    known name as a hint, or the reason a named type is never forwarded.
    """
    parts = [part.strip() for part in str(spec).split(",")]
    parts = [part for part in parts if part]
    if not parts:
        raise ValueError("no event types given: name event types, groups or categories, or use `all`")
    chosen: set[str] = set()
    for part in parts:
        names = _SELECTORS.get(part.lower())
        if names is None and part.lower() in _NOT_FORWARDABLE:
            raise ValueError(_NOT_FORWARDABLE[part.lower()])
        if names is None:
            # A name's start (`Push` for `Push notification`) is a likely meaning too.
            wanted = part.lower()
            close = [n for n in _DISPLAY_NAMES if n.startswith(wanted + " ")]
            close = close or difflib.get_close_matches(wanted, _DISPLAY_NAMES, n=1, cutoff=0.6)
            hint = f"; did you mean `{_DISPLAY_NAMES[close[0]]}`?" if close else ""
            raise ValueError(f"unknown event type, group or category `{part}`{hint}")
        chosen.update(names)
    return sorted(chosen, key=_ORDER.__getitem__)
