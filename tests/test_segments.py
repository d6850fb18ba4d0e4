"""The outbox segments' helpers: addresses, cutting a commit, done marks, and the set of known ids."""

from __future__ import annotations

import random

import pytest

from tui_currents import segments
from tui_currents.segments import KeySet, KnownIds, key_of


def test_addresses_round_trip_and_group_by_segment():
    addrs = [segments.address(7, 0), segments.address(7, 4095), segments.address(9, 3)]
    assert [segments.split_address(a) for a in addrs] == [(7, 0), (7, 4095), (9, 3)]
    assert {seq: list(items) for seq, items in segments.by_segment(addrs).items()} == {7: [0, 4095], 9: [3]}


def test_runs_of_addresses_are_grouped_as_ranges_and_the_rest_keeps_its_order():
    run = [segments.address(7, i) for i in range(3, 900)] + [segments.address(8, i) for i in range(0, 5)]
    assert segments.by_segment(run) == {7: range(3, 900), 8: range(0, 5)}
    gaps = [segments.address(7, i) for i in (1, 2, 4)]
    assert segments.by_segment(gaps) == {7: [1, 2, 4]}
    shuffled = [segments.address(9, 2), segments.address(7, 5), segments.address(9, 1)]
    assert segments.by_segment(shuffled) == {9: [2, 1], 7: [5]}
    twice = [segments.address(7, 1), segments.address(7, 1), segments.address(7, 2)]
    assert {seq: list(items) for seq, items in segments.by_segment(twice).items()} == {7: [1, 1, 2]}


def test_marking_a_run_at_once_agrees_with_marking_one_by_one():
    rng = random.Random(5)
    for _ in range(2_000):
        count = rng.randint(0, 70)
        marks = rng.getrandbits(80) if rng.random() < 0.5 else 0
        start = rng.randint(0, 75)
        items = list(range(start, start + rng.randint(0, 10)))
        if rng.random() < 0.3:
            rng.shuffle(items)
        expected_marks, expected_new = marks, []
        for item in items:
            if item < count and not expected_marks >> item & 1:
                expected_marks |= 1 << item
                expected_new.append(item)
        for given in (items, sorted(items), range(start, start + len(items))):
            if list(given) == items:
                got_marks, got_new = segments.mark(marks, given, count)
                assert (got_marks, list(got_new)) == (expected_marks, expected_new)


def test_a_segment_reads_back_each_body_from_its_columns():
    bodies = [b'{"a":1}', b'{"bb":22}', b"{}"]
    entries = [("m1", "t1", len(bodies[0])), ("m2", "t2", len(bodies[1])), ("m3", "t1", len(bodies[2]))]
    made = segments.Segment.of(4, "C", 1.5, entries, b"".join(bodies))
    parsed = segments.Segment.parse(4, "C", 1.5, segments.pack_index(entries), b"".join(bodies))
    assert made == parsed
    assert [made.body(i) for i in range(len(made))] == bodies
    assert (list(made.ids), list(made.types)) == (["m1", "m2", "m3"], ["t1", "t2", "t1"])
    assert segments.index_ids(segments.pack_index(entries)) == ["m1", "m2", "m3"]
    assert len(segments.Segment.of(5, "C", 0.0, [], b"")) == 0


def test_a_commit_is_cut_by_count_and_by_bytes(monkeypatch):
    monkeypatch.setattr(segments, "MAX_MESSAGES", 3)
    monkeypatch.setattr(segments, "MAX_BYTES", 100)
    sizes = [10, 10, 10, 10, 60, 60, 500, 1]
    ranges = list(segments.cut(sizes, sizes))
    assert ranges == [(0, 3), (3, 5), (5, 6), (6, 7), (7, 8)]  # a message over the bound still gets a segment


def test_done_marks_round_trip():
    marks = 0
    for item in (0, 5, 999):
        marks |= 1 << item
    assert segments.marks_from(segments.marks_blob(marks)) == marks
    assert segments.marks_from(None) == 0


@pytest.mark.parametrize("small", [KeySet.SMALL, 2_000, 0])
def test_key_set_behaves_like_a_set_through_growth_and_removals(small):
    # small=2_000: it moves between a set and the packed array many times; 0: packed from the first add.
    rng = random.Random(5)
    model: set[int] = set()
    keys = KeySet(small)
    forms = set()
    pool = [key_of(f"id-{i}") for i in range(20_000)]
    for step in range(60_000):
        key = rng.choice(pool)
        if rng.random() < 0.6:
            keys.add(key)
            model.add(key)
        else:
            keys.discard(key)
            model.discard(key)
        if keys:
            forms.add(keys.packed)
        if step % 5000 == 0:
            assert len(keys) == len(model)
            assert all((k in keys) == (k in model) for k in pool[:2000])
            assert keys.among(pool[:3000]) == model.intersection(pool[:3000])
    assert len(keys) == len(model)
    assert all((k in keys) == (k in model) for k in pool)
    assert keys.among(pool) == model
    assert forms == {KeySet.SMALL: {False}, 2_000: {False, True}, 0: {True}}[small]


def test_key_set_sheds_removed_keys_instead_of_growing_for_ever():
    keys = KeySet(small=0)  # packed from the first key
    for round_ in range(50):
        batch = [key_of(f"{round_}-{i}") for i in range(1000)]
        keys.update(batch)
        for key in batch:
            keys.discard(key)
    assert len(keys) == 0
    assert keys.packed and len(keys._packed._slots) <= 4096  # removed keys' marks dropped at a resize


def test_known_ids_per_connector():
    known = KnownIds()
    known.add_index("A", segments.pack_index([("m1", "t", 10), ("m2", "t", 20)]))
    assert key_of("m1") in known.of("A") and key_of("m1") not in known.of("B")
    known.forget("A", ["m1"])
    assert key_of("m1") not in known.of("A") and key_of("m2") in known.of("A")
    assert len(known) == 1
