"""The home folder, private files, and the config file: reading, validating, and saving with comments kept."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

import platformdirs
import pytest

from tui_currents import config
from tui_currents.config import Config, ConfigError, Connector, Workspace
from tui_currents.paths import Home, make_private_dir, touch_private, write_private

EMAIL = ["users.messages.email.Send", "users.messages.email.Open"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def connector(name: str = "Marketing", **changes) -> Connector:
    fields = {"workspace": "prod", "contact_email": "ops@example.com", "events": list(EMAIL)}
    fields.update(changes)
    return Connector(name=name, **fields)


def with_workspace(home: Home, *names: str) -> None:
    for name in names or ("prod",):
        config.add_workspace(home, Workspace(name))


# ------------------------------------------------------------------------------------------------ paths


def test_home_resolution_prefers_argument_then_environment_then_user_folders(monkeypatch, tmp_path):
    explicit = Home.resolve(tmp_path / "explicit")
    assert explicit.root == explicit.data == tmp_path / "explicit"

    monkeypatch.setenv("TUI_CURRENTS_HOME", str(tmp_path / "from-env"))
    assert Home.resolve().root == tmp_path / "from-env"
    assert Home.resolve(tmp_path / "explicit").root == tmp_path / "explicit"

    monkeypatch.delenv("TUI_CURRENTS_HOME")
    default = Home.resolve()
    assert default.root == platformdirs.user_config_path("tui-currents", appauthor=False)
    assert default.data == platformdirs.user_data_path("tui-currents", appauthor=False)
    assert default.config_file.parent == default.root
    assert default.store_file.parent == default.data


def test_an_explicit_home_holds_every_file(tmp_path):
    home = Home.at(tmp_path / "h")
    files = [
        home.config_file,
        home.store_file,
        home.log_file,
        home.lock_file,
        home.keyring_file,
        home.themes_dir,
    ]
    assert all(tmp_path / "h" in f.parents for f in files)
    assert home.config_file.name == "config.toml" and home.store_file.name == "currents.db"
    assert len({home.config_file, home.store_file, home.lock_file, home.keyring_file, home.log_file}) == 5


def test_ensure_creates_private_folders_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        home = Home.at(tmp_path / "a" / "b").ensure()
    finally:
        os.umask(old)
    for folder in (tmp_path / "a", home.root, home.log_file.parent, home.themes_dir):
        assert folder.is_dir() and mode(folder) == 0o700, folder


def test_write_private_replaces_atomically_with_mode_0600(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    old = os.umask(0o000)
    try:
        write_private(target, "first")
        target.chmod(0o644)
        write_private(target, b"second")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"second"
    assert mode(target) == 0o600 and mode(target.parent) == 0o700
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]  # no temporary files left


def test_write_private_failure_leaves_the_old_content_and_no_temp_file(tmp_path):
    blocker = tmp_path / "dir-in-the-way"
    blocker.mkdir()
    (blocker / "keep").write_text("x")
    with pytest.raises(OSError):
        write_private(blocker, b"data")  # os.replace cannot put a file over a non-empty folder
    assert (blocker / "keep").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir-in-the-way"]


def test_touch_private_and_make_private_dir(tmp_path):
    path = touch_private(tmp_path / "new" / "store.db")
    assert path.exists() and path.stat().st_size == 0 and mode(path) == 0o600
    path.write_bytes(b"kept")
    path.chmod(0o644)
    touch_private(path)
    assert path.read_bytes() == b"kept" and mode(path) == 0o600
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    make_private_dir(existing / "x" / "y")
    assert mode(existing) == 0o755  # a folder the user made is left alone
    assert mode(existing / "x") == 0o700 and mode(existing / "x" / "y") == 0o700


# ------------------------------------------------------------------------------------------------ load


def test_missing_file_loads_the_defaults(home):
    loaded = config.load(home)
    assert loaded == Config()
    assert loaded.receiver.host == "127.0.0.1" and loaded.receiver.port == 8750
    assert loaded.receiver.max_body_bytes == 16 * 1024 * 1024
    assert loaded.durability == "full" and loaded.smtp is None
    assert not home.config_file.exists()


def test_load_uses_the_environment_home_by_default(home):
    with_workspace(home, "prod")
    assert [w.name for w in config.load().workspaces] == ["prod"]


def test_malformed_toml_names_file_line_and_column_and_is_never_overwritten(home):
    text = '[[workspaces]]\nname = "prod"\n\n[[connectors]]\nname = "A"\nworkspace = prod\n'
    home.config_file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        config.load(home)
    message = str(caught.value)
    assert str(home.config_file) in message
    assert "line 6" in message and "column" in message
    assert "left untouched" in message

    for change in (
        lambda: config.add_workspace(home, Workspace("other")),
        lambda: config.save(home, Config(workspaces=[Workspace("x")])),
        lambda: config.set_paused(home, "A", True),
    ):
        with pytest.raises(ConfigError):
            change()
        assert home.config_file.read_text() == text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('contact_email = "not-an-address"', ["connector 'A'", "contact_email"]),
        (
            'contact_emial = "ops@example.com"',
            ["connector 'A'", "contact_emial", "did you mean 'contact_email'"],
        ),
        ('retention_days = "30"', ["connector 'A'", "retention_days", "whole number"]),
        ('region = "asia"', ["connector 'A'", "region", "'asia'"]),
        ('events = ["users.messages.email.Sent"]', ["connector 'A'", "events", "users.messages.email.Sent"]),
    ],
)
def test_invalid_values_name_the_connector_and_the_field(home, body, expected):
    lines = [
        'name = "A"',
        'workspace = "prod"',
        'contact_email = "ops@example.com"',
        f"events = {json.dumps(EMAIL)}",
    ]
    key = body.split(" =")[0]
    lines = [line for line in lines if not line.startswith(key + " ")] + [body]
    text = '[[workspaces]]\nname = "prod"\n\n[[connectors]]\n' + "\n".join(lines) + "\n"
    home.config_file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        config.load(home)
    message = str(caught.value)
    for part in expected:
        assert part in message, message
    assert home.config_file.read_text() == text


def test_a_connector_of_a_missing_workspace_or_an_unknown_setting_is_reported(home):
    home.config_file.write_text(
        'durabilty = "full"\n[[connectors]]\nname = "A"\nworkspace = "nowhere"\n'
        'contact_email = "ops@example.com"\nevents = ["users.messages.email.Send"]\n'
    )
    with pytest.raises(ConfigError) as caught:
        config.load(home)
    assert "durabilty" in str(caught.value) and "durability" in str(caught.value)
    home.config_file.write_text(
        '[[connectors]]\nname = "A"\nworkspace = "nowhere"\n'
        'contact_email = "ops@example.com"\nevents = ["users.messages.email.Send"]\n'
    )
    with pytest.raises(ConfigError) as caught:
        config.load(home)
    assert caught.value.problems == [caught.value.problems[0]]
    assert "connector 'A', workspace" in caught.value.problems[0] and "'nowhere'" in caught.value.problems[0]


def test_an_endpoint_alone_means_the_custom_region(home):
    home.config_file.write_text(
        '[[workspaces]]\nname = "prod"\n[[connectors]]\nname = "Proxy"\nworkspace = "prod"\n'
        'contact_email = "ops@example.com"\nevents = ["users.messages.email.Send"]\n'
        'endpoint = "https://proxy.example.com/segment"\n'
    )
    proxy = config.load(home).connector("Proxy")
    assert proxy.region == "custom"
    assert proxy.batch_url() == "https://proxy.example.com/segment/v1/batch"


# ------------------------------------------------------------------------------------------------ save


HAND_WRITTEN = """\
# Our Currents forwarding. Owner: data team.
durability = "normal"  # the laptop is on a UPS

# Braze pushes here through the reverse proxy.
[receiver]
host = "127.0.0.1"
port = 9100 # proxied from 443

[[workspaces]]
name = "prod" # production app group

[[workspaces]]
name = "staging"

# ---- Marketing: email only ----
[[connectors]]
name = "Marketing"
workspace = "prod"
contact_email = "marketing-ops@example.com"
region = "eu" # EU data residency
events = [
  "users.messages.email.Send", # sends
  "users.messages.email.Open", # opens
]

# Pushes go to the product team's source
[[connectors]]
name = "Product"
workspace = "prod"
contact_email = "product@example.com"
events = ["users.messages.pushnotification.Send"]
"""


def test_edits_through_the_api_keep_comments_and_order(home):
    home.config_file.write_text(HAND_WRITTEN)
    comments = [line.split("#", 1)[1] for line in HAND_WRITTEN.splitlines() if "#" in line]

    marketing = config.load(home).connector("Marketing")
    marketing.events.append("users.messages.email.Click")
    marketing.name_overrides = {"users.messages.email.Open": "Email Opened (legacy)"}
    config.update_connector(home, "Marketing", marketing)
    config.set_paused(home, "Product", True)
    config.add_workspace(home, Workspace("eu-shop"))
    config.add_connector(home, connector("Shop", workspace="eu-shop", region="eu"))
    config.remove_workspace(home, "staging")

    text = home.config_file.read_text()
    kept = [line.split("#", 1)[1] for line in text.splitlines() if "#" in line and "staging" not in line]
    assert [c for c in comments] == kept[: len(comments)]
    order = [
        text.index(marker)
        for marker in (
            'durability = "normal"',
            "[receiver]",
            'name = "prod"',
            'name = "Marketing"',
            'name = "Product"',
            'name = "Shop"',
        )
    ]
    assert order == sorted(order)
    assert "staging" not in text

    loaded = config.load(home)
    assert loaded.durability == "normal" and loaded.receiver.port == 9100
    assert [w.name for w in loaded.workspaces] == ["prod", "eu-shop"]
    assert [c.name for c in loaded.connectors] == ["Marketing", "Product", "Shop"]
    assert loaded.connector("Marketing").events == [*EMAIL, "users.messages.email.Click"]
    assert loaded.connector("Marketing").name_overrides == {
        "users.messages.email.Open": "Email Opened (legacy)"
    }
    assert loaded.connector("Marketing").region == "eu"
    assert loaded.connector("Product").paused is True
    # A key added to an existing entry sits with its other keys, not after the next entry's comment.
    product_block = text[text.index('name = "Product"') :]
    assert product_block.index("paused = true") < product_block.index("[[connectors]]")
    assert text.index("paused = true") > text.index("# Pushes go to the product team's source")


def test_untouched_defaults_are_not_added_to_a_hand_written_entry(home):
    home.config_file.write_text(HAND_WRITTEN)
    config.set_paused(home, "Product", True)
    product = home.config_file.read_text().split('name = "Product"')[1]
    assert "paused = true" in product
    for default in ("retention_days", "max_in_flight", "gzip", "include_anonymous", "enabled"):
        assert default not in product


def test_a_connector_cannot_be_renamed(home):
    # Its name identifies its queue and write key: a new name is a new connector, so the edit is refused.
    home.config_file.write_text(HAND_WRITTEN)
    renamed = config.load(home).connector("Marketing")
    renamed.name = "Marketing EU"
    with pytest.raises(ConfigError, match="cannot be renamed; add a new one and remove the old") as caught:
        config.update_connector(home, "Marketing", renamed)
    assert "Nothing was changed" in str(caught.value) and "\n" not in str(caught.value)
    assert home.config_file.read_text() == HAND_WRITTEN
    assert [c.name for c in config.load(home).connectors] == ["Marketing", "Product"]


def test_save_writes_a_new_file_that_reads_back_equal_and_private(home):
    cfg = Config(
        workspaces=[Workspace("prod")],
        connectors=[
            connector(
                field_transforms={"email_address": "hash", "abort_log": "redact"},
                name_overrides={"users.messages.email.Open": "Opened"},
                include_anonymous=True,
                gzip=True,
            ),
            connector(
                "Proxy", region="custom", endpoint="http://127.0.0.1:9999", events=["users.canvas.Entry"]
            ),
        ],
        receiver=config.ReceiverSettings(port=9000, tls_cert="/etc/c.pem", tls_key="/etc/k.pem"),
        smtp=config.SmtpSettings(
            host="smtp.example.com", from_address="alerts@example.com", username="alerts"
        ),
        ui=config.UiSettings(theme="nord", keymap={"connector.pause": "p,space"}),
    )
    config.save(home, cfg)
    assert config.load(home) == cfg
    assert mode(home.config_file) == 0o600
    raw = tomllib.loads(home.config_file.read_text())
    assert raw["ui"]["keymap"] == {"connector.pause": "p,space"}
    assert raw["connectors"][0]["field_transforms"] == {"email_address": "hash", "abort_log": "redact"}

    cfg.smtp = None
    cfg.connectors = cfg.connectors[1:]
    config.save(home, cfg)
    assert config.load(home) == cfg
    assert "smtp" not in home.config_file.read_text()


def test_a_refused_save_leaves_the_file_byte_for_byte(home):
    home.config_file.write_text(HAND_WRITTEN)
    before = home.config_file.read_bytes()
    bad = config.load(home)
    bad.connectors[0].contact_email = "nobody"
    with pytest.raises(ConfigError) as caught:
        config.save(home, bad)
    assert "Not saved" in str(caught.value) and "contact_email" in str(caught.value)
    assert home.config_file.read_bytes() == before


# ------------------------------------------------------------------------------------------------ overlap


def test_two_connectors_of_one_workspace_cannot_share_an_event_type(home):
    with_workspace(home, "prod")
    config.add_connector(home, connector("Marketing"))
    before = home.config_file.read_bytes()
    clash = connector(
        "Analytics",
        events=["users.messages.email.Open", "users.messages.email.Click", "users.messages.email.Send"],
    )
    with pytest.raises(ConfigError) as caught:
        config.add_connector(home, clash)
    message = str(caught.value)
    assert "'Marketing'" in message and "'Analytics'" in message and "'prod'" in message
    assert "users.messages.email.Open, users.messages.email.Send" in message
    assert "users.messages.email.Click" not in message.split("already forwards")[1].split("from")[0]
    assert "duplicate messageId" in message
    assert home.config_file.read_bytes() == before


def test_overlap_counts_paused_and_disabled_connectors_and_aliases(home):
    with_workspace(home, "prod")
    config.add_connector(home, connector("Old", events=["users.canvas.Abort"], enabled=False, paused=True))
    with pytest.raises(ConfigError, match="'Old' already forwards users.canvas.Abort"):
        config.add_connector(home, connector("New", events=["users_canvas_abort"]))


def test_overlap_is_allowed_across_workspaces_and_with_the_connector_being_edited(home):
    with_workspace(home, "prod", "staging")
    config.add_connector(home, connector("Prod"))
    config.add_connector(home, connector("Staging", workspace="staging"))
    edited = config.load(home).connector("Prod")
    edited.events.append("users.messages.email.Bounce")
    config.update_connector(home, "Prod", edited)
    moved = config.load(home).connector("Staging")
    moved.workspace = "prod"
    with pytest.raises(ConfigError, match="'Prod' already forwards"):
        config.update_connector(home, "Staging", moved)


def test_overlap_in_a_hand_edited_file_is_refused_on_load(home):
    home.config_file.write_text(
        '[[workspaces]]\nname = "prod"\n'
        + "".join(
            f'[[connectors]]\nname = "{n}"\nworkspace = "prod"\ncontact_email = "a@example.com"\n'
            'events = ["users.messages.email.Send"]\n'
            for n in ("First", "Second")
        )
    )
    with pytest.raises(ConfigError) as caught:
        config.load(home)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(
        "connector 'Second', events: connector 'First' already forwards"
    )


# ------------------------------------------------------------------------------------------------ fields


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "Mark/eting"}, "name"),
        ({"name": " padded"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"workspace": "nowhere"}, "workspace"),
        ({"contact_email": "ops@"}, "contact_email"),
        ({"contact_email": "ops example.com"}, "contact_email"),
        ({"contact_email": "ops@@example.com"}, "contact_email"),
        ({"contact_email": "ops@localhost"}, "contact_email"),
        ({"contact_email": ".ops@example.com"}, "contact_email"),
        ({"region": "asia"}, "region"),
        ({"region": "us", "endpoint": "https://proxy.example.com"}, "region"),
        ({"region": "custom"}, "endpoint"),
        ({"region": "custom", "endpoint": "http://proxy.example.com"}, "endpoint"),
        ({"region": "custom", "endpoint": "https://user:pw@proxy.example.com"}, "endpoint"),
        ({"region": "custom", "endpoint": "ftp://proxy.example.com"}, "endpoint"),
        ({"region": "custom", "endpoint": "https://proxy.example.com:99999"}, "endpoint"),
        ({"region": "custom", "endpoint": "https://proxy.example.com/?a=b"}, "endpoint"),
        ({"events": []}, "events"),
        ({"events": ["users.messages.email.Sent"]}, "events"),
        ({"events": "users.messages.email.Send"}, "events"),
        ({"name_overrides": {"users.nothing.Here": "X"}}, "name_overrides"),
        ({"name_overrides": {"users.messages.email.Open": " "}}, "name_overrides"),
        ({"field_transforms": {"email_address": "encrypt"}}, "field_transforms"),
        ({"field_transforms": {"id": "hash"}}, "field_transforms"),
        ({"retention_days": 0}, "retention_days"),
        ({"retention_days": True}, "retention_days"),
        ({"max_in_flight": 100}, "max_in_flight"),
        ({"include_anonymous": "yes"}, "include_anonymous"),
        ({"gzip": 1}, "gzip"),
    ],
)
def test_each_bad_field_gives_one_error_on_that_field(changes, field):
    cfg = Config(workspaces=[Workspace("prod")])
    errors = config.validate_connector(connector(**changes), cfg)
    assert [e.field for e in errors] == [field], errors
    assert errors[0].message


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"name": "Marketing EU_2-b"},
        {"contact_email": "first.last+currents@mail.example.co.uk"},
        {"region": "eu"},
        {"region": "custom", "endpoint": "https://proxy.example.com:8443/segment/v1/batch"},
        {"region": "custom", "endpoint": "http://localhost:8081"},
        {"region": "custom", "endpoint": "http://[::1]:8081"},
        {"events": ["users.messages.email.Deferral"]},  # an "additional" event type can be chosen
        {"field_transforms": {"email_address": "hash", "external_user_id": "redact"}},
    ],
)
def test_good_connectors_validate_cleanly(changes):
    assert config.validate_connector(connector(**changes), Config(workspaces=[Workspace("prod")])) == []


def test_names_that_share_an_environment_variable_are_refused(home):
    with_workspace(home, "prod")
    config.add_connector(home, connector("Mkt EU"))
    errors = config.validate_connector(connector("mkt-eu", events=["users.canvas.Entry"]), config.load(home))
    assert [e.field for e in errors] == ["name"]
    assert "TUI_CURRENTS_WRITE_KEY_MKT_EU" in errors[0].message
    with pytest.raises(ConfigError, match="already exists"):
        config.add_connector(home, connector("Mkt EU", events=["users.canvas.Entry"]))


def test_workspace_names_are_url_paths(home):
    for bad in ("", "prod eu", "prod/eu", "pröd", "x" * 65):
        with pytest.raises(ConfigError):
            config.add_workspace(home, Workspace(bad))
    assert not home.config_file.exists()
    saved = config.add_workspace(home, Workspace("prod-eu_1"))
    assert saved.workspace("prod-eu_1").receiver_path == "/currents/prod-eu_1"
    with pytest.raises(ConfigError, match="already exists"):
        config.add_workspace(home, Workspace("prod-eu_1"))
    with pytest.raises(ConfigError, match="TUI_CURRENTS_RECEIVER_TOKEN_PROD_EU_1"):
        config.add_workspace(home, Workspace("PROD_EU-1"))


def test_a_workspace_in_use_cannot_be_removed(home):
    with_workspace(home, "prod", "spare")
    config.add_connector(home, connector("Marketing"))
    with pytest.raises(ConfigError, match="still used by connector 'Marketing'"):
        config.remove_workspace(home, "prod")
    assert [w.name for w in config.remove_workspace(home, "spare").workspaces] == ["prod"]
    config.remove_connector(home, "Marketing")
    assert config.remove_workspace(home, "prod") == Config()
    with pytest.raises(ConfigError, match="no workspace named 'prod'"):
        config.remove_workspace(home, "prod")


def test_mutations_on_unknown_connectors_say_so(home):
    with_workspace(home, "prod")
    config.add_connector(home, connector("Marketing"))
    for change in (
        lambda: config.remove_connector(home, "Nope"),
        lambda: config.set_paused(home, "Nope", True),
        lambda: config.update_connector(home, "Nope", connector("Nope")),
    ):
        with pytest.raises(ConfigError, match="no connector named 'Nope' \\(connectors: 'Marketing'\\)"):
            change()
    with pytest.raises(KeyError, match="no connector named 'Nope'"):
        config.load(home).connector("Nope")


def test_settings_are_validated(home):
    cases = [
        (Config(receiver=config.ReceiverSettings(port=70000)), "[receiver] port"),
        (Config(receiver=config.ReceiverSettings(tls_cert="/c.pem")), "[receiver] tls_cert, tls_key"),
        (Config(receiver=config.ReceiverSettings(max_body_bytes=10)), "[receiver] max_body_bytes"),
        (Config(smtp=config.SmtpSettings(host="smtp.example.com", from_address="x")), "[smtp] from_address"),
        (
            Config(
                smtp=config.SmtpSettings(
                    host="smtp.example.com", from_address="a@example.com", security="none"
                )
            ),
            "[smtp] security",
        ),
        (Config(durability="off"), "durability"),
        (Config(ui=config.UiSettings(keymap={"quit": ""})), "[ui.keymap] quit"),
    ]
    for cfg, where in cases:
        problems = config.validate_config(cfg)
        assert len(problems) == 1 and problems[0].startswith(where), problems
        with pytest.raises(ConfigError):
            config.save(home, cfg)
    assert not home.config_file.exists()
    local = config.SmtpSettings(host="127.0.0.1", port=1025, from_address="a@example.com", security="none")
    assert config.validate_config(Config(smtp=local)) == []


# ------------------------------------------------------------------------------------------------ behaviour


def test_rules_and_batch_url_follow_the_connector():
    from tui_currents.mapping import ConnectorRules

    c = connector(
        events=["users_canvas_abort", "users.messages.email.Send"],
        include_anonymous=True,
        name_overrides={"users_canvas_abort": "Canvas Stopped"},
        field_transforms={"email_address": "hash"},
    )
    rules = c.rules()
    assert isinstance(rules, ConnectorRules)
    assert rules.selected == frozenset({"users.canvas.Abort", "users.messages.email.Send"})
    assert rules.include_anonymous is True
    assert dict(rules.name_overrides) == {"users.canvas.Abort": "Canvas Stopped"}
    assert dict(rules.field_transforms) == {"email_address": "hash"}
    assert connector(region="us").batch_url() == "https://api.segment.io/v1/batch"
    assert connector(region="eu").batch_url() == "https://events.eu1.segmentapis.com/v1/batch"
    assert (
        connector(region="custom", endpoint="http://127.0.0.1:81").batch_url()
        == "http://127.0.0.1:81/v1/batch"
    )


def test_the_config_file_never_holds_secret_fields(home):
    with_workspace(home, "prod")
    config.add_connector(home, connector("Marketing"))
    raw = tomllib.loads(home.config_file.read_text())
    keys = {k.lower() for entry in raw["connectors"] for k in entry}
    assert not {k for k in keys if "key" in k or "token" in k or "password" in k}


def test_removing_the_first_entry_keeps_the_comment_that_introduces_the_next(home):
    home.config_file.write_text(
        "# Workspaces we receive from\n"
        '[[workspaces]]\nname = "old"\n\n'
        "# the production app group\n"
        '[[workspaces]]\nname = "prod"\n'
    )
    config.remove_workspace(home, "old")
    text = home.config_file.read_text()
    assert "old" not in text
    assert text.index("# Workspaces we receive from") < text.index("# the production app group")
    assert text.index("# the production app group") < text.index('name = "prod"')
    assert [w.name for w in config.load(home).workspaces] == ["prod"]


def test_save_refuses_to_merge_into_a_file_with_unknown_settings(home):
    text = "[receiver]\nprot = 9000 # typo\n"
    home.config_file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        config.save(home, Config(workspaces=[Workspace("prod")]))
    assert "'prot'" in str(caught.value) and "did you mean 'port'" in str(caught.value)
    assert home.config_file.read_text() == text


def test_concurrent_additions_are_all_kept(home):
    import threading

    errors: list[BaseException] = []

    def add(prefix: str) -> None:
        try:
            for i in range(5):
                config.add_workspace(home, Workspace(f"{prefix}{i}"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(p,)) for p in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert sorted(w.name for w in config.load(home).workspaces) == sorted(
        f"{p}{i}" for p in "abc" for i in range(5)
    )
