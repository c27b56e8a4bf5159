"""The format and coding layer: the ``.lmz`` container, the range coder, segments and windows
(``codec``), streaming and random access, and the reversible byte transforms."""
