"""diesel's layout: one directory per migration, ``{version}_{name}/up.sql``, ``down.sql``, ``metadata.toml``.

The version is the directory name up to its first ``_`` with dashes removed (``2024-01-01-120000`` is
stored as ``20240101120000``); migrations run in version order. ``run_in_transaction = false`` in
``metadata.toml`` is carried as ``-- poststack:no-transaction`` (on both sides, as diesel applies it).
diesel sends each file as one batch, as one query string.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from poststack.adopt.model import Layout, Note, NoteKind, SourceMigration
from poststack.adopt.sourcefiles import duplicate, files_in, read_text, source_dir
from poststack.errors import MigrationFileError

NAME = re.compile(r"^(?P<version>\d[\d-]*)_(?P<name>.+)$")


def _run_in_transaction(path: Path) -> bool:
    if not path.is_file():
        return True
    try:
        value = tomllib.loads(read_text(path)).get("run_in_transaction", True)
    except tomllib.TOMLDecodeError as exc:
        raise MigrationFileError(f"{path}: not valid TOML ({exc})") from None
    return value is not False


def read_layout(source: Path) -> Layout:
    source = source_dir(source, "diesel")
    layout = Layout("diesel", source)
    found: dict[str, tuple[str, Path]] = {}
    for path in files_in(source):
        match = NAME.fullmatch(path.name) if path.is_dir() else None
        if match is None or not (path / "up.sql").is_file():
            if path.is_dir() or path.suffix == ".sql":
                layout.notes.append(Note(NoteKind.NOT_CARRIED, path.name,
                                         "not a diesel migration ({version}_{name}/up.sql); not carried"))
            continue
        version = match["version"].replace("-", "")
        if version in found:
            raise duplicate("diesel", version, found[version][1].name, path.name)
        found[version] = (match["name"], path)
    for version in sorted(found):
        name, path = found[version]
        down = path / "down.sql"
        in_transaction = _run_in_transaction(path / "metadata.toml")
        layout.migrations.append(SourceMigration(
            version, version, name, f"{path.name}/up.sql", read_text(path / "up.sql"),
            read_text(down) if down.is_file() else None, f"{path.name}/down.sql" if down.is_file() else None,
            no_transaction=not in_transaction, down_no_transaction=not in_transaction, single_query=True))
    return layout
