"""Discovery of a migrations directory: files on disk -> a MigrationSet. Pure: no database.

Anything that looks like a migration but cannot be one is reported as a FileProblem rather than skipped,
because a silently ignored file is a migration that silently never runs.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from poststack.errors import MigrationFileError, UsageError
from poststack.source.sqltext import Statement, semantic_checksum
from poststack.source.txscan import first_transaction_control

# [0-9], never \d: Python's \d, str.isdigit() and int() accept any Unicode digit (Arabic-Indic, superscripts),
# and a version must be the same number to every tool that reads the file name.
MIGRATION_NAME = re.compile(
    r"^(?P<version>[0-9]+)_(?P<name>[A-Za-z0-9][A-Za-z0-9_\-.]*?)(?P<rollback>\.rollback)?\.sql$")
# ``NNN_name.seed.sql``: data a test loads before migration NNN (see poststack.testing); never a migration.
SEED_NAME = re.compile(r"^(?P<version>[0-9]+)_(?P<name>[A-Za-z0-9][A-Za-z0-9_\-.]*?)\.seed\.sql$")
# \d on purpose here: a name starting with any Unicode digit looks like a migration and is reported, not skipped.
_LOOKS_LIKE = re.compile(r"^\d|\.sql$", re.IGNORECASE)
_VERSION_TEXT = re.compile(r"[0-9]+")
_DIRECTIVE = re.compile(r"^--\s*(?P<key>description|poststack:[a-z-]+)\s*:?\s*(?P<value>.*)$", re.IGNORECASE)
_BOM = b"\xef\xbb\xbf"
MAX_VERSION = 2**63 - 1  # versions are stored as bigint
SEMANTIC_CHECKSUM_MAX_CHARS = 1 << 20  # larger files (data loads) keep only the byte checksum


@dataclass(frozen=True)
class FileProblem:
    """A file that cannot be used as it is; ``code`` is a diagnose issue code."""

    # invalid_filename | duplicate_version | empty_file | bad_encoding | unreadable_file | orphan_rollback | orphan_seed
    code: str
    path: Path
    message: str
    version: int | None = None


def normalize_bytes(data: bytes) -> bytes:
    """Drop a UTF-8 BOM and turn CRLF into LF, so a checkout on another OS has the same checksum."""
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    return data.replace(b"\r\n", b"\n")


def checksum_of(data: bytes) -> str:
    return hashlib.sha256(normalize_bytes(data)).hexdigest()


def semantic_checksum_of(text: str) -> str | None:
    """The semantic checksum of a text, or None above the size limit or when pglast cannot parse it.

    pglast's JSON tree costs about 100x the text in memory: a 50 MB data load would need gigabytes and
    could be killed mid-deploy. Above the limit any edit counts as a change in meaning, which is safe.
    """
    if len(text) > SEMANTIC_CHECKSUM_MAX_CHARS:
        return None
    return semantic_checksum(text)


def same_meaning(recorded_text: str | None, recorded_checksum: str | None, recorded_semantic: str | None,
                 current: SqlFile) -> bool:
    """Whether a file means what the history recorded, when their bytes differ.

    The recorded text is the evidence when it still hashes to the recorded checksum (it is then exactly what
    ran): its semantic checksum is computed now, with the current algorithm. That is also how semantic
    checksums stored by an older poststack (whose parse trees kept some source positions) are treated: they
    are not compared at all while the stored text can be. Only a row whose text cannot be verified (an
    import without SQL) falls back to the stored semantic checksum, where an algorithm difference can only
    make a cosmetic edit look like a change of meaning: the safe direction.
    """
    now = current.semantic_checksum
    if now is None:
        return False
    if recorded_text is not None and recorded_checksum is not None and hashlib.sha256(
            recorded_text.encode()).hexdigest() == recorded_checksum:
        return semantic_checksum_of(recorded_text) == now
    return recorded_semantic is not None and recorded_semantic == now


def unified_diff(stored: str, current: str, stored_name: str, current_name: str) -> list[str]:
    """Lines of a unified diff between a recorded text and a file's, for evidence shown to a user."""
    return [line.rstrip("\n") for line in difflib.unified_diff(
        stored.splitlines(keepends=True), current.splitlines(keepends=True), stored_name, current_name)]
def version_of(text: str | None) -> int | None:
    """The integer of a version text made of ASCII digits, else None (also for '²', '٣' and over bigint)."""
    if text is None or not _VERSION_TEXT.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_VERSION else None


def parse_version(text: str, option: str = "--target") -> int:
    """A version as the user wrote it ('002' or '2'): leading zeros do not matter; ASCII digits only."""
    value = version_of(text.strip())
    if value is None:
        if _VERSION_TEXT.fullmatch(text.strip()):
            raise UsageError(f"{option}: {text!r} is larger than {MAX_VERSION} (the history's bigint)")
        raise UsageError(f"{option}: {text!r} is not a version (expected ASCII digits, e.g. 002)")
    return value


def migration_file_name(version_text: str, name: str, *, rollback: bool = False) -> str | None:
    """The file name a migration of this version and name has, or None when that is not a valid migration
    file name (a history row's '../x' or '/elsewhere' must never become a path)."""
    filename = f"{version_text}_{name}{'.rollback' if rollback else ''}.sql"
    match = MIGRATION_NAME.fullmatch(filename)
    if match is None or (match["version"], match["name"], bool(match["rollback"])) != (version_text, name, rollback):
        return None
    return filename


@dataclass(frozen=True)
class SqlFile:
    """One readable SQL file: normalized text and its checksums."""

    path: Path
    text: str
    checksum: str

    @classmethod
    def read(cls, path: Path) -> SqlFile:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise MigrationFileError(f"{path}: cannot read: {exc.strerror}", problem="unreadable_file") from None
        data = normalize_bytes(raw)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationFileError(
                f"{path}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                problem="bad_encoding") from None
        if "\x00" in text:
            raise MigrationFileError(f"{path}: contains NUL bytes; not a SQL text file", problem="bad_encoding")
        # An empty or comment-only file is accepted as a no-op (real histories keep placeholders, and an empty
        # rollback says "nothing to undo"); validate warns about it, see ``is_no_op``.
        return cls(path, text, hashlib.sha256(data).hexdigest())

    @cached_property
    def is_no_op(self) -> bool:
        """True when the file holds no statement: only whitespace, comments and semicolons."""
        return is_no_op_sql(self.text)

    @cached_property
    def semantic_checksum(self) -> str | None:
        return semantic_checksum_of(self.text)


def is_no_op_sql(text: str) -> bool:
    """Whether ``text`` is only whitespace, ``--`` and (nested) ``/* */`` comments and semicolons.

    A scan that stops at the first other character: exact for this question without a parser (inside a
    comment quotes mean nothing, and a string or statement outside one is the first other character).
    """
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace() or c == ";":
            i += 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            if depth:
                return False  # an unterminated comment is a syntax error, which the server reports
        else:
            return False
    return True


@dataclass(frozen=True)
class Migration:
    """A migration file with its optional rollback. Versions compare as integers; shown as written."""

    version: int
    version_text: str
    name: str
    up: SqlFile
    rollback: SqlFile | None = None

    @property
    def path(self) -> Path:
        return self.up.path

    @property
    def filename(self) -> str:
        return self.up.path.name

    @property
    def sql(self) -> str:
        return self.up.text

    @property
    def checksum(self) -> str:
        return self.up.checksum

    @property
    def semantic_checksum(self) -> str | None:
        return self.up.semantic_checksum

    @cached_property
    def directives(self) -> dict[str, str]:
        return header_directives(self.up.text)

    @property
    def description(self) -> str:
        return self.directives.get("description") or self.name.replace("_", " ")

    @property
    def no_transaction(self) -> bool:
        return "poststack:no-transaction" in self.directives

    @property
    def has_rollback(self) -> bool:
        return self.rollback is not None


def transaction_control(text: str) -> Statement | None:
    """The first top-level transaction-control statement of a text (BEGIN, COMMIT, ROLLBACK [TO], END, ABORT,
    SAVEPOINT, RELEASE, START/PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED), if any, at any file size.

    A COMMIT inside a transactional migration commits half of it and lets the history row be written outside
    any transaction (after a ROLLBACK, for changes that no longer exist): the history would lie. The scan is
    lexical and streaming (poststack.source.txscan), so a data load of many megabytes is checked as cheaply as a
    small file; SAVEPOINT and RELEASE are refused too, so the rule is simply "a transactional file issues no
    transaction statements".
    """
    found = first_transaction_control(text)
    if found is None:
        return None
    return Statement(found.text(text), found.line, "TransactionStmt")


def header_directives(text: str, pattern: re.Pattern[str] | None = None) -> dict[str, str]:
    """Directives in the leading comment lines: ``-- Description: x`` and ``-- poststack:no-transaction``
    (or, with ``pattern``, another tool's ``-- key: value`` header, which ``db adopt`` reads the same way)."""
    pattern = pattern or _DIRECTIVE
    found: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        match = pattern.match(stripped)
        if match:
            found[match["key"].lower()] = match["value"].strip()
    return found


@dataclass
class MigrationSet:
    """All migrations of a directory in version order, plus every problem found while reading it."""

    directory: Path
    migrations: list[Migration] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)
    seeds: dict[int, Path] = field(default_factory=dict)  # version -> its NNN_name.seed.sql, when present

    def __iter__(self) -> Iterator[Migration]:
        return iter(self.migrations)

    def __len__(self) -> int:
        return len(self.migrations)

    def by_version(self) -> dict[int, Migration]:
        return {m.version: m for m in self.migrations}

    def get(self, version: int) -> Migration | None:
        return self.by_version().get(version)

    def raise_for_problems(self) -> None:
        """Commands that change the database refuse to run on a directory with problems (exit 2)."""
        if self.problems:
            first = self.problems[0]
            more = f" (and {len(self.problems) - 1} more problem(s))" if len(self.problems) > 1 else ""
            raise MigrationFileError(first.message + more)


def _not_a_file(path: Path) -> str:
    """Why a path with a migration's name cannot be read as one; never opens it (a FIFO would block)."""
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:
            return "symlink loop; not a migration file"
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symlink loop; not a migration file"
            return f"dangling symlink to {os.readlink(path)}; not a migration file"
    if path.is_dir():
        return "is a directory, not a migration file"
    return "not a regular file (a FIFO, socket or device); not a migration file"


def load_migrations(directory: Path | str) -> MigrationSet:
    """Read a migrations directory. Raises only when the directory itself is unusable."""
    directory = Path(directory)
    if not directory.exists():
        raise MigrationFileError(f"migrations directory {directory} does not exist (--migrations-path)")
    if not directory.is_dir():
        raise MigrationFileError(f"migrations path {directory} is not a directory (--migrations-path)")
    result = MigrationSet(directory)
    ups: dict[int, list[tuple[Path, re.Match[str]]]] = {}
    downs: dict[tuple[int, str], Path] = {}
    seeds: dict[tuple[int, str], Path] = {}
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        raise MigrationFileError(f"migrations directory {directory}: cannot list: {exc.strerror}") from None
    for path in entries:
        if path.name.startswith(".") or not _LOOKS_LIKE.search(path.name):
            continue
        seed = SEED_NAME.fullmatch(path.name)
        if seed and path.is_file():
            seeds[(int(seed["version"]), seed["name"])] = path
            continue
        match = MIGRATION_NAME.fullmatch(path.name)  # fullmatch: '$' alone accepts a trailing newline
        if match and not path.is_file():
            result.problems.append(FileProblem("unreadable_file", path, f"{path}: {_not_a_file(path)}"))
        elif match and int(match["version"]) > MAX_VERSION:
            result.problems.append(FileProblem("invalid_filename", path,
                f"{path}: version {match['version']} is larger than {MAX_VERSION} (the history's bigint)"))
        elif not match:
            result.problems.append(FileProblem("invalid_filename", path,
                f"{path}: not a valid migration file name (expected NNN_name.sql or NNN_name.rollback.sql)"))
        elif match["rollback"]:
            downs[(int(match["version"]), match["name"])] = path
        else:
            ups.setdefault(int(match["version"]), []).append((path, match))
    for version in sorted(ups):
        candidates = ups[version]
        if len(candidates) > 1:
            names = " and ".join(str(p) for p, _ in candidates)
            result.problems.append(FileProblem("duplicate_version", candidates[0][0],
                f"duplicate migration version {version}: {names}", version))
            continue
        path, match = candidates[0]
        rollback_path = downs.pop((version, match["name"]), None)
        try:
            up = SqlFile.read(path)
            rollback = SqlFile.read(rollback_path) if rollback_path else None
        except MigrationFileError as exc:
            result.problems.append(FileProblem(exc.problem, path, str(exc), version))
            continue
        result.migrations.append(Migration(version, match["version"], match["name"], up, rollback))
        seed_path = seeds.pop((version, match["name"]), None)
        if seed_path is not None:
            result.seeds[version] = seed_path
    for (version, _name), path in sorted(downs.items()):
        result.problems.append(FileProblem("orphan_rollback", path,
            f"{path}: rollback file has no migration named {path.name.replace('.rollback', '')}", version))
    for (version, _name), path in sorted(seeds.items()):
        result.problems.append(FileProblem("orphan_seed", path,
            f"{path}: seed file has no migration named {path.name.replace('.seed', '')}", version))
    return result
