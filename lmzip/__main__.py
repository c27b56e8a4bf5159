"""``python -m lmzip``: the same as the ``lmzip`` command."""

from .commands.cli import main

main()
