"""Talking to PostgreSQL: connections, poststack's history and lock, legacy tables, the embedded server."""
