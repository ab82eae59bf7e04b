"""poststack's testing framework: a pytest plugin and helpers for testing SQL migrations on real PostgreSQL."""

from __future__ import annotations

from poststack.testing.server import TestServer, create_database, drop_database, scratch_database

__all__ = ["TestServer", "create_database", "drop_database", "scratch_database"]
