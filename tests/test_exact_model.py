"""Exactness invariants of the exact model: the same frequency tables, bit for bit, however evaluated."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from hypothesis import given, settings
from hypothesis import strategies as st

from lmzip.model import luts
from lmzip.model.convert import exact_config, exact_tensors, random_llama
from lmzip.model.exact_model import TOTAL_BITS, ExactModel, load_exact, normalize_frequencies
from lmzip.model.float_model import FloatLlama
from lmzip.testing import tiny_model

VECTORS = Path(__file__).parent / "vectors"

# A few shapes: MHA, GQA, odd head dims (non power-of-two score scale), bigger vocab.
SHAPES = [
    dict(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64),
    dict(dim=48, n_layers=1, n_heads=3, n_kv_heads=1, ffn_dim=40),
    dict(dim=24, n_layers=2, n_heads=2, n_kv_heads=2, ffn_dim=32, vocab_size=300),
]
_MODELS: dict[tuple[int, int], ExactModel] = {}


def model_for(seed: int, shape: int) -> ExactModel:
    key = (seed, shape)
    if key not in _MODELS:
        _MODELS[key] = tiny_model(seed, max_context=256, **SHAPES[shape])
    return _MODELS[key]


models = st.builds(model_for, st.integers(0, 3), st.integers(0, len(SHAPES) - 1))


def tokens_for(m: ExactModel, seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, m.vocab_size, shape, generator=g)


def run_incremental(m: ExactModel, toks: torch.Tensor, splits: list[int]) -> torch.Tensor:
    cache = m.new_cache(toks.shape[0], 256)
    out, t = [], 0
    for n in splits:
        out.append(m.step(cache, toks[:, t : t + n]))
        t += n
    return torch.cat(out, 1)


@settings(max_examples=40)
@given(m=models, seed=st.integers(0, 2**31), length=st.integers(1, 60))
def test_rows_are_valid_frequency_tables(m, seed, length):
    f = m.frequencies(tokens_for(m, seed, (2, length)))
    assert f.dtype == torch.int32 and f.shape == (2, length, m.vocab_size)
    assert int(f.min()) >= 1
    assert torch.all(f.to(torch.int64).sum(-1) == 2**TOTAL_BITS)


@settings(max_examples=40)
@given(m=models, seed=st.integers(0, 2**31), data=st.data())
def test_full_sequence_equals_incremental(m, seed, data):
    """One forward over the whole sequence == token-by-token (or any chunking) with the KV cache."""
    length = data.draw(st.integers(1, 70))
    splits = []
    while sum(splits) < length:
        splits.append(data.draw(st.integers(1, length - sum(splits))))
    toks = tokens_for(m, seed, (2, length))
    assert torch.equal(m.frequencies(toks), run_incremental(m, toks, splits))
    assert torch.equal(m.frequencies(toks), run_incremental(m, toks, [1] * length))


@settings(max_examples=25)
@given(m=models, seed=st.integers(0, 2**31), batch=st.integers(1, 64), length=st.integers(1, 24), data=st.data())
def test_batch_invariance(m, seed, batch, length, data):
    """A stream's tables do not depend on the batch size or on what the other slots hold."""
    slot = data.draw(st.integers(0, batch - 1))
    toks = tokens_for(m, seed, (batch, length))
    alone = m.frequencies(toks[slot : slot + 1])[0]
    assert torch.equal(m.frequencies(toks)[slot], alone)


@settings(max_examples=20)
@given(m=models, seed=st.integers(0, 2**31), data=st.data())
def test_batched_decoding_with_streams_of_different_lengths(m, seed, data):
    """Decoding several segments as one batch, each at its own position, matches each decoded alone."""
    batch = data.draw(st.integers(2, 8))
    prefixes = [data.draw(st.integers(0, 20)) for _ in range(batch)]
    steps = data.draw(st.integers(1, 10))
    toks = tokens_for(m, seed, (batch, 20 + steps))
    cache = m.new_cache(batch, 64)
    for b, p in enumerate(prefixes):  # prefill each slot alone to its own length
        sub = m.new_cache(1, 64)
        m.step(sub, toks[b : b + 1, :p])
        for li in range(m.cfg.n_layers):
            cache.k[li][b] = sub.k[li][0]
            cache.v[li][b] = sub.v[li][0]
        cache.lengths[b] = p
    got = []
    for s in range(steps):
        nxt = torch.stack([toks[b, prefixes[b] + s] for b in range(batch)])[:, None]
        got.append(m.step(cache, nxt)[:, 0])
    for b, p in enumerate(prefixes):
        alone = m.frequencies(toks[b : b + 1, : p + steps])[0, p:]
        assert torch.equal(torch.stack([g[b] for g in got]), alone)


@settings(max_examples=30)
@given(m=models, seed=st.integers(0, 2**31), length=st.integers(2, 60), data=st.data())
def test_prefix_invariance(m, seed, length, data):
    """A sequence evaluated alone gives the same tables as when it is the prefix of a longer one."""
    k = data.draw(st.integers(1, length))
    toks = tokens_for(m, seed, (1, length))
    assert torch.equal(m.frequencies(toks[:, :k]), m.frequencies(toks)[:, :k])


def test_thread_count_invariance():
    m = model_for(1, 0)
    toks = tokens_for(m, 5, (3, 80))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = m.frequencies(toks)
        torch.set_num_threads(2)
        two = m.frequencies(toks)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


class _DeviceDependentOps(TorchFunctionMode):
    """Records torch calls whose result may differ between CPU and CUDA in the last bit.

    ``tensor / number`` is one: CUDA multiplies by the reciprocal (two roundings), the CPU
    divides. A 135M teacher coded on an H100 failed to decode on the CPU because of it, while
    tiny models happened to agree, so this is checked on the operations, not on the results.
    Transcendentals (libm vs CUDA intrinsics) are the other kind: the model must use its tables.
    """

    DIVS = {torch.div, torch.true_divide, torch.Tensor.div, torch.Tensor.div_, torch.Tensor.__truediv__,
            torch.Tensor.__itruediv__, torch.Tensor.true_divide, torch.Tensor.true_divide_}
    TRANSCENDENTAL = {"exp", "exp_", "exp2", "expm1", "log", "log_", "log2", "log1p", "sigmoid", "sigmoid_",
                      "tanh", "sin", "cos", "rsqrt", "rsqrt_", "erf", "softmax", "log_softmax", "silu", "gelu"}

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.DIVS and kwargs.get("rounding_mode") is None and len(args) > 1:
            d = args[1]
            if isinstance(d, (int, float)) and not (d and math.frexp(abs(d))[0] == 0.5):
                self.found.append(f"{getattr(func, '__name__', func)} by the number {d}")
        name = getattr(func, "__name__", "")
        if name in self.TRANSCENDENTAL or (name in {"pow", "pow_", "__pow__"} and isinstance(args[1], float)):
            self.found.append(name)
        return func(*args, **kwargs)


def test_forward_uses_only_device_independent_operations():
    m = model_for(2, 0)
    toks = tokens_for(m, 9, (2, 40))
    with _DeviceDependentOps() as guard:
        m.frequencies(toks)
        cache = m.new_cache(2, 48)
        m.step(cache, toks[:, :30])
        m.step(cache, toks[:, 30:31])
        m.head_logits(m.hidden(m.new_cache(1, 8), toks[:1, :8])[0])
    assert guard.found == []
    with _DeviceDependentOps() as guard:  # the guard itself sees what it looks for
        (toks.to(torch.float64) / 3.0).exp()
        _ = toks.to(torch.float64) / 4.0  # a power of two is exact either way
    assert [f.split()[-1] for f in guard.found] == ["3.0", "exp"]


@settings(max_examples=50)
@given(st.lists(st.integers(0, 2**30), min_size=2, max_size=400).filter(lambda v: max(v) > 0), st.sampled_from([16, 24]))
def test_normalize_frequencies(weights, bits):
    e = torch.tensor([weights], dtype=torch.int64)
    f = normalize_frequencies(e, bits)
    assert int(f.min()) >= 1 and int(f.to(torch.int64).sum()) == 2**bits
    # Monotone: a larger weight never gets a smaller frequency (the symbol that took the
    # rounding remainder, the first of largest weight, only gains).
    winner = int(e[0].argmax())
    others = [i for i in range(len(weights)) if i != winner]
    order = sorted(others, key=lambda i: weights[i])
    fo = [int(f[0, i]) for i in order]
    assert all(a <= b for a, b in zip(fo, fo[1:]))
    assert int(f[0, winner]) == int(f[0].max())


def test_tables_are_pinned():
    """The lookup tables define the numerics: any change must be deliberate (and bump NUMERICS_VERSION)."""

    def digest(*ts):
        h = hashlib.sha256()
        for t in ts:
            h.update(np.asarray(t).astype("<i8").tobytes())
        return h.hexdigest()[:16]

    assert digest(luts.exp_table(10, 20)) == digest(luts._exp_table(10, 20)) == "b8b370c042b28de6"
    assert digest(luts.exp_table(10, 30)) == digest(luts._exp_table(10, 30)) == "bf1fd0395927d155"
    assert digest(luts.sigmoid_table(10, 24, 16)) == digest(luts._sigmoid_table(10, 24, 16)) == "e21615a0c6022ca4"
    # The public functions may read the disk cache; the builders must still make the same tables.
    assert digest(*luts.rope_tables(64, 100000.0, 4096, 16)) == digest(*luts._rope_tables(64, 100000.0, 4096, 16)) == "e7c10fc7103c901b"


def test_disk_cache_of_the_tables_rejects_damage(tmp_path, monkeypatch):
    monkeypatch.setenv("LMZIP_HOME", str(tmp_path))
    good = luts._cached("t.npy", lambda: np.arange(5, dtype=np.int64))
    stored = tmp_path / "tables" / "t.npy"
    raw = bytearray(stored.read_bytes())
    raw[-40] ^= 1  # a changed byte of the array: the digest no longer matches
    stored.write_bytes(bytes(raw))
    assert luts._load_cached("t.npy") is None
    assert np.array_equal(luts._cached("t.npy", lambda: np.arange(5, dtype=np.int64)), good)


def test_tables_match_the_functions():
    e = torch.from_numpy(luts.exp_table(10, 30).astype(np.float64)) / 2**30
    x = torch.arange(len(e) - 1, dtype=torch.float64) / 1024
    assert torch.allclose(e[:-1], torch.exp(-x), atol=2**-30)
    s = torch.from_numpy(luts.sigmoid_table(10, 24, 16).astype(np.float64)) / 2**24
    xs = (torch.arange(len(s), dtype=torch.float64) - 16 * 1024) / 1024
    assert torch.allclose(s, torch.sigmoid(xs), atol=2**-24)
    c, sn = (torch.from_numpy(t.copy()) for t in luts.rope_tables(16, 10000.0, 300, 16))
    ang = torch.arange(300, dtype=torch.float64)[:, None] * 10000.0 ** (-torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    assert torch.allclose(c.double() / 2**16, torch.cos(ang), atol=2**-16)
    assert torch.allclose(sn.double() / 2**16, torch.sin(ang), atol=2**-16)


def test_committed_vector_still_decodes_to_the_same_tables():
    """A committed tiny model + tokens + digest of its tables: catches any change in the numerics."""
    m = load_exact(VECTORS / "tiny-model" / "model.safetensors")
    toks = torch.tensor(np.frombuffer((VECTORS / "tiny-model.tokens").read_bytes(), dtype="<u2").astype(np.int64))[None]
    f = m.frequencies(toks)
    digest = hashlib.sha256(f.numpy().astype("<i4").tobytes()).hexdigest()
    assert digest == (VECTORS / "tiny-model.sha256").read_text().split()[0]


def test_close_to_the_float_reference():
    """Same network as the float model: tiny quantisation differences only."""
    cfg, w = random_llama(3, max_context=256, **SHAPES[0])
    m = ExactModel(exact_config(cfg, 256), exact_tensors(cfg, w))
    toks = tokens_for(m, 1, (2, 50))
    lp = torch.log_softmax(FloatLlama(cfg, w).logits(toks).double(), -1)
    lq = torch.log(m.frequencies(toks).double() / 2**TOTAL_BITS)
    kl = (lp.exp() * (lp - lq)).sum(-1)
    assert float(kl.mean()) < 0.01


def test_rejects_bad_input():
    m = model_for(0, 0)
    with pytest.raises(ValueError):
        m.frequencies(torch.tensor([[0, 256]]))
    with pytest.raises(ValueError):
        m.step(m.new_cache(1, 4), torch.zeros(1, 5, dtype=torch.int64))
