"""``poststack server status|stop|url``: the embedded PostgreSQL, for users who never set a URL."""

from __future__ import annotations

import json

import click

from poststack.cli import render
from poststack.cli.context import format_option
from poststack.db import embedded


@click.command("status")
@format_option
def status(fmt: str) -> None:
    """Show whether the project's embedded PostgreSQL runs, and where."""
    info = embedded.inspect(embedded.project_pgdata())
    data = {"running": info.running, "pgdata": str(info.pgdata), "pid": info.pid,
            "socket_dir": str(info.socket_dir) if info.running and info.socket_dir else None}
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
    elif info.running:
        render.line(f"running: pid {info.pid}, data {info.pgdata}, socket {info.socket_dir}")
    else:
        render.line(f"stopped: data {info.pgdata}" + ("" if info.pgdata.exists() else " (not created yet)"))


@click.command("start")
def start() -> None:
    """Start the embedded PostgreSQL (commands start it on demand anyway)."""
    info = embedded.start(embedded.project_pgdata())
    render.line(f"running: pid {info.pid}, data {info.pgdata}")


@click.command("stop")
def stop() -> None:
    """Stop the embedded PostgreSQL; its data stays for next time."""
    pgdata = embedded.project_pgdata()
    render.line("stopped" if embedded.stop(pgdata) else "not running")


@click.command("url")
def url() -> None:
    """Print the embedded server's connection URL (Unix socket, no password), starting it if needed."""
    render.line(embedded.default_url())
