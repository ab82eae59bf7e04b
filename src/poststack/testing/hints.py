"""Hints added to a migration's failure where the fix is known and the server's words do not say it."""

from __future__ import annotations

_HINTS = (
    ("cannot run inside a transaction block",
     "hint: statements such as CREATE INDEX CONCURRENTLY cannot run in a transaction: put "
     "'-- poststack:no-transaction' in the migration's first lines to run it statement by statement"),
)


def with_hint(message: str) -> str:
    """``message``, followed by the hint for the failure it describes, if poststack knows one."""
    for needle, hint in _HINTS:
        if needle in message and hint not in message:
            return f"{message}\n{hint}"
    return message
