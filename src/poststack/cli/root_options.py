"""The root options (``--database-url`` ... ``-v``, ``-q``) accepted after a ``db`` subcommand as well.

Users type ``poststack db migrate --lock-timeout 120``: the option belongs to the root, but where it is
typed is where it was meant. Each ``db`` subcommand gets a copy of the root's options (same names, types
and help) that does not reach the command's function: its callback folds the value into the
:class:`CliContext` the root made, so every command sees one set of settings. A value given after the
subcommand wins over one given before it; ``-v`` counts add up; ``-q`` with ``-v`` anywhere is refused.
A subcommand that has an option of the same name keeps its own.
"""

from __future__ import annotations

import click

from poststack.cli.context import CliContext

ROOT_OPTION_NAMES = ("database_url", "migrations_path", "history_schema", "lock_timeout", "verbose", "quiet")
_MARK = "_poststack_root_options"


def _fold(ctx: click.Context, param: click.Parameter, value: object) -> None:
    """Callback of a copied root option: record the value on the shared context, if one was typed."""
    if value is None or value is False or value == 0:
        return
    obj = ctx.find_object(CliContext)
    if obj is None:  # the command was invoked on its own, without the root group: nothing to fold into
        return
    assert param.name is not None
    obj.override(param.name, value, ctx)


def _copy(option: click.Option) -> click.Option:
    kwargs: dict[str, object] = {"help": option.help, "expose_value": False, "callback": _fold,
                                 "is_eager": False}
    if option.count:
        kwargs["count"] = True
    elif option.is_flag:
        kwargs["is_flag"] = True
    else:
        kwargs.update(type=option.type, default=None, metavar=option.metavar)
    return click.Option([*option.opts, *option.secondary_opts], **kwargs)  # type: ignore[arg-type]


def add_root_options(command: click.Command, root: click.Command) -> click.Command:
    """Give ``command`` the root's options (once; commands are module-level objects, shared by calls)."""
    if getattr(command, _MARK, False):
        return command
    own = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    for param in root.params:
        if (isinstance(param, click.Option) and param.name in ROOT_OPTION_NAMES
                and own.isdisjoint((*param.opts, *param.secondary_opts))):
            command.params.append(_copy(param))
    setattr(command, _MARK, True)
    return command
