"""The mapping rules of the event types beyond Braze's Segment connector, following Segment's semantic specs.

Pure functions, no I/O. `mapping.map_event` builds the message of every type the same way (envelope, nulls
left out, Braze's omitted fields, traits); a type whose catalog entry names a rule here then has its
properties and context reshaped by it. Each rule takes the message's own `properties` and `context` dicts,
changes them in place and returns the Segment event name when the event itself decides it (a custom event's
`name`), else None. A rule raises NotMappable with the reason when the event cannot become a valid call.

Decisions (also in docs/EVENTS.md):
- Device fields go where Segment's Common Fields spec names them, on every type of the extended category:
  `ad_id` -> context.device.advertisingId, `ad_tracking_enabled` -> context.device.adTrackingEnabled,
  `device_model` -> context.device.model, `platform` -> context.device.type, `os_version` ->
  context.os.version. (The 51 keep Braze's own connector's mapping; see catalog.DEVICE_MODEL_AND_TYPE.)
- Custom event: its `custom_properties` (an object, or the JSON text storage exports carry in `properties`)
  become the properties under their own names, beside Braze's fields. When a name collides, the custom
  property keeps it and Braze's field moves to `braze_<name>`: the custom properties are what a tracking
  plan in Segment describes. Text that is not a JSON object is kept as it is, under its own field name.
- Purchase: one product per event (Braze logs a purchase per product), `quantity` 1 unless the event says
  otherwise; `revenue` = price x quantity; `purchase_properties` kept as an object under that name.
- Location: `latitude`, `longitude`, `altitude` into context.location; `ll_accuracy` and `alt_accuracy`
  there too as `accuracy` and `altitudeAccuracy` (the W3C Geolocation names).
- Token changes: fields holding a token (`push_token`, `*_token`) are left out, as Braze's connector leaves
  out `push_token`: a token lets its holder send notifications to the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import orjson


class NotMappable(Exception):
    """An event that cannot become a valid Segment call under its rule; the message is the reason."""


# A message's Segment context: every key names an object (library, traits, device, location, os...).
Context = dict[str, dict[str, object]]

# Takes the message's properties and context, changes them in place, and returns the event name or None.
RuleFunction = Callable[[dict[str, object], Context], "str | None"]


@dataclass(frozen=True, slots=True)
class Rule:
    """How one kind of event type is reshaped, with what docs/EVENTS.md says about it."""

    name: str  # as catalog.EventType.rule names it
    spec: str  # the Segment spec followed
    fields: str  # where the fields go, in a sentence for the reference table
    apply: RuleFunction


# (Braze field, context object, key in it): Segment's Common Fields names.
DEVICE_FIELDS = (
    ("ad_id", "device", "advertisingId"),
    ("ad_tracking_enabled", "device", "adTrackingEnabled"),
    ("device_model", "device", "model"),
    ("platform", "device", "type"),
    ("os_version", "os", "version"),
)
# Braze's Location field -> key in context.location.
LOCATION_FIELDS = (
    ("latitude", "latitude"),
    ("longitude", "longitude"),
    ("altitude", "altitude"),
    ("ll_accuracy", "accuracy"),
    ("alt_accuracy", "altitudeAccuracy"),
)
BRAZE_PREFIX = "braze_"


def move_device_fields(properties: dict[str, object], context: Context) -> None:
    """Move the device fields an event has into Segment's context objects."""
    for field_name, parent, key in DEVICE_FIELDS:
        if field_name in properties:
            context.setdefault(parent, {})[key] = properties.pop(field_name)


def _object_field(properties: dict[str, object], *names: str) -> tuple[str, dict[str, object]] | None:
    """The first of `names` the event has whose value is an object or the JSON text of one, taken out of
    the properties; None (and the field left as it is) otherwise."""
    for name in names:
        value = properties.get(name)
        if isinstance(value, dict):
            del properties[name]
            return name, value
        if isinstance(value, (str, bytes)):
            try:
                parsed = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(parsed, dict):
                del properties[name]
                return name, parsed
    return None


def _free_name(properties: dict[str, object], name: str) -> str:
    while name in properties:
        name = BRAZE_PREFIX + name
    return name


def _message(properties: dict[str, object], context: Context) -> None:
    move_device_fields(properties, context)


def _custom_event(properties: dict[str, object], context: Context) -> str:
    move_device_fields(properties, context)
    name = properties.pop("name", None)
    if not isinstance(name, str) or not name.strip():
        raise NotMappable("a custom event needs its `name` (text): it is the Segment event name")
    found = _object_field(properties, "custom_properties", "properties")
    if found is not None:
        for key, value in found[1].items():
            if key in properties:  # Braze's field gives way (see the module docstring)
                properties[_free_name(properties, BRAZE_PREFIX + key)] = properties.pop(key)
            properties[key] = value
    return name


def _number(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _purchase(properties: dict[str, object], context: Context) -> None:
    move_device_fields(properties, context)
    found = _object_field(properties, "purchase_properties", "properties")
    product: dict[str, object] = {}
    for key in ("product_id", "price"):
        if key in properties:
            product[key] = properties.pop(key)
    quantity = properties.pop("quantity", 1)
    product["quantity"] = quantity
    properties["products"] = [product]
    price, count = _number(product.get("price")), _number(quantity)
    if price is not None and count is not None:
        # Decimal, so that 3 x 9.99 is 29.97 and not 29.970000000000002.
        revenue = price * count
        properties["revenue"] = int(revenue) if revenue == revenue.to_integral_value() else float(revenue)
    if found is not None:
        properties["purchase_properties"] = found[1]


def _install_attribution(properties: dict[str, object], context: Context) -> None:
    move_device_fields(properties, context)
    if "source" in properties:
        if "campaign" in properties:  # not a field Braze documents; kept, out of the spec's way
            properties[_free_name(properties, BRAZE_PREFIX + "campaign")] = properties.pop("campaign")
        properties["campaign"] = {"source": properties.pop("source")}


def _location(properties: dict[str, object], context: Context) -> None:
    move_device_fields(properties, context)
    for field_name, key in LOCATION_FIELDS:
        if field_name in properties:
            context.setdefault("location", {})[key] = properties.pop(field_name)


def _token_change(properties: dict[str, object], context: Context) -> None:
    move_device_fields(properties, context)
    for key in [key for key in properties if key == "token" or key.endswith("_token")]:
        del properties[key]


# Said once in docs/EVENTS.md's header; each rule's sentence refers to it.
DEVICE_SENTENCE = (
    "On every type beyond Braze's connector, device fields go where Segment's Common Fields spec names them: "
    "`ad_id` -> `context.device.advertisingId`, `ad_tracking_enabled` -> `context.device.adTrackingEnabled`, "
    "`device_model` -> `context.device.model`, `platform` -> `context.device.type`, `os_version` -> "
    "`context.os.version`."
)
_DEVICE_SENTENCE = "device fields into context"

RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule(
            "custom event",
            "Segment track, named by the event",
            "event = `name`; `custom_properties` become the properties, Braze's fields beside them "
            "(a colliding Braze field is renamed `braze_<name>`); " + _DEVICE_SENTENCE,
            _custom_event,
        ),
        Rule(
            "purchase",
            "E-commerce Spec v2",
            "`products` = [{product_id, price, quantity}], `revenue` = price x quantity, `currency`; "
            "`purchase_properties` kept as an object; " + _DEVICE_SENTENCE,
            _purchase,
        ),
        Rule(
            "app lifecycle",
            "Native Mobile Spec",
            "`session_id` and (on session end) `duration` in seconds kept as properties; " + _DEVICE_SENTENCE,
            _message,
        ),
        Rule(
            "install attribution",
            "Native Mobile Spec",
            "`source` -> `campaign.source`; " + _DEVICE_SENTENCE,
            _install_attribution,
        ),
        Rule(
            "location",
            "Common Fields (context.location)",
            "latitude, longitude, altitude -> context.location, ll_accuracy -> location.accuracy, "
            "alt_accuracy -> location.altitudeAccuracy; " + _DEVICE_SENTENCE,
            _location,
        ),
        Rule(
            "token change",
            "catalog style",
            "token values left out (`push_token`, `*_token`); " + _DEVICE_SENTENCE,
            _token_change,
        ),
        Rule(
            "message",
            "catalog style",
            "every field a property, as on the 51; " + _DEVICE_SENTENCE,
            _message,
        ),
    )
}
