"""Writing the config file: tomlkit merged value by value (a user's comments survive), atomic and 0600,
under the file lock."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.container import Container
from tomlkit.items import AoT, Comment, Item, Table, Whitespace

from tui_currents.config.model import (
    AlertSettings,
    ClusterSettings,
    Config,
    ConfigError,
    DeadLetterSettings,
    LogSettings,
    MetricsSettings,
    UiSettings,
)
from tui_currents.config.reading import (
    _from_data,
    _parse_toml,
    _problems_message,
    _read_text,
)
from tui_currents.config.validation import (
    validate_config,
)
from tui_currents.paths import Home, exclusive_lock, write_private

HEADER = (
    "tui-currents configuration. Edit it freely: comments and order are kept when the app saves changes.",
    "It never holds secrets: write keys, receiver tokens and the SMTP password are kept in the keyring.",
)


def _body(container: Container | Table) -> Container:
    return container if isinstance(container, Container) else container.value


def _set_value(container: Container | Table, key: str, value: Any) -> None:
    """Set one key, leaving it alone when unchanged; a new key goes after the last plain key.

    (tomlkit would append it after any comments that introduce the next table, where it looks misplaced.)
    """
    if key in container:
        current = container[key]
        plain = current.unwrap() if hasattr(current, "unwrap") else current
        if plain == value:
            return
        if isinstance(current, tomlkit.items.Array) and isinstance(value, list):
            _update_array(current, value)
            return
        container[key] = _item(value)
        return
    body = _body(container)
    positions = [i for i, (k, v) in enumerate(body.body) if k is not None and not isinstance(v, Table | AoT)]
    if positions and positions[-1] + 1 < len(body.body) and hasattr(body, "_insert_at"):
        body._insert_at(positions[-1] + 1, key, _item(value))
    else:
        container[key] = _item(value)


def _update_array(array: tomlkit.items.Array, wanted: list[Any]) -> None:
    # In place, so the comments next to the entries that stay are kept.
    for index in reversed(range(len(array))):
        if array[index] not in wanted:
            del array[index]
    present = list(array)
    for value in wanted:
        if value not in present:
            array.append(value)
    if list(array) != wanted:  # order or duplicates differ: rewrite it
        array.clear()
        array.extend(wanted)


def _item(value: Any) -> Any:
    if isinstance(value, list | tuple):
        array = tomlkit.array()
        array.extend(value)
        if len(value) > 2:
            array.multiline(True)
        return array
    return value


# tomlkit keeps the comments and blank lines that introduce a table at the end of the table before it.
# When entries are added or removed, those lines are moved so they stay in front of what they describe.


def _render_tail(container: Container) -> Container:
    """The container whose end is the last thing `container` renders (where trailing comments live)."""
    body = container.body
    if not body or body[-1][0] is None:
        return container
    last = body[-1][1]
    if isinstance(last, Table):
        return _render_tail(last.value)
    if isinstance(last, AoT) and len(last):
        return _render_tail(last[-1].value)
    return container


def _pop_trailing_trivia(container: Container) -> list[Item]:
    popped: list[Item] = []
    while True:
        body = _render_tail(container).body
        if not body or body[-1][0] is not None or not isinstance(body[-1][1], Whitespace | Comment):
            return popped
        popped.insert(0, body.pop()[1])


def _append_trivia(container: Container, items: list[Item]) -> None:
    tail = _render_tail(container)
    for item in items:
        ends_blank = bool(tail.body) and tail.body[-1][0] is None and isinstance(tail.body[-1][1], Whitespace)
        if isinstance(item, Whitespace) and ends_blank:
            continue  # one blank line is enough
        tail.append(None, item)


def _insert_trivia_before(doc: Container, key: str, items: list[Item]) -> None:
    """Put comment lines in the document body just before the top-level item `key`."""
    index = next(i for i, (k, _) in enumerate(doc.body) if k is not None and k.key == key)
    for offset, item in enumerate(items):
        doc.body.insert(index + offset, (None, item))
    # Keep tomlkit's key -> position index in step with the insertion.
    for k, v in list(doc._map.items()):
        if isinstance(v, tuple):
            doc._map[k] = tuple(i + len(items) if i >= index else i for i in v)
        elif v >= index:
            doc._map[k] = v + len(items)


def _delete_entry(doc: Container, key: str, entries: AoT, index: int) -> None:
    """Delete one [[key]] entry, keeping the comments that introduce whatever follows it."""
    trailing = _pop_trailing_trivia(entries[index].value)
    del entries[index]
    if not trailing:
        return
    if index > 0:
        _append_trivia(entries[index - 1].value, trailing)
        return
    position = next(i for i, (k, _) in enumerate(doc.body) if k is not None and k.key == key)
    before = doc.body[position - 1][1] if position > 0 else None
    if isinstance(before, Table):
        _append_trivia(before.value, trailing)
    elif isinstance(before, AoT) and len(before):
        _append_trivia(before[-1].value, trailing)
    elif hasattr(doc, "_map"):
        _insert_trivia_before(doc, key, trailing)


def _append_entry(entries: AoT, table: Table) -> None:
    """Append a new [[...]] entry after the last one, keeping that one's trailing comments after it."""
    if len(entries):
        trailing = _pop_trailing_trivia(entries[-1].value)
        entries[-1].value.append(None, tomlkit.ws("\n"))
        entries.append(table)
        _append_trivia(table.value, trailing)
    else:
        entries.append(table)


def _remove(container: Container | Table, key: str) -> None:
    if key in container:
        del container[key]


def _merge_mapping(container: Container | Table, key: str, wanted: Mapping[str, str]) -> None:
    if not wanted:
        _remove(container, key)
        return
    if key not in container:
        table = tomlkit.table()
        for k, v in wanted.items():
            table.add(k, v)
        trailing = _pop_trailing_trivia(_body(container))
        container[key] = table
        _append_trivia(table.value, trailing or [tomlkit.nl()])
        return
    current = container[key]
    for k in [k for k in current if k not in wanted]:
        del current[k]
    for k, v in wanted.items():
        _set_value(current, k, v)


def _merge_object(container: Container | Table, obj: Any, *, fresh: bool) -> None:
    """Write a dataclass's fields into a table. A fresh table gets every field; an existing one only
    changed values, and a default is not added where the user left it out."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, dict):
            _merge_mapping(container, f.name, value)
            continue
        if value is None:
            _remove(container, f.name)
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if fresh or f.name in container or value != default:
            _set_value(container, f.name, value)


def _merge_section(doc: Container, key: str, obj: Any) -> None:
    if obj is None:
        _remove(doc, key)
        return
    if key in doc:
        _merge_object(doc[key], obj, fresh=False)
    else:
        table = tomlkit.table()
        _merge_object(table, obj, fresh=True)
        table.add(tomlkit.nl())
        doc[key] = table


def _merge_entries(doc: Container, key: str, objects: list[Any]) -> None:
    """Merge a [[key]] array of tables by name: edit matching entries in place, drop the rest, append new."""
    wanted = {o.name: o for o in objects}
    if key not in doc:
        if not objects:
            return
        doc[key] = tomlkit.aot()
    entries = doc[key]
    if not isinstance(entries, AoT):
        raise ConfigError(
            f"{key} in the config file is not written as [[{key}]] tables; fix it by hand first"
        )
    by_name: dict[Any, int] = {}
    for index, table in enumerate(entries):
        by_name.setdefault(table.get("name"), index)
    keep: set[int] = set()
    for name, obj in wanted.items():
        found = by_name.get(name)
        if found is not None:
            keep.add(found)
            _merge_object(entries[found], obj, fresh=False)
    for index in sorted(set(range(len(entries))) - keep, reverse=True):
        _delete_entry(doc, key, entries, index)
    present = {table.get("name") for table in entries}
    for name, obj in wanted.items():
        if name not in present:
            table = tomlkit.table()
            _merge_object(table, obj, fresh=True)
            table.add(tomlkit.nl())
            _append_entry(entries, table)
    if not objects:
        del doc[key]


def _merge(doc: tomlkit.TOMLDocument, config: Config) -> None:
    _set_value(doc, "durability", config.durability)
    _merge_section(doc, "receiver", config.receiver)
    _merge_section(doc, "smtp", config.smtp)
    if "ui" in doc or config.ui != UiSettings():
        _merge_section(doc, "ui", config.ui)
    for key, default in (
        ("metrics", MetricsSettings()),
        ("logs", LogSettings()),
        ("alerts", AlertSettings()),
    ):
        if key in doc or getattr(config, key) != default:
            _merge_section(doc, key, getattr(config, key))
    if "dead_letters" in doc or config.dead_letters != DeadLetterSettings():
        _merge_section(doc, "dead_letters", config.dead_letters)
    _merge_cluster(doc, config.cluster)
    _merge_entries(doc, "workspaces", config.workspaces)
    _merge_entries(doc, "connectors", config.connectors)


def _merge_cluster(doc: Container, cluster: ClusterSettings | None) -> None:
    """[cluster]: paths as text; a default left out where the user left it out."""
    if cluster is None:
        _remove(doc, "cluster")
        return
    fresh = "cluster" not in doc
    table = tomlkit.table() if fresh else doc["cluster"]
    defaults = ClusterSettings(nats=())
    for key in ("nats", "replicas", "creds", "tls_ca", "name"):
        value = getattr(cluster, key)
        if value is None:
            _remove(table, key)
        elif key == "nats":
            _set_value(table, key, list(value))
        elif fresh and value == getattr(defaults, key) and key == "name":
            continue  # the usual prefix needs no line
        else:
            _set_value(table, key, str(value) if isinstance(value, Path) else value)
    if fresh:
        table.add(tomlkit.nl())
        doc["cluster"] = table


def _comparable(config: Config) -> dict[str, Any]:
    plain = dataclasses.asdict(config)
    plain["workspaces"] = sorted(w["name"] for w in plain["workspaces"])
    plain["connectors"] = sorted((c for c in plain["connectors"]), key=lambda c: c["name"])
    for c in plain["connectors"]:
        c["events"] = list(c["events"])
    return plain


@contextlib.contextmanager
def _locked(home: Home) -> Iterator[None]:
    """Serialise read-modify-write of the config file between processes on one home (POSIX only)."""
    with exclusive_lock(home.root / ".config.lock"):
        yield


def _write(home: Home, config: Config) -> None:
    path = home.config_file
    problems = validate_config(config)
    if problems:
        raise ConfigError(_problems_message(path, problems, saving=True), path=path, problems=problems)
    text = _read_text(path)
    if text is None:
        doc = tomlkit.document()
        for line in HEADER:
            doc.add(tomlkit.comment(line))
        doc.add(tomlkit.nl())
    else:
        _parse_toml(text, path)  # a file that does not parse is never overwritten
        doc = tomlkit.parse(text)
    _merge(doc, config)
    rendered = tomlkit.dumps(doc)
    # The merged file must read back as exactly this configuration before it replaces the old one.
    written, problems = _from_data(_parse_toml(rendered, path))
    if problems or _comparable(written) != _comparable(config):
        detail = "; ".join(problems) if problems else "it would not read back as the same settings"
        raise ConfigError(
            f"Not saved ({path} is unchanged): the file's existing content could not be merged with the "
            f"change ({detail}). Fix the file by hand or move it away, then try again.",
            path=path,
            problems=problems,
        )
    write_private(path, rendered)


def save(home: Home | str | os.PathLike[str] | None, config: Config) -> None:
    """Make the config file say `config`: validated first; merged into the file so comments and order
    survive; written atomically (0600). Raises ConfigError and leaves the file as it was on any problem.

    Entries are matched by name: a connector missing from `config` is removed from the file. Interactive
    edits should prefer the mutations below, which start from the file as it is now.
    """
    home = Home.resolve(home)
    with _locked(home):
        _write(home, config)
