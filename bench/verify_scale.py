"""verify on a long history: ``poststack db verify`` against ``migrate`` on the same N generated migrations.

The history is generated, realistic in kind rather than in size: tables with identity keys and foreign keys,
indexes, added columns with defaults and checks, plpgsql functions, views, column and table renames, data
loads, triggers and enum types, each with a rollback that undoes it exactly (the run stops if verify does
not pass them all, so the timing is of a clean pass). Both run in-process on the same server: migrate on a
fresh database, verify on the scratch database it creates (apply, roll back, compare, re-apply each file).

    python bench/verify_scale.py [--n 300] [--repeat 1] [--profile] [--markdown PATH]

Target (issue 15): verify within 15x the time of migrate on the same files.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common


@dataclass
class _Table:
    name: str
    label: str = "name"  # the text column (renamed now and then)
    extra: list[str] = field(default_factory=list)


def history(n: int) -> list[tuple[str, str, str]]:
    """``n`` (name, up, down) triples; every down restores the schema its up found."""
    tables: list[_Table] = []
    out: list[tuple[str, str, str]] = []
    for i in range(1, n + 1):
        kind = (i - 1) % 10
        if kind == 0 or not tables:
            t = _Table(f"item_{i:04d}")
            parent = tables[-1] if tables else None
            fk = f",\n    parent_id bigint REFERENCES {parent.name} (id)" if parent else ""
            up = (f"CREATE TABLE {t.name} (\n    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
                  f"    name text NOT NULL,\n    created_at timestamptz NOT NULL DEFAULT now(){fk}\n);\n"
                  f"COMMENT ON TABLE {t.name} IS 'items of batch {i}';\n")
            tables.append(t)
            out.append((f"create_{t.name}", up, f"DROP TABLE {t.name};\n"))
            continue
        t = tables[-1]
        if kind == 1:
            out.append((f"index_{t.name}", f"CREATE INDEX {t.name}_{t.label}_idx_{i} ON {t.name} ({t.label});\n",
                        f"DROP INDEX {t.name}_{t.label}_idx_{i};\n"))
        elif kind == 2:
            column = f"score_{i}"
            out.append((f"add_{column}", f"ALTER TABLE {t.name} ADD COLUMN {column} integer NOT NULL DEFAULT 0\n"
                        f"    CONSTRAINT {t.name}_{column}_check CHECK ({column} >= 0);\n",
                        f"ALTER TABLE {t.name} DROP COLUMN {column};\n"))
        elif kind == 3:
            fn = f"label_of_{i}"
            up = (f"CREATE FUNCTION {fn}(p_id bigint) RETURNS text\nLANGUAGE plpgsql STABLE AS $$\n"
                  f"DECLARE\n    v text;\nBEGIN\n    SELECT {t.label} INTO v FROM {t.name} WHERE id = p_id;\n"
                  f"    RETURN coalesce(v, 'unknown');\nEND\n$$;\n")
            out.append((f"function_{fn}", up, f"DROP FUNCTION {fn}(bigint);\n"))
        elif kind == 4:
            view = f"recent_{i}"
            out.append((f"view_{view}", f"CREATE VIEW {view} AS\n    SELECT id, {t.label}, created_at FROM {t.name}\n"
                        f"    WHERE created_at > now() - interval '30 days';\n", f"DROP VIEW {view};\n"))
        elif kind == 5:
            new = f"label_{i}"
            out.append((f"rename_{t.label}_to_{new}", f"ALTER TABLE {t.name} RENAME COLUMN {t.label} TO {new};\n",
                        f"ALTER TABLE {t.name} RENAME COLUMN {new} TO {t.label};\n"))
            t.label = new
        elif kind == 6:
            out.append((f"seed_{t.name}_{i}", f"INSERT INTO {t.name} ({t.label})\n"
                        f"SELECT 'seed {i}-' || g FROM generate_series(1, 200) AS g;\n"
                        f"UPDATE {t.name} SET {t.label} = upper({t.label}) WHERE id % 10 = 0;\n",
                        f"DELETE FROM {t.name} WHERE {t.label} ILIKE 'seed {i}-%';\n"))
        elif kind == 7:
            old, new = t.name, f"{t.name}_v{i}"
            out.append((f"rename_{old}", f"ALTER TABLE {old} RENAME TO {new};\n",
                        f"ALTER TABLE {new} RENAME TO {old};\n"))
            t.name = new
        elif kind == 8:
            fn, trg = f"touch_{i}", f"{t.name}_touch_{i}"
            up = (f"CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
                  f"    NEW.created_at := now();\n    RETURN NEW;\nEND\n$$;\n"
                  f"CREATE TRIGGER {trg} BEFORE UPDATE ON {t.name}\n    FOR EACH ROW EXECUTE FUNCTION {fn}();\n")
            out.append((f"trigger_{trg}", up, f"DROP TRIGGER {trg} ON {t.name};\nDROP FUNCTION {fn}();\n"))
        else:
            typ, column = f"state_{i}", f"state_{i}"
            up = (f"CREATE TYPE {typ} AS ENUM ('new', 'active', 'done');\n"
                  f"ALTER TABLE {t.name} ADD COLUMN {column} {typ} NOT NULL DEFAULT 'new';\n"
                  f"CREATE INDEX {t.name}_{column}_idx ON {t.name} ({column}) WHERE {column} <> 'done';\n")
            out.append((f"enum_{typ}", up, f"ALTER TABLE {t.name} DROP COLUMN {column};\nDROP TYPE {typ};\n"))
    return out


def write_history(n: int, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i, (name, up, down) in enumerate(history(n), start=1):
        (directory / f"{i:04d}_{name}.sql").write_text(up)
        (directory / f"{i:04d}_{name}.rollback.sql").write_text(down)
    return directory


def run_migrate(url: str, directory: Path, n: int) -> None:
    from poststack.schema_migration import MigrationRunner

    result = MigrationRunner(url, directory).migrate()
    if len(result.steps) != n:
        raise SystemExit(f"error: migrate applied {len(result.steps)} of {n} migrations")


def run_verify(url: str, directory: Path, n: int) -> None:
    from poststack.engine.verify import verify_migrations

    report = verify_migrations(url, directory)
    bad = [m.describe() for m in report.migrations if not m.passed]
    if len(report.migrations) != n or bad:
        raise SystemExit("error: verify did not pass the generated history:\n" + "\n".join(bad[:5]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="migrations in the generated history (default 300)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (median shown; default 1)")
    parser.add_argument("--profile", action="store_true", help="print a CPU profile of one verify run")
    common.add_common_arguments(parser)
    args = parser.parse_args(argv)
    before = common.load_average()
    directory = write_history(args.n, common.temp_dir("verify") / "migrations")
    times: dict[str, list[common.Sample]] = {"poststack migrate": [], "poststack verify": []}
    with common.bench_server() as (server, factory):
        for round_no in range(args.repeat):
            order = ["poststack migrate", "poststack verify"]
            for name in order[round_no % 2:] + order[:round_no % 2]:
                url = common.temp_database(factory, "verify")
                run = run_migrate if name.endswith("migrate") else run_verify
                times[name].append(common.timed(lambda run=run, url=url: run(url, directory, args.n)))
        if args.profile:
            import cProfile
            import pstats
            import time

            profile = cProfile.Profile(time.process_time)
            profile.runcall(run_verify, common.temp_database(factory, "verify"), directory, args.n)
            pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(35)
    table = common.Table(f"verify against migrate, N = {args.n} generated migrations", "poststack migrate",
                         unit="s")
    table.add("poststack migrate", times["poststack migrate"], "MigrationRunner.migrate() on a fresh database")
    table.add("poststack verify", times["poststack verify"], "verify_migrations(): apply, roll back, compare, "
              "re-apply each (target <= 15x migrate)")
    table.notes += [f"median of {args.repeat} round(s); server: {server}",
                    f"{before} before, {common.load_average()} after"]
    common.emit([table], args, "## verify on a long history")
    return 0


if __name__ == "__main__":
    sys.exit(main())
