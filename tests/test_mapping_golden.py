"""The mapping's output, byte for byte, against the golden record made from an earlier version of it.

Any change to a Segment message's bytes, an outcome's fate, reason, event name or tally, for any record of
tests/mapping_corpus.py, fails here: optimising the mapping must not change what it sends.
"""

from __future__ import annotations

import gzip

import orjson

from tests.make_mapping_golden import GOLDEN
from tests.mapping_corpus import results


def test_mapping_output_is_byte_identical_to_the_golden_record():
    with gzip.open(GOLDEN, "rb") as handle:
        golden = handle.read().splitlines()
    produced = [orjson.dumps(line, option=orjson.OPT_SORT_KEYS) for line in results()]
    assert len(produced) == len(golden)
    differing = [n for n, (ours, theirs) in enumerate(zip(produced, golden, strict=True)) if ours != theirs]
    if differing:
        first = differing[0]
        raise AssertionError(
            f"{len(differing)} of {len(golden)} lines differ; the first, line {first}:\n"
            f"golden:   {golden[first][:2000]!r}\nproduced: {produced[first][:2000]!r}"
        )


def test_the_corpus_covers_every_fate_and_the_converted_path():
    fates: set[str] = set()
    converted = False
    for line in results():
        for key, outcome in line.items():
            if isinstance(outcome, dict) and "fate" in outcome:
                fates.add(outcome["fate"])
                converted |= "NumberText" in key or '"wide":"' in str(outcome.get("bytes", ""))
    assert fates == {"queued", "not selected", "anonymous", "unsupported", "not forwardable", "rejected"}
    assert converted
