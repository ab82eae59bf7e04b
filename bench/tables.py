"""Results of a benchmark: rows of medians, ratios to a baseline as medians of per-round pairs, and their
text and Markdown rendering (the Markdown and JSON are what bench/run_all.py collects into RESULTS.md)."""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol


class Timing(Protocol):
    """What a table needs of one timed run (common.Sample)."""

    @property
    def wall(self) -> float: ...

    @property
    def cpu(self) -> float: ...


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """min-max of repeated runs, so a reader can see whether a ratio is inside the noise."""
    if len(values) < 2:
        return ""
    return f"runs {min(values) * 1000:.0f}-{max(values) * 1000:.0f} ms"


# -- results -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    name: str
    seconds: float  # median wall time
    cpu: float | None  # median CPU time, client + server; None when not measured
    note: str = ""
    walls: tuple[float, ...] = ()  # per round, index-aligned with the other rows' rounds
    cpus: tuple[float, ...] = ()


def paired_ratio(values: Sequence[float], base: Sequence[float]) -> float | None:
    """Median of per-round ratios: rounds run back to back, so load that drifts over the run cancels out in
    each pair, which a ratio of two medians would not do."""
    pairs = [v / b for v, b in zip(values, base, strict=False) if b > 0]
    return median(pairs) if pairs and len(values) == len(base) else None


@dataclass
class Table:
    """One comparison: contenders' median wall and CPU times, and their ratios to a baseline row."""

    title: str
    baseline: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unit: str = "ms"

    def add(self, name: str, samples: Sequence[Timing], note: str = "", *, cpu: bool = True) -> None:
        """Add a contender from its samples, one per round (the wall-time spread goes into the note).

        ``cpu=False`` where the work happens in processes the samples cannot see (a server being started)."""
        walls = tuple(s.wall for s in samples)
        cpus = tuple(s.cpu for s in samples) if cpu else ()
        note = "; ".join(p for p in (note, spread(walls)) if p)
        self.rows.append(Row(name, median(walls), median(cpus) if cpus else None, note, walls, cpus))

    def _base(self) -> Row | None:
        return next((r for r in self.rows if r.name == self.baseline), None)

    def ratio(self, row: Row) -> float | None:
        base = self._base()
        return paired_ratio(row.walls, base.walls) if base else None

    def cpu_ratio(self, row: Row) -> float | None:
        base = self._base()
        return paired_ratio(row.cpus, base.cpus) if base and row.cpus and base.cpus else None

    def _value(self, seconds: float | None) -> str:
        if seconds is None:
            return "-"
        return f"{seconds:.2f} s" if self.unit == "s" else f"{seconds * 1000:.1f} ms"

    @staticmethod
    def _ratio_text(ratio: float | None) -> str:
        return f"{ratio:.2f}x" if ratio is not None else "-"

    def text(self) -> str:
        width = max([len(r.name) for r in self.rows] + [10])
        lines = [self.title, "-" * len(self.title),
                 f"  {'':<{width}}  {'wall':>10}  {'ratio':>6}  {'CPU':>10}  {'ratio':>6}"]
        for r in self.rows:
            lines.append(f"  {r.name:<{width}}  {self._value(r.seconds):>10}  {self._ratio_text(self.ratio(r)):>6}  "
                         f"{self._value(r.cpu):>10}  {self._ratio_text(self.cpu_ratio(r)):>6}  {r.note}".rstrip())
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "",
                 f"| contender | wall | vs {self.baseline} | CPU (client + server) | CPU vs {self.baseline} | note |",
                 "|---|---:|---:|---:|---:|---|"]
        lines += [f"| {r.name} | {self._value(r.seconds)} | {self._ratio_text(self.ratio(r))} | "
                  f"{self._value(r.cpu)} | {self._ratio_text(self.cpu_ratio(r))} | {r.note} |" for r in self.rows]
        lines.append("")
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def emit(tables: Sequence[Table], args: argparse.Namespace, header: str = "") -> None:
    """Print the tables; ``--markdown PATH`` / ``--json PATH`` also write them for bench/run_all.py."""
    for table in tables:
        print(table.text(), "\n", flush=True)
    if args.markdown:
        body = (header + "\n\n" if header else "") + "\n".join(t.markdown() for t in tables)
        Path(args.markdown).write_text(body)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(t) for t in tables], indent=1))


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--markdown", metavar="PATH", help="also write the tables as Markdown to PATH")
    parser.add_argument("--json", metavar="PATH", help="also write the raw rows as JSON to PATH")
