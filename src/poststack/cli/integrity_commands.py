"""``poststack db diagnose | repair | validate | clean``: options in, library call, rendering out.

Exit codes: 0 nothing to report; 1 issues found, a check failed or something was left undone; 2 bad usage or
an unreadable migrations directory; 3 no connection; 4 lock not acquired. Notes go to stderr so that
``--format json`` output on stdout is always one JSON document.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from poststack.cli import render
from poststack.cli.context import CliContext, dev_url_option, format_option, pass_ctx
from poststack.cli.db_commands import confirm_or_refuse
from poststack.cli.failure import exit_if
from poststack.config import parse_seconds
from poststack.engine.validation import validate as run_validate
from poststack.integrity.issues import SEVERITIES, Issue, checked_codes, checked_severity
from poststack.integrity.repair_results import SkipKind, SkippedIssue
from poststack.migration_diagnostics import DEFAULT_LOCK_AGE, DiagnosisResult, MigrationDiagnostics


def _diagnostics(ctx: CliContext, lock_age: float = DEFAULT_LOCK_AGE,
                 dev_url: str | None = None) -> MigrationDiagnostics:
    s = ctx.settings
    return MigrationDiagnostics(s.database_url, s.migrations_path, history_schema=s.history_schema,
                                lock_timeout=s.lock_timeout, lock_age=lock_age, dev_url=dev_url)


def _codes(values: Sequence[str], option: str) -> list[str]:
    """Issue codes from repeated and/or comma-separated options, checked here for a one-line error."""
    return checked_codes([c.strip() for v in values for c in v.split(",") if c.strip()], option)


def issue_json(issue: Issue) -> dict[str, Any]:
    return {"code": issue.code, "severity": issue.severity, "version": issue.version, "message": issue.message,
            "evidence": issue.evidence, "auto_fixable": issue.auto_fixable, "fix": issue.fix}


def diagnosis_json(result: DiagnosisResult, severity: str, types: list[str]) -> dict[str, Any]:
    return {"summary": render.jsonable(result.summary), "filters": {"severity": severity, "types": types},
            "issues": [issue_json(i) for i in result.issues]}


def _print_issue(issue: Issue) -> None:
    version = f" version {issue.version}" if issue.version is not None else ""
    render.line(f"{issue.severity.upper():<8} {issue.code}{version}")
    render.line(f"  {issue.message}")
    for line in issue.evidence:
        render.line(f"  - {line}")
    render.line(f"  fix: {issue.fix}" + ("  (auto-fixable by repair)" if issue.auto_fixable else ""))


@click.command()
@click.option("--severity", default="low", show_default=True, metavar="LEVEL",
              help=f"Show (and fail on) issues at or above this level: {', '.join(SEVERITIES)}.")
@click.option("--type", "types", multiple=True, metavar="CODE", help="Only these issue codes (repeatable).")
@click.option("--lock-age", default=str(DEFAULT_LOCK_AGE), show_default=True, metavar="SECONDS",
              help="A lock held longer than this is reported as stuck_lock.")
@dev_url_option
@format_option
@pass_ctx
def diagnose(ctx: CliContext, severity: str, types: tuple[str, ...], lock_age: str, dev_url: str | None,
             fmt: str) -> None:
    """Find disagreements between the files, the history and the real schema, with the evidence."""
    codes = _codes(types, "--type")
    checked_severity(severity)
    full = _diagnostics(ctx, parse_seconds(lock_age, "--lock-age"), dev_url).diagnose()  # ASCII, not nan
    result = full.filtered(severity, codes)
    if fmt == "json":
        render.echo_json(diagnosis_json(result, severity, codes))
        exit_if(not result.ok)
        return
    s = result.summary
    history = "present" if s.history_exists else "absent"
    lock = f"held by {s.lock.describe()}" if s.lock else "free"
    render.line(f"Database: {s.database}; history {s.history_schema}.migrations {history}; current version "
               f"{s.current_version or 'none'} ({s.applied} applied, {s.pending} pending, {s.unfinished} unfinished)")
    render.line(f"Lock: {lock}")
    if "schema_drift" in s.checks_skipped and ctx.verbosity > 0:
        ctx.say("note: schema_drift not checked: no snapshot of the current version (migrate records one)")
    for code, why in s.skipped_reasons.items():
        ctx.say(f"note: {code} not checked: {why}")
    hidden = len(full.issues) - len(result.issues)
    more = f" ({hidden} more hidden by the filters)" if hidden else ""
    if result.ok:
        render.line(f"No issues at or above {severity}{more}.")
        return
    render.line(f"{len(result.issues)} issue(s) at or above {severity}{more}:")
    render.line()
    for issue in result.issues:
        _print_issue(issue)
    exit_if(True)


def _manual_codes(found: Sequence[Issue], skipped: Sequence[SkippedIssue]) -> list[str]:
    """The codes repair left to a person (kind MANUAL, as the exit code reads it), at or above low.

    An info issue is left out of the note: a project may ship no rollback files on purpose. The severity is
    the diagnosed issue's (a skipped issue does not carry it), matched by code and version.
    """
    worth_a_note = {(i.code, i.version) for i in found if i.at_least("low")}
    return sorted({s.code for s in skipped if s.kind is SkipKind.MANUAL and (s.code, s.version) in worth_a_note})


@click.command()
@click.option("--dry-run", is_flag=True, help="Show what would be done (with diffs); change nothing.")
@click.option("--force", is_flag=True,
              help="Also do the dangerous fixes: accept a changed file, delete a crashed row, drop an invalid "
                   "index, end the lock holder.")
@click.option("--issue-type", "types", multiple=True, metavar="CODE", help="Only fix these issue codes.")
@dev_url_option
@format_option
@pass_ctx
def repair(ctx: CliContext, dry_run: bool, force: bool, types: tuple[str, ...], dev_url: str | None,
           fmt: str) -> None:
    """Fix what diagnose found and the evidence allows; explain everything left alone."""
    codes = _codes(types, "--issue-type")
    diag = _diagnostics(ctx, dev_url=dev_url)
    found = diag.diagnose().issues
    result = diag.repair(found, force=force, dry_run=dry_run, issue_types=codes or None)
    left = [s for s in result.skipped if s.kind is SkipKind.REFUSED]
    if fmt == "json":
        render.echo_json({"dry_run": result.dry_run, "fixed": result.fixed, "skipped": result.skipped})
        exit_if(bool(left))
        return
    verb = "would fix" if dry_run else "fixed"
    for action in result.fixed:
        version = f" {action.version}" if action.version is not None else ""
        render.line(f"{verb}: {action.code}{version}: {action.description}")
        for line in action.details:
            render.line(f"    {line}")
    for skipped in left:
        version = f" {skipped.version}" if skipped.version is not None else ""
        render.line(f"skipped: {skipped.code}{version}: {skipped.reason}")
        for line in skipped.details:
            render.line(f"    {line}")
    manual = _manual_codes(found, result.skipped)
    if manual:
        ctx.say(f"note: not auto-fixable, see 'poststack db diagnose': {', '.join(manual)}")
    if not result.fixed and not left:
        render.line("Nothing to repair.")
    exit_if(bool(left))


@click.command()
@click.option("--check-files", is_flag=True, help="Names, encoding and pglast syntax of every file (no database).")
@click.option("--check-checksums", is_flag=True, help="Applied migrations still match their files (connects).")
@click.option("--check-rollbacks", is_flag=True,
              help="Every migration has a rollback and vice versa; with a database URL, also that no rollback "
                   "file changed in meaning since its migration was applied.")
@format_option
@pass_ctx
def validate(ctx: CliContext, check_files: bool, check_checksums: bool, check_rollbacks: bool, fmt: str) -> None:
    """Check the migrations directory (and, with --check-checksums, the applied checksums). No flag: all."""
    everything = not (check_files or check_checksums or check_rollbacks)
    s = ctx.settings
    checksums = everything or check_checksums
    # --check-rollbacks alone connects only to a database that was named: run_validate starts the embedded
    # server only for --check-checksums
    url = s.database_url
    result = run_validate(s.migrations_path, files=everything or check_files, checksums=checksums,
                          rollbacks=everything or check_rollbacks, database_url=url, history_schema=s.history_schema)
    if fmt == "json":
        render.echo_json({"ok": result.ok, "checks": result.checks, "migrations": result.migrations,
                          "database": result.database, "problems": result.problems,
                          "warnings": result.warnings})
    else:
        for problem in result.problems:
            render.line(f"{problem.check}: {problem.message}")
        for warning in result.warnings:
            render.line(f"warning: {warning.check}: {warning.message}")
        status = "ok" if result.ok else f"{len(result.problems)} problem(s)"
        if result.warnings:
            status += f", {len(result.warnings)} warning(s)"
        render.line(f"validate ({', '.join(result.checks)}) on {result.migrations} migration(s): {status}")
    exit_if(not result.ok)


@click.command()
@click.option("--locks", is_flag=True, help="Report the lock holder; end it with --force.")
@click.option("--failed", is_flag=True, help="Delete history rows of failed or crashed non-transactional runs.")
@click.option("--duplicates", is_flag=True, help="Delete duplicate rows of the legacy public.schema_migrations.")
@click.option("--confirm", is_flag=True, help="Do not ask; required when stdin is not a terminal.")
@click.option("--force", is_flag=True, help="Allow ending the backend that holds the lock.")
@format_option
@pass_ctx
def clean(ctx: CliContext, locks: bool, failed: bool, duplicates: bool, confirm: bool, force: bool,
          fmt: str) -> None:
    """Release a stuck lock, remove failed leftovers and duplicate rows; everything shown first and audited."""
    everything = not (locks or failed or duplicates)
    cleaner = _diagnostics(ctx).cleaner()
    plan = cleaner.plan(locks=everything or locks, failed=everything or failed,
                        duplicates=everything or duplicates)
    runnable = [a for a in plan.actions if force or not a.needs_force]
    if fmt != "json":
        for note in plan.notes:
            render.line(note)
        for action in plan.actions:
            mark = " (needs --force)" if action.needs_force and not force else ""
            render.line(f"{action.description}{mark}")
            for line in action.details:
                render.line(f"    {line}")
    if runnable:
        confirm_or_refuse(f"clean: {'; '.join(a.description for a in runnable)}", confirm)
    result = cleaner.apply(plan, force=force)
    if fmt == "json":
        render.echo_json({"notes": plan.notes, "lock": plan.lock, "done": result.done,
                          "skipped": [{"action": a, "reason": why} for a, why in result.skipped]})
    else:
        for action in result.done:
            render.line(f"done: {action.description}")
        for action, why in result.skipped:
            render.line(f"not done: {action.description}: {why}")
        if not plan.actions:
            render.line("Nothing to clean.")
    exit_if(bool(result.skipped))
