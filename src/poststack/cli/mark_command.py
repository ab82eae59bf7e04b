"""``poststack db mark VERSION [--applied | --pending] [--through] [--reason TEXT] [--dry-run] [--force]``.

JSON (stable): ``{"dry_run", "force", "applied", "consistent", "refused", "written", "steps": [{"version",
"version_text", "name", "action"}], "evidence": [line...]}``. Exit 0 when done or nothing to do, 1 when the
replayed states contradict the mark (nothing written), 2 for a bad version or bad files.
"""

from __future__ import annotations

import click

from poststack.cli import render
from poststack.cli.context import CliContext, dev_url_option, format_option, pass_ctx
from poststack.cli.failure import exit_if
from poststack.source.files import parse_version


@click.command()
@click.argument("version")
@click.option("--applied/--pending", default=True, help="Record as applied (default) or remove the row.")
@click.option("--through", is_flag=True, help="Every version up to VERSION (--applied) or from it on (--pending).")
@click.option("--reason", default=None, metavar="TEXT", help="Why, kept in the audit log.")
@click.option("--dry-run", is_flag=True, help="Show the change and its evidence; write nothing.")
@click.option("--force", is_flag=True, help="Write even when the replayed states contradict it (audited as such).")
@dev_url_option
@format_option
@pass_ctx
def mark(ctx: CliContext, version: str, applied: bool, through: bool, reason: str | None, dry_run: bool,
         force: bool, dev_url: str | None, fmt: str) -> None:
    """Record or remove history rows without running SQL, checked against the replayed states."""
    result = ctx.runner().mark(parse_version(version, "VERSION"), applied=applied, through=through, reason=reason,
                               dry_run=dry_run, force=force, dev_url=dev_url)
    if fmt == "json":
        render.echo_json({"dry_run": result.dry_run, "force": result.force, "applied": result.applied,
                          "consistent": result.consistent, "refused": result.refused, "written": result.written,
                          "steps": result.steps, "evidence": result.evidence})
    else:
        for step in result.steps:
            render.line(f"{step.version_text} {step.name}: {step.action.replace('_', ' ')}")
        for line in result.evidence:
            render.line(f"  {line}")
        if not result.changes:
            render.line("Nothing to mark: the history already says so.")
        elif result.refused:
            render.line("Refused: the catalog contradicts this history (see above); nothing written. "
                       "Use --force to write it anyway (audited).")
        elif result.dry_run:
            render.line(f"Dry run: would mark {len(result.changes)} version(s); nothing was changed.")
        else:
            render.line(f"Marked {len(result.changes)} version(s).")
    exit_if(result.exit_code != 0, result.exit_code)
