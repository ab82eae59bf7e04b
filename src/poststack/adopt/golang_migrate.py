"""golang-migrate's layout: ``{version}_{title}.up.sql`` and ``{version}_{title}.down.sql``.

Versions are unsigned integers (leading zeros allowed), ordered numerically. golang-migrate has no
per-file transaction flag: its PostgreSQL driver sends each file as one query string, which PostgreSQL runs
as one implicit transaction, so files are carried as transactional unless a statement cannot run in a
transaction block (then the file must have been a single statement, and is marked no-transaction).
"""

from __future__ import annotations

import re
from pathlib import Path

from poststack.adopt.model import Layout, Note, NoteKind, SourceMigration
from poststack.adopt.sourcefiles import duplicate, files_in, read_text, source_dir

NAME = re.compile(r"^(?P<version>\d+)_(?P<title>.*)\.(?P<direction>up|down)\.(?P<ext>[A-Za-z0-9]+)$")


def read_layout(source: Path) -> Layout:
    source = source_dir(source, "golang-migrate")
    layout = Layout("golang-migrate", source)
    ups: dict[int, tuple[str, str, Path]] = {}
    downs: dict[int, Path] = {}
    for path in files_in(source):
        match = NAME.fullmatch(path.name)
        if match is None:
            if path.suffix in (".sql", ".go"):
                layout.notes.append(Note(NoteKind.NOT_CARRIED, path.name,
                                         "not a golang-migrate file name ({version}_{title}.up.sql); not carried"))
            continue
        if match["ext"] != "sql":
            layout.notes.append(Note(NoteKind.NOT_CARRIED, path.name, "not a .sql migration; not carried"))
            continue
        version = int(match["version"])
        if match["direction"] == "up":
            if version in ups:
                raise duplicate("golang-migrate", str(version), ups[version][2].name, path.name)
            ups[version] = (match["version"], match["title"], path)
        else:
            downs[version] = path
    for version in sorted(downs.keys() - ups.keys()):
        layout.notes.append(Note(NoteKind.NOT_CARRIED, downs[version].name, "down file without an up file; "
                                                                            "not carried"))
    for version in sorted(ups):
        written, title, path = ups[version]
        down = downs.get(version)
        layout.migrations.append(SourceMigration(
            str(version), written, title, path.name, read_text(path), read_text(down) if down else None,
            down.name if down else None, single_query=True))
    return layout
