"""CLITestRunner.argv: an option the command defines itself stays with the command (db is a lazy group)."""

from pathlib import Path

from poststack.testing import CLITestRunner


def _runner() -> CLITestRunner:
    return CLITestRunner("postgresql://app@db.invalid/app", Path("migrations"))


def test_a_commands_own_option_stays_with_the_command_even_in_a_lazy_group():
    argv = _runner().argv("lint", ["--database-url", "postgresql://ro@prod.invalid/app"])
    lint_at = argv.index("lint")
    assert argv[lint_at + 1:] == ["--database-url", "postgresql://ro@prod.invalid/app"]  # lint's own option
    assert argv[:2] == ["--database-url", "postgresql://app@db.invalid/app"]  # the runner's, for the root

