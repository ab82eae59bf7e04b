"""Scenario data shipped in the package (``poststack/testing/scenarios/<name>/``) and migration directories
written from a dict.

Scenarios are plain migration directories, so a user can copy one, read it, or point the CLI at it. A
scenario may carry variants of some of its files in a subdirectory (``edits/``, ``cosmetic_edits/``) that
``apply_edits`` copies over the originals: the directory scanner ignores subdirectories, so a variant is
never mistaken for a migration.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from poststack.errors import UsageError


@dataclass(frozen=True)
class Scenario:
    """What a scenario is for; the files themselves live in the package."""

    name: str
    description: str
    variants: tuple[str, ...] = ()


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("basic", "schema app with users and posts: keys, a foreign key, unique and check constraints, "
                      "indexes, a later added column; every migration has a rollback"),
    Scenario("complex", "schema shop: an enum, tables, a PL/pgSQL trigger function (dollar-quoted body with "
                        "semicolons), a trigger, a SQL function, a view and a materialized view; all "
                        "with rollbacks"),
    Scenario("unified_project", "a project whose first migrations were applied by another tool: apply "
                                "001-002 with db_helper.apply_untracked() to reproduce it, leaving 003-004 "
                                "pending"),
    Scenario("checksum_mismatch", "three migrations; after migrating, apply_edits(dir) changes the meaning of "
                                  "002, apply_edits(dir, 'cosmetic_edits') only its comments and whitespace",
             ("edits", "cosmetic_edits")),
    Scenario("missing_rollback", "three migrations of which 002 has no rollback file"),
    Scenario("non_transactional", "002 creates indexes with CREATE INDEX CONCURRENTLY "
                                  "(-- poststack:no-transaction) and its rollback drops them concurrently"),
)}


def _root() -> Traversable:
    return resources.files("poststack.testing") / "scenarios"


def scenario_names() -> list[str]:
    """The scenarios shipped with this installation (what is on disk, not just what is documented)."""
    return sorted(entry.name for entry in _root().iterdir() if entry.is_dir())


def _copy_tree(source: Traversable, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.is_dir():
            _copy_tree(entry, target / entry.name)
        elif entry.name.endswith(".sql"):
            (target / entry.name).write_bytes(entry.read_bytes())


def scenario(name: str, directory: str | Path | None = None) -> Path:
    """Copy scenario ``name`` into ``directory`` (a new temporary directory if None) and return the path.

    A copy, never the installed files: tests edit, delete and add migration files.
    """
    source = _root() / name
    if not source.is_dir():
        raise UsageError(f"unknown scenario {name!r} (available: {', '.join(scenario_names())})")
    target = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix=f"poststack-{name}-"))
    if target.exists() and any(p.suffix == ".sql" for p in target.iterdir()):
        raise UsageError(f"{target}: already holds migration files; copy scenario {name!r} into an empty "
                         "directory")
    _copy_tree(source, target)
    return target


def apply_edits(directory: str | Path, variant: str = "edits") -> list[Path]:
    """Overwrite migrations in ``directory`` with the files of its ``variant`` subdirectory; return them."""
    directory = Path(directory)
    source = directory / variant
    if not source.is_dir():
        raise UsageError(f"{directory}: no {variant}/ subdirectory to apply")
    changed = []
    for edited in sorted(source.glob("*.sql")):
        target = directory / edited.name
        target.write_bytes(edited.read_bytes())
        changed.append(target)
    return changed


def write_migrations(directory: str | Path, files: Mapping[str, str | bytes]) -> Path:
    """Write ``{"001_x.sql": "...", ...}`` into ``directory`` (created if needed); bytes are written as-is.

    Names may contain a subdirectory (``"edits/001_x.sql"``) but may not escape ``directory``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    root = directory.resolve()
    for name, content in files.items():
        path = (directory / name).resolve()
        if root not in path.parents:
            raise UsageError(f"make_migrations: {name!r} is outside the migrations directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return directory
