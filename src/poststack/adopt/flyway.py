"""Flyway's layout: ``V1.2__name.sql`` (versioned), ``U1.2__name.sql`` (undo), ``R__name.sql`` (repeatable).

Versions use ``.`` or ``_`` between numeric parts and compare part by part (``1.2 < 1.10``; ``1 == 1.0``),
which is the order the files are returned in. A ``V1__x.sql.conf`` with ``executeInTransaction=false`` is
carried as ``-- poststack:no-transaction``. Not carried, and reported: repeatable ``R__`` migrations (they
re-run whenever their checksum changes, which poststack has no notion of), baseline ``B`` migrations, Java
and other code migrations, SQL callbacks (``beforeMigrate.sql``...), undo files without a versioned one, and
``${placeholders}``, which Flyway replaces and poststack would run literally.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

from poststack.adopt.model import Layout, Note, NoteKind, SourceMigration
from poststack.adopt.sourcefiles import duplicate, read_text, source_dir

NAME = re.compile(r"^(?P<prefix>[VUB])(?P<version>\d+(?:[._]\d+)*)__(?P<desc>.+)\.sql$")
REPEATABLE = re.compile(r"^R__(?P<desc>.+)\.sql$")
CODE = (".java", ".class", ".jar", ".kt", ".scala", ".groovy")
_PLACEHOLDER = re.compile(r"\$\{[^}]+\}")


def version_key(version: str) -> str:
    """Flyway's version identity: numeric parts, trailing zero parts dropped ('1_0' and '1' are one)."""
    parts = [int(p) for p in re.split(r"[._]", version)]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return ".".join(map(str, parts))


def checksum(text: str) -> int:
    """Flyway's checksum of a script: CRC32 of its lines without their line breaks (as Java's readLine splits
    them: LF, CRLF or CR), UTF-8, BOM dropped; stored as a signed 32-bit integer."""
    lines = re.split(r"\r\n|\r|\n", text.removeprefix("\ufeff"))
    if lines and lines[-1] == "":
        lines.pop()  # a final line break ends the last line; it does not start another
    value = zlib.crc32(b"".join(line.encode() for line in lines))
    return value - (1 << 32) if value >= 1 << 31 else value


def _order(key: str) -> tuple[int, ...]:
    return tuple(int(p) for p in key.split("."))


def _no_transaction(conf: Path) -> bool:
    if not conf.is_file():
        return False
    for line in read_text(conf).splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "executeInTransaction" and value.strip().lower() == "false":
            return True
    return False


def read_layout(source: Path) -> Layout:
    source = source_dir(source, "Flyway")
    layout = Layout("flyway", source)
    ups: dict[str, tuple[str, str, Path]] = {}
    undos: dict[str, Path] = {}
    for path in sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = str(path.relative_to(source))
        match = NAME.fullmatch(path.name)
        if path.name.endswith(".sql.conf"):
            continue  # read with its migration
        if match and match["prefix"] == "V":
            key = version_key(match["version"])
            if key in ups:
                raise duplicate("flyway", key, str(ups[key][2].relative_to(source)), rel)
            ups[key] = (match["version"].replace("_", "."), match["desc"], path)
        elif match and match["prefix"] == "U":
            undos[version_key(match["version"])] = path
        elif match:
            layout.notes.append(Note(NoteKind.NOT_CARRIED, rel, "baseline migration (B prefix): poststack has no "
                                                              "baseline scripts; not carried"))
        elif REPEATABLE.fullmatch(path.name):
            layout.notes.append(Note(NoteKind.NOT_CARRIED, rel, "repeatable migration (R__): re-run on every "
                                     "change in Flyway, which poststack does not do; not carried"))
        elif path.suffix in CODE:
            layout.notes.append(Note(NoteKind.NOT_CARRIED, rel, "code migration: poststack runs SQL files only; "
                                                              "not carried"))
        elif path.suffix == ".sql":
            layout.notes.append(Note(NoteKind.NOT_CARRIED, rel, "not a Flyway migration name (a callback such as "
                                     "beforeMigrate.sql, or a misnamed file); not carried"))
    for key in sorted(undos.keys() - ups.keys(), key=_order):
        layout.notes.append(Note(NoteKind.NOT_CARRIED, str(undos[key].relative_to(source)),
                                 f"undo migration without a versioned migration {key}; not carried"))
    for key in sorted(ups, key=_order):
        version, desc, path = ups[key]
        rel = str(path.relative_to(source))
        up = read_text(path)
        undo = undos.get(key)
        notes = tuple(Note(NoteKind.NEEDS_EDIT, str(p.relative_to(source)),
                           "contains ${...}: Flyway placeholders are not replaced by poststack")
                      for p in (path, undo) if p is not None and _PLACEHOLDER.search(read_text(p)))
        no_tx = _no_transaction(path.with_name(path.name + ".conf"))
        layout.migrations.append(SourceMigration(
            key, version, desc, rel, up, read_text(undo) if undo else None,
            str(undo.relative_to(source)) if undo else None, no_transaction=no_tx,
            down_no_transaction=bool(undo and _no_transaction(undo.with_name(undo.name + ".conf"))),
            notes=notes))
    return layout
