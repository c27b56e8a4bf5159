"""Guesses of the next tokens, so the decoder can check several tokens per model step.

The decoder has to run the model once per token: it learns token t only by decoding it,
and needs it as the input that predicts token t + 1. But because the exact model's rows
do not depend on how a sequence is split into steps, the decoder may *guess* the next
few tokens, run the model over the last decoded token plus the guesses in one step, and
use each row for as long as the guesses before it were right: the rows are bit for bit the
ones a step per token would have made. A wrong guess costs only the extra rows of that step.

On a CPU the model reads all its weights once per step however many tokens the step holds,
so a step of 16 tokens costs about 3 times a step of one; on a GPU, where one token's step
is bound by kernel launches, about the same. Guesses therefore pay where text repeats
itself (logs, data, markup) and must stay quiet where it does not: a context (the last 4,
3 or 2 tokens, the longest such first) proposes a token only when the same token followed it
the last two times. (Simulated with the CPU's step costs over whole files, this policy beat
letting the longest context decide alone, or trusting a single occurrence: dpkg.log x2.5,
packages.json x1.9, alice29.txt x1.02.)

Guesses only change the speed, never the result, so this module need not be exact or
versioned: the decoder could use any guesser, or none.
"""

from __future__ import annotations

ORDERS = (4, 3, 2)  # context lengths, longest first
MIN_STREAK = 2  # a context guesses after the same follower came this many times in a row


class Drafter:
    """Online table: context of the last k tokens -> [last follower, times in a row]."""

    def __init__(self) -> None:
        self._table: dict[tuple[int, ...], list[int]] = {}
        self._recent: list[int] = []  # the last max(ORDERS) tokens learned

    def learn(self, token: int) -> None:
        """Record that ``token`` followed the tokens learned so far."""
        recent, table = self._recent, self._table
        for k in ORDERS:
            if len(recent) >= k:
                key = (k, *recent[-k:])
                entry = table.get(key)
                if entry is None:
                    table[key] = [token, 1]
                elif entry[0] == token:
                    entry[1] += 1
                else:
                    entry[0], entry[1] = token, 1
        recent.append(token)
        if len(recent) > ORDERS[0]:
            del recent[0]

    def guess(self, limit: int) -> list[int]:
        """Up to ``limit`` tokens likely to come next, each guessed after the ones before it."""
        out: list[int] = []
        recent = list(self._recent)  # grows by the guesses; _propose reads only its tail
        while len(out) < limit:
            token = self._propose(recent)
            if token is None:
                break
            out.append(token)
            recent.append(token)
        return out

    def _propose(self, recent: list[int]) -> int | None:
        for k in ORDERS:  # the longest confident context decides
            if len(recent) >= k:
                entry = self._table.get((k, *recent[-k:]))
                if entry is not None and entry[1] >= MIN_STREAK:
                    return entry[0]
        return None
