"""The catalog side of diagnose: evidence for unrecorded and unfinished migrations, invalid indexes, drift.

The pg_catalog work itself belongs to ``poststack.catalog.object_evidence`` / ``poststack.catalog.presence``
(objects a migration creates, checked in a few set-based queries) and ``poststack.catalog.drift``; this module only
decides which migrations to ask about and turns the answers into issues.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

import psycopg

from poststack.catalog import drift
from poststack.catalog import judged as judged_catalog
from poststack.catalog import object_evidence as evidence
from poststack.catalog import presence as catalog
from poststack.catalog.object_evidence import EvidenceStatus
from poststack.catalog.snapshot import quote_ident
from poststack.db.history import HistoryRow, HistoryStatus
from poststack.integrity import schema_evidence
from poststack.integrity.facts import Facts
from poststack.integrity.issues import Issue
from poststack.source.files import Migration
from poststack.source.object_model import DbObject
from poststack.source.objects import extract
from poststack.source.sqltext import SqlSyntaxError, split_statements


class UnfinishedVerdict(StrEnum):
    """What a crashed or failed non-transactional run left (``unfinished_verdict``), which repair acts on."""

    DONE = "done"  # its whole effect is in the catalog: the row can be marked applied
    NOT_DONE = "not_done"  # none of it is (bar INVALID indexes): the row can go and migrate retry it
    MIXED = "mixed"  # anything else: repair will not guess


def gather(conn: psycopg.Connection[Any], facts: Facts, history_schema: str, *, target_url: str,
           dev_url: str | None = None) -> None:
    """Ask the catalog about unfinished migrations, invalid indexes, drift and the replayed states."""
    state = facts.state
    if state.unfinished:
        # A crashed non-transactional run is judged by the SQL it ran (stored in the history) and its
        # recorded progress; the rest of the history is not compared with states until it is resolved.
        by_version = facts.migrations.by_version()
        for row in state.unfinished:
            by_version[row.version] = row.as_applied(facts.migrations.directory)
        facts.evidence = evidence.assess(conn, list(by_version.values()), only={r.version for r in state.unfinished},
                                         applied=[r.version for r in state.applied])
    facts.invalid_indexes = list(catalog.invalid_indexes(conn))
    if facts.invalid_indexes:
        facts.index_owner = attribute_indexes(facts)
    gather_drift(conn, facts, history_schema)
    judge_states(conn, facts, history_schema, target_url=target_url, dev_url=dev_url)


def judge_states(conn: psycopg.Connection[Any], facts: Facts, history_schema: str, *, target_url: str,
                 dev_url: str | None) -> None:
    """Read the catalog to judge against replayed states, unless the stored snapshot already shows it is
    consistent; ``finish_judgement`` replays and judges once the reading transaction has ended.

    The stored snapshot is the cheap proof: taken by poststack at the recorded version, so an unchanged
    catalog is that version's state and every pending migration is simply pending. Replaying is needed when
    it differs (something was applied or changed by hand) or when none was stored (a history written by
    hand, by ``track_only``, by another tool), and when an object a pending migration creates already
    exists: migrate snapshots the catalog as it is, so a pending file run by hand before a migrate is in the
    snapshot, and the unchanged catalog would hide it. The catalog is read here, in the same snapshot as
    the history; the replay, which can take minutes on a long history, runs after, so no transaction stays
    open on the target meanwhile (it would hold back vacuum on a production server).
    """
    state = facts.state
    if facts.drift_checked and facts.drift is None and (state.unfinished
                                                          or not _pending_work_visible(conn, state.pending)):
        return  # (with an unfinished run the states are not compared anyway: no need to read the pending)
    if state.unfinished:
        for code in schema_evidence.CHECKS:
            facts.skipped.append(code)
            facts.skip_reasons[code] = f"migration {state.unfinished[0].version_text} is unfinished: resume it first"
        return
    if facts.drift_checked and not state.pending:
        return  # nothing pending could explain the difference: it is drift, reported as such
    if not state.applied and not state.pending:
        return
    facts.catalog_to_judge = judged_catalog.read(conn, history_schema)


def _pending_work_visible(conn: psycopg.Connection[Any], pending: list[Migration]) -> bool:
    """Whether an object some pending file creates (read from its text) exists already.

    A trigger for the replayed proof, never evidence itself: a false alarm costs a replay, a miss leaves
    things as the snapshot shows them. ``IF NOT EXISTS`` objects are left out: finding one proves nothing,
    and idempotent histories would otherwise replay on every diagnose. Unparsable text: replay.
    """
    created: list[DbObject] = []
    for migration in pending:
        try:
            created += [e.obj for e in extract(migration.sql).expectations if e.exists and not e.weak]
        except SqlSyntaxError:
            return True
    return bool(created) and any(catalog.objects_exist(conn, created).values())


def finish_judgement(facts: Facts, history_schema: str, *, target_url: str, dev_url: str | None) -> None:
    """Replay (or read the cached states) and judge the catalog ``judge_states`` read."""
    catalog = facts.catalog_to_judge
    if catalog is None:
        return
    facts.catalog_to_judge = None
    result = schema_evidence.judge_catalog(None, facts.state, facts.migrations.directory, history_schema,
                                           target_url, dev_url=dev_url, catalog=catalog)
    if result.skipped:
        for code in schema_evidence.CHECKS:
            facts.skipped.append(code)
            facts.skip_reasons[code] = result.skipped
        return
    facts.schema = result
    j = result.judgement
    if j is not None and (j.proven is not None or j.partial is not None):
        facts.drift = None  # what differs from the stored snapshot is explained by the migrations
    elif facts.drift is not None:
        result.judgement = None  # the stored snapshot is the better reference: reported as schema_drift


def gather_drift(conn: psycopg.Connection[Any], facts: Facts, history_schema: str) -> None:
    """Compare the catalog with the snapshot poststack recorded after its last run, minus its own leftovers.

    Objects a crashed or failed run of poststack left behind (an INVALID index, the relations of an
    unfinished migration) are poststack's work, reported as failed_migration / invalid_index, and the
    objects of an unrecorded migration are reported as missing_tracking / partially_applied; counting them
    as drift too would report one fact twice, and blame poststack's own work on someone else.
    """
    check = drift.check_drift(conn, history_schema, ignore=leftovers(facts))
    if not check.checked:
        facts.skipped.append("schema_drift")  # no snapshot of the current version to compare with
        return
    facts.drift_checked = True
    facts.drift = check.drift


_SNAPSHOT_KIND = {"table": "table", "view": "view", "materialized_view": "materialized view", "index": "index",
                  "sequence": "sequence", "type": "type", "column": "column", "constraint": "constraint",
                  "trigger": "trigger", "policy": "policy", "function": "function", "procedure": "procedure"}
_INSIDE_A_TABLE = frozenset({"column", "constraint", "trigger", "policy"})


def leftovers(facts: Facts) -> set[tuple[str, str]]:
    """(snapshot kind, qualified name) of what other issues already explain: what unfinished runs left
    (invalid indexes, their relations). Unrecorded migrations are judged against replayed states instead."""
    own = {("index", f"{quote_ident(ix.schema)}.{quote_ident(ix.index)}") for ix in facts.invalid_indexes
           if qualified(ix) in facts.index_owner}
    for row in facts.state.unfinished:
        try:
            created = extract(row.sql).created
        except SqlSyntaxError:
            continue
        own |= {_snapshot_key(o) for o in created if o.kind in _SNAPSHOT_KIND}
    return own


def _snapshot_key(obj: Any) -> tuple[str, str]:
    """The snapshot's (kind, name) for an object a migration creates: the same object, named as drift names it."""
    kind, schema = _SNAPSHOT_KIND[obj.kind], quote_ident(obj.schema or "")
    if kind in _INSIDE_A_TABLE and obj.parent:
        return kind, f"{schema}.{quote_ident(obj.parent)}.{quote_ident(obj.name)}"
    if kind in ("function", "procedure"):  # only an exact signature matches; None (any overload) matches none
        return kind, f"{schema}.{quote_ident(obj.name)}({obj.detail})" if obj.detail is not None else ""
    return kind, f"{schema}.{quote_ident(obj.name)}"


def evidence_lines(facts: Facts, version: int) -> list[str]:
    ev = facts.evidence.get(version)
    if ev is None:
        return []
    return [f"catalog: {ev.summary()}", *(f"catalog: {line}" for line in ev.lines)]


def tracking_issues(facts: Facts) -> list[Issue]:
    """missing_tracking / partially_applied / schema_mismatch, from the replayed states (schema_evidence)."""
    return schema_evidence.issues(facts.schema) if facts.schema is not None else []


def qualified(index: Any) -> str:
    """``schema.index`` of a catalog.InvalidIndex."""
    return f"{index.schema}.{index.index}"


def attribute_indexes(facts: Facts) -> dict[str, int]:
    """Which migration created each invalid index: unfinished rows first, then applied, then pending files.

    A cheap text search narrows the candidates so that a 5,000-migration history is not parsed; the parse
    (poststack.source.objects) then confirms that the statement really creates that index in that schema.
    """
    candidates: list[tuple[int, str]] = [(r.version, r.sql) for r in facts.state.unfinished]
    candidates += [(r.version, r.sql) for r in reversed(facts.state.applied)]
    candidates += [(m.version, m.sql) for m in facts.state.pending]
    owners: dict[str, int] = {}
    for index in facts.invalid_indexes:
        pattern = re.compile(rf"\bINDEX\b[^;]*\b{re.escape(index.index)}\b", re.IGNORECASE | re.DOTALL)
        for version, text in candidates:
            if pattern.search(text) and _creates_index(text, index):
                owners[qualified(index)] = version
                break
    return owners


def _creates_index(text: str, index: Any) -> bool:

    try:
        created = extract(text).created
    except SqlSyntaxError:
        return False
    return any(_is_index(obj, index) for obj in created)


def invalid_index_issues(facts: Facts) -> list[Issue]:
    unfinished = {r.version for r in facts.state.unfinished}
    rows = facts.rows
    found = []
    for index in facts.invalid_indexes:
        name = qualified(index)
        version = facts.index_owner.get(name)
        evidence = [f"pg_index: {name} on {index.table} has indisvalid = false"]
        if version is None:
            evidence.append("no migration's SQL creates an index of this name")
            found.append(Issue.of("invalid_index", None, f"index {name} is invalid", evidence))
            continue
        row = rows.get(version)
        who = f"migration {row.version_text} ({row.name})" if row else f"pending migration {version}"
        evidence.append(f"created by {who}" + (f", status {row.status}" if row else ""))
        if version in unfinished:
            assert row is not None  # an unfinished version is one with a history row
            found.append(Issue.of(
                "invalid_index", version, f"index {name} was left invalid by {row.status} {who}", evidence,
                auto_fixable=True, fix="poststack db repair --issue-type invalid_index --force"))
        elif row is None:  # an earlier run of this pending migration failed and its row was cleaned away
            evidence.append("migrate would fail on it: the index name is taken")
            found.append(Issue.of(
                "invalid_index", version, f"index {name} of {who} was left invalid by an earlier run", evidence,
                auto_fixable=True, fix="poststack db repair --issue-type invalid_index --force"))
        else:
            found.append(Issue.of("invalid_index", version, f"index {name} of {who} is invalid", evidence,
                                  fix=f"REINDEX INDEX CONCURRENTLY {name} (fix the data first if it failed "
                                      "on a unique violation)"))
    return found


def drift_issues(facts: Facts) -> list[Issue]:
    if facts.drift is None:
        return []
    drift = facts.drift
    since = f"migration {drift.after_version}" if drift.after_version else "the last run that emptied it"
    evidence = [f"snapshot recorded after {since} at {drift.taken_at.isoformat(timespec='seconds')}",
                *drift.differences]
    return [Issue.of("schema_drift", None, f"{len(drift.differences)} schema change(s) made outside poststack "
                                           f"since {since}", evidence)]


def owned_invalid(facts: Facts, version: int) -> list[Any]:
    """The invalid indexes attributed to a migration."""
    return [ix for ix in facts.invalid_indexes if facts.index_owner.get(qualified(ix)) == version]


def _is_index(obj: Any, index: Any) -> bool:
    return (getattr(obj, "kind", None) == "index" and getattr(obj, "schema", None) == index.schema
            and getattr(obj, "name", None) == index.index)


def unfinished_verdict(facts: Facts, row: HistoryRow, invalid: list[Any]) -> UnfinishedVerdict:
    """What a crashed/failed non-transactional run left: "done", "not_done" or "mixed" (refuse to guess).

    The recorded progress says which statements surely committed: a 'failed' row's first ``statements_done``
    (each statement commits on its own; the failing one left nothing, bar an INVALID index), a 'running'
    row's first ``statements_done`` plus perhaps the next (the crash may have hit between its commit and the
    progress update). The catalog must then confirm the rest:

    * done: every object present, and every statement not known to have committed is one whose effect the
      catalog shows (a killed UPDATE would otherwise pass for done);
    * not done: nothing present except INVALID indexes (to be dropped and rebuilt), and no statement that
      may have committed had an effect the catalog cannot show (a retry would run it twice);
    * anything else is mixed.
    """
    statements = _statements(row.sql)
    if statements is None:
        return UnfinishedVerdict.MIXED
    done = row.statements_done or 0
    maybe_committed = statements[:done + 1] if row.status == HistoryStatus.RUNNING else statements[:done]
    not_known_done = statements[done:]
    ev = facts.evidence.get(row.version)
    status = ev.status if ev is not None else EvidenceStatus.UNCHECKABLE
    if invalid:
        others = [o for o in (ev.present if ev is not None else []) if not any(_is_index(o, ix) for ix in invalid)]
        clean = not others and not _any_uncheckable(maybe_committed)
        return UnfinishedVerdict.NOT_DONE if clean else UnfinishedVerdict.MIXED
    if status == EvidenceStatus.PRESENT or (status == EvidenceStatus.UNCHECKABLE and done >= len(statements)):
        return UnfinishedVerdict.DONE if not _any_uncheckable(not_known_done) else UnfinishedVerdict.MIXED
    if status == EvidenceStatus.ABSENT or (status == EvidenceStatus.UNCHECKABLE and not maybe_committed):
        return UnfinishedVerdict.NOT_DONE if not _any_uncheckable(maybe_committed) else UnfinishedVerdict.MIXED
    return UnfinishedVerdict.MIXED


def _statements(text: str) -> list[str] | None:

    try:
        return [s.text for s in split_statements(text)]
    except SqlSyntaxError:
        return None


def _any_uncheckable(statements: list[str]) -> bool:

    try:
        return any(extract(text).uncheckable for text in statements)
    except SqlSyntaxError:
        return True
