"""``poststack db migrate | rollback | migration-status | migration-info``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from poststack.cli import render
from poststack.cli.context import CliContext, format_option, pass_ctx
from poststack.errors import ConfirmationRequired
from poststack.source.files import parse_version

if TYPE_CHECKING:
    from poststack.engine.info import MigrationInfo
    from poststack.schema_migration import MigrateResult, Progress, RollbackResult

_Command = TypeVar("_Command", bound=Callable[..., Any])


def _progress(ctx: CliContext, verb: str) -> Progress:
    def report(event: str, version: str, name: str) -> None:
        if event in ("start", "resume"):
            ctx.say(f"  {'resuming' if event == 'resume' else verb} {version} {name} ...")
        elif event == "retry":  # name carries the message: which session blocked it, when it retries
            ctx.say(f"  warning: {name}")
    return report


lock_policy_options = [
    click.option("--statement-lock-timeout", type=float, default=None, metavar="SECONDS",
                 help="lock_timeout for each migration's statements; on a timeout the migration is rolled back "
                      "and retried (else POSTSTACK_STATEMENT_LOCK_TIMEOUT, [tool.poststack]; default: none)."),
    click.option("--lock-retries", type=int, default=None, metavar="N",
                 help="Retries after a statement lock timeout, with backoff (else POSTSTACK_LOCK_RETRIES; "
                      "default 0); exit 4 when they run out."),
]


def with_lock_policy(command: _Command) -> _Command:
    """Add the lock policy options to a click command (a decorator, as click.option is)."""
    for option in reversed(lock_policy_options):
        command = option(command)
    return command


@click.command()
@click.option("--target", default=None, metavar="VERSION", help="Stop after this version (002 and 2 are equal).")
@click.option("--dry-run", is_flag=True, help="Print the plan and the SQL; change nothing.")
@click.option("--allow-changed", is_flag=True, help="Proceed although applied files changed in meaning.")
@click.option("--allow-out-of-order", is_flag=True, help="Apply pending versions older than the newest applied.")
@with_lock_policy
@format_option
@pass_ctx
def migrate(ctx: CliContext, target: str | None, dry_run: bool, allow_changed: bool, allow_out_of_order: bool,
            statement_lock_timeout: float | None, lock_retries: int | None, fmt: str) -> None:
    """Apply pending migrations in version order, each in one transaction with its history row."""
    target_version = parse_version(target) if target is not None else None
    ctx = ctx.with_lock_policy(statement_lock_timeout, lock_retries)
    runner = ctx.runner()
    result = runner.migrate(target_version, dry_run=dry_run, allow_changed=allow_changed,
                            allow_out_of_order=allow_out_of_order,
                            progress=None if fmt == "json" else _progress(ctx, "applying"))
    for warning in result.warnings:
        ctx.say(f"warning: {warning}")
    if fmt == "json":
        render.echo_json({
            "dry_run": result.dry_run, "from_version": result.from_version, "to_version": result.to_version,
            "planned": [{"version": m.version, "version_text": m.version_text, "name": m.name,
                         "file": str(m.path), "no_transaction": m.no_transaction} for m in result.planned],
            "applied": result.steps, "warnings": result.warnings})
        return
    if dry_run:
        if not result.planned:
            render.line(f"Nothing to apply (current version: {result.from_version or 'none'}).")
        for m in result.planned:
            mode = " (no transaction)" if m.no_transaction else ""
            render.line(f"-- would apply {m.version_text} {m.name}{mode}: {m.path}")
            render.block(m.sql.rstrip() + "\n")
        return
    if not result.steps:
        render.line(f"Nothing to apply; at version {result.from_version or 'none'}.")
        return
    total = sum(s.execution_ms or 0 for s in result.steps)
    render.line(f"Applied {len(result.steps)} migration(s) ({_applied_list(result)}): "
               f"{_version_change(result)} ({total} ms).")


def _applied_list(result: MigrateResult) -> str:
    """'002, 003', marking versions applied below the version the run started at: '002 out of order, 004'."""
    start = int(result.from_version) if result.from_version is not None else None
    return ", ".join(s.version_text + (" out of order" if start is not None and s.version < start else "")
                     for s in result.steps)


def _version_change(result: MigrateResult) -> str:
    if result.from_version == result.to_version:
        return f"current version stays {result.to_version}"
    return f"{result.from_version or 'none'} -> {result.to_version}"


def confirm_or_refuse(action: str, confirm: bool) -> None:
    """Destructive commands ask on a terminal and refuse without one unless --confirm was given.

    The question goes to stderr, so a ``--format json`` run keeps stdout for the JSON document.
    """
    if confirm:
        return
    if not sys.stdin.isatty():
        raise ConfirmationRequired(f"{action}: refusing without --confirm (stdin is not a terminal)")
    if not click.confirm(f"{action}?", default=False, err=True):
        raise ConfirmationRequired(f"{action}: not confirmed")


@click.command()
@click.argument("target")
@click.option("--dry-run", is_flag=True, help="Print what would be rolled back and the SQL; change nothing.")
@click.option("--confirm", is_flag=True, help="Do not ask; required when stdin is not a terminal.")
@click.option("--allow-changed", is_flag=True,
              help="Run rollback files although their meaning changed since their migration was applied.")
@click.option("--use-recorded", is_flag=True,
              help="Run the rollback SQL recorded when each migration was applied instead of the files.")
@with_lock_policy
@format_option
@pass_ctx
def rollback(ctx: CliContext, target: str, dry_run: bool, confirm: bool, allow_changed: bool, use_recorded: bool,
             statement_lock_timeout: float | None, lock_retries: int | None, fmt: str) -> None:
    """Roll back every applied migration newer than TARGET (an applied version, or 0 for all).

    The plan is made and confirmed under the migration lock: what runs is what the prompt showed.
    """
    target_version = parse_version(target, "TARGET")
    ctx = ctx.with_lock_policy(statement_lock_timeout, lock_retries)
    runner = ctx.runner()
    if dry_run:
        plan = runner.rollback(target_version, dry_run=True, allow_changed=allow_changed, use_recorded=use_recorded)
        for warning in plan.warnings:
            ctx.say(f"warning: {warning}")
        if fmt == "json":
            render.echo_json({"dry_run": True, "from_version": plan.from_version, "to_version": plan.to_version,
                              "planned": [{"version": s.row.version, "version_text": s.row.version_text,
                                           "name": s.row.name, "source": s.source} for s in plan.planned],
                              "warnings": plan.warnings})
            return
        if not plan.planned:
            render.line("Nothing to roll back.")
        for step in plan.planned:
            render.line(f"-- would roll back {step.row.version_text} {step.row.name}: {step.source}")
            render.block(step.sql.rstrip() + "\n")
        return

    def ask(plan: RollbackResult) -> bool:
        for warning in plan.warnings:
            ctx.say(f"warning: {warning}")
        confirm_or_refuse(plan.describe(), confirm)  # under the lock: this plan is the one that runs
        return True

    result = runner.rollback(target_version, confirm=ask,
                             progress=None if fmt == "json" else _progress(ctx, "rolling back"),
                             allow_changed=allow_changed, use_recorded=use_recorded)
    if fmt == "json":
        render.echo_json({"dry_run": False, "from_version": result.from_version,
                          "to_version": result.to_version, "rolled_back": result.steps,
                          "warnings": result.warnings})
        return
    if not result.steps:
        render.line(f"Nothing to roll back; at version {result.from_version or 'none'}.")
        return
    render.line(f"Rolled back {len(result.steps)} migration(s): {result.from_version} -> "
               f"{result.to_version or 'none'}.")


@click.command("migration-status")
@format_option
@pass_ctx
def migration_status(ctx: CliContext, fmt: str) -> None:
    """Current version, applied, pending and changed migrations, and who holds the lock."""
    st = ctx.runner().status()
    if fmt == "json":
        render.echo_json({
            "database": st.database, "history_schema": ctx.settings.history_schema,
            "history_exists": st.history_exists, "current_version": st.current_version,
            "applied": [{"version": r.version, "version_text": r.version_text, "name": r.name,
                         "applied_at": r.applied_at, "checksum": r.checksum, "source": r.source}
                        for r in st.applied],
            "pending": [{"version": m.version, "version_text": m.version_text, "name": m.name,
                         "file": str(m.path)} for m in st.pending],
            "changed": st.changed,
            "missing_files": [{"version": r.version, "version_text": r.version_text, "name": r.name}
                              for r in st.missing_files],
            "unfinished": [{"version": r.version, "version_text": r.version_text, "name": r.name,
                            "status": r.status, "error": r.error} for r in st.unfinished],
            "out_of_order": [m.version for m in st.out_of_order],
            "changed_rollbacks": [{"version": c.version, "version_text": c.version_text, "file": c.path,
                                   "kind": c.kind} for c in st.changed_rollbacks],
            "lock": st.lock})
        return
    render.line(f"Database: {st.database}")
    render.line(f"Current version: {st.current_version or 'none'}; {len(st.applied)} applied, "
               f"{len(st.pending)} pending")
    rows = [(r.version_text, r.name, "applied", render.when(r.applied_at)) for r in st.applied]
    rows += [(r.version_text, r.name, r.status, render.when(r.applied_at)) for r in st.unfinished]
    rows += [(m.version_text, m.name, "pending", "") for m in st.pending]
    rows.sort(key=lambda r: int(r[0]))
    if rows:
        render.table(None, ["version", "name", "status", "applied at"], rows)
    for c in st.changed:
        render.line(f"changed: {c.filename} ({c.kind.replace('_', ' ')})")
    for cr in st.changed_rollbacks:
        what = "comments or whitespace only" if cr.cosmetic else "meaning changed; rollback refuses it"
        render.line(f"changed rollback: {cr.filename} ({what})")
    for r in st.missing_files:
        render.line(f"missing file: version {r.version_text} {r.name} is applied but has no file")
    render.line(f"Lock: held by {st.lock.describe()}" if st.lock else "Lock: free")


@click.command("migration-info")
@click.argument("version", required=False)
@format_option
@pass_ctx
def migration_info(ctx: CliContext, version: str | None, fmt: str) -> None:
    """Per migration: description, status, checksum, when and by whom applied, timing, rollback."""
    infos = ctx.runner().info(parse_version(version, "VERSION") if version is not None else None)
    if fmt == "json":
        render.echo_json({"migrations": infos})
        return
    render.table(None, ["version", "name", "description", "status", "checksum", "applied at", "by", "ms",
                        "rollback"],
                 [(i.version_text, i.name, i.description, i.status, render.short(i.checksum or i.file_checksum),
                   render.when(i.applied_at), i.applied_by, i.execution_ms, _rollback_cell(i))
                  for i in infos])


def _rollback_cell(info: MigrationInfo) -> str:
    cell = "yes" if info.has_rollback else "no"
    if info.rollback_status in ("changed", "cosmetic_change"):
        cell += " (changed)" if info.rollback_status == "changed" else " (cosmetic edit)"
    return cell
