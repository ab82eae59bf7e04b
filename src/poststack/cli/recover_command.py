"""``poststack db recover [--dry-run] [--force] [--format table|json]``: options in, RecoverResult out.

JSON (stable): ``{"dry_run", "force", "legacy_table", "recorded": [version_text...], "refused":
[version_text...], "steps": [{"version", "version_text", "name", "action", "reason", "status",
"evidence": [line...], "origin"}]}``. Exit 0 when done or nothing to do, 1 when something was refused,
2 for bad migration files (raised by the library).
"""

from __future__ import annotations

import click

from poststack.cli import render
from poststack.cli.context import CliContext, dev_url_option, format_option, pass_ctx
from poststack.cli.failure import exit_if
from poststack.engine.recovery import RecoverAction, RecoverResult, RecoverStep

_VERB = {RecoverAction.RECORD: "record", RecoverAction.RECORD_FORCED: "record (forced)",
         RecoverAction.IMPORT: "import"}


def _json(result: RecoverResult) -> dict[str, object]:
    return {"dry_run": result.dry_run, "force": result.force, "legacy_table": result.legacy_table,
            "recorded": [s.version_text for s in result.recorded],
            "refused": [s.version_text for s in result.refused],
            "steps": result.steps}


def _headline(result: RecoverResult) -> str:
    done = len(result.recorded)
    if result.dry_run:
        return f"Dry run: would record {done} migration(s); nothing was changed."
    return f"Recorded {done} migration(s)." if done else "Nothing recorded."


def _show_refusal(step: RecoverStep) -> None:
    render.line()
    render.line(f"Refused {step.version_text} {step.name}: {step.reason}")
    for line in step.evidence:
        render.line(f"  {line}")


@click.command()
@click.option("--dry-run", is_flag=True, help="Show the plan and its evidence; change nothing.")
@click.option("--force", is_flag=True,
              help="Also record migrations schema cannot decide (no schema change, e.g. data only), naming each.")
@dev_url_option
@format_option
@pass_ctx
def recover(ctx: CliContext, dry_run: bool, force: bool, dev_url: str | None, fmt: str) -> None:
    """Record migrations already applied outside poststack, proven by replayed states; adopt a legacy history.

    The migrations are replayed on a scratch database; the catalog must equal the state after a version for
    it to be recorded. A half-applied migration is refused, object by object.
    """
    result = ctx.runner().recover(dry_run=dry_run, force=force, dev_url=dev_url)
    if fmt == "json":
        render.echo_json(_json(result))
    else:
        if result.legacy_table:
            ctx.say(f"legacy history table {result.legacy_table} found")
        if result.steps:
            render.table(None, ["version", "name", "action", "evidence", "reason"],
                         [(s.version_text, s.name, _VERB.get(s.action, s.action).replace("_", " "), s.status,
                           s.reason) for s in result.steps])
        else:
            render.line("Nothing to recover: every migration file has a history row.")
        for step in result.refused:
            _show_refusal(step)
        render.line(_headline(result))
    exit_if(result.exit_code != 0, result.exit_code)
