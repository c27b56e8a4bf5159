"""``python -m lmzip``: the same as the ``lmzip`` command."""

from .cli import main

main()
