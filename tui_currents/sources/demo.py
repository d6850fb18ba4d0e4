"""Realistic Braze Currents events of every catalog event type, for the demo, "Send test events" and tests.

Events come in the Custom HTTP connector's shape (`event_type`, `id`, `time`, a `user` object and a
`properties` object) or, with `flat=True`, in the flat shape of Currents' Avro files. Users recur (a pool
of them, about 15% anonymous), messages come from a handful of campaigns and Canvases, and email and push
events are far more common than the rest, as in a real Braze workspace. With a seed, the same events come
out every time (ids included); only `time` follows the clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from tui_currents import catalog

# Each group's share of all events (relative). Email and push dominate real Currents traffic.
GROUP_WEIGHTS: Mapping[str, float] = {
    "Email": 32.0,
    "Push notification": 22.0,
    "Content Card": 9.0,
    "In-app message": 8.0,
    "SMS": 8.0,
    "Canvas": 6.0,
    "WhatsApp": 4.0,
    "Campaigns": 3.0,
    "Webhook": 2.0,
    "Exit": 1.5,
    "Experiment step": 1.5,
    "Subscription": 1.5,
    "Subscription group": 1.5,
    "Uninstall": 1.0,
}
# Within a group, how common each event is (by the last part of its name): sends and deliveries are
# frequent, opens and clicks fewer, bounces and aborts rare.
_STEP_WEIGHTS: Mapping[str, float] = {
    "Send": 10.0,
    "Delivery": 9.0,
    "CarrierSend": 9.0,
    "Impression": 6.0,
    "Entry": 6.0,
    "Read": 5.0,
    "Open": 4.0,
    "SplitEntry": 4.0,
    "Click": 1.5,
    "Dismiss": 1.0,
    "ShortLinkClick": 0.8,
    "InboundReceive": 0.6,
    "IosForeground": 0.5,
    "SoftBounce": 0.6,
    "Bounce": 0.4,
    "Abort": 0.4,
    "Failure": 0.3,
    "DeliveryFailure": 0.3,
    "Rejection": 0.2,
    "Unsubscribe": 0.2,
    "MarkAsSpam": 0.05,
}

DEFAULT_ANONYMOUS_SHARE = 0.15

_TIMEZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "America/Toronto",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Asia/Tokyo",
    "Asia/Singapore",
    "Asia/Kolkata",
    "Australia/Sydney",
)
_FIRST_NAMES = ("ada", "alan", "grace", "linus", "margaret", "ken", "barbara", "dennis", "frances", "tim")
_LAST_NAMES = ("lovelace", "turing", "hopper", "torvalds", "hamilton", "thompson", "liskov", "ritchie")
# Country calling code and a fictional-number pattern per country (E.164 once filled in).
_PHONE_PLANS = (
    ("+1", "{a}5550{n:03d}"),
    ("+44", "7700900{n:03d}"),
    ("+49", "15{a}{n:06d}"),
    ("+33", "6{a}{n:05d}"),
)
_CAMPAIGNS = (
    "Spring Sale 2025",
    "Cart Abandonment Reminder",
    "Weekly Newsletter",
    "Price Drop Alert",
    "Win-back: 30 days inactive",
    "Order Shipped",
)
_CANVASES = {
    "Onboarding Journey": ("Welcome", "Profile tips", "First purchase nudge", "Review request"),
    "Loyalty Tier Upgrade": ("Tier announcement", "Perks reminder"),
    "Re-engagement Flow": ("We miss you", "Discount offer", "Last chance"),
    "Birthday Treat": ("Birthday greeting", "Coupon reminder"),
}
_DEVICES = {
    "ios": (("iPhone 15", "iOS 17.5"), ("iPhone 14 Pro", "iOS 17.4"), ("iPad Air", "iPadOS 17.4")),
    "android": (("Pixel 8", "Android 14"), ("Galaxy S23", "Android 14"), ("Moto G Power", "Android 13")),
    "web": (("Chrome on macOS", "macOS 14"), ("Firefox on Windows", "Windows 11"), ("Safari", "macOS 14")),
}
_PLATFORMS = ("ios", "android", "web")
_PLATFORM_SHARES = (0.45, 0.4, 0.15)
_ABORTS = (
    ("liquid_abort_message", "aborted by Liquid: {{abort_message('out of stock')}}"),
    ("rate_limit", "message rate limit reached for this campaign"),
    ("frequency_cap", "user is frequency capped: 3 messages in 24 hours"),
    ("quiet_hours", "sent during the user's quiet hours"),
    ("connected_content_error", "connected content call returned 500 after 3 attempts"),
)
_EMAIL_CLIENTS = (
    ("Gmail", "desktop", "Windows", "Chrome", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0"),
    ("Apple Mail", "mobile", "iOS", "Safari", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)"),
    ("Yahoo", "desktop", "macOS", "Firefox", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0)"),
    ("Outlook", "tablet", "Android", "Edge", "Mozilla/5.0 (Linux; Android 14; SM-X710) EdgA/124.0"),
)
_ESPS = ("SendGrid", "SparkPost", "Amazon SES")


@dataclasses.dataclass(frozen=True, slots=True)
class _User:
    braze_id: str
    external_id: str | None
    device_id: str
    timezone: str
    platform: str
    email: str
    phone: str
    device: tuple[str, str]  # model, OS version


@dataclasses.dataclass(frozen=True, slots=True)
class _Message:
    """Where a message came from: a campaign variant or a Canvas step."""

    fields: dict[str, str]


def _catalog_weights(
    event_types: Iterable[catalog.EventType], overrides: Mapping[str, float]
) -> dict[str, float]:
    entries = list(event_types)
    groups = {e.group for e in entries}
    names = {e.event_type for e in entries}
    unknown = [k for k in overrides if k not in groups and k not in names]
    if unknown:
        raise ValueError(f"unknown event type or group in weights: {', '.join(sorted(unknown))}")
    for key, value in overrides.items():
        if value < 0:
            raise ValueError(f"the weight of {key} must be zero or more, not {value}")
    group_totals = {g: float(overrides.get(g, GROUP_WEIGHTS.get(g, 1.0))) for g in groups}
    step_sums: dict[str, float] = {}
    for e in entries:
        step_sums[e.group] = step_sums.get(e.group, 0.0) + _step_weight(e.event_type)
    return {
        e.event_type: float(
            overrides.get(
                e.event_type, group_totals[e.group] * _step_weight(e.event_type) / step_sums[e.group]
            )
        )
        for e in entries
    }


def _step_weight(event_type: str) -> float:
    return _STEP_WEIGHTS.get(event_type.rsplit(".", 1)[-1], 1.0)


class DemoGenerator:
    """Makes Currents events: `batch(n)`, `event(event_type)`, or paced batches with `stream(rate)`.

    - `rate`: events per second for `stream()` when it is not given one.
    - `seed`: same seed, same events (ids, users, values); None for fresh randomness.
    - `event_types`: the types to draw from (default: every supported type of the catalog).
    - `weights`: relative weights by group name (the group's total share) or by event type (that type's
      own share), replacing the defaults; 0 leaves one out.
    - `anonymous_share`: the share of users with no `external_user_id`.
    - `users`: how many distinct users recur.
    - `flat`: produce the flat Avro shape instead of the HTTP one.
    """

    def __init__(
        self,
        rate: float = 50.0,
        *,
        seed: int | None = None,
        event_types: Iterable[str] | None = None,
        weights: Mapping[str, float] | None = None,
        anonymous_share: float = DEFAULT_ANONYMOUS_SHARE,
        users: int = 1_000,
        flat: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be more than 0 events per second, not {rate}")
        if not 0.0 <= anonymous_share <= 1.0:
            raise ValueError(f"anonymous_share must be between 0 and 1, not {anonymous_share}")
        if users < 1:
            raise ValueError("the demo needs at least one user")
        self.rate = rate
        self.flat = flat
        self.anonymous_share = anonymous_share
        self._clock = clock
        self._rng = random.Random(seed)
        if event_types is None:
            entries = [e for e in catalog.CATALOG if e.supported]
        else:
            entries = []
            for name in event_types:
                entry = catalog.find(name)
                if entry is None:
                    raise ValueError(f"unknown event type {name!r}")
                entries.append(entry)
        weighted = _catalog_weights(entries, weights or {})
        self._types = [name for name, w in weighted.items() if w > 0]
        if not self._types:
            raise ValueError("every event type has weight 0: nothing to generate")
        self._cum_weights = []
        total = 0.0
        for name in self._types:
            total += weighted[name]
            self._cum_weights.append(total)
        self._groups = {e.event_type: e.group for e in catalog.CATALOG}
        self._make_workspace()
        self._users = [self._make_user(anonymous=False) for _ in range(users)]
        anonymous_count = round(users * anonymous_share)
        for index in self._rng.sample(range(users), anonymous_count):
            self._users[index] = dataclasses.replace(self._users[index], external_id=None)
        self._identified = [u for u in self._users if u.external_id is not None]
        self._anonymous = [u for u in self._users if u.external_id is None]

    @property
    def event_types(self) -> list[str]:
        """The event types this generator draws from (those with a weight above 0)."""
        return list(self._types)

    # ------------------------------------------------------------------ ids and values

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _hex24(self) -> str:
        return f"{self._rng.getrandbits(96):024x}"

    def _phone(self) -> str:
        code, pattern = self._rng.choice(_PHONE_PLANS)
        return code + pattern.format(a=self._rng.randrange(200, 999), n=self._rng.randrange(0, 1000))

    def _make_workspace(self) -> None:
        rng = self._rng
        self.app_group_id = self._uuid()
        self._apps = {platform: self._uuid() for platform in _PLATFORMS}
        self._sms_group = self._uuid()
        self._whatsapp_group = self._uuid()
        self._email_group = self._uuid()
        self._sms_sender = "+1" + f"{rng.randrange(200, 999)}555{rng.randrange(100, 199):04d}"
        self._whatsapp_sender = "+1" + f"{rng.randrange(200, 999)}555{rng.randrange(200, 299):04d}"
        self._campaigns = [
            _Message(
                {
                    "campaign_id": self._uuid(),
                    "campaign_name": name,
                    "message_variation_id": self._uuid(),
                    "message_variation_name": variant,
                }
            )
            for name in _CAMPAIGNS
            for variant in ("Variant A", "Variant B")
        ]
        self._canvas_steps = []
        for name, steps in _CANVASES.items():
            canvas_id = self._uuid()
            variations = [(self._uuid(), v) for v in ("Variant 1", "Variant 2")]
            for step in steps:
                step_id = self._uuid()
                for variation_id, variation_name in variations:
                    self._canvas_steps.append(
                        _Message(
                            {
                                "canvas_id": canvas_id,
                                "canvas_name": name,
                                "canvas_variation_id": variation_id,
                                "canvas_variation_name": variation_name,
                                "canvas_step_id": step_id,
                                "canvas_step_name": step,
                            }
                        )
                    )

    def _make_user(self, *, anonymous: bool) -> _User:
        rng = self._rng
        platform = rng.choices(_PLATFORMS, _PLATFORM_SHARES)[0]
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        number = rng.randrange(1_000_000, 9_999_999)
        return _User(
            braze_id=self._hex24(),
            external_id=None if anonymous else f"customer-{number}",
            device_id=self._uuid().upper(),
            timezone=rng.choice(_TIMEZONES),
            platform=platform,
            email=f"{first}.{last}.{number % 10_000}@example.com",
            phone=self._phone(),
            device=rng.choice(_DEVICES[platform]),
        )

    def _pick_user(self, anonymous: bool | None) -> _User:
        if anonymous is None:
            return self._rng.choice(self._users)
        pool = self._anonymous if anonymous else self._identified
        return self._rng.choice(pool) if pool else self._make_user(anonymous=anonymous)

    def _tracking(self, *, campaign_share: float = 0.4) -> dict[str, Any]:
        """The campaign or Canvas step that sent a message, with a send id and a dispatch id."""
        rng = self._rng
        source = rng.choice(self._campaigns if rng.random() < campaign_share else self._canvas_steps)
        return {**source.fields, "send_id": self._uuid(), "dispatch_id": self._hex24()}

    def _abort(self) -> dict[str, Any]:
        abort_type, abort_log = self._rng.choice(_ABORTS)
        return {"abort_type": abort_type, "abort_log": abort_log[:128]}

    def _conversion(self) -> dict[str, Any]:
        rng = self._rng
        # Braze sends the conversion behaviour as a JSON-encoded string.
        behaviour = rng.choice(
            (
                {"type": "purchase", "product_id": f"sku-{rng.randrange(1000, 9999)}"},
                {"type": "custom_event", "name": "added_to_cart"},
                {"type": "session_start", "app_id": self._apps["ios"]},
            )
        )
        return {
            "conversion_behavior": json.dumps(behaviour, separators=(",", ":")),
            "conversion_behavior_index": rng.randrange(0, 3),
        }

    def _device(self, user: _User) -> dict[str, Any]:
        model, os_version = user.device
        return {
            "app_id": self._apps[user.platform],
            "platform": user.platform,
            "os_version": os_version,
            "device_model": model,
        }

    # ------------------------------------------------------------------ per-type fields

    def _properties(self, event_type: str, user: _User) -> dict[str, Any]:
        rng = self._rng
        group = self._groups.get(event_type, "")
        step = event_type.rsplit(".", 1)[-1]
        props: dict[str, Any] = {"app_group_id": self.app_group_id}

        if event_type == "users.behaviors.Uninstall":
            props["app_id"] = self._apps[user.platform]
        elif event_type == "users.behaviors.subscription.GlobalStateChange":
            props.update(
                subscription_status=rng.choice(("Subscribed", "Unsubscribed", "Opted In")),
                email_address=user.email,
                state_change_source=rng.choice(("Subscription Center", "REST API", "SDK", "CSV Import")),
                channel="email",
                channel_identifier=user.email,
            )
        elif event_type == "users.behaviors.subscriptiongroup.StateChange":
            channel = rng.choice(("email", "sms", "whatsapp"))
            group_id = {"email": self._email_group, "sms": self._sms_group, "whatsapp": self._whatsapp_group}
            props.update(
                subscription_group_id=group_id[channel],
                subscription_status=rng.choice(("Subscribed", "Unsubscribed")),
                channel=channel,
                state_change_source=rng.choice(("Subscription Center", "REST API", "SDK", "Inbound SMS")),
            )
            if channel == "email":
                props["email_address"] = user.email
            else:
                props["phone_number"] = user.phone
        elif group == "Campaigns":
            campaign = rng.choice(self._campaigns)
            props.update(campaign.fields)
            if step == "Abort":
                props.update(self._abort())
            elif step == "Conversion":
                props.update(self._conversion(), send_id=self._uuid())
            elif step == "EnrollInControl":
                props["message_variation_name"] = "Control Group"
        elif group in ("Canvas", "Exit", "Experiment step", "Canvas step"):
            props.update(rng.choice(self._canvas_steps).fields)
            if step == "Abort":
                props.update(self._abort())
            elif step == "Conversion":
                props.update(self._conversion())
            elif step in ("Entry", "SplitEntry"):
                props["in_control_group"] = rng.random() < 0.1
            elif step == "Progression":
                props.update(next_step_id=self._uuid(), progression_type="advanced")
            if group == "Experiment step":
                props.update(
                    experiment_step_id=self._uuid(),
                    experiment_split_id=self._uuid(),
                    experiment_split_name=rng.choice(("Path 1", "Path 2", "Control")),
                )
        elif event_type.startswith("users.behaviors."):
            self._behaviour(event_type, user, props)
        else:
            props.update(self._tracking())
            builder = _MESSAGE_BUILDERS.get(group)
            if group == "Retries":  # a retry carries its channel's fields
                builder = _MESSAGE_BUILDERS.get(_RETRY_GROUPS.get(event_type.split(".")[2], ""))
                step = "Send"
            if builder is not None:
                builder(self, step, user, props)
            elif step == "Abort":
                props.update(self._abort())
        return props

    def _behaviour(self, event_type: str, user: _User, props: dict[str, Any]) -> None:
        """The behaviour events beyond Braze's Segment connector (catalog.EXTENDED)."""
        rng = self._rng
        props.update(self._device(user))
        kind = event_type.removeprefix("users.behaviors.")
        if kind == "CustomEvent":
            name, custom = rng.choice(_CUSTOM_EVENTS)
            props.update(name=name, custom_properties=dict(custom))
        elif kind == "Purchase":
            props.update(
                product_id=f"sku-{rng.randrange(1000, 9999)}",
                price=rng.choice((4.99, 9.99, 19.0, 49.5)),
                currency=rng.choice(("USD", "EUR", "GBP")),
                purchase_properties={"category": rng.choice(("shoes", "books", "music"))},
            )
        elif kind.startswith("app."):
            props["session_id"] = self._uuid()
            if kind == "app.SessionEnd":
                props["duration"] = round(rng.uniform(5, 900), 1)
        elif kind == "InstallAttribution":
            props["source"] = rng.choice(("Facebook Ads", "Google Ads", "Organic", "TikTok"))
        elif kind == "Location":
            props.update(
                latitude=round(rng.uniform(-60, 70), 6),
                longitude=round(rng.uniform(-180, 180), 6),
                ll_accuracy=round(rng.uniform(5, 50), 1),
            )

    def _email(self, step: str, user: _User, props: dict[str, Any]) -> None:
        rng = self._rng
        props["email_address"] = user.email
        if step in ("Open", "Click"):
            provider, device_class, device_os, browser, agent = rng.choice(_EMAIL_CLIENTS)
            props.update(
                user_agent=agent,
                device_class=device_class,
                device_os=device_os,
                device_model=user.device[0] if device_class != "desktop" else None,
                browser=browser,
                mailbox_provider=provider,
                is_amp=rng.random() < 0.05,
            )
            if step == "Open":
                props["machine_open"] = "true" if rng.random() < 0.3 else None
            else:
                link = rng.choice(("shop", "account", "offers", "unsubscribe-preferences"))
                props.update(
                    url=f"https://www.example.com/{link}?utm_source=braze",
                    link_id=f"link-{rng.randrange(1, 9)}",
                    link_alias=link,
                    is_suspected_bot_click=rng.random() < 0.02,
                )
        elif step in ("Bounce", "SoftBounce", "Delivery", "Deferral"):
            props.update(esp=rng.choice(_ESPS), sending_ip=f"198.51.100.{rng.randrange(1, 255)}")
            if step == "Bounce":
                props.update(bounce_reason="550 5.1.1 The email account does not exist", is_drop=False)
            elif step == "SoftBounce":
                props["bounce_reason"] = "452 4.2.2 The email account is over quota"
            elif step == "Deferral":
                props.update(deferral_reason="421 4.7.0 Try again later", attempt_count=rng.randrange(1, 4))
        elif step == "Abort":
            props.update(self._abort())

    def _push(self, step: str, user: _User, props: dict[str, Any]) -> None:
        rng = self._rng
        if step == "IosForeground":
            model, os_version = rng.choice(_DEVICES["ios"])
            props.update(app_id=self._apps["ios"], platform="ios", device_model=model, os_version=os_version)
            return
        # Web users get web push; the platform decides the app.
        props.update(app_id=self._apps[user.platform], platform=user.platform)
        if step in ("Send", "Bounce"):
            props["push_token"] = f"{rng.getrandbits(256):064x}"
        elif step == "Open":
            props.update(
                os_version=user.device[1],
                device_model=user.device[0],
                button_action_type=rng.choice(("URI", "DEEP_LINK", "NONE")),
                button_string=rng.choice(("Open", "View offer", "Track order")),
            )
        elif step == "Abort":
            props.pop("app_id")
            props.update(self._abort())

    def _content_card(self, step: str, user: _User, props: dict[str, Any]) -> None:
        rng = self._rng
        if step == "Abort":
            props.update(self._abort())
            return
        props["content_card_id"] = self._uuid()
        if step != "Send":
            ad_type = {"ios": "ios_idfa", "android": "google_ad_id", "web": None}[user.platform]
            props.update(
                self._device(user),
                ad_id=self._uuid() if ad_type else None,
                ad_id_type=ad_type,
                ad_tracking_enabled=ad_type is not None and rng.random() < 0.6,
            )

    def _in_app(self, step: str, user: _User, props: dict[str, Any]) -> None:
        rng = self._rng
        if step == "Abort":
            props.update(self._abort(), version=rng.choice(("legacy", "triggered")))
            return
        props.update(self._device(user))
        if step == "Click":
            props["button_id"] = str(rng.randrange(0, 2))

    def _sms(self, step: str, user: _User, props: dict[str, Any]) -> None:
        rng = self._rng
        props["subscription_group_id"] = self._sms_group
        if step == "InboundReceive":
            keyword = rng.choice(("STOP", "START", "HELP", "Thanks!"))
            props.update(
                user_phone_number=user.phone,
                inbound_phone_number=self._sms_sender,
                action={"STOP": "unsubscribed", "START": "subscribed"}.get(keyword, "none"),
                message_body=keyword,
                media_urls=[],
            )
            return
        if step == "ShortLinkClick":
            props.update(
                url="https://www.example.com/offers?utm_source=sms",
                short_url=f"https://brz.ai/{self._hex24()[:8]}",
                user_phone_number=user.phone,
            )
            return
        props["to_phone_number"] = user.phone
        if step in ("CarrierSend", "Delivery", "Rejection", "DeliveryFailure"):
            props["from_phone_number"] = self._sms_sender
        if step == "Delivery":
            props["is_sms_fallback"] = False
        elif step in ("DeliveryFailure", "Rejection"):
            code, error = rng.choice((("30003", "Unreachable destination"), ("30007", "Carrier violation")))
            props.update(error=error, provider_error_code=code)
        elif step == "Abort":
            props.update(self._abort())

    def _whatsapp(self, step: str, user: _User, props: dict[str, Any]) -> None:
        rng = self._rng
        props["subscription_group_id"] = self._whatsapp_group
        if step == "InboundReceive":
            props.update(
                inbound_phone_number=self._whatsapp_sender,
                user_phone_number=user.phone,
                action=rng.choice(("subscribed", "unsubscribed", "none")),
                message_body=rng.choice(("Yes please", "STOP", "Where is my order?")),
            )
            return
        props["to_phone_number"] = user.phone
        if step == "Abort":
            props.update(self._abort())
            return
        props["from_phone_number"] = self._whatsapp_sender
        if step == "Failure":
            props.update(provider_error_code="131026", provider_error_title="Message undeliverable")
        elif step == "Click":
            props.update(url="https://www.example.com/track", short_url=f"https://brz.ai/{self._hex24()[:8]}")

    def _webhook(self, step: str, user: _User, props: dict[str, Any]) -> None:
        if step == "Abort":
            props.update(self._abort())
        elif step == "Failure":
            props.update(error="HTTP 503 from the webhook endpoint", http_status_code=503)

    def _feature_flag(self, step: str, user: _User, props: dict[str, Any]) -> None:
        props.update(
            self._device(user), feature_flag_id_name="new_checkout_flow", experiment_split_name="Variant"
        )

    # ------------------------------------------------------------------ public API

    def event(self, event_type: str | None = None, *, anonymous: bool | None = None) -> dict[str, Any]:
        """One event of `event_type` (drawn by weight when None); `anonymous` forces the kind of user.

        Any event type name is accepted; one this generator has no fields for gets the common ones only.
        """
        rng = self._rng
        if event_type is None:
            event_type = rng.choices(self._types, cum_weights=self._cum_weights)[0]
        else:
            event_type = catalog.canonical_name(event_type)
        user = self._pick_user(anonymous)
        event_id = self._uuid()
        at = int(self._clock())
        props = self._properties(event_type, user)
        if self.flat:
            return self._flatten(event_type, event_id, at, user, props)
        return {
            "event_type": event_type,
            "id": event_id,
            "time": at,
            "user": {
                "user_id": user.braze_id,
                "external_user_id": user.external_id,
                "device_id": user.device_id,
                "timezone": user.timezone,
            },
            "properties": props,
        }

    def _flatten(self, event_type: str, event_id: str, at: int, user: _User, props: dict[str, Any]) -> dict:
        group = self._groups.get(event_type, "")
        record: dict[str, Any] = {
            # Avro records carry no event_type (the object path does); it is kept here so a test can group
            # records into files, and readers take it from either place.
            "event_type": event_type,
            "id": event_id,
            "user_id": user.braze_id,
            "external_user_id": user.external_id,
            "time": at,
            "timezone": user.timezone,
        }
        # The Avro schemas differ from the HTTP shape: no device_id on email and SMS, no dispatch_id on
        # content cards and in-app messages, and a canvas_step_message_variation_id on Canvas messages.
        if group not in ("Email", "SMS"):
            record["device_id"] = user.device_id
        record.update(props)
        if group in ("Content Card", "In-app message"):
            record.pop("dispatch_id", None)
        if "canvas_step_id" in props and group not in ("Canvas", "Exit", "Experiment step", "Canvas step"):
            record["canvas_step_message_variation_id"] = self._uuid()
        return record

    def batch(self, n: int) -> list[dict[str, Any]]:
        """`n` events drawn by weight."""
        return [self.event() for _ in range(n)]

    async def stream(
        self,
        rate: float | None = None,
        *,
        max_batch: int = 100,
        interval: float = 0.05,
        total: int | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield batches of up to `max_batch` events at `rate` events per second, for ever or `total` events.

        Paced as `paced` says; each batch is built on the caller's event loop.
        """
        async for n in self.paced(rate, max_batch=max_batch, interval=interval, total=total):
            yield self.batch(n)

    async def paced(
        self,
        rate: float | None = None,
        *,
        max_batch: int = 100,
        interval: float = 0.05,
        total: int | None = None,
    ) -> AsyncIterator[int]:
        """Yield how many events are due, up to `max_batch` at a time, at `rate` events per second.

        Paced by a token bucket measured from the start, so the long-run rate does not drift: a consumer
        that falls behind gets the missed events in full batches until it has caught up. Counts come at
        most every `interval` seconds unless a full batch is due sooner. A caller that builds the batches
        elsewhere (a worker thread) keeps its event loop free.
        """
        rate = float(rate if rate is not None else self.rate)
        if rate <= 0:
            raise ValueError(f"rate must be more than 0 events per second, not {rate}")
        loop = asyncio.get_running_loop()
        start = loop.time()
        emitted = 0
        last_yield = start
        while total is None or emitted < total:
            now = loop.time()
            due = int((now - start) * rate) - emitted
            if total is not None:
                due = min(due, total - emitted)
            if due >= max_batch or (due >= 1 and now - last_yield >= interval):
                n = min(due, max_batch)
                emitted += n
                last_yield = now
                yield n
                continue
            full_at = start + (emitted + max_batch) / rate
            next_at = max(start + (emitted + 1) / rate, last_yield + interval)
            await asyncio.sleep(max(min(full_at, next_at) - now, 0.001))


# The channel of a retry event (users.messages.<channel>.Retry) -> its message group.
_RETRY_GROUPS = {
    "email": "Email",
    "pushnotification": "Push notification",
    "sms": "SMS",
    "webhook": "Webhook",
    "whatsapp": "WhatsApp",
}
# Custom events a shop's app logs, with their properties.
_CUSTOM_EVENTS = (
    ("Added To Wishlist", {"sku": "sku-4411", "size": "M"}),
    ("Viewed Product", {"sku": "sku-2045", "list": "summer"}),
    ("Started Checkout", {"items": 2, "coupon": None}),
)
_MESSAGE_BUILDERS: dict[str, Callable[[DemoGenerator, str, _User, dict[str, Any]], None]] = {
    "Email": DemoGenerator._email,
    "Push notification": DemoGenerator._push,
    "Content Card": DemoGenerator._content_card,
    "In-app message": DemoGenerator._in_app,
    "SMS": DemoGenerator._sms,
    "WhatsApp": DemoGenerator._whatsapp,
    "Webhook": DemoGenerator._webhook,
    "Feature flag": DemoGenerator._feature_flag,
}
