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
    category: str  # "Messages" | ... | "Additional events"
    group: str  # "Email"
    segment_event: str  # "Email Sent"
    supported: bool  # False for the "Additional events"


ADDITIONAL_EVENTS = "Additional events"


def _supported(category: str, group: str, rows: tuple[tuple[str, str], ...]) -> list[EventType]:
    return [EventType(name, category, group, segment, True) for name, segment in rows]


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
    # Braze has Segment names for these but does not list them for Segment for Currents: offered, off by
    # default, and forwarded only when a connector selects them explicitly.
    EventType("users.messages.email.Deferral", ADDITIONAL_EVENTS, "Email", "Email Deferred", False),
    EventType("users.messages.webhook.Failure", ADDITIONAL_EVENTS, "Webhook", "Webhook Failed", False),
    EventType(
        "users.messages.whatsapp.Click", ADDITIONAL_EVENTS, "WhatsApp", "WhatsApp Tracked Link Clicked", False
    ),
    EventType(
        "users.messages.featureflag.Impression",
        ADDITIONAL_EVENTS,
        "Feature flag",
        "Feature Flag Experiment Impressed",
        False,
    ),
    EventType(
        "users.canvasstep.Progression", ADDITIONAL_EVENTS, "Canvas step", "Canvas Step Progression", False
    ),
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
        "users.messages.email.Deferral": _EMAIL,
        "users.messages.webhook.Failure": (),
        "users.messages.whatsapp.Click": (),
        "users.messages.featureflag.Impression": (),
        "users.canvasstep.Progression": (),
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
    """The names of every event type Segment for Currents forwards (what `all` selects), in catalog order."""
    return [e.event_type for e in CATALOG if e.supported]


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
    """Every name `resolve_events` understands, lower-cased, with the event types it stands for."""
    selectors: dict[str, list[str]] = {}
    # Group names first, so that category names (added later) win a clash: "Canvas" the category contains
    # "Canvas" the group. A group name shared by a supported group and an Additional-events group ("Email")
    # means the supported one; the Additional-events category or the type's own name selects the others.
    supported_groups = {e.group.lower() for e in CATALOG if e.supported}
    for entry in CATALOG:
        key = entry.group.lower()
        if entry.supported or key not in supported_groups:
            selectors.setdefault(key, []).append(entry.event_type)
    categories_seen: dict[str, list[str]] = {}
    for entry in CATALOG:
        categories_seen.setdefault(entry.category.lower(), []).append(entry.event_type)
    selectors.update(categories_seen)
    for entry in CATALOG:
        selectors[entry.event_type.lower()] = [entry.event_type]
    for alias, name in ALIASES.items():
        selectors[alias] = [name]
    selectors["all"] = supported_types()
    return {key: tuple(names) for key, names in selectors.items()}


_SELECTORS = _build_selectors()
# The spellings offered in "did you mean" hints, keyed by their lower-case form.
_DISPLAY_NAMES: dict[str, str] = {
    **{e.group.lower(): e.group for e in CATALOG},
    **{e.category.lower(): e.category for e in CATALOG},
    **{e.event_type.lower(): e.event_type for e in CATALOG},
    **{alias: alias for alias in ALIASES},
    "all": "all",
}


def resolve_events(spec: str) -> list[str]:
    """Resolve a comma-separated list of event types, group names and category names (or `all`, every
    supported type) to event type names, without duplicates, in catalog order.

    Names are matched case-insensitively. Raises ValueError naming the first unknown part, with the closest
    known name as a hint.
    """
    parts = [part.strip() for part in str(spec).split(",")]
    parts = [part for part in parts if part]
    if not parts:
        raise ValueError("no event types given: name event types, groups or categories, or use `all`")
    chosen: set[str] = set()
    for part in parts:
        names = _SELECTORS.get(part.lower())
        if names is None:
            # A name's start (`Push` for `Push notification`) is a likely meaning too.
            wanted = part.lower()
            close = [n for n in _DISPLAY_NAMES if n.startswith(wanted + " ")]
            close = close or difflib.get_close_matches(wanted, _DISPLAY_NAMES, n=1, cutoff=0.6)
            hint = f"; did you mean `{_DISPLAY_NAMES[close[0]]}`?" if close else ""
            raise ValueError(f"unknown event type, group or category `{part}`{hint}")
        chosen.update(names)
    return sorted(chosen, key=_ORDER.__getitem__)
