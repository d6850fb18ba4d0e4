"""Write the mapping's golden record: `.venv/bin/python -m tests.make_mapping_golden`.

Run it only when the mapping's output is meant to change (and say why in the commit): the golden record is
what tests/test_mapping_golden.py holds every later version of the mapping to, byte for byte.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from tests.mapping_corpus import results

GOLDEN = Path(__file__).parent / "fixtures" / "mapping_golden.jsonl.gz"


def write(path: Path = GOLDEN) -> int:
    """Write the corpus's results to `path`, one JSON line each; returns the lines written."""
    lines = [orjson.dumps(line, option=orjson.OPT_SORT_KEYS) for line in results()]
    # mtime=0: the same results give the same file, so regenerating it unchanged changes nothing.
    with gzip.GzipFile(path, "wb", mtime=0) as out:
        out.write(b"\n".join(lines) + b"\n")
    return len(lines)


if __name__ == "__main__":
    print(f"{write()} lines written to {GOLDEN}")
