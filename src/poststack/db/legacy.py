"""The seed's legacy history table ``public.schema_migrations``, read for adoption by ``recover``.

Its layout: version (text, e.g. '001'), description, applied_at, execution_time_ms, checksum (sha256 of the
file as Python's text mode read it: newlines normalized, a BOM kept), applied_by, and in later seeds
sql_up / sql_down. Only version and checksum are required; missing optional columns read as NULL.
Reading only: the table is left in place for the user to drop once the import is verified.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from poststack.source.files import Migration, SqlFile, version_of

LEGACY_SCHEMA, LEGACY_NAME = "public", "schema_migrations"
LEGACY_TABLE = f"{LEGACY_SCHEMA}.{LEGACY_NAME}"
_REQUIRED = ("version", "checksum")
_OPTIONAL = ("description", "applied_at", "execution_time_ms", "applied_by", "sql_up", "sql_down")


@dataclass(frozen=True)
class LegacyRow:
    """One row of the legacy history, with the migration file of the same version when there is one."""

    version: int | None  # None when the stored version is not a number
    version_text: str
    description: str | None
    applied_at: datetime | None
    execution_ms: int | None
    checksum: str
    applied_by: str | None
    sql_up: str | None
    sql_down: str | None
    file: Migration | None

    def history_overrides(self) -> dict[str, Any]:
        """Columns of the imported history row that keep what the legacy row knew."""
        changes: dict[str, Any] = {"applied_by": self.applied_by or "unknown"}
        if self.applied_at is not None:
            changes["applied_at"] = self.applied_at
        if self.description:
            changes["description"] = self.description
        if self.file is not None and self.sql_up is None and not matches_file(self, self.file):
            # The file changed since it was applied and the applied text is unknown: keep the legacy checksum
            # so that diagnose reports the change instead of the import hiding it.
            changes["checksum"] = self.checksum
            changes["semantic_checksum"] = None
        return changes


def seed_checksum(path: Path) -> str | None:
    """The checksum the seed computed: sha256 of the text as ``Path.read_text`` returns it."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return hashlib.sha256(text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")).hexdigest()


def matches_file(row: LegacyRow, migration: Migration) -> bool:
    """Was the file, as it is now, the one applied? (poststack's checksum or the seed's)."""
    stored = row.checksum.strip().lower()
    return stored in (migration.checksum, seed_checksum(migration.path))


def has_legacy_table(conn: psycopg.Connection[Any]) -> bool:
    """Whether ``public.schema_migrations`` exists with the seed's layout (the columns recover reads)."""
    found = conn.execute(
        "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 "
        "AND NOT a.attisdropped", [f'"{LEGACY_SCHEMA}"."{LEGACY_NAME}"']).fetchall()
    return bool(found) and set(_REQUIRED) <= {r[0] for r in found}


def legacy_rows(conn: psycopg.Connection[Any], files: dict[int, Migration]) -> list[LegacyRow] | None:
    """The legacy rows in version order, or None when there is no table of that layout."""
    found = conn.execute(
        "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 "
        "AND NOT a.attisdropped", [f'"{LEGACY_SCHEMA}"."{LEGACY_NAME}"']).fetchall()
    columns = {r[0] for r in found}
    if not columns or not set(_REQUIRED) <= columns:
        return None
    select = sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(c)) if c in ("version", "checksum")
        else sql.Identifier(c) if c in columns else sql.NULL
        for c in (*_REQUIRED, *_OPTIONAL))
    query = sql.SQL("SELECT {} FROM {}.{}").format(select, sql.Identifier(LEGACY_SCHEMA),
                                                    sql.Identifier(LEGACY_NAME))
    rows = []
    for version_text, checksum, description, applied_at, ms, applied_by, sql_up, sql_down in conn.execute(query):
        text = (version_text or "").strip()
        version = version_of(text)  # ASCII digits only: int("²") raises, "٤" would pass as 4
        rows.append(LegacyRow(version, text, description, applied_at, ms, checksum or "", applied_by, sql_up,
                              sql_down, files.get(version) if version is not None else None))
    return sorted(rows, key=lambda r: (r.version is None, r.version or 0, r.version_text))


def _slug(text: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text or "").strip("_").lower()[:60] or "imported"


def legacy_migration(row: LegacyRow, directory: Path) -> Migration:
    """The migration as it was applied: the file when it is unchanged (or nothing better is known), else
    the SQL the legacy table stored."""
    assert row.version is not None
    if row.file is not None and (row.sql_up is None or matches_file(row, row.file)):
        return row.file
    name = row.file.name if row.file else _slug(row.description)
    path = row.file.path if row.file else directory / f"{row.version_text}_{name}.sql"
    text = row.sql_up or f"-- imported from {LEGACY_TABLE}: the SQL of version {row.version_text} is unknown\n"
    if row.file is not None:
        rollback = row.file.rollback
    else:
        rollback = (SqlFile(path.with_name(f"{row.version_text}_{name}.rollback.sql"), row.sql_down,
                            hashlib.sha256(row.sql_down.encode()).hexdigest()) if row.sql_down else None)
    return Migration(row.version, row.version_text, name, SqlFile(path, text, row.checksum.strip().lower()),
                     rollback)


_LEGACY_DUPLICATES = """
SELECT ctid::text, version::text, data FROM (
  SELECT ctid, version, row_to_json(s)::text AS data,
         row_number() OVER (PARTITION BY version ORDER BY {order}) AS n
  FROM public.schema_migrations s) t
WHERE n > 1 ORDER BY version, n
"""


def legacy_duplicates(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str]]:
    """(ctid, version, row as JSON) of every duplicate row in the legacy table; [] if it does not exist."""
    columns = {name for (name,) in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        [LEGACY_TABLE]).fetchall()}
    if "version" not in columns:
        return []
    order = "applied_at NULLS LAST, ctid" if "applied_at" in columns else "ctid"  # applied_at is optional
    return [tuple(r) for r in conn.execute(_LEGACY_DUPLICATES.format(order=order)).fetchall()]
