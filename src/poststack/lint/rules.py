"""The lint rules: stable ids, default severity, why each is a hazard, and the safer way to do the same thing.

Rule ids are part of the contract (``-- poststack:lint-ignore RULE``, ``--enable RULE``, SARIF ``ruleId``):
a rule may be reworded, never renamed. ``default=False`` marks opt-in rules (style conventions a team may
not share); they are turned on with ``--enable RULE`` or ``lint_enable = ["RULE"]`` in ``[tool.poststack]``.

``category`` decides where a rule applies: ``locking`` and ``failure`` rules also run on rollback files
(a rollback runs in production too, and a CONCURRENTLY in a transactional rollback fails exactly when it is
needed); ``compatibility``, ``destructive`` and ``style`` rules do not (a rollback exists to drop and
restore things). The statement checks live in ``locking``, ``changes`` and ``style``.
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("error", "warning", "note")
CATEGORIES = ("locking", "failure", "compatibility", "destructive", "style", "meta")
ROLLBACK_CATEGORIES = frozenset({"locking", "failure", "meta"})


@dataclass(frozen=True)
class Rule:
    id: str
    title: str  # what happens, in one line
    alternative: str  # the safer way
    severity: str = "warning"  # error: the migration will fail or corrupt; warning: locks or breaks; note: style
    category: str = "locking"
    default: bool = True  # False: opt-in
    rationale: str = ""  # why, for docs/lint.md and SARIF help


def _r(id: str, title: str, alternative: str, rationale: str, *, severity: str = "warning",
       category: str = "locking", default: bool = True) -> Rule:
    return Rule(id, title, alternative, severity, category, default, rationale)


RULES: dict[str, Rule] = {r.id: r for r in (
    # -- locks and rewrites ----------------------------------------------------------------------------
    _r("index-not-concurrent", "CREATE INDEX without CONCURRENTLY on an existing table blocks its writes",
       "CREATE INDEX CONCURRENTLY in a migration of its own marked '-- poststack:no-transaction'",
       "A plain index build holds a SHARE lock for the whole build: every INSERT, UPDATE and DELETE waits."),
    _r("concurrently-in-transaction", "CONCURRENTLY cannot run inside a transaction block",
       "put the statement in a migration of its own with the header '-- poststack:no-transaction'",
       "PostgreSQL refuses CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY and DETACH PARTITION "
       "CONCURRENTLY in a transaction block; the migration (or rollback) fails when it runs.",
       severity="error", category="failure"),
    _r("volatile-default", "adding this column rewrites the whole table under an ACCESS EXCLUSIVE lock",
       "add the column without a default (or with a constant one), backfill in batches, then SET DEFAULT",
       "Since PostgreSQL 11 a constant default is stored once; a volatile default (random(), "
       "gen_random_uuid(), nextval() of serial, identity, stored generated columns) is computed per row."),
    _r("set-not-null", "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock",
       "ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT in a later migration, "
       "then SET NOT NULL (PostgreSQL 12+ skips the scan) and drop the check",
       "Reads and writes wait while every row is checked; a validated CHECK (col IS NOT NULL) lets "
       "PostgreSQL skip the scan."),
    _r("constraint-not-valid", "adding a validated constraint scans the table while blocking writes",
       "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in a later migration (weaker lock)",
       "A foreign key or CHECK added without NOT VALID checks every row under a lock that blocks writes "
       "(a foreign key also locks the referenced table); VALIDATE CONSTRAINT only takes SHARE UPDATE EXCLUSIVE."),
    _r("constraint-builds-index", "ADD PRIMARY KEY / UNIQUE / EXCLUDE builds an index under ACCESS EXCLUSIVE",
       "CREATE UNIQUE INDEX CONCURRENTLY (no-transaction migration), then ADD CONSTRAINT ... "
       "PRIMARY KEY/UNIQUE USING INDEX",
       "The constraint's index is built while reads and writes wait; USING INDEX attaches an index built "
       "concurrently in a moment."),
    _r("column-type-change", "changing a column's type usually rewrites the table and breaks running code",
       "add a new column, backfill it, switch the application, then drop the old column",
       "Most type changes rewrite the table and its indexes under ACCESS EXCLUSIVE ('db verify' shows "
       "whether this one does), and clients reading the old type may break."),
    _r("missing-lock-timeout", "a strong lock request waits forever and queues every query behind it",
       "start the migration with SET lock_timeout = '5s' (and retry on failure)",
       "A migration waiting for its lock behind one long transaction makes every later query on the table "
       "wait behind the migration: one slow report becomes an outage."),
    _r("missing-statement-timeout", "a statement that holds a strong lock has no time limit",
       "SET statement_timeout = '...' before the first strong lock (or per statement)",
       "Without a cap, a strong lock is held as long as the statement runs. Opt-in: a cap also kills "
       "legitimate long builds, so choose it per team.", default=False),
    _r("drop-index-not-concurrent", "DROP INDEX without CONCURRENTLY locks the table against reads and writes",
       "DROP INDEX CONCURRENTLY in a migration of its own marked '-- poststack:no-transaction'",
       "A plain DROP INDEX takes ACCESS EXCLUSIVE on the index's table."),
    _r("reindex-not-concurrent", "REINDEX without CONCURRENTLY blocks writes (and reads that use the index)",
       "REINDEX ... CONCURRENTLY (PostgreSQL 12+) in a no-transaction migration",
       "REINDEX locks out writes on the table and takes ACCESS EXCLUSIVE on the index being rebuilt."),
    _r("detach-partition-not-concurrent", "DETACH PARTITION takes ACCESS EXCLUSIVE on the partitioned table",
       "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY (PostgreSQL 14+) in a no-transaction migration",
       "Every query on the parent table waits while the partition is detached."),
    _r("refresh-matview-not-concurrent", "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks its readers",
       "REFRESH MATERIALIZED VIEW CONCURRENTLY (needs a unique index on the view)",
       "A plain refresh takes ACCESS EXCLUSIVE on the view for the whole query."),
    _r("rewrites-table", "the statement rewrites the whole table under ACCESS EXCLUSIVE",
       "avoid in migrations: use pg_repack / pg_squeeze, or a new table filled in batches",
       "VACUUM FULL, CLUSTER, SET TABLESPACE, SET LOGGED/UNLOGGED and SET ACCESS METHOD copy every row "
       "while reads and writes wait."),
    _r("write-without-where", "UPDATE or DELETE of every row locks them all until the migration commits",
       "backfill in batches (WHERE id BETWEEN ...) outside the schema migration, or in a no-transaction one",
       "Every row stays locked (and every row version doubled) for the whole migration transaction."),
    _r("domain-constraint", "a constraint on a domain checks every column of that type, and cannot be "
       "changed online later", "use a CHECK constraint on the table columns (NOT VALID, then VALIDATE)",
       "ALTER DOMAIN ... ADD CONSTRAINT scans every table using the domain under lock; a CREATE DOMAIN "
       "with CHECK ties every later change of the rule to such a scan."),
    # -- migrations that fail ----------------------------------------------------------------------------
    _r("not-null-without-default", "adding a NOT NULL column without a default fails on a non-empty table",
       "add the column nullable (or with a constant DEFAULT), backfill, then SET NOT NULL the safe way",
       "Existing rows would get NULL: the ALTER fails as soon as the table has a row.",
       category="failure"),
    _r("enum-value-used-in-transaction", "a value added by ALTER TYPE ... ADD VALUE is used in the same "
       "transaction", "use the new value in a later migration",
       "PostgreSQL refuses to use an enum value before the transaction that added it commits "
       "('unsafe use of new value').", severity="error", category="failure"),
    _r("transaction-nesting", "transaction control inside a migration poststack already wraps in a transaction",
       "remove BEGIN/COMMIT (poststack runs each migration in one transaction), or mark the file "
       "'-- poststack:no-transaction' and close every transaction it opens",
       "A COMMIT inside a transactional migration commits half of it; a BEGIN left open in a "
       "no-transaction file keeps its locks until the session ends.", severity="error", category="failure"),
    _r("identifier-too-long", "an identifier over 63 bytes is silently truncated",
       "use a name of at most 63 bytes",
       "PostgreSQL cuts names to 63 bytes (NAMEDATALEN-1): two long names can collide, and the name in the "
       "catalog differs from the one in the file.", category="failure"),
    # -- running code breaks ------------------------------------------------------------------------------
    _r("rename-column", "renaming a column breaks every running query that uses the old name",
       "add the new column (or a view), deploy code that uses it, and drop the old one later",
       "The application version still running during the deploy uses the old name.",
       category="compatibility"),
    _r("rename-table", "renaming a table breaks every running query that uses the old name",
       "create the new table or a view under the new name, switch the application, then drop the old",
       "The application version still running during the deploy uses the old name.",
       category="compatibility"),
    _r("drop-not-null", "dropping NOT NULL lets NULLs reach code that assumes there are none",
       "make sure every reader handles NULL before the migration runs",
       "Readers of the column (reports, other services) may not expect NULL.", category="compatibility"),
    # -- data is lost -------------------------------------------------------------------------------------
    _r("drop-column", "dropping a column breaks running code that still reads or writes it",
       "stop using the column in a release first, then drop it in a later migration",
       "Running code that names the column fails, and the data is gone.", category="destructive"),
    _r("drop-table", "dropping a table breaks running code that still uses it, and loses its data",
       "stop using the table in a release first, then drop it in a later migration",
       "Running code that names the table fails, and the data is gone.", category="destructive"),
    _r("truncate-cascade", "TRUNCATE ... CASCADE also empties every table that references this one",
       "TRUNCATE the tables you mean by name, or DELETE in batches",
       "CASCADE follows foreign keys to tables the migration does not name, under ACCESS EXCLUSIVE.",
       category="destructive"),
    _r("drop-schema", "dropping a schema drops everything in it", "drop the objects you mean by name",
       "With CASCADE, every table, view and function in the schema goes; without, it fails once it has any.",
       category="destructive"),
    _r("drop-database", "DROP DATABASE in a migration", "drop databases by hand, never from a migration",
       "It cannot run in a transaction and destroys a whole database.", severity="error",
       category="destructive"),
    _r("drop-sequence", "dropping a sequence breaks every default and insert that uses it",
       "drop the columns or defaults that use it first, in a later release",
       "Inserts that call nextval() on it fail.", category="destructive"),
    _r("drop-extension", "dropping an extension drops its types, functions and operators",
       "drop what uses the extension first; keep the extension if unsure",
       "Columns of the extension's types and indexes using its operators depend on it.",
       category="destructive"),
    # -- opt-in conventions -------------------------------------------------------------------------------
    _r("char-type", "char(n) pads with spaces and is no faster than text",
       "text (with a CHECK on length if needed)", "char(n) compares and stores with blank padding.",
       severity="note", category="style", default=False),
    _r("varchar-length", "varchar(n): changing n later takes an ACCESS EXCLUSIVE lock",
       "text with a CHECK (length(col) <= n) NOT VALID constraint you can replace online",
       "Raising the limit is a catalog change under ACCESS EXCLUSIVE; lowering it rewrites the table.",
       severity="note", category="style", default=False),
    _r("timestamp-without-time-zone", "timestamp without time zone loses the offset of the values stored",
       "timestamptz", "Values are interpreted in whatever TimeZone the session has.",
       severity="note", category="style", default=False),
    _r("serial-column", "serial columns have a separately owned sequence with its own permissions",
       "GENERATED BY DEFAULT AS IDENTITY", "Identity columns keep the sequence part of the column.",
       severity="note", category="style", default=False),
    _r("int-primary-key", "an int or smallint key runs out (2^31 rows); widening it later rewrites the table",
       "bigint (bigint GENERATED ... AS IDENTITY)", "Changing a key's type later rewrites the table and "
       "every foreign key pointing at it.", severity="note", category="style", default=False),
    _r("unqualified-name", "the object's schema depends on the search_path of the session that runs it",
       "qualify names with their schema (app.users)",
       "A different search_path puts the object in another schema.", severity="note", category="style",
       default=False),
    # -- about lint itself --------------------------------------------------------------------------------
    _r("syntax-error", "the file does not parse", "fix the SQL", "PostgreSQL's parser rejects the file.",
       severity="error", category="meta"),
    _r("unknown-rule", "a lint-ignore comment names a rule that does not exist",
       "use a rule id listed by 'poststack db lint --rules'",
       "A typo in lint-ignore must not silently silence nothing.", severity="error", category="meta"),
)}

DEFAULT_RULES = frozenset(r.id for r in RULES.values() if r.default)


@dataclass(frozen=True)
class Hit:
    """A rule firing on one statement, and the existing table it touches (for ranking by size)."""

    rule: str
    line: int
    message: str
    table: str | None = None
