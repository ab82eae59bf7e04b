"""The fingerprint digests every catalog the snapshot reads, so extending the snapshot query without extending
the fingerprint fails here instead of hiding drift behind an unchanged digest."""

import re

from poststack.catalog.fingerprint import STATEMENT
from poststack.catalog.snapshot_queries import snapshot_query

# Read by the deparse functions the snapshot calls rather than named in its text.
THROUGH_DEPARSE = {"pg_rewrite", "pg_operator", "pg_opclass", "pg_collation", "pg_ts_config", "pg_ts_dict",
                   "pg_roles"}
# Read by the snapshot, but a row of theirs never changes without a digested row changing too.
CHANGE_WITH_ANOTHER = {
    "pg_aggregate": "CREATE OR REPLACE AGGREGATE rewrites the pg_proc row; ALTER AGGREGATE only touches pg_proc",
    "pg_range": "fixed when the range type is created, with its pg_type rows",
    "pg_am": "an access method cannot be renamed, nor dropped while a relation uses it",
}


def read_by(text: str) -> set[str]:
    named = re.findall(r"\b(?:FROM|JOIN)\s+(pg_[a-z_]+)\b(?!\s*\()", text)  # a table, not a function
    cast = re.findall(r"'(pg_[a-z_]+)'::regclass", text)
    return set(named) | set(cast)


def digested() -> set[str]:
    return {label.split(":")[0] for label in re.findall(r"SELECT '(pg_[a-z_:]+)'", STATEMENT)}


def test_every_catalog_the_snapshot_reads_is_digested():
    for version in (130000, 180000):
        assert read_by(snapshot_query(version)) - digested() - CHANGE_WITH_ANOTHER.keys() == set()
    assert THROUGH_DEPARSE - digested() == set()
