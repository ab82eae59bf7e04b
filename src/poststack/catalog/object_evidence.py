"""Catalog evidence that a migration ran: each expected object checked, and a verdict per migration.

Why not simply "all created objects exist"? Because migrations interact. A column created by 001 and dropped
by 007 is absent on a fully migrated database, and a ``DROP`` proves nothing on a database where the object
never existed. So each check is judged against the other migrations that touch the same object:

- *confirms*: the catalog shows this migration's effect and nothing else in the set could have produced it;
- *contradicts*: the catalog does not show the effect and no later migration could have undone it;
- *inconclusive*: another migration explains what is seen either way (reported, never counted). So is an
  object created ``IF NOT EXISTS`` and found (it may have been there before), a dropped object found absent
  unless its creator is known to have run, and a missing object after a later ``DROP ... CASCADE`` that ran.

A migration is ``present`` when something confirms it and nothing contradicts it, ``absent`` when something
contradicts and nothing confirms, ``partial`` when both, and ``uncheckable`` when no check is conclusive.
All objects of all assessed migrations are checked together in a few set-based queries (catalog.py).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import psycopg

from poststack.catalog.presence import objects_exist
from poststack.source.files import Migration
from poststack.source.objects import DbObject, Expectation, MigrationObjects, SqlSyntaxError, covers, extract


class EvidenceStatus(StrEnum):
    """The verdict on one migration, from its checks (see the module docstring for each)."""

    PRESENT = "present"
    ABSENT = "absent"
    PARTIAL = "partial"
    UNCHECKABLE = "uncheckable"


class CheckVerdict(StrEnum):
    """What one check says about its migration: only confirms and contradicts count."""

    CONFIRMS = "confirms"
    CONTRADICTS = "contradicts"
    INCONCLUSIVE = "inconclusive"


# The names this module had before the enums (tests import them).
PRESENT, ABSENT, PARTIAL, UNCHECKABLE = (EvidenceStatus.PRESENT, EvidenceStatus.ABSENT, EvidenceStatus.PARTIAL,
                                         EvidenceStatus.UNCHECKABLE)
CONFIRMS, CONTRADICTS, INCONCLUSIVE = CheckVerdict.CONFIRMS, CheckVerdict.CONTRADICTS, CheckVerdict.INCONCLUSIVE


@dataclass(frozen=True)
class Check:
    """One expected object, what the catalog showed, and what that says about the migration."""

    obj: DbObject
    expected: bool  # True: the migration leaves it existing; False: the migration drops it
    found: bool
    verdict: CheckVerdict
    reason: str = ""

    def __str__(self) -> str:
        if self.verdict == CheckVerdict.CONFIRMS:
            return f"present: {self.obj}" if self.expected else f"dropped as expected: {self.obj}"
        if self.verdict == CheckVerdict.CONTRADICTS:
            return f"missing: {self.obj}" if self.expected else f"still exists although dropped: {self.obj}"
        seen = "exists" if self.found else "absent"
        return f"not evidence: {self.obj} ({seen}; {self.reason})"


@dataclass
class Evidence:
    """What the catalog says about one migration. ``present``/``missing`` hold the objects of the
    confirming/contradicting checks (for a dropped object, "missing" means it still exists: see ``checks``)."""

    version: int
    status: EvidenceStatus
    present: list[DbObject] = field(default_factory=list)
    missing: list[DbObject] = field(default_factory=list)
    uncheckable: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    error: str | None = None  # the SQL does not parse: no evidence can be read from it

    @property
    def inconclusive(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == CheckVerdict.INCONCLUSIVE]

    @property
    def lines(self) -> list[str]:
        """Human-readable evidence, one fact per line, for reports and the ``evidence`` field of issues."""
        out = [f"does not parse: {self.error}"] if self.error else []
        order = {CheckVerdict.CONTRADICTS: 0, CheckVerdict.CONFIRMS: 1, CheckVerdict.INCONCLUSIVE: 2}
        out += [str(c) for c in sorted(self.checks, key=lambda c: order[c.verdict])]
        out += [f"uncheckable: {u}" for u in self.uncheckable]
        return out

    def summary(self) -> str:
        """One sentence: the verdict and the objects that decided it."""
        total = len(self.present) + len(self.missing)
        if self.status == EvidenceStatus.PRESENT:
            return f"all {total} checked object(s) are as the migration leaves them: {_names(self.present)}"
        if self.status == EvidenceStatus.ABSENT:
            return f"none of its {total} checked object(s) is as the migration leaves them: {_names(self.missing)}"
        if self.status == EvidenceStatus.PARTIAL:
            return (f"{len(self.present)} of {total} checked object(s) as the migration leaves them; present: "
                    f"{_names(self.present)}; missing: {_names(self.missing)}")
        if self.error:
            return f"cannot be checked: {self.error}"
        why = f"{len(self.uncheckable)} statement(s) the catalog cannot show" if self.uncheckable else ""
        if self.inconclusive:
            why = (why + " and " if why else "") + f"{len(self.inconclusive)} object(s) other migrations explain"
        return f"no conclusive evidence ({why or 'no statements with catalog objects'})"


def _names(objects: Sequence[DbObject], limit: int = 8) -> str:
    shown = ", ".join(str(o) for o in objects[:limit])
    return shown + (f" and {len(objects) - limit} more" if len(objects) > limit else "")


@dataclass(frozen=True)
class _Mention:
    version: int
    exp: Expectation


class _Timeline:
    """Every migration's net effects indexed by object, so each check can see what came before and after."""

    def __init__(self, effects: dict[int, MigrationObjects]) -> None:
        self.direct: dict[tuple[Any, ...], list[_Mention]] = {}
        self.removals: dict[tuple[Any, ...], list[_Mention]] = {}
        for version in sorted(effects):
            for exp in effects[version].expectations:
                mention = _Mention(version, exp)
                self.direct.setdefault(exp.obj.key, []).append(mention)
                if not exp.exists:
                    for target in _removal_targets(exp.obj):
                        self.removals.setdefault(target, []).append(mention)

    def around(self, obj: DbObject, version: int) -> tuple[_Mention | None, _Mention | None]:
        """The last mention of ``obj`` before ``version`` and the first after it (covering drops included)."""
        mentions = list(self.direct.get(obj.key, ()))
        covering = [m for target in _covered_by(obj) for m in self.removals.get(target, ())
                    if covers(m.exp.obj, obj)]
        if covering:
            mentions = sorted(mentions + covering, key=lambda m: m.version)
        elif len(mentions) == 1 and mentions[0].version == version:
            return None, None  # the common case: only this migration touches the object
        versions = [m.version for m in mentions]
        before = bisect.bisect_left(versions, version)
        after = bisect.bisect_right(versions, version)
        return (mentions[before - 1] if before else None), (mentions[after] if after < len(mentions) else None)


def _removal_targets(obj: DbObject) -> list[tuple[Any, ...]]:
    """Index keys under which a removal of ``obj`` may cover other objects."""
    if obj.kind == "schema":
        return [("schema", obj.name)]
    if obj.kind in ("function", "procedure") and obj.detail is None:
        return [("routine", obj.schema, obj.name)]
    if obj.key[0] in ("relation", "type"):
        return [("parent", obj.schema, obj.name)]
    return []


def _covered_by(obj: DbObject) -> list[tuple[Any, ...]]:
    targets: list[tuple[Any, ...]] = [("schema", obj.schema)] if obj.schema else [("schema", obj.name)]
    if obj.parent:
        targets.append(("parent", obj.schema, obj.parent))
    elif obj.kind == "comment":
        targets.append(("parent", obj.schema, obj.name))
    if obj.kind in ("function", "procedure"):
        targets.append(("routine", obj.schema, obj.name))
    return targets


def _same_effect(mention: _Mention, obj: DbObject, expected: bool) -> bool:
    other = mention.exp
    return other.exists == expected and (other.obj == obj or (not expected and covers(other.obj, obj)))


def _judge(exp: Expectation, version: int, found: bool, timeline: _Timeline,
           known_applied: Callable[[int], bool]) -> Check:
    obj, expected = exp.obj, exp.exists
    before, after = timeline.around(obj, version)
    if found != expected:
        if after is not None:
            return Check(obj, expected, found, CheckVerdict.INCONCLUSIVE, f"changed again by migration {after.version}")
        return Check(obj, expected, found, CheckVerdict.CONTRADICTS)
    if after is not None and _same_effect(after, obj, expected):
        return Check(obj, expected, found, CheckVerdict.INCONCLUSIVE, f"migration {after.version} has the same effect")
    if expected:
        if exp.weak:
            return Check(obj, expected, found, CheckVerdict.INCONCLUSIVE,
                         "created IF NOT EXISTS: it may have been there before")
        if before is not None and _same_effect(before, obj, expected):
            return Check(obj, expected, found, CheckVerdict.INCONCLUSIVE,
                         f"already created by migration {before.version}")
        return Check(obj, expected, found, CheckVerdict.CONFIRMS)
    # Absent as the migration leaves it: evidence only if it provably existed before (its creator ran).
    if before is not None and before.exp.exists and known_applied(before.version):
        return Check(obj, expected, found, CheckVerdict.CONFIRMS)
    reason = (f"created by migration {before.version}, not known to be applied" if before is not None
              and before.exp.exists else "nothing shows it existed before")
    return Check(obj, expected, found, CheckVerdict.INCONCLUSIVE, reason)


def _status(checks: Iterable[Check]) -> EvidenceStatus:
    verdicts = {c.verdict for c in checks}
    if CheckVerdict.CONFIRMS in verdicts:
        return EvidenceStatus.PARTIAL if CheckVerdict.CONTRADICTS in verdicts else EvidenceStatus.PRESENT
    return EvidenceStatus.ABSENT if CheckVerdict.CONTRADICTS in verdicts else EvidenceStatus.UNCHECKABLE


def effects_of(migration: Migration, default_schema: str = "public") -> MigrationObjects | str:
    """The migration's net effect, or the parse error message when pglast cannot read it."""
    try:
        return extract(migration.sql, default_schema)
    except SqlSyntaxError as exc:
        where = f"{migration.filename}:{exc.line}" if exc.line else migration.filename
        return f"{where}: {exc.message}"


def assess(conn: psycopg.Connection[Any], migrations: Sequence[Migration], *, only: Collection[int] | None = None,
           applied: Collection[int] = (), default_schema: str = "public") -> dict[int, Evidence]:
    """Evidence for each migration (or those in ``only``), judged against all of ``migrations``.

    ``applied`` are versions known to have run (recorded in the history): a drop of something they created
    is evidence when the object is gone. Pass every migration file so that later drops and renames are
    seen. One ``objects_exist`` call: a few queries in total, whatever the number of migrations.
    """
    ordered = sorted(migrations, key=lambda m: m.version)
    effects: dict[int, MigrationObjects] = {}
    errors: dict[int, str] = {}
    for migration in ordered:
        result = effects_of(migration, default_schema)
        if isinstance(result, str):
            errors[migration.version] = result
        else:
            effects[migration.version] = result
    targets = [m.version for m in ordered if only is None or m.version in only]
    found = objects_exist(conn, (e.obj for v in targets if v in effects for e in effects[v].expectations))
    timeline = _Timeline(effects)
    results: dict[int, Evidence] = {}
    known = set(applied)

    def known_applied(version: int) -> bool:
        return version in known or (version in results and results[version].status == EvidenceStatus.PRESENT)

    for version in targets:
        if version in errors:
            results[version] = Evidence(version, EvidenceStatus.UNCHECKABLE, error=errors[version])
            continue
        checks = [_judge(e, version, found[e.obj], timeline, known_applied) for e in effects[version].expectations]
        results[version] = _evidence(version, checks, effects[version])
    _excuse_cascades(results, effects, known_applied)
    return results


def _evidence(version: int, checks: list[Check], effects: MigrationObjects) -> Evidence:
    return Evidence(version, _status(checks), present=[c.obj for c in checks if c.verdict == CheckVerdict.CONFIRMS],
                    missing=[c.obj for c in checks if c.verdict == CheckVerdict.CONTRADICTS],
                    uncheckable=list(effects.uncheckable), checks=checks)


def _excuse_cascades(results: dict[int, Evidence], effects: dict[int, MigrationObjects],
                     known_applied: Callable[[int], bool]) -> None:
    """A missing object is no contradiction when a later migration that ran has a ``DROP ... CASCADE``:
    what a cascade removes cannot be listed from the text. Only cascades that evidently ran excuse anything,
    so a migration that never ran is still reported, and nothing here turns absence into proof."""
    cascades = [v for v in sorted(effects) if effects[v].cascade]
    for version, ev in results.items():
        later = next((w for w in cascades if w > version and known_applied(w)), None)
        if later is None or not ev.missing:
            continue
        reason = f"a later DROP ... CASCADE (migration {later}) may have removed it"
        checks = [Check(c.obj, c.expected, c.found, CheckVerdict.INCONCLUSIVE, reason)
                  if c.verdict == CheckVerdict.CONTRADICTS and c.expected else c for c in ev.checks]
        results[version] = _evidence(version, checks, effects[version])
