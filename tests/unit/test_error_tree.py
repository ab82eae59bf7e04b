"""Errors that moved into poststack.errors keep their old import paths, codes, exit codes and base classes."""

import pytest

from poststack import errors


@pytest.mark.parametrize(("module", "name", "code", "exit_code"), [
    ("poststack.source.sqltext", "SqlSyntaxError", "sql_syntax_error", errors.EXIT_USAGE),
    ("poststack.source.objects", "SqlSyntaxError", "sql_syntax_error", errors.EXIT_USAGE),
    ("poststack.db.scratch_databases", "ScratchDatabaseError", "scratch_database_unavailable", errors.EXIT_CONNECT),
    ("poststack.engine.verify", "ScratchDatabaseError", "scratch_database_unavailable", errors.EXIT_CONNECT),
    ("poststack.engine.replay", "EvidenceUnavailable", "evidence_unavailable", errors.EXIT_CONNECT),
])
def test_an_old_import_path_names_the_class_in_errors(module: str, name: str, code: str, exit_code: int) -> None:
    import importlib

    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(errors, name)
    assert issubclass(cls, errors.PoststackError)
    assert (cls.code, cls.exit_code) == (code, exit_code)


def test_errors_that_were_value_errors_still_are() -> None:
    """Code using the library API may catch them as ValueError, as it could before they joined the tree."""
    from poststack.catalog.snapshot import Snapshot
    from poststack.source.sqltext import split_statements

    with pytest.raises(ValueError, match="syntax error") as parsed:
        split_statements("CREATE TABEL x ();")
    assert isinstance(parsed.value, errors.SqlSyntaxError)
    with pytest.raises(ValueError, match="not a poststack schema snapshot") as loaded:
        Snapshot.from_json('{"format": 99, "objects": {}}')
    assert isinstance(loaded.value, errors.SnapshotFormatError)
    assert loaded.value.exit_code == errors.EXIT_USAGE


def test_evidence_unavailable_is_not_a_connect_error() -> None:
    """Exit 3 like one, but a fallback on ConnectError (replay's choice of server) must not catch it."""
    assert not issubclass(errors.EvidenceUnavailable, errors.ConnectError)
    assert issubclass(errors.ScratchDatabaseError, errors.ConnectError)
