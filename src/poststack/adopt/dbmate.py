"""dbmate's layout: ``{version}_{name}.sql`` holding ``-- migrate:up`` and ``-- migrate:down`` sections.

Either marker may carry ``transaction:false``, carried as ``-- poststack:no-transaction`` on that side.
dbmate orders files by name and sends each section as one query string (one implicit transaction in
PostgreSQL when it has several statements). A section that is absent or empty becomes no rollback file or
a no-op; text before ``-- migrate:up`` is dropped, as dbmate drops it.
"""

from __future__ import annotations

import re
from pathlib import Path

from poststack.adopt.model import Layout, Note, NoteKind, SourceMigration
from poststack.adopt.sourcefiles import duplicate, files_in, read_text, source_dir
from poststack.errors import MigrationFileError

NAME = re.compile(r"^(?P<version>\d+)_(?P<name>.+)\.sql$")
MARKER = re.compile(r"^--\s*migrate:(?P<direction>up|down)(?P<options>[^\n]*)$", re.MULTILINE)


def _no_transaction(options: str) -> bool:
    return "transaction:false" in options.split()


def sections(text: str, where: str) -> tuple[str, bool, str | None, bool]:
    """(up, up no-transaction, down or None, down no-transaction) of one dbmate file."""
    markers = list(MARKER.finditer(text))
    ups = [m for m in markers if m["direction"] == "up"]
    downs = [m for m in markers if m["direction"] == "down"]
    if len(ups) != 1 or len(downs) > 1 or (downs and downs[0].start() < ups[0].start()):
        raise MigrationFileError(f"{where}: a dbmate migration needs one '-- migrate:up' line, then at most one "
                                 "'-- migrate:down' line", problem="invalid_filename")
    up_marker = ups[0]
    down_marker = downs[0] if downs else None
    up = text[up_marker.end():down_marker.start() if down_marker else len(text)]
    down = text[down_marker.end():] if down_marker else None
    return (up.strip("\n") + "\n", _no_transaction(up_marker["options"]),
            down.strip("\n") + "\n" if down is not None else None,
            bool(down_marker and _no_transaction(down_marker["options"])))


def read_layout(source: Path) -> Layout:
    source = source_dir(source, "dbmate")
    layout = Layout("dbmate", source)
    seen: dict[str, str] = {}
    for path in files_in(source):
        match = NAME.fullmatch(path.name)
        if match is None:
            if path.suffix == ".sql":
                layout.notes.append(Note(NoteKind.NOT_CARRIED, path.name,
                                         "not a dbmate file name ({version}_{name}.sql); not carried"))
            continue
        version = match["version"]
        if version in seen:
            raise duplicate("dbmate", version, seen[version], path.name)
        seen[version] = path.name
        up, up_no_tx, down, down_no_tx = sections(read_text(path), str(path))
        layout.migrations.append(SourceMigration(
            version, version, match["name"], path.name, up, down, path.name if down is not None else None,
            no_transaction=up_no_tx, down_no_transaction=down_no_tx, single_query=True))
    return layout
