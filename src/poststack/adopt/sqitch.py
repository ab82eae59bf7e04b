"""sqitch's layout: ``sqitch.plan`` (changes and tags in deploy order) and ``deploy/``, ``revert/``,
``verify/`` scripts named after each change (``sqitch.conf``'s ``[core]`` ``top_dir``, ``plan_file`` and
``*_dir`` move them, as they move them for sqitch).

A change line reads ``name [dependencies] 2024-01-01T10:00:00Z Planner <email> # note``; ``@tag`` lines
tag the change before them. A change reworked after a tag appears twice: the earlier one's scripts are
``deploy/name@tag.sql`` (tag: the first after it). Deploy scripts carry their own ``BEGIN; ... COMMIT;``,
which poststack's own transaction replaces. Dependencies on earlier changes of the plan are kept as the
order of the files (sqitch requires them earlier in the plan); conflicts (``!x``) and other projects'
changes (``p:x``) are reported as not carried; verify scripts are reported (poststack's ``verify`` proves
rollbacks instead)."""

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


_CONF_SECTION = re.compile(r'^\[(?P<section>[^\]"\s]+)(?:\s+"(?P<sub>[^"]*)")?\]$')
_CONF_KEY = re.compile(r"^(?P<key>[A-Za-z_][\w-]*)\s*=\s*(?P<value>.*)$")


def core_settings(source: Path) -> dict[str, str]:
    """The ``[core]`` keys of ``sqitch.conf`` (git-config syntax), which move the plan and script directories."""
    conf = source / "sqitch.conf"
    if not conf.is_file():
        return {}
    section, found = "", {}
    for raw in read_text(conf).splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        match = _CONF_SECTION.match(line)
        if match:
            section = match["section"].lower() if match["sub"] is None else ""
            continue
        match = _CONF_KEY.match(line)
        if match and section == "core":
            found[match["key"].lower()] = match["value"].strip().strip('"')
    return found


def read_layout(source: Path) -> Layout:
    source = source_dir(source, "sqitch")
    core = core_settings(source)
    top = source / core.get("top_dir", ".")
    plan = source / core["plan_file"] if "plan_file" in core else top / PLAN
    dirs = {kind: source / core[f"{kind}_dir"] if f"{kind}_dir" in core else top / kind
            for kind in ("deploy", "revert", "verify")}
    if not plan.is_file():
        raise MigrationFileError(f"--source {source}: no {plan.name} (the sqitch project directory)")
    project, changes = parse_plan(read_text(plan), plan)
    layout = Layout("sqitch", source, project=project)
    names = [c.name for c in changes]
    for index, change in enumerate(changes):
        reworked_later = change.name in names[index + 1:]
        stem = f"{change.name}@{change.tag_after}" if reworked_later and change.tag_after else change.name
        deploy, revert, verify = (dirs[d] / f"{stem}.sql" for d in ("deploy", "revert", "verify"))
        if not deploy.is_file():
            raise MigrationFileError(f"{plan}:{change.line}: change {change.name}: no deploy script {deploy}")
        key = stem if reworked_later else change.name
        notes = []
        where = {d: str(dirs[d].joinpath(f"{stem}.sql").relative_to(source)) for d in dirs}
        foreign = [d for d in change.deps if d.startswith("!") or ":" in d]
        if foreign:
            notes.append(Note(NoteKind.NOT_CARRIED, where["deploy"], f"dependencies [{' '.join(foreign)}] "
                              "(conflicts, other projects' changes) are not carried: poststack checks neither"))
        if len(foreign) < len(change.deps):
            notes.append(Note(NoteKind.INFO, where["deploy"], "its dependencies on earlier changes of the plan "
                              "are kept as the order of the files"))
        if verify.is_file():
            notes.append(Note(NoteKind.INFO, where["verify"], "verify script not carried: poststack's verify "
                                                                   "proves the rollback instead"))
        layout.migrations.append(SourceMigration(
            key, key, change.name, where["deploy"], read_text(deploy),
            read_text(revert) if revert.is_file() else None, where["revert"] if revert.is_file() else None,
            planned_at=change.planned_at, notes=tuple(notes)))
    return layout
