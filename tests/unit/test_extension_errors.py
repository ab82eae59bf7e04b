"""Recognising "the server lacks this extension" in a failed migration's error (no database)."""

import pytest

from poststack.db.extensions import missing_extension
from poststack.errors import MigrationFailed


@pytest.mark.parametrize(("message", "sqlstate", "expected"), [
    ('m/002_x.sql: migration 002 failed: extension "pgcrypto" is not available', "0A000", "pgcrypto"),
    ('m/002_x.sql: migration 002 failed: extension "uuid-ossp" is not available (hint: The extension must '
     'first be installed on the system where PostgreSQL is running.)', "0A000", "uuid-ossp"),
    ('m/002_x.sql: migration 002 failed: could not open extension control file '
     '"/usr/share/postgresql/13/extension/postgis.control": No such file or directory', "58P01", "postgis"),
    ('m/002_x.sql: migration 002 failed: extension "pgcrypto" is not available', "42601", None),
    ('m/002_x.sql: migration 002 failed: relation "t" does not exist', "42P01", None),
    ('m/002_x.sql: migration 002 failed: could not access file "$libdir/pgcrypto"', "58P01", None),
])
def test_missing_extension(message, sqlstate, expected):
    assert missing_extension(MigrationFailed(message, sqlstate=sqlstate)) == expected
