"""``poststack db verify | lint``: prove rollbacks on a scratch database; flag risky DDL without a database.

Exit codes: 0 all verified / no findings; 1 a migration failed verification (or has no rollback, unless
``--allow-unverifiable``) / lint findings; 2 bad usage or unreadable migration files; 3 no connection, or
the role may not create the scratch database verify needs (CREATEDB). Progress goes to stderr so that
``--format json`` output on stdout is always one JSON document (the same holds for sarif, junit, ...).
"""

from __future__ import annotations

from typing import Any

import click

from poststack.cli import lint_report, render, verify_report
from poststack.cli.context import CliContext, pass_ctx
from poststack.cli.failure import exit_if
from poststack.db import embedded
from poststack.engine.verify import STATUSES, MigrationVerification, Progress, VerifyReport, verify_migrations
from poststack.errors import ConnectError
from poststack.lint import RULES, LintReport, enabled_rules, lint_migrations
from poststack.source.files import parse_version


def _progress(ctx: CliContext) -> Progress:
    def report(result: MigrationVerification) -> None:
        ctx.say(f"  {result.version_text} {result.name}: {result.status}")
    return report


def verification_json(report: VerifyReport) -> dict[str, Any]:
    """The documented JSON shape of ``db verify --format json``."""
    return {
        "server": report.server,
        "ok": report.ok,
        "summary": {status: report.count(status) for status in STATUSES},
        "migrations": [{
            "version": m.version, "version_text": m.version_text, "name": m.name, "file": m.file,
            "status": m.status, "differences": m.differences, "error": m.error, "phase": m.phase,
            "reason": m.reason, "locks_observed": m.locks_observed, "elapsed_ms": m.elapsed_ms,
            "locks": [{"relation": lock.relation, "mode": lock.mode, "line": lock.line,
                       "new_relation": lock.new_relation} for lock in m.locks],
            "rewrites": [{"relation": r.relation, "kind": r.kind, "line": r.line, "lock": r.lock}
                         for r in m.rewrites],
            "rows": m.rows,
            "statements": [{"line": st.line, "duration_ms": st.duration_ms,
                            "locks": [{"relation": h.relation, "mode": h.mode, "held_ms": h.held_ms,
                                       "new_relation": h.new_relation} for h in st.locks]}
                           for st in m.statements],
        } for m in report.migrations],
    }


def _detail(m: MigrationVerification) -> render.Lines:
    lines = list(m.differences)
    if m.error:
        lines.append(m.error)
    if m.reason:
        lines.append(m.reason)
    return render.Lines(lines)


def _locks(m: MigrationVerification) -> render.Lines | str:
    """Locks on relations that existed before (what running applications wait on), and rewrites."""
    if not m.locks_observed:
        return "(not observable: runs outside a transaction)"
    lines = [f"{lock.mode} on {lock.relation} (line {lock.line})" for lock in m.locks if not lock.new_relation]
    new = sum(1 for lock in m.locks if lock.new_relation)
    if new:
        lines.append(f"+{new} on relations it created")
    lines += [rewrite.describe() for rewrite in m.rewrites]
    return render.Lines(lines)


def _timings(m: MigrationVerification) -> render.Lines | str:
    """Per statement: duration, and how long each lock on an existing relation is held (with --rows)."""
    lines = []
    for st in m.statements:
        held = [f"{h.mode} on {h.relation} held {h.held_ms:,.1f} ms" for h in st.locks if not h.new_relation]
        lines.append(f"line {st.line}: {st.duration_ms:,.1f} ms" + (f"; {'; '.join(held)}" if held else ""))
    return render.Lines(lines)


@click.command()
@click.option("--from", "from_version", default=None, metavar="VERSION",
              help="First migration to verify (earlier ones are applied first, not verified).")
@click.option("--to", "to_version", default=None, metavar="VERSION", help="Last migration to verify.")
@click.option("--allow-unverifiable", is_flag=True,
              help="Exit 0 even when some migrations have no rollback file.")
@click.option("--rows", type=click.IntRange(min=1), default=None, metavar="N",
              help="Fill every table that exists before each migration with N synthetic rows, and report "
                   "per statement its duration and how long it holds each lock.")
@click.option("--ignore-column-order", is_flag=True,
              help="Accept a rollback that restores every column but not their order (order counts by "
                   "default: it matters to SELECT * and COPY).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "junit", "markdown"]), default="table",
              show_default=True, help="Output format: json is stable; junit for CI test reports; markdown for "
                                      "a pull-request comment.")
@pass_ctx
def verify(ctx: CliContext, from_version: str | None, to_version: str | None, allow_unverifiable: bool,
           rows: int | None, ignore_column_order: bool, fmt: str) -> None:
    """Prove every rollback: apply, roll back, compare schemas, re-apply, on a scratch database.

    The scratch database is created on the configured server and dropped afterwards; the target database
    is never changed. Reports the locks each migration takes and the tables and indexes it rewrites.
    """
    s = ctx.settings
    url = embedded.url_or_default(s.database_url)
    report = verify_migrations(
        url, s.migrations_path,
        from_version=parse_version(from_version, "--from") if from_version is not None else None,
        to_version=parse_version(to_version, "--to") if to_version is not None else None,
        history_schema=s.history_schema, allow_unverifiable=allow_unverifiable,
        progress=_progress(ctx), rows=rows, column_order=not ignore_column_order)
    if fmt == "json":
        render.echo_json(verification_json(report))
    elif fmt == "junit":
        click.echo(verify_report.junit(report), nl=False)
    elif fmt == "markdown":
        click.echo(verify_report.markdown(report), nl=False)
    else:
        if report.migrations:
            columns = ["version", "name", "status", "details", "locks and rewrites"]
            timed = rows is not None
            render.table(None, [*columns, "statements"] if timed else columns,
                         [(m.version_text, m.name, m.status, _detail(m), _locks(m), *([_timings(m)] if timed else []))
                          for m in report.migrations])
        summary = ", ".join(f"{report.count(st)} {st}" for st in STATUSES if report.count(st))
        filled = f" (tables filled to {rows:,} rows)" if rows else ""
        render.line(f"Verified {len(report.migrations)} migration(s){filled}: {summary or 'nothing to verify'}.")
    exit_if(not report.ok)


def lint_json(report: LintReport) -> dict[str, Any]:
    """The documented JSON shape of ``db lint --format json``."""
    data: dict[str, Any] = {
        "directory": report.directory, "ok": report.ok, "files": report.files, "ignored": report.ignored,
        "findings": [{"file": f.file, "line": f.line, "version": f.version, "rule": f.rule,
                      "message": f.message, "alternative": f.alternative, "severity": f.severity,
                      "table": f.table, "rollback": f.rollback,
                      "table_size": None if f.size is None else {"table": f.size.name, "rows": f.size.rows,
                                                                 "pages": f.size.pages, "bytes": f.size.bytes}}
                     for f in report.findings]}
    data["rollbacks"] = report.rollbacks
    if report.database is not None:
        data["database"], data["batch"] = report.database, report.batch
    return data


def _rules_json() -> dict[str, Any]:
    return {"rules": [{"id": r.id, "title": r.title, "alternative": r.alternative, "severity": r.severity,
                       "category": r.category, "default": r.default, "rationale": r.rationale}
                      for r in RULES.values()]}


@click.command()
@click.option("--rules", "list_rules", is_flag=True, help="List the rules (ids, default severity) and exit.")
@click.option("--enable", "enable", multiple=True, metavar="RULE",
              help="Turn on an opt-in rule (repeatable; 'all' for every rule). Also [tool.poststack] lint_enable.")
@click.option("--disable", "disable", multiple=True, metavar="RULE",
              help="Turn a rule off (repeatable). Also [tool.poststack] lint_disable.")
@click.option("--database-url", "database_url", default=None, metavar="URL",
              help="Read table sizes and applied versions from this database (exit 3 if it cannot connect). "
                   "Else a configured URL is used when it connects; lint never starts the embedded server.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "sarif", "github", "markdown"]),
              default="table", show_default=True,
              help="Output format: json is stable; sarif for code scanning; github for workflow annotations; "
                   "markdown for a pull-request comment.")
@pass_ctx
def lint(ctx: CliContext, list_rules: bool, enable: tuple[str, ...], disable: tuple[str, ...],
         database_url: str | None, fmt: str) -> None:
    """Flag operations that lock or break a running application: static, no database needed.

    Rollback files are linted too. With a database URL, each finding carries the size of the table it
    touches (biggest first), and tables created by migrations not yet applied count as new.
    Silence rules for one file with a comment line: -- poststack:lint-ignore RULE[,RULE]
    """
    if list_rules:
        if fmt == "json":
            render.echo_json(_rules_json())
        else:
            render.table(None, ["rule", "severity", "default", "what happens", "safer alternative"],
                         [(r.id, r.severity, "on" if r.default else "opt-in", r.title, r.alternative)
                          for r in RULES.values()])
        return
    s = ctx.settings
    enabled = enabled_rules([*s.lint_enable, *enable], [*s.lint_disable, *disable])
    try:
        report = lint_migrations(s.migrations_path, enabled=enabled, database_url=database_url or s.database_url,
                                 history_schema=s.history_schema)
    except ConnectError as exc:
        if database_url or not s.database_url:
            raise  # asked for explicitly: exit 3
        # A configured URL is a bonus for lint, never a requirement: lint the files alone, and say so.
        ctx.say(f"warning: table sizes not read ({exc}); linting without the database")
        report = lint_migrations(s.migrations_path, enabled=enabled, history_schema=s.history_schema)
    if fmt == "json":
        render.echo_json(lint_json(report))
    elif fmt == "sarif":
        render.echo_json(lint_report.sarif(report))
    elif fmt == "github":
        for line in lint_report.github(report):
            click.echo(line)
    elif fmt == "markdown":
        click.echo(lint_report.markdown(report), nl=False)
    else:
        for finding in report.findings:
            render.line(finding.describe())
        ignored = f" ({report.ignored} silenced by lint-ignore)" if report.ignored else ""
        rollbacks = f" and {report.rollbacks} rollback(s)" if report.rollbacks else ""
        render.line(f"Linted {report.files} migration(s){rollbacks}: {len(report.findings)} finding(s){ignored}.")
    exit_if(not report.ok)
