"""``poststack db verify | lint``: prove rollbacks on a scratch database; flag risky DDL without a database.

Exit codes: 0 all verified / no findings; 1 a migration failed verification (or has no rollback, unless
``--allow-unverifiable``) / lint findings; 2 bad usage or unreadable migration files; 3 no connection, or
the role may not create the scratch database verify needs (CREATEDB). Progress goes to stderr so that
``--format json`` output on stdout is always one JSON document.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from poststack.cli import render
from poststack.cli.context import CliContext, format_option, pass_ctx
from poststack.errors import EXIT_ISSUES
from poststack.files import parse_version
from poststack.lint import RULES, LintReport, lint_migrations
from poststack.verify import STATUSES, MigrationVerification, VerifyReport, verify_migrations


def _exit_if(failed: bool) -> None:
    if failed:
        sys.exit(EXIT_ISSUES)  # SystemExit passes click's non-standalone main untouched


def _progress(ctx: CliContext):  # noqa: ANN202 - a verify Progress callback
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
        } for m in report.migrations],
    }


def _detail(m: MigrationVerification) -> str:
    lines = list(m.differences)
    if m.error:
        lines.append(m.error)
    if m.reason:
        lines.append(m.reason)
    return "\n".join(lines)


def _locks(m: MigrationVerification) -> str:
    """Locks on relations that existed before: those are what running applications wait on."""
    if not m.locks_observed:
        return "(not observable: runs outside a transaction)"
    lines = [f"{lock.mode} on {lock.relation} (line {lock.line})" for lock in m.locks if not lock.new_relation]
    new = sum(1 for lock in m.locks if lock.new_relation)
    if new:
        lines.append(f"+{new} on relations it created")
    return "\n".join(lines)


@click.command()
@click.option("--from", "from_version", default=None, metavar="VERSION",
              help="First migration to verify (earlier ones are applied first, not verified).")
@click.option("--to", "to_version", default=None, metavar="VERSION", help="Last migration to verify.")
@click.option("--allow-unverifiable", is_flag=True,
              help="Exit 0 even when some migrations have no rollback file.")
@click.option("--ignore-column-order", is_flag=True,
              help="Accept a rollback that restores every column but not their order (order counts by "
                   "default: it matters to SELECT * and COPY).")
@format_option
@pass_ctx
def verify(ctx: CliContext, from_version: str | None, to_version: str | None, allow_unverifiable: bool,
           ignore_column_order: bool, fmt: str) -> None:
    """Prove every rollback: apply, roll back, compare schemas, re-apply, on a scratch database.

    The scratch database is created on the configured server and dropped afterwards; the target database
    is never changed. Reports the locks each migration takes.
    """
    s = ctx.settings
    url = s.resolved_url()
    report = verify_migrations(
        url, s.migrations_path,
        from_version=parse_version(from_version, "--from") if from_version is not None else None,
        to_version=parse_version(to_version, "--to") if to_version is not None else None,
        history_schema=s.history_schema, allow_unverifiable=allow_unverifiable,
        progress=_progress(ctx), column_order=not ignore_column_order)
    if fmt == "json":
        render.echo_json(verification_json(report))
    else:
        if report.migrations:
            render.table(None, ["version", "name", "status", "details", "locks"],
                         [(m.version_text, m.name, m.status, _detail(m), _locks(m)) for m in report.migrations])
        summary = ", ".join(f"{report.count(st)} {st}" for st in STATUSES if report.count(st))
        click.echo(f"Verified {len(report.migrations)} migration(s): {summary or 'nothing to verify'}.")
    _exit_if(not report.ok)


def lint_json(report: LintReport) -> dict[str, Any]:
    """The documented JSON shape of ``db lint --format json``."""
    return {"directory": report.directory, "ok": report.ok, "files": report.files, "ignored": report.ignored,
            "findings": [{"file": f.file, "line": f.line, "version": f.version, "rule": f.rule,
                          "message": f.message, "alternative": f.alternative} for f in report.findings]}


@click.command()
@click.option("--rules", "list_rules", is_flag=True, help="List the rules (ids for lint-ignore) and exit.")
@format_option
@pass_ctx
def lint(ctx: CliContext, list_rules: bool, fmt: str) -> None:
    """Flag operations that lock or break a running application: static, no database needed.

    Silence rules for one file with a comment line: -- poststack:lint-ignore RULE[,RULE]
    """
    if list_rules:
        if fmt == "json":
            render.echo_json({"rules": list(RULES.values())})
        else:
            render.table(None, ["rule", "what happens", "safer alternative"],
                         [(r.id, r.title, r.alternative) for r in RULES.values()])
        return
    report = lint_migrations(ctx.settings.migrations_path)
    if fmt == "json":
        render.echo_json(lint_json(report))
    else:
        for finding in report.findings:
            click.echo(finding.describe())
        ignored = f" ({report.ignored} silenced by lint-ignore)" if report.ignored else ""
        click.echo(f"Linted {report.files} migration(s): {len(report.findings)} finding(s){ignored}.")
    _exit_if(not report.ok)


def register(group: click.Group) -> None:
    for command in (verify, lint):
        group.add_command(command)
