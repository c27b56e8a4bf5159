"""Guessed tokens in the decoder (draft.py): several tokens per model step, the same output."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lmzip
from lmzip.coding import codec
from lmzip.model import zoo
from lmzip.predict.adapt import AdaptParams
from lmzip.predict.draft import MIN_STREAK, Drafter


def test_drafter_guesses_a_continuation_only_after_it_repeated():
    d = Drafter()
    pattern = [5, 6, 7, 8, 9, 10]
    for t in pattern * (MIN_STREAK - 1) + pattern[:4]:
        d.learn(t)
    assert d.guess(3) == []  # each context has been followed once: no guess yet
    for t in pattern[4:] + pattern:  # now every context of the pattern was followed twice the same way
        d.learn(t)
    assert d.guess(8) == (pattern * 2)[:8]
    assert d.guess(0) == []
    d.learn(99)  # a context never seen: silence
    assert d.guess(4) == []


def test_drafter_follows_the_latest_habit():
    d = Drafter()
    for t in [1, 2, 3, 4, 5] * 3 + [1, 2, 3, 4, 6] * 2 + [1, 2, 3, 4]:
        d.learn(t)
    assert d.guess(1) == [6]


class _CountingSteps:
    """Wraps a model and records the shape of every decoding step (tokens per stream)."""

    def __init__(self, model):
        self._model, self.steps = model, []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def hidden(self, cache, tokens):
        if cache.batch == tokens.shape[0] and tokens.shape[1] <= codec.MAX_GUESSES + 1:
            self.steps.append(tuple(tokens.shape))
        return self._model.hidden(cache, tokens)


def _decode_counting(lm, blob, batch=16):
    counting = _CountingSteps(lm.model)
    spy = dataclasses.replace(lm, model=counting)
    return codec.decompress(blob, spy, batch=batch), counting.steps


@pytest.mark.parametrize("adapt", [True, False])
def test_repetitive_input_decodes_several_tokens_per_step(tiny, adapt):
    data = b"2026-11-26 08:33:10 status installed libfoo:amd64 1.2.3\n" * 30
    blob = lmzip.Compressor(tiny, window=400, overlap=100, segment_size=0, fallback=False, adapt=adapt).compress(data)
    out, steps = _decode_counting(tiny, blob)
    assert out == data
    multi = [s for s in steps if s[1] > 1]
    assert multi, "no step checked guessed tokens"
    assert len(steps) < 0.6 * len(data)  # byte tokens: far fewer steps than tokens


@settings(max_examples=40)
@given(unit=st.binary(min_size=1, max_size=12), reps=st.integers(1, 40), noise=st.binary(max_size=30),
       at=st.integers(0, 10**6), window=st.integers(4, 90), overlap=st.integers(0, 89), seg=st.integers(0, 300),
       adapt=st.booleans(), batch=st.sampled_from([1, 2, 16]))
def test_round_trip_with_guesses(tiny, unit, reps, noise, at, window, overlap, seg, adapt, batch):
    """Repeats with noise in them: guesses that hold, fail midway, cross windows and segments."""
    data = unit * reps
    k = at % (len(data) + 1)
    data = data[:k] + noise + data[k:]
    params = AdaptParams() if adapt else False
    blob = lmzip.Compressor(tiny, window=window, overlap=overlap % window, segment_size=seg, fallback=False,
                            adapt=params).compress(data)
    out, _ = _decode_counting(tiny, blob, batch=batch)
    assert out == data
