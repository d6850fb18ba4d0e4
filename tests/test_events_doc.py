"""docs/EVENTS.md is what the catalog and the mapping rules say, row for row."""

from __future__ import annotations

from tui_currents import catalog, events_doc


def test_committed_reference_table_equals_the_generated_one():
    committed = events_doc.DOC_PATH.read_text(encoding="utf-8")
    assert committed == events_doc.render(), "run scripts/generate_events_doc.py and commit docs/EVENTS.md"


def test_every_catalog_type_has_one_row_with_its_segment_name_or_reason():
    text = events_doc.render()
    for entry in catalog.CATALOG:
        [row] = [line for line in text.splitlines() if line.startswith(f"| `{entry.event_type}` |")]
        if entry.forwardable:
            assert f"track `{entry.segment_event}`" in row
        else:
            assert "not sent" in row and entry.reason in row
    assert f"## {catalog.EXTENDED}" in text
    assert "Order Completed" in text and "E-commerce Spec v2" in text and "Native Mobile Spec" in text
