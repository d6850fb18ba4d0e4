"""Braze-like Currents Avro exports: schemas, flat records and the storage folder layout.

Braze writes one Avro container file per event type, with flat records (`id`, `user_id`, `time`... beside
the event's own fields) named after the event type (`Send` in namespace
`dataexport.S3.inner.users.messages.email`). This module writes files of that shape from flat records
(`DemoGenerator(flat=True)` makes them), so samples, tests and benchmarks exercise the importer with what
Braze really produces.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import fastavro

# Fields Braze always fills; every other field is an optional ["null", T] union defaulting to null.
ALWAYS_PRESENT = ("id", "time")
LEADING_FIELDS = ("id", "user_id", "external_user_id", "device_id", "time", "timezone")


def record_name(event_type: str, connection: str = "S3") -> tuple[str, str]:
    """The (namespace, name) Braze gives the record of an event type."""
    head, _, name = event_type.rpartition(".")
    return f"dataexport.{connection}.inner.{head}", name


def _avro_type(field: str, values: list[object], event_type: str) -> object:
    if field == "time":
        # Braze's one documented type difference: WhatsApp events carry time as a long.
        return "long" if ".whatsapp." in event_type else "int"
    kinds = {type(v) for v in values if v is not None}
    if kinds == {bool}:
        return "boolean"
    if kinds and kinds <= {int}:
        # Every value that is not None is an int here; isinstance says so to the type checker.
        return "int" if all(-(2**31) <= v < 2**31 for v in values if isinstance(v, int)) else "long"
    if kinds and kinds <= {int, float}:
        return "double"
    if kinds == {list}:
        return {"type": "array", "items": "string"}
    return "string"


def schema_for(
    event_type: str, records: Sequence[Mapping[str, object]], *, connection: str = "S3"
) -> dict[str, object]:
    """An Avro record schema that fits flat records of one event type, shaped the way Braze's are."""
    present: dict[str, list[object]] = {}
    for record in records:
        for key, value in record.items():
            present.setdefault(key, []).append(value)
    # Braze's order: the user fields first, then the event's own.
    seen = {name: present.pop(name) for name in LEADING_FIELDS if name in present} | present
    namespace, name = record_name(event_type, connection)
    fields: list[dict[str, object]] = []
    for field, values in seen.items():
        avro_type = _avro_type(field, values, event_type)
        if field in ALWAYS_PRESENT:
            fields.append({"name": field, "type": avro_type})
        else:
            fields.append({"name": field, "type": ["null", avro_type], "default": None})
    return {"type": "record", "name": name, "namespace": namespace, "fields": fields}


def export_file_path(
    root: Path,
    event_type: str,
    *,
    hour: datetime,
    cluster: str = "prod-01",
    connection: str = "S3",
    integration_id: str = "0d1e5f1c-2b7a-4c44-9d3e-4b1f6a1e7c11",
    schema_id: int = 1,
    zone: str = "0",
    partition: int = 0,
    offset: int = 0,
) -> Path:
    """Where Braze puts a file: `<prefix>/dataexport.<cluster>.<conn>.integration.<id>/event_type=<type>/
    date=<YYYY-MM-DD-HH>/<schema-id>/<zone>/dataexport.<cluster>.<conn>.integration.<id>+<p>+<o>.avro`."""
    base = f"dataexport.{cluster}.{connection}.integration.{integration_id}"
    return (
        root
        / base
        / f"event_type={event_type}"
        / f"date={hour.astimezone(UTC):%Y-%m-%d-%H}"
        / str(schema_id)
        / zone
        / f"{base}+{partition}+{offset}.avro"
    )


def write_avro_file(
    path: Path,
    event_type: str,
    records: Sequence[Mapping[str, object]],
    *,
    schema: Mapping[str, object] | None = None,
    codec: str = "null",
    sync_interval: int = 16_000,
) -> Path:
    """Write flat records of one event type to an Avro container file (folders created as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    parsed = fastavro.parse_schema(dict(schema or schema_for(event_type, records)))
    with path.open("wb") as out:
        fastavro.writer(out, parsed, records, codec=codec, sync_interval=sync_interval)
    return path


def write_export(
    root: Path,
    records: Iterable[Mapping[str, object]],
    *,
    records_per_file: int = 15_000,
    codec: str = "null",
    connection: str = "S3",
    keep_event_type: bool = False,
) -> list[Path]:
    """Write flat records (each with its `event_type`) as Braze exports them: one file per event type
    and hour, at most `records_per_file` records each, under `root` in Braze's folder layout. The
    `event_type` field is left out of the records, as in Braze's files, unless `keep_event_type`.
    Returns the files written."""
    groups: dict[tuple[str, str], list[dict[str, object]]] = {}
    for record in records:
        flat = dict(record)
        event_type = str(flat.get("event_type") or "")
        if not keep_event_type:
            flat.pop("event_type", None)
        when = flat.get("time")
        hour = datetime.fromtimestamp(when if isinstance(when, int) else 0, UTC).strftime("%Y-%m-%d-%H")
        groups.setdefault((event_type, hour), []).append(flat)
    written: list[Path] = []
    for (event_type, hour), flats in groups.items():
        when = datetime.strptime(hour, "%Y-%m-%d-%H").replace(tzinfo=UTC)
        schema = schema_for(event_type, flats, connection=connection)
        for offset in range(0, len(flats), records_per_file):
            path = export_file_path(root, event_type, hour=when, connection=connection, offset=offset)
            part = flats[offset : offset + records_per_file]
            written.append(write_avro_file(path, event_type, part, schema=schema, codec=codec))
    return written
