"""Reading another tool's files: text as poststack reads its own (BOM dropped, CRLF -> LF), errors as exit 2."""

from __future__ import annotations

from pathlib import Path

from poststack.errors import MigrationFileError
from poststack.source.files import normalize_bytes


def read_text(path: Path) -> str:
    """The file's text; a file that cannot be read or decoded is bad input naming the file (exit 2)."""
    try:
        data = normalize_bytes(path.read_bytes())
    except OSError as exc:
        raise MigrationFileError(f"{path}: cannot read: {exc.strerror}", problem="unreadable_file") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MigrationFileError(f"{path}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                                 problem="bad_encoding") from None


def source_dir(path: Path, tool: str) -> Path:
    """The --source directory, checked: it must exist and be a directory."""
    if not path.exists():
        raise MigrationFileError(f"--source {path}: no such directory (the {tool} migrations)")
    if not path.is_dir():
        raise MigrationFileError(f"--source {path}: not a directory (the {tool} migrations)")
    return path


def files_in(directory: Path) -> list[Path]:
    """The directory's entries in name order, hidden ones left out."""
    try:
        return sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise MigrationFileError(f"--source {directory}: cannot list: {exc.strerror}") from None


def duplicate(tool: str, key: str, first: str, second: str) -> MigrationFileError:
    return MigrationFileError(f"{tool}: two migrations with version {key}: {first} and {second}",
                              problem="duplicate_version")
