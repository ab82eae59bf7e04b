"""Per-migration facts for ``migration-info``: the file and its history row merged into one record."""

from __future__ import annotations

from dataclasses import dataclass

from poststack.db.history import HistoryRow, HistoryStatus
from poststack.engine.plan import MigrationState
from poststack.errors import UsageError
from poststack.source.files import Migration


@dataclass(frozen=True)
class MigrationInfo:
    version: int
    version_text: str
    name: str
    description: str | None
    status: str  # applied | pending | running | failed | changed | cosmetic_change | missing_file
    checksum: str | None  # as recorded when applied
    file_checksum: str | None  # of the file on disk now
    applied_at: str | None
    applied_by: str | None
    client: str | None
    execution_ms: int | None
    has_rollback: bool
    no_transaction: bool
    source: str | None
    path: str | None
    # The rollback file against the rollback SQL recorded at apply time: unchanged | changed | cosmetic_change
    # | not_recorded (the file came after the migration) | file_missing (recorded, no file); None when pending
    # or when there is neither.
    rollback_status: str | None = None


def describe(state: MigrationState, version: int | None = None) -> list[MigrationInfo]:
    """One record per version known to the files or the history, in version order."""
    files = state.migrations.by_version()
    rows = {r.version: r for r in state.rows}
    changed = {c.version: c.kind for c in state.changed}
    rollbacks = {c.version: "cosmetic_change" if c.cosmetic else "changed" for c in state.changed_rollbacks}
    versions = sorted(set(files) | set(rows))
    if version is not None:
        if version not in versions:
            raise UsageError(f"migration-info: no migration has version {version}")
        versions = [version]
    infos = []
    for v in versions:
        m, row = files.get(v), rows.get(v)
        if row is None:
            status = "pending"
        elif row.status != HistoryStatus.APPLIED:
            status = row.status
        elif m is None:
            status = "missing_file"
        else:
            status = {"checksum_mismatch": "changed"}.get(changed.get(v, ""), changed.get(v, "applied"))
        named = m if m else row
        assert named is not None  # every version listed comes from a file or a history row
        infos.append(MigrationInfo(
            version=v,
            version_text=named.version_text,
            name=named.name,
            description=m.description if m else (row.description if row else None),
            status=status,
            checksum=row.checksum if row else None,
            file_checksum=m.checksum if m else None,
            applied_at=row.applied_at.isoformat() if row else None,
            applied_by=row.applied_by if row else None,
            client=row.client if row else None,
            execution_ms=row.execution_ms if row else None,
            has_rollback=bool(m.has_rollback) if m else bool(row and row.rollback_sql),
            no_transaction=m.no_transaction if m else bool(row and row.no_transaction),
            source=row.source if row else None,
            path=str(m.path) if m else None,
            rollback_status=_rollback_status(m, row, rollbacks.get(v)),
        ))
    return infos


def _rollback_status(migration: Migration | None, row: HistoryRow | None, changed: str | None) -> str | None:
    if row is None or migration is None:
        return None
    has_file, recorded = migration.rollback is not None, row.rollback_checksum is not None
    if changed:
        return changed
    if has_file and recorded:
        return "unchanged"
    if has_file:
        return "not_recorded"
    return "file_missing" if recorded else None
