"""The root options (``--database-url`` ... ``-v``, ``-q``) accepted after a ``db`` subcommand as well.

Users type ``poststack db migrate --lock-timeout 120``: the option belongs to the root, but where it is
typed is where it was meant. Each ``db`` subcommand gets a copy of the root's options (same names, types
and help) that does not reach the command's function: its callback folds the value into the
:class:`CliContext` the root made, so every command sees one set of settings. A value given after the
subcommand wins over one given before it; ``-v`` counts add up; ``-q`` with ``-v`` anywhere is refused.
A subcommand that has an option of the same name keeps its own.

``verbosity_typed`` counts ``-v`` on either side the same way, for the one reader that comes after click's
context is gone: the traceback decision of ``poststack.cli.main``.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def is_root_copy(param: click.Parameter) -> bool:
    """Whether ``param`` is a subcommand's copy of a root option (not an option of the command's own)."""
    return isinstance(param, click.Option) and param.callback is _fold


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


def _short_letters(option: click.Option) -> set[str]:
    return {o[1] for o in (*option.opts, *option.secondary_opts) if len(o) == 2 and o[0] == "-" and o[1] != "-"}


def verbosity_typed(args: Sequence[str], root: click.Command) -> int:
    """How many times the root's ``-v/--verbose`` was typed, before or after the subcommand, as click counts it.

    ``main`` decides on a traceback once click has unwound (the error may come from the root's own callback,
    before any CliContext exists), so it reads the command line again, with the root's option strings:
    ``-v``, ``-vv``, ``-v -v``, ``--verbose`` and a cluster of the root's short flags (``-qv``) all count;
    nothing after ``--`` does (those are arguments), nor a token with a letter that is no short flag.
    """
    options = [p for p in root.params if isinstance(p, click.Option)]
    [verbose] = [p for p in options if p.name == "verbose"]
    longs = {o for o in (*verbose.opts, *verbose.secondary_opts) if o.startswith("--")}
    letters = _short_letters(verbose)
    flags = {letter for p in options if p.is_flag or p.count for letter in _short_letters(p)}
    count = 0
    for arg in args:
        if arg == "--":
            break
        if arg in longs:
            count += 1
        elif len(arg) > 1 and arg[0] == "-" and arg[1] != "-" and set(arg[1:]) <= flags:
            count += sum(letter in letters for letter in arg[1:])
    return count
