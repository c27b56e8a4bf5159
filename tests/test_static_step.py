"""The fixed-shape decoding step (lmzip/model/static_step.py) gives the reference step's integers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmzip.model.exact_model import ExactModel
from lmzip.model.static_step import StaticStep
from lmzip.testing import tiny_model

SHAPES = [
    dict(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64),
    dict(dim=48, n_layers=1, n_heads=3, n_kv_heads=1, ffn_dim=40),
    dict(dim=24, n_layers=2, n_heads=2, n_kv_heads=2, ffn_dim=32, vocab_size=300),
]
_MODELS: dict[tuple[int, int], ExactModel] = {}


def model_for(seed: int, shape: int) -> ExactModel:
    if (seed, shape) not in _MODELS:
        _MODELS[(seed, shape)] = tiny_model(seed, max_context=128, **SHAPES[shape])
    return _MODELS[(seed, shape)]


@settings(max_examples=25)
@given(seed=st.integers(0, 2), shape=st.integers(0, len(SHAPES) - 1), batch=st.integers(1, 5),
       steps=st.integers(1, 40), capacity=st.sampled_from([40, 128]), data=st.data())
def test_rows_equal_the_reference_stream_by_stream(seed, shape, batch, steps, capacity, data):
    """Streams at different lengths (slots restarted at random steps reuse their stale keys,
    masked): every row equals the reference step of that stream alone."""
    m = model_for(seed, shape)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    s = StaticStep(m, batch, capacity)
    refs = [m.new_cache(1, capacity) for _ in range(batch)]
    for i in range(steps):
        for slot in range(batch):
            if i and rng.random() < 0.08:
                s.reset(slot)
                refs[slot] = m.new_cache(1, capacity)
        toks = rng.integers(0, m.vocab_size, batch)
        got = s.step(toks.tolist()).clone()
        for b in range(batch):
            want = m._head_logits(m.hidden(refs[b], torch.tensor([[int(toks[b])]]))[0])
            assert torch.equal(got[b], want[0]), (i, b)
    assert s.lengths == [int(x) for x in s.cache.lengths] == [int(r.lengths[0]) for r in refs]


def test_a_full_cache_and_bad_ids_are_refused():
    m = model_for(0, 0)
    s = StaticStep(m, 2, 4)
    for _ in range(4):
        s.step([1, 2])
    with pytest.raises(ValueError, match="capacity"):
        s.step([1, 2])
    s.reset(0)
    s.reset(1)
    with pytest.raises(ValueError, match="token ids"):
        s.step([1, m.vocab_size])
    with pytest.raises(ValueError, match="token ids"):
        s.step([1])
    with pytest.raises(RuntimeError, match="CUDA"):
        s.capture()  # the CPU has no graphs: said, not crashed
