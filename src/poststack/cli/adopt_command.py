"""``poststack db adopt --from TOOL [--source DIR] [--table T] [--dry-run] [--format table|json]``.

JSON (stable): ``{"tool", "source", "target", "dry_run", "numbering", "numbering_reason", "table",
"files": [{"tool_version", "source_path", "filename", "rollback_filename", "no_transaction", "action",
"notes"}], "notes": [{"kind", "path", "message"}], "history": [{"tool_version", "version_text", "name",
"action", "reason", "status", "evidence"}], "recorded": [version_text...], "refused": [tool_version...]}``.
Exit 0 when everything was carried and adopted, 1 when a claim was refused, a version is dirty or has no
file, or something could not be carried; 2 for bad files or usage (nothing written).
"""

from __future__ import annotations

from pathlib import Path

import click

from poststack.adopt import TOOLS
from poststack.adopt.plan import AdoptResult, FileAction, adopt
from poststack.cli import render
from poststack.cli.context import CliContext, format_option, pass_ctx
from poststack.cli.failure import exit_if


def _json(result: AdoptResult) -> dict[str, object]:
    return {"tool": result.tool, "source": result.source, "target": result.target, "dry_run": result.dry_run,
            "numbering": result.numbering, "numbering_reason": result.numbering_reason, "table": result.table,
            "files": result.files, "notes": result.notes, "history": result.history,
            "recorded": [s.version_text for s in result.recorded],
            "refused": [s.tool_version for s in result.refused]}


def _headline(result: AdoptResult) -> str:
    written = sum(f.action == FileAction.WRITE for f in result.files)
    done = len(result.recorded)
    if result.dry_run:
        return (f"Dry run: would write {written} migration(s) and record {done} as applied; "
                "nothing was changed.")
    return f"Wrote {written} migration(s) into {result.target}; recorded {done} as applied."


def _render(result: AdoptResult) -> None:
    click.echo(f"Numbering: {result.numbering} ({result.numbering_reason}).")
    render.table(f"{result.tool} -> poststack", ["version", "from", "to", "rollback", "no-tx", "file"],
                 [(f.tool_version, f.source_path, f.filename, f.rollback_filename or "-",
                   "yes" if f.no_transaction else "", f.action) for f in result.files])
    if result.notes:
        click.echo("\nReported:")
        for note in result.notes:
            click.echo(f"  {note.kind.value.replace('_', ' ')}: {note.path}: {note.message}")
    if result.table is None:
        click.echo(f"\nNo {result.tool} history table on the database: nothing to record.")
    elif result.history:
        render.table(f"history from {result.table}", ["version", "poststack", "action", "evidence", "reason"],
                     [(s.tool_version, s.version_text or "-", s.action.replace("_", " "), s.status or "", s.reason)
                      for s in result.history])
        for step in result.refused:
            click.echo(f"\nNot adopted {step.tool_version} {step.name}: {step.reason}")
            for line in step.evidence:
                click.echo(f"  {line}")
    click.echo(_headline(result))


@click.command(name="adopt")
@click.option("--from", "tool", required=True, type=click.Choice(sorted(TOOLS)),
              help="The tool whose layout and history table to take over.")
@click.option("--source", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The tool's migrations directory (default: the tool's own default; sqitch: the plan's "
                   "directory).")
@click.option("--table", default=None, metavar="[SCHEMA.]NAME",
              help="The tool's history table, when not the tool's default name.")
@click.option("--dry-run", is_flag=True, help="Print the mapping and the history plan; change nothing.")
@format_option
@pass_ctx
def adopt_command(ctx: CliContext, tool: str, source: Path | None, table: str | None, dry_run: bool,
                  fmt: str) -> None:
    """Convert another tool's migrations into --migrations-path and record what its table says is applied.

    Each claimed version is checked against the database; one whose effects are absent refuses the
    history (nothing recorded). The tool's table is left in place and ignored by drift checks.
    """
    result = adopt(ctx.runner(), tool, source, dry_run=dry_run, table=table)
    if fmt == "json":
        render.echo_json(_json(result))
    else:
        _render(result)
    exit_if(result.exit_code != 0, result.exit_code)
