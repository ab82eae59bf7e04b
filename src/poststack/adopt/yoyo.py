"""yoyo's layout: ``{id}.sql`` and ``{id}.rollback.sql``, with header comments ``-- depends: a b`` and
``-- transactional: false``.

The id is the file name without ``.sql``; migrations run in id order, moved after what they depend on.
``-- transactional: false`` is carried as ``-- poststack:no-transaction`` (yoyo then runs the statements one
by one, as poststack does). Python migrations (``.py``) are reported, not carried.
"""

from __future__ import annotations

import re
from pathlib import Path

from poststack.adopt.model import Layout, Note, NoteKind, SourceMigration
from poststack.adopt.sourcefiles import files_in, read_text, source_dir
from poststack.errors import MigrationFileError
from poststack.source.files import header_directives

_DIRECTIVE = re.compile(r"^--\s*(?P<key>[a-z_-]+)\s*:\s*(?P<value>.*)$", re.IGNORECASE)


def directives(text: str) -> dict[str, str]:
    """The ``-- key: value`` lines of the leading comment block, as yoyo reads them."""
    return header_directives(text, _DIRECTIVE)


def _in_dependency_order(ids: list[str], depends: dict[str, list[str]], source: Path) -> list[str]:
    """Id order, each migration moved after what it depends on (yoyo's order)."""
    ordered: list[str] = []
    placed: set[str] = set()
    visiting: set[str] = set()

    def place(mid: str) -> None:
        if mid in placed:
            return
        if mid in visiting:
            raise MigrationFileError(f"{source / (mid + '.sql')}: circular '-- depends:'")
        visiting.add(mid)
        for dep in depends[mid]:
            if dep not in depends:
                raise MigrationFileError(f"{source / (mid + '.sql')}: depends on {dep!r}, which is not in --source")
            place(dep)
        visiting.discard(mid)
        placed.add(mid)
        ordered.append(mid)

    for mid in ids:
        place(mid)
    return ordered


def read_layout(source: Path) -> Layout:
    source = source_dir(source, "yoyo")
    layout = Layout("yoyo", source)
    texts: dict[str, str] = {}
    for path in files_in(source):
        if path.suffix == ".py":
            layout.notes.append(Note(NoteKind.NOT_CARRIED, path.name,
                                     "Python migration (or hook): poststack runs SQL files only; not carried"))
        elif path.name.endswith(".sql") and not path.name.endswith(".rollback.sql") and path.is_file():
            texts[path.name[:-4]] = read_text(path)
    heads = {mid: directives(text) for mid, text in texts.items()}
    depends = {mid: heads[mid].get("depends", "").split() for mid in texts}
    for path in files_in(source):
        if path.name.endswith(".rollback.sql") and path.name[: -len(".rollback.sql")] not in texts:
            layout.notes.append(Note(NoteKind.NOT_CARRIED, path.name, "rollback without a migration; not carried"))
    for mid in _in_dependency_order(sorted(texts), depends, source):
        rollback = source / f"{mid}.rollback.sql"
        down = read_text(rollback) if rollback.is_file() else None
        no_tx = heads[mid].get("transactional", "").lower() == "false"
        notes: tuple[Note, ...] = ()
        if depends[mid]:
            notes = (Note(NoteKind.INFO, f"{mid}.sql", f"depends on {', '.join(depends[mid])}: kept as the order "
                                                      "of the files, which is all poststack knows"),)
        layout.migrations.append(SourceMigration(
            mid, mid, mid, f"{mid}.sql", texts[mid], down, rollback.name if down is not None else None,
            no_transaction=no_tx,
            down_no_transaction=bool(down and directives(down).get("transactional", "").lower() == "false")
            or no_tx, notes=notes))
    return layout
