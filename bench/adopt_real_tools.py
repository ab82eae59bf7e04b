"""``db adopt`` after the real tools: dbmate (npm), sqitch (Debian) and yoyo (PyPI) build the history.

The suite builds dbmate's and sqitch's tables by their documented conventions (tests/integration/test_adopt.py)
because neither installs from PyPI; this script lets the tools themselves do it. For each tool: a small
project in its layout (a table, a CONCURRENTLY index outside a transaction, a data-only change, one change
left pending), applied by the tool except the last; then ``poststack db adopt``, ``migrate`` (must apply
only the pending one, then be a no-op), ``diagnose`` and ``verify``. It prints one row per tool; a tool that
is not installed is listed as such (``apt-get install sqitch libdbd-pg-perl``; dbmate installs itself from
npm into bench/.cache).

    python bench/adopt_real_tools.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import common

USERS = "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);"
INDEX = "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);"
SEED = "INSERT INTO users VALUES (1, 'a@example.com');"
ORDERS = "CREATE TABLE orders (id bigint, user_id bigint REFERENCES users);"


def _run(argv: list[str], cwd: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env or common.clean_env(), capture_output=True, text=True, check=False)


def dbmate(url: str, root: Path) -> Path | str:
    binary = common.dbmate_binary()
    if binary is None:
        return "not installed (needs npm)"
    source = root / "db" / "migrations"
    source.mkdir(parents=True)
    (source / "20240101000000_users.sql").write_text(f"-- migrate:up\n{USERS}\n-- migrate:down\nDROP TABLE users;\n")
    (source / "20240102000000_email_idx.sql").write_text(
        f"-- migrate:up transaction:false\n{INDEX}\n-- migrate:down transaction:false\n"
        "DROP INDEX CONCURRENTLY users_email_idx;\n")
    (source / "20240103000000_seed.sql").write_text(f"-- migrate:up\n{SEED}\n-- migrate:down\nDELETE FROM users;\n")
    result = _run([binary, "--url", common.dbmate_url(url), "--no-dump-schema", "up"], cwd=root)
    if result.returncode:
        return f"dbmate up failed: {result.stderr.strip()[-200:]}"
    (source / "20240104000000_orders.sql").write_text(f"-- migrate:up\n{ORDERS}\n-- migrate:down\nDROP TABLE orders;\n")
    return source


def sqitch(url: str, root: Path) -> Path | str:
    program = shutil.which("sqitch")
    if program is None:
        return "not installed (apt-get install sqitch libdbd-pg-perl)"
    host, port, user, database = common.socket_parts(url)
    env = common.clean_env(SQITCH_FULLNAME="Bench", SQITCH_EMAIL="bench@example.com", PGHOST=host,
                           PGPORT=port or "5432", PGUSER=user, PGPASSWORD=common.urlsplit(url).password or "")
    steps = [["init", "shop", "--engine", "pg"], ["add", "users", "-n", "users"],
             ["add", "email_idx", "--requires", "users", "-n", "index"],
             ["add", "seed", "--requires", "users", "-n", "seed"], ["add", "orders", "--requires", "users", "-n", "o"]]
    for step in steps:
        if (result := _run([program, *step], cwd=root, env=env)).returncode:
            return f"sqitch {step[0]} failed: {result.stderr.strip()[-200:]}"
    bodies = {"users": (USERS, "DROP TABLE users;"), "seed": (SEED, "DELETE FROM users;"),
              "orders": (ORDERS, "DROP TABLE orders;")}
    for name, (up, down) in bodies.items():
        for kind, text in (("deploy", up), ("revert", down)):
            path = root / kind / f"{name}.sql"
            path.write_text(path.read_text().replace("-- XXX Add DDLs here.", text))
    # sqitch runs scripts through psql: a CONCURRENTLY script carries no BEGIN/COMMIT of its own.
    (root / "deploy" / "email_idx.sql").write_text(f"-- Deploy shop:email_idx to pg\n{INDEX}\n")
    (root / "revert" / "email_idx.sql").write_text("DROP INDEX CONCURRENTLY users_email_idx;\n")
    result = _run([program, "deploy", f"db:pg:{database}", "--to", "seed"], cwd=root, env=env)
    if result.returncode:
        return f"sqitch deploy failed: {result.stderr.strip()[-200:]}"
    return root


def yoyo(url: str, root: Path) -> Path | str:
    source = root / "migrations"
    source.mkdir()
    (source / "0001.users.sql").write_text(USERS + "\n")
    (source / "0001.users.rollback.sql").write_text("DROP TABLE users;\n")
    (source / "0002.email-idx.sql").write_text(f"-- transactional: false\n{INDEX}\n")
    (source / "0002.email-idx.rollback.sql").write_text("-- transactional: false\nDROP INDEX CONCURRENTLY "
                                                        "users_email_idx;\n")
    (source / "0003.seed.sql").write_text(SEED + "\n")
    (source / "0003.seed.rollback.sql").write_text("DELETE FROM users;\n")
    result = _run([common.venv_program("yoyo"), "apply", "--batch", "--database", common.yoyo_url(url), str(source)])
    if result.returncode:
        return f"yoyo apply failed: {result.stderr.strip()[-200:]}"
    (source / "0004.orders.sql").write_text(ORDERS + "\n")
    (source / "0004.orders.rollback.sql").write_text("DROP TABLE orders;\n")
    return source


def poststack(url: str, target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run([common.venv_program("poststack"), "--database-url", url, "--migrations-path", str(target),
                 "db", *args])


def main() -> int:
    rows = []
    with common.bench_server() as (_server, factory):
        for tool, build in (("dbmate", dbmate), ("sqitch", sqitch), ("yoyo", yoyo)):
            url = common.temp_database(factory, f"adopt_{tool}")
            root = common.temp_dir(f"adopt-{tool}")
            source = build(url, root)
            if isinstance(source, str):
                rows.append((tool, source, "", "", "", ""))
                continue
            target = root / "poststack"
            adopted = poststack(url, target, "adopt", "--from", tool, "--source", str(source), "--format", "json")
            if adopted.returncode not in (0, 1):
                rows.append((tool, f"adopt exit {adopted.returncode}: {adopted.stderr.strip()}", "", "", "", ""))
                continue
            data = json.loads(adopted.stdout)
            first, again = poststack(url, target, "migrate"), poststack(url, target, "migrate")
            diagnose, verify = poststack(url, target, "diagnose"), poststack(url, target, "verify")
            rows.append((tool, f"exit {adopted.returncode}: {len(data['files'])} files, recorded "
                               f"{', '.join(data['recorded'])}",
                         first.stdout.strip().splitlines()[-1] if first.stdout.strip() else first.stderr.strip(),
                         "no-op" if "Nothing to apply" in again.stdout else again.stdout.strip(),
                         "clean" if diagnose.returncode == 0 else diagnose.stdout.strip()[-300:],
                         "passed" if verify.returncode == 0 else verify.stdout.strip()[-300:]))
    print("| tool | adopt | first migrate | second migrate | diagnose | verify |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(str(c).replace("\n", " ") for c in row) + " |")
    return 0 if all(r[4] == "clean" and r[5] == "passed" for r in rows if r[2]) else 1


if __name__ == "__main__":
    sys.exit(main())
