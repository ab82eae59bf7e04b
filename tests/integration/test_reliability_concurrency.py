"""Deployers (sixteen under ``slow``) racing on one database end exactly where one deployer alone would.

Each racer is the real ``poststack db migrate`` process. The migrations include non-transactional ones
(``CREATE INDEX CONCURRENTLY``, which waits for every older transaction: a blocking lock wait by another
racer would deadlock it) and every migration writes a ledger row, so "applied once" is counted, not inferred.
The 8-process race in test_concurrency_and_connections.py covers transactional files only.
"""

from __future__ import annotations

import pytest
from reliability_support import exit_summary, history, observe, spawn

from poststack.catalog.snapshot import snapshot
from poststack.testing import write_migrations

pytestmark = [pytest.mark.integration, pytest.mark.database]



def race_files() -> dict[str, str]:
    files = {"001_ledger.sql": "CREATE TABLE ledger (version int NOT NULL, at timestamptz DEFAULT clock_timestamp());\n"
                               "INSERT INTO ledger (version) VALUES (1);\n"}
    for v in range(2, 13):
        if v % 4 == 0:  # 004, 008, 012: built concurrently, outside a transaction
            files[f"{v:03d}_index_t{v - 1}.sql"] = (
                "-- poststack:no-transaction\n"
                f"CREATE INDEX CONCURRENTLY t{v - 1}_n_idx ON t{v - 1} (n);\n"
                f"CREATE INDEX CONCURRENTLY t{v - 1}_n_desc_idx ON t{v - 1} (n DESC);\n"
                f"INSERT INTO ledger (version) VALUES ({v});\n")
        else:
            files[f"{v:03d}_t{v}.sql"] = (f"CREATE TABLE t{v} (n int PRIMARY KEY);\n"
                                          f"INSERT INTO t{v} SELECT generate_series(1, 2000);\n"
                                          f"INSERT INTO ledger (version) VALUES ({v});\n")
    return files


def ledger(url: str) -> dict[int, int]:
    with observe(url) as conn:
        return dict(conn.execute("SELECT version, count(*) FROM ledger GROUP BY version").fetchall())


def schema_of(url: str) -> object:
    with observe(url) as conn:
        return snapshot(conn, exclude_schemas=("poststack",))


@pytest.mark.parametrize("racers", [pytest.param(16, marks=pytest.mark.slow), 4])
def test_concurrent_migrators_match_a_serial_run(racers, tmp_path, poststack_databases):
    """16 racers under ``slow``; 4 in the default run keep the concurrent-index and serial-equality checks."""
    directory = write_migrations(tmp_path / "migrations", race_files())
    with poststack_databases.scratch("race") as raced, poststack_databases.scratch("serial") as serial:
        outcomes = exit_summary([spawn(raced, directory, "db", "migrate") for _ in range(racers)])
        [(serial_code, _, serial_err)] = exit_summary([spawn(serial, directory, "db", "migrate")])

        assert serial_code == 0, serial_err
        assert [code for code, _, _ in outcomes] == [0] * racers, outcomes
        assert not [err for _, _, err in outcomes if "error" in err.lower() or "warning" in err.lower()], outcomes
        # Each migration ran once: one ledger row per version, and the work was split among the racers.
        assert ledger(raced) == {v: 1 for v in range(1, 13)}
        applied = [int(out.split("Applied ")[1].split()[0]) for _, out, _ in outcomes if "Applied " in out]
        assert sum(applied) == 12, [out for _, out, _ in outcomes]
        assert sum("Nothing to apply" in out for _, out, _ in outcomes) == racers - len(applied)

        raced_history, serial_history = history(raced), history(serial)
        assert [r.version for r in raced_history] == list(range(1, 13))
        assert {r.status for r in raced_history} == {"applied"}
        assert raced_history == serial_history
        assert schema_of(raced) == schema_of(serial)
        with observe(raced) as conn:
            assert conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone()[0] == 0
