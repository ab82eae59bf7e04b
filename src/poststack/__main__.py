"""``python -m poststack``: the same entry point as the ``poststack`` script."""

from poststack.cli import main

main()
