"""poststack: PostgreSQL schema migrations whose recorded state can be trusted.

The public API is imported lazily so that `poststack --version` and a no-op migrate start fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "ChecksumChanged",
    "ConnectError",
    "LockTimeout",
    "MigrationDiagnostics",
    "MigrationFailed",
    "MigrationFileError",
    "MigrationRunner",
    "PoststackError",
    "RollbackRefused",
    "UsageError",
    "__version__",
]

_LAZY = {
    "MigrationRunner": "poststack.schema_migration",
    "MigrationDiagnostics": "poststack.migration_diagnostics",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)  # deferred: keeps start-up fast (docstring)
    errors = importlib.import_module("poststack.errors")  # deferred: keeps start-up fast (docstring)
    if hasattr(errors, name):
        return getattr(errors, name)
    raise AttributeError(f"module 'poststack' has no attribute {name!r}")
