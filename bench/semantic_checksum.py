"""Semantic checksum cost: every source position removed (now) against the three keys removed before.

The checksum runs for every migration applied (its history row stores it), so removing the other position
keys (``arg_location``, ``rexpr_list_start``...) must not make migrate noticeably slower. Both variants parse
the same text with pglast and differ only in the regular expressions run over the JSON tree; rounds are
interleaved and the ratio is the median of per-round ratios, so machine load cancels out.

    python bench/semantic_checksum.py [--rounds 9] [--copies 20]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from pglast import parser

from poststack.source.files import SqlFile
from poststack.source.sqltext import _PARSER_VERSION, semantic_checksum

ROOT = Path(__file__).resolve().parents[1]
_OLD_KEY = r'"(?:location|stmt_location|stmt_len)":-?\d+'
_OLD_LATER = re.compile(rf",{_OLD_KEY}")
_OLD_FIRST = re.compile(rf"\{{{_OLD_KEY},?")


def before(sql: str) -> str:
    """The previous algorithm: only location, stmt_location and stmt_len removed."""
    tree = parser.parse_sql_json(sql)
    canonical = _OLD_FIRST.sub("{", _OLD_LATER.sub("", _PARSER_VERSION.sub("{", tree, count=1)))
    return hashlib.sha256(canonical.encode()).hexdigest()


def seconds(function: Callable[[str], object], texts: list[str]) -> float:
    start = time.perf_counter()
    for text in texts:
        function(text)
    return time.perf_counter() - start


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--rounds", type=int, default=9)
    options.add_argument("--copies", type=int, default=20, help="scenario files concatenated for the large case")
    args = options.parse_args()
    paths = sorted((ROOT / "src" / "poststack" / "testing" / "scenarios").rglob("*.sql"))
    paths += sorted((ROOT / "examples").rglob("*.sql"))
    small = [SqlFile.read(p).text for p in paths]
    large = ["\n".join(small) * args.copies]
    now = semantic_checksum.__wrapped__  # type: ignore[attr-defined]  # without the lru_cache
    print(f"{'case':<28} {'before ms':>10} {'now ms':>8} {'now/before':>11}")
    for label, texts in ((f"{len(small)} scenario files", small), (f"one {len(large[0]) // 1024} KB file", large)):
        ratios, old_times, new_times = [], [], []
        for _ in range(args.rounds):
            old, new = seconds(before, texts), seconds(now, texts)
            ratios.append(new / old)
            old_times.append(old)
            new_times.append(new)
        print(f"{label:<28} {statistics.median(old_times) * 1000:>10.1f} {statistics.median(new_times) * 1000:>8.1f} "
              f"{statistics.median(ratios):>10.2f}x")


if __name__ == "__main__":
    main()
