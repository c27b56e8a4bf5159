"""The sliding-window schedule of a model-coded segment (FORMAT.md §7.3), on its own so that code
without the coder (the students' trainer on a GPU host without constriction) uses the very
windows compression uses."""

from __future__ import annotations

from collections.abc import Iterator


def windows(n: int, window: int, overlap: int) -> Iterator[tuple[int, int, int]]:
    """Schedule over the inputs s[0..n-1] of s = [BOS] + tokens (input i predicts tokens[i]).

    Yields (start, context, length): the model reads s[start : start + length] from position
    0 and codes the predictions of rows context..length-1, i.e. tokens[start + context : start + length].
    """
    start, ctx = 0, 0
    while True:
        length = min(window, n - start)
        if length <= ctx:
            return
        yield start, ctx, length
        if start + length >= n:
            return
        start, ctx = start + length - overlap, overlap
