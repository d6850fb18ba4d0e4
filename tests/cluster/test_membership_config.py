"""[cluster] in config.toml: reading, every problem in words, writing that keeps the file's comments,
and `cluster_settings(home)` (no NATS server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui_currents import config
from tui_currents.cluster.membership import ClusterSettings, cluster_settings, connect_options
from tui_currents.paths import Home


def write(home: Home, text: str) -> None:
    home.config_file.write_text(text, encoding="utf-8")


def problems_of(home: Home, table: str) -> list[str]:
    write(home, "[cluster]\n" + table)
    with pytest.raises(config.ConfigError) as caught:
        config.load(home)
    return caught.value.problems


def test_a_home_without_cluster_is_a_single_box(home: Home) -> None:
    assert cluster_settings(home) is None
    write(home, '[[workspaces]]\nname = "prod"\n')
    assert cluster_settings(home) is None


def test_cluster_table_is_read_with_defaults(home: Home, tmp_path: Path) -> None:
    creds = tmp_path / "user.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\n", encoding="utf-8")
    write(home, f'[cluster]\nnats = ["nats://h1:4222", "tls://h2"]\ncreds = "{creds}"\n')
    settings = cluster_settings(home)
    assert settings == ClusterSettings(nats=("nats://h1:4222", "tls://h2"), replicas=3, creds=creds)
    assert settings.name == "tc" and settings.tls_ca is None
    options = connect_options(settings)
    assert options["servers"] == ["nats://h1:4222", "tls://h2"]
    assert options["user_credentials"] == str(creds)


def test_one_url_as_text_is_taken_as_a_list(home: Home) -> None:
    write(home, '[cluster]\nnats = "nats://127.0.0.1:4222"\nreplicas = 1\n')
    assert cluster_settings(home) == ClusterSettings(nats=("nats://127.0.0.1:4222",), replicas=1)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('nats = ["http://h1:4222"]\n', "[cluster] nats: 'http://h1:4222' must start with nats:// or tls://"),
        ('nats = ["nats://user:pw@h1:4222"]\n', "must not hold a user name, password or token"),
        ('nats = ["nats://h1:99999"]\n', "has an invalid port"),
        ('nats = ["nats://"]\n', "has no host name"),
        ("nats = []\n", "[cluster] nats: is empty"),
        ("replicas = 3\n", "[cluster] nats: is missing"),
        ('nats = ["nats://h1"]\nreplicas = 0\n', "[cluster] replicas: must be between 1 and 5"),
        ('nats = ["nats://h1"]\nreplicas = 7\n', "[cluster] replicas: must be between 1 and 5"),
        ('nats = ["nats://h1"]\nreplicas = "3"\n', "[cluster] replicas: must be a whole number, not str"),
        ('nats = ["nats://h1"]\ncreds = "/nowhere/user.creds"\n', "the NATS credentials file '/nowhere/"),
        ('nats = ["nats://h1"]\ntls_ca = "relative/ca.pem"\n', "[cluster] tls_ca: 'relative/ca.pem' must be"),
        ('nats = ["nats://h1"]\nname = "a.b"\n', "[cluster] name: 'a.b' must be"),
        ('nats = ["nats://h1"]\nreplica = 3\n', "unknown setting 'replica'; did you mean 'replicas'?"),
    ],
)
def test_cluster_problems_are_named(home: Home, table: str, expected: str) -> None:
    problems = problems_of(home, table)
    assert any(expected in p for p in problems), problems
    assert "pw" not in " ".join(problems)  # a password in a URL is never repeated


def test_set_cluster_writes_and_removes_the_table_keeping_comments(home: Home) -> None:
    write(home, '# my notes\n[[workspaces]]\nname = "prod" # the main one\n')
    settings = ClusterSettings(nats=("nats://127.0.0.1:4222", "nats://127.0.0.1:4223"), replicas=3)
    config.set_cluster(home, settings)
    text = home.config_file.read_text(encoding="utf-8")
    assert "[cluster]" in text and "# my notes" in text and "# the main one" in text
    assert cluster_settings(home) == settings
    assert config.load(home).workspaces == [config.Workspace("prod")]
    config.set_cluster(home, None)
    text = home.config_file.read_text(encoding="utf-8")
    assert "[cluster]" not in text and "# the main one" in text
    assert cluster_settings(home) is None


def test_edits_of_this_instances_own_settings_keep_the_cluster_table(home: Home) -> None:
    settings = ClusterSettings(nats=("nats://127.0.0.1:1",), replicas=1, name="prod-tc")
    config.set_cluster(home, settings)
    config.set_webhook(home, True)  # not shared: no cluster needed
    assert cluster_settings(home) == settings
    assert config.load(home).alerts.webhook is True
