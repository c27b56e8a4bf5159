"""The commands: the ``lmzip`` CLI and what its commands share, ``lmzip bench`` with its corpora,
``lmzip explain``, progress display, and the CLI side of the Ray cluster."""
