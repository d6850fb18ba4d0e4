"""The event catalog: names and order from the reference's table, lookups and `--events` resolution."""

from __future__ import annotations

import pytest

from tests.fixtures.currents_events import EVENTS
from tui_currents import catalog

EMAIL = [
    "users.messages.email.Abort",
    "users.messages.email.Bounce",
    "users.messages.email.Click",
    "users.messages.email.Delivery",
    "users.messages.email.MarkAsSpam",
    "users.messages.email.Open",
    "users.messages.email.Send",
    "users.messages.email.SoftBounce",
    "users.messages.email.Unsubscribe",
]
CANVAS_CATEGORY = [
    "users.canvas.Abort",
    "users.canvas.Conversion",
    "users.canvas.Entry",
    "users.canvas.exit.MatchedAudience",
    "users.canvas.exit.PerformedEvent",
    "users.canvas.experimentstep.Conversion",
    "users.canvas.experimentstep.SplitEntry",
]
ADDITIONAL = [
    "users.messages.email.Deferral",
    "users.messages.webhook.Failure",
    "users.messages.whatsapp.Click",
    "users.messages.featureflag.Impression",
    "users.canvasstep.Progression",
]


# The event types beyond Braze's Segment connector, as the reference (section 4.4) lists them.
BEYOND_THE_CONNECTOR = {
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
    *(f"users.messages.banner.{name}" for name in ("Abort", "Click", "Dismiss", "Impression")),
    *(f"users.messages.line.{name}" for name in ("Abort", "Click", "InboundReceive", "Retry", "Send")),
    *(
        f"users.messages.rcs.{name}"
        for name in ("Abort", "Click", "Delivery", "InboundReceive", "Read", "Rejection", "Send")
    ),
    "users.messages.liveactivity.Outcome",
    "users.messages.liveactivity.Send",
    *(
        f"users.messages.{channel}.Retry"
        for channel in ("email", "pushnotification", "sms", "webhook", "whatsapp")
    ),
    "users.canvas.costep.Send",
    "agentconsole.AgentExecuted",
    "agentconsole.ToolInvocation",
}
NOT_FORWARDABLE = {
    "users.profile.Update",
    "users.UserDeleteRequest",
    "users.UserOrphan",
    "users.RandomBucketNumberUpdate",
    "agentconsole.AgentExecuted",
    "agentconsole.ToolInvocation",
}


def test_catalog_has_the_reference_table_then_everything_beyond_it():
    names = [e.event_type for e in catalog.CATALOG]
    assert len(names) == len(set(names)) == 96
    assert names[0] == "users.behaviors.Uninstall"
    assert names[50] == "users.messages.whatsapp.Send"
    assert set(names[51:]) == set(ADDITIONAL) | BEYOND_THE_CONNECTOR
    assert all(e.supported and e.forwardable for e in catalog.CATALOG[:51])
    assert all(not e.supported and e.category == catalog.EXTENDED for e in catalog.CATALOG[51:])
    assert catalog.EXTENDED == "Beyond Braze's Segment connector"
    assert list(catalog.ADDITIONAL_TYPES) == ADDITIONAL


def test_every_extended_type_is_forwardable_with_a_rule_or_has_a_reason():
    for entry in catalog.CATALOG[51:]:
        if entry.event_type in NOT_FORWARDABLE:
            assert not entry.forwardable and entry.reason and not entry.segment_event, entry
            assert catalog.not_forwardable_reason(entry.event_type) == entry.reason
        else:
            assert entry.forwardable and entry.reason is None and entry.segment_event, entry
            assert entry.rule != "braze", entry
            assert catalog.not_forwardable_reason(entry.event_type) is None
    assert all(e.rule == "braze" for e in catalog.CATALOG[:51])
    assert catalog.not_forwardable_reason("users.messages.hologram.Send") is None


def test_a_deletion_request_says_what_to_do_instead():
    reason = catalog.not_forwardable_reason("users.UserDeleteRequest")
    assert "never be a track call" in reason and "delete the user in Segment" in reason


@pytest.mark.parametrize(
    ("event_type", "category", "group", "segment_event"),
    [
        # Where the glossary and Segment's older page disagree, the glossary name is the default.
        ("users.messages.email.MarkAsSpam", "Messages", "Email", "Email Marked as Spam"),
        ("users.messages.email.Unsubscribe", "Messages", "Email", "Unsubscribed"),
        (
            "users.messages.pushnotification.IosForeground",
            "Messages",
            "Push notification",
            "Ios Foreground Push Opened",
        ),
        (
            "users.behaviors.subscriptiongroup.StateChange",
            "Behaviors",
            "Subscription group",
            "Subscription Group State Changed",
        ),
        ("users.canvas.experimentstep.SplitEntry", "Canvas", "Experiment step", "Experiment Split Entered"),
        ("users.messages.contentcard.Impression", "Messages", "Content Card", "Content Card Viewed"),
        (
            "users.messages.featureflag.Impression",
            catalog.EXTENDED,
            "Feature flag",
            "Feature Flag Experiment Impressed",
        ),
        # Segment's semantic specs where one applies.
        ("users.behaviors.Purchase", catalog.EXTENDED, "Purchases", "Order Completed"),
        ("users.behaviors.app.FirstSession", catalog.EXTENDED, "Sessions", "Application Installed"),
        ("users.behaviors.app.SessionStart", catalog.EXTENDED, "Sessions", "Application Opened"),
        ("users.behaviors.app.SessionEnd", catalog.EXTENDED, "Sessions", "Application Backgrounded"),
        ("users.behaviors.InstallAttribution", catalog.EXTENDED, "Install attribution", "Install Attributed"),
        ("users.messages.line.Send", catalog.EXTENDED, "LINE", "LINE Message Sent"),
        ("users.messages.rcs.Read", catalog.EXTENDED, "RCS", "RCS Message Read"),
        ("users.messages.banner.Impression", catalog.EXTENDED, "Banner", "Banner Viewed"),
    ],
)
def test_entries(event_type, category, group, segment_event):
    entry = catalog.find(event_type)
    assert (entry.category, entry.group, entry.segment_event) == (category, group, segment_event)


def test_categories_tree_keeps_table_order():
    tree = catalog.categories()
    assert list(tree) == ["Behaviors", "Campaigns", "Canvas", "Messages", catalog.EXTENDED]
    assert list(tree["Canvas"]) == ["Canvas", "Exit", "Experiment step"]
    assert list(tree["Messages"]) == [
        "Content Card",
        "Email",
        "In-app message",
        "Push notification",
        "SMS",
        "Webhook",
        "WhatsApp",
    ]
    assert [e.event_type for e in tree["Messages"]["Email"]] == EMAIL
    assert sum(len(types) for groups in tree.values() for types in groups.values()) == len(catalog.CATALOG)


def test_supported_types_are_the_51_table_rows_in_order():
    supported = catalog.supported_types()
    assert supported == [e.event_type for e in catalog.CATALOG[:51]]
    assert not set(ADDITIONAL) & set(supported)


def test_find_and_canonical_name():
    assert catalog.find("users.messages.email.Send").segment_event == "Email Sent"
    assert catalog.find("users_campaigns_abort").event_type == "users.campaigns.Abort"
    assert catalog.find("users_canvas_abort").event_type == "users.canvas.Abort"
    assert catalog.find("users.behaviors.app.SessionStart").segment_event == "Application Opened"
    assert catalog.find("users.messages.hologram.Send") is None
    assert catalog.find("USERS.MESSAGES.EMAIL.SEND") is None  # Braze's names are exact
    assert catalog.find(None) is None
    assert catalog.canonical_name("users_canvas_abort") == "users.canvas.Abort"
    assert catalog.canonical_name("users.canvas.Abort") == "users.canvas.Abort"
    assert catalog.canonical_name("anything.else") == "anything.else"


def test_field_tables_cover_the_catalog_and_only_the_catalog():
    names = {e.event_type for e in catalog.CATALOG}
    assert set(catalog.REQUIRED_FIELDS) == names
    for table in (catalog.OPTIONAL_FIELDS, catalog.PHONE_TRAIT_FIELD, catalog.TYPE_RENAMES):
        assert set(table) <= names
    assert names >= catalog.DEVICE_MODEL_AND_TYPE | catalog.DEVICE_MODEL_ONLY
    assert catalog.required_fields("users_canvas_abort") == ("abort_type", "abort_log")
    assert catalog.required_fields("unknown.Type") == ()
    assert "email_address" in catalog.required_fields("users.messages.email.Deferral")
    assert "media_urls" in catalog.optional_fields("users.messages.sms.InboundReceive")


def test_every_abort_and_every_email_event_lists_the_documented_fields():
    for entry in catalog.CATALOG:
        fields = catalog.required_fields(entry.event_type)
        if entry.event_type.endswith(".Abort"):
            assert {"abort_type", "abort_log"} <= set(fields), entry.event_type
        if ".email." in entry.event_type:
            assert "email_address" in fields, entry.event_type


def test_fixtures_carry_the_fields_the_catalog_lists():
    for event_type, record in EVENTS.items():
        fields = set(record["properties"]) | set(record["user"])
        missing = set(catalog.required_fields(event_type)) - fields
        assert not missing, (event_type, missing)


# --- resolve_events -----------------------------------------------------------------------------------------


def test_resolve_mixed_spec_in_catalog_order():
    resolved = catalog.resolve_events("Email,Canvas,users.behaviors.Uninstall")
    assert resolved == ["users.behaviors.Uninstall", *CANVAS_CATEGORY, *EMAIL]


def test_resolve_is_case_insensitive_and_ignores_spaces_and_empty_parts():
    assert catalog.resolve_events(" email , ,") == EMAIL
    assert catalog.resolve_events("USERS.MESSAGES.EMAIL.SEND") == ["users.messages.email.Send"]


def test_resolve_deduplicates():
    assert catalog.resolve_events("users.messages.email.Send,Email,Messages")[:9] == [
        "users.messages.contentcard.Abort",
        "users.messages.contentcard.Click",
        "users.messages.contentcard.Dismiss",
        "users.messages.contentcard.Impression",
        "users.messages.contentcard.Send",
        *EMAIL[:4],
    ]
    resolved = catalog.resolve_events("users.messages.email.Send,Email,Messages")
    assert len(resolved) == len(set(resolved)) == 38


def test_resolve_all_is_every_supported_type():
    assert catalog.resolve_events("all") == catalog.supported_types()
    assert len(catalog.supported_types()) == 51
    # In catalog order, Deferral sits with the extended types, after every supported type.
    assert catalog.resolve_events("ALL,users.messages.email.Deferral") == [
        *catalog.supported_types(),
        "users.messages.email.Deferral",
    ]


def test_extended_is_every_forwardable_type_beyond_the_connector_and_never_part_of_all():
    extended = catalog.resolve_events("extended")
    assert extended == catalog.extended_types()
    assert set(extended) == (set(ADDITIONAL) | BEYOND_THE_CONNECTOR) - NOT_FORWARDABLE
    assert not set(extended) & set(catalog.resolve_events("all"))
    assert catalog.resolve_events("all,extended") == [e.event_type for e in catalog.CATALOG if e.forwardable]
    assert catalog.resolve_events("Beyond Braze's Segment connector") == extended
    assert catalog.resolve_events("Sessions") == [
        "users.behaviors.app.FirstSession",
        "users.behaviors.app.SessionStart",
        "users.behaviors.app.SessionEnd",
    ]


@pytest.mark.parametrize("spec", ["users.UserDeleteRequest", "all,users.userdeleterequest"])
def test_naming_a_type_that_is_never_sent_says_why(spec):
    with pytest.raises(ValueError) as error:
        catalog.resolve_events(spec)
    assert str(error.value).startswith("`users.UserDeleteRequest` is not forwardable: a deletion request")


def test_naming_a_group_of_types_that_are_never_sent_says_so():
    with pytest.raises(ValueError, match="no event type of the group `Agent console` is forwardable"):
        catalog.resolve_events("agent console")


def test_canvas_means_the_category_which_contains_the_group():
    assert catalog.resolve_events("Canvas") == CANVAS_CATEGORY
    assert catalog.resolve_events("Exit") == CANVAS_CATEGORY[3:5]


def test_group_names_shared_with_additional_events_mean_the_supported_group():
    assert "users.messages.email.Deferral" not in catalog.resolve_events("Email")
    assert catalog.resolve_events("Additional events") == ADDITIONAL
    assert catalog.resolve_events("Feature flag") == ["users.messages.featureflag.Impression"]


def test_resolve_accepts_aliases():
    assert catalog.resolve_events("users_canvas_abort,users_campaigns_abort") == [
        "users.campaigns.Abort",
        "users.canvas.Abort",
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("Emial", "unknown event type, group or category `Emial`; did you mean `Email`?"),
        (
            "Email,users.messages.email.Sent",
            "unknown event type, group or category `users.messages.email.Sent`; "
            "did you mean `users.messages.email.Send`?",
        ),
        (
            "in-app messages",
            "unknown event type, group or category `in-app messages`; did you mean `In-app message`?",
        ),
        ("zzzz", "unknown event type, group or category `zzzz`"),
    ],
)
def test_resolve_unknown_part_names_it_with_a_hint(spec, message):
    with pytest.raises(ValueError) as error:
        catalog.resolve_events(spec)
    assert str(error.value) == message


@pytest.mark.parametrize("spec", ["", " ", ",,"])
def test_resolve_empty_spec_is_an_error(spec):
    with pytest.raises(ValueError, match="no event types given"):
        catalog.resolve_events(spec)
