"""The traceback decision of ``poststack.cli.main`` counts ``-v`` as click does, on either side of the command."""

import pytest

from poststack.cli.root import cli
from poststack.cli.root_options import verbosity_typed


@pytest.mark.parametrize("args, count", [
    ([], 0),
    (["db", "migrate"], 0),
    (["-v", "db", "migrate"], 1),
    (["-vv", "db", "migrate"], 2),
    (["-v", "-v", "db", "migrate"], 2),
    (["--verbose", "db", "migrate"], 1),
    (["db", "migrate", "-vv"], 2),
    (["-v", "db", "migrate", "--verbose", "-vv"], 4),  # before and after the command add up, as in CliContext
    (["-qv", "db", "migrate"], 1),  # a cluster of the root's flags (click then refuses -q with -v)
    (["db", "rollback", "--", "-v"], 0),  # after --: an argument, not an option
    (["db", "migrate", "--target", "-valid"], 0),  # 'a', 'l', 'i', 'd' are no short flags: not a cluster
    (["db", "migrate", "--verbosity"], 0),
])
def test_verbosity_typed_counts_like_the_root_option(args, count):
    assert verbosity_typed(args, cli) == count
