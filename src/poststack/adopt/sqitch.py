"""sqitch's layout: ``sqitch.plan`` (changes and tags in deploy order) and ``deploy/``, ``revert/``,
``verify/`` scripts named after each change.

A change line reads ``name [dependencies] 2024-01-01T10:00:00Z Planner <email> # note``; ``@tag`` lines
tag the change before them. A change reworked after a tag appears twice: the earlier one's scripts are
``deploy/name@tag.sql`` (tag: the first after it). Deploy scripts carry their own ``BEGIN; ... COMMIT;``,
which poststack's own transaction replaces. Reported, not carried: dependencies (poststack applies the plan's
order, which already satisfies this project's own ones; other projects' are not checked) and verify
scripts (poststack's ``verify`` proves rollbacks instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from poststack.adopt.model import Layout, Note, NoteKind, SourceMigration
from poststack.adopt.sourcefiles import read_text, source_dir
from poststack.errors import MigrationFileError

PLAN = "sqitch.plan"
_CHANGE = re.compile(r"^(?P<name>[^\s\[@#:%]+)\s*(?:\[(?P<deps>[^\]]*)\])?\s*(?P<planned_at>\d{4}-\d\d-\d\dT\S+)")
_TAG = re.compile(r"^@(?P<tag>\S+)")
_PROJECT = re.compile(r"^%\s*project\s*=\s*(?P<project>\S+)")


@dataclass
class _Planned:
    name: str
    deps: list[str]
    planned_at: str
    line: int
    tag_after: str | None = None


def parse_plan(text: str, where: Path) -> tuple[str | None, list[_Planned]]:
    """(project, changes in plan order), each change knowing the first tag after it."""
    project: str | None = None
    changes: list[_Planned] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("%"):
            match = _PROJECT.match(line)
            if match:
                project = match["project"]
            continue
        tag = _TAG.match(line)
        if tag:
            for change in reversed(changes):
                if change.tag_after is not None:
                    break
                change.tag_after = tag["tag"]
            continue
        if line[0] in "+-":
            line = line[1:].lstrip()  # the old explicit deploy/revert operators
        match = _CHANGE.match(line)
        if match is None:
            raise MigrationFileError(f"{where}:{number}: not a sqitch plan line: {raw.strip()[:80]!r}")
        changes.append(_Planned(match["name"], (match["deps"] or "").split(), match["planned_at"], number))
    return project, changes


def read_layout(source: Path) -> Layout:
    source = source_dir(source, "sqitch")
    plan = source / PLAN
    if not plan.is_file():
        raise MigrationFileError(f"--source {source}: no {PLAN} (the sqitch project directory)")
    project, changes = parse_plan(read_text(plan), plan)
    layout = Layout("sqitch", source, project=project)
    names = [c.name for c in changes]
    for index, change in enumerate(changes):
        reworked_later = change.name in names[index + 1:]
        stem = f"{change.name}@{change.tag_after}" if reworked_later and change.tag_after else change.name
        deploy, revert, verify = (source / d / f"{stem}.sql" for d in ("deploy", "revert", "verify"))
        if not deploy.is_file():
            raise MigrationFileError(f"{plan}:{change.line}: change {change.name}: no deploy script {deploy}")
        key = stem if reworked_later else change.name
        notes = []
        foreign = [d for d in change.deps if d.startswith("!") or ":" in d]
        if foreign:
            notes.append(Note(NoteKind.NOT_CARRIED, f"deploy/{stem}.sql", f"dependencies [{' '.join(foreign)}] "
                              "(conflicts, other projects' changes) are not carried: poststack checks neither"))
        if len(foreign) < len(change.deps):
            notes.append(Note(NoteKind.INFO, f"deploy/{stem}.sql", "its dependencies on earlier changes of the plan "
                              "are kept as the order of the files"))
        if verify.is_file():
            notes.append(Note(NoteKind.INFO, f"verify/{stem}.sql", "verify script not carried: poststack's verify "
                                                                   "proves the rollback instead"))
        layout.migrations.append(SourceMigration(
            key, key, change.name, f"deploy/{stem}.sql", read_text(deploy),
            read_text(revert) if revert.is_file() else None, f"revert/{stem}.sql" if revert.is_file() else None,
            planned_at=change.planned_at, notes=tuple(notes)))
    return layout
