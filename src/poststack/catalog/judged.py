"""The target's catalog as the replayed states are compared with it: without what is not the migrations' to own.

Left out: poststack's own history schema, other applications' poststack histories on the same database
(``sibling_histories``), another tool's tables that ``db adopt`` left in place (``ignored_objects``) and the
seed's legacy history ``public.schema_migrations`` when it has that layout (recover imports it; it is history,
not schema). Every
judgement (diagnose, recover, mark, adopt) reads the catalog through here, so all four agree on what they see.
"""

from __future__ import annotations

from typing import Any

import psycopg

from poststack.catalog import ignored_objects, sibling_histories
from poststack.catalog.snapshot import Snapshot, snapshot
from poststack.db import legacy


def read(conn: psycopg.Connection[Any], history_schema: str) -> Snapshot:
    siblings = sibling_histories.find(conn, (history_schema,))
    catalog = siblings.strip(snapshot(conn, exclude_schemas=siblings.exclude_schemas(history_schema)))
    left_out = ignored_objects.exclusions(ignored_objects.read(conn, history_schema), catalog)
    if legacy.has_legacy_table(conn):
        left_out |= {("table", legacy.LEGACY_TABLE), ("table", legacy.LEGACY_NAME)}
    return catalog.without(left_out)
