"""The native runtime computes the torch reference's very integers: rows, predictor state, bytes.

Every test here compares the native path with the reference one (``exact_model``, ``adapt``,
``coder``), on tiny random models of several shapes, at every SIMD level this CPU can run plus
the portable kernels, with one and two threads; and feeds the native decoder damaged streams.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lmzip
from lmzip.predict import adapt
from lmzip.coding import codec, container
from lmzip import native
from lmzip.predict.adapt import AdaptParams, AdaptivePredictor
from lmzip.coding.coder import TokenDecoder, TokenEncoder
from lmzip.model.convert import exact_config, exact_tensors, random_llama
from lmzip.errors import FormatError
from lmzip.model.exact_model import ExactModel
from lmzip.model.luts import exp_table
from lmzip.testing import load_with_runtime

pytestmark = pytest.mark.skipif(not native.available(), reason=f"native runtime not built: {native.unavailable_reason()}")

if native.available():
    from lmzip.native import _native
    from lmzip.native.coding import NativePredictor, NativeTokenDecoder, NativeTokenEncoder
    from lmzip.native.model import NativeModel

from test_coder import coding_cases, lm_rows, ref_encode  # noqa: E402

LEVELS = list(range(native.best_simd() + 1))  # portable, and each SIMD level this CPU runs
SHAPES = [
    dict(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64),
    dict(dim=48, n_layers=1, n_heads=3, n_kv_heads=1, ffn_dim=40),  # GQA 3:1, odd head count
    dict(dim=24, n_layers=2, n_heads=2, n_kv_heads=2, ffn_dim=32, vocab_size=300),  # dims not multiples of 32
    dict(dim=96, n_layers=1, n_heads=6, n_kv_heads=2, ffn_dim=200, vocab_size=70),  # head_dim 16, rep 3
    dict(dim=80, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=48, vocab_size=90),  # head_dim 40: AVX-512 passes of 32 and 8
]
_PAIRS: dict = {}


LOUD_SEED = 2  # pair(shape, LOUD_SEED): queries, keys and values 16 times larger


def pair(shape: int, seed: int = 0):
    """(reference, native) of the same random model. Seed LOUD_SEED gives a model whose keys and
    values often pass 2**15 (and reach the 2**20 clamp): the native cache's remainders beyond
    int16 are at work in every test that draws it (a random model's rarely are)."""
    key = (shape, seed)
    if key not in _PAIRS:
        cfg, w = random_llama(seed, max_context=160, **SHAPES[shape])
        ec, t = exact_config(cfg, 160), exact_tensors(cfg, w)
        if seed == LOUD_SEED:
            for i in range(ec.n_layers):
                t[f"layers.{i}.wqkv.scale"] = t[f"layers.{i}.wqkv.scale"] * 16
        _PAIRS[key] = ExactModel(ec, t), NativeModel(ec, t)
    return _PAIRS[key]


def tokens(vocab: int, seed: int, shape) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, shape)


@pytest.fixture(autouse=True)
def _restore_levels():
    yield
    _native.set_dense_level(native.best_simd())


# -- the model --------------------------------------------------------------------------------

@settings(max_examples=40)
@given(shape=st.integers(0, len(SHAPES) - 1), seed=st.integers(0, 2**31), batch=st.integers(1, 5),
       level=st.sampled_from(LEVELS), threads=st.sampled_from([1, 2]), data=st.data())
def test_rows_equal_the_reference_however_evaluated(shape, seed, batch, level, threads, data):
    """Full sequence, any split into steps (several tokens each), any batch, level and thread count."""
    ref, nat = pair(shape, seed % 3)
    nat.simd, nat.threads = level, threads
    length = data.draw(st.integers(1, 70))
    toks = tokens(ref.vocab_size, seed, (batch, length))
    want = ref.frequencies(torch.from_numpy(toks)).numpy()
    assert np.array_equal(nat.frequencies(toks), want)
    splits = []
    while sum(splits) < length:
        splits.append(data.draw(st.integers(1, length - sum(splits))))
    cache, rows, t = nat.new_cache(batch, 160), [], 0
    for n in splits:
        rows.append(nat.step(cache, toks[:, t : t + n]))
        t += n
    assert np.array_equal(np.concatenate(rows, 1), want)


@settings(max_examples=15)
@given(shape=st.integers(0, len(SHAPES) - 1), seed=st.integers(0, 2**31), data=st.data())
def test_streams_at_different_positions_and_cache_surgery(shape, seed, data):
    """The decoder's batch: streams prefilled alone and copied in, stepped at their own positions,
    some dropped mid-way (keep), lengths reset to forget rejected guesses."""
    ref, nat = pair(shape, data.draw(st.sampled_from([0, LOUD_SEED])))
    batch = data.draw(st.integers(2, 6))
    prefixes = [data.draw(st.integers(0, 30)) for _ in range(batch)]
    toks = tokens(ref.vocab_size, seed, (batch, 50))
    cache = nat.new_cache(batch, 64)
    for b, p in enumerate(prefixes):
        sub = nat.new_cache(1, 64)
        nat.hidden(sub, toks[b : b + 1, :p])
        cache.copy_stream(b, sub)
    assert list(cache.lengths) == prefixes
    # A step of 3 tokens, then forget the last two (as after a wrong guess) and step them again.
    nat.step(cache, np.stack([toks[b, p : p + 3] for b, p in enumerate(prefixes)]))
    cache.lengths[:] = np.array(prefixes) + 1
    got = nat.step(cache, np.stack([toks[b, p + 1 : p + 3] for b, p in enumerate(prefixes)]))
    keep = [b for b in range(batch) if b % 2 == 0]
    cache.keep(keep)
    later = nat.step(cache, np.stack([toks[b, prefixes[b] + 3 : prefixes[b] + 5] for b in keep]))
    for b, p in enumerate(prefixes):
        alone = ref.frequencies(torch.from_numpy(toks[b : b + 1, : p + 5])).numpy()[0]
        assert np.array_equal(got[b], alone[p + 1 : p + 3])
        if b in keep:
            assert np.array_equal(later[keep.index(b)], alone[p + 3 : p + 5])


@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_keys_and_values_beyond_int16_are_kept_whole(shape):
    """The loud model's cache marks remainders beyond int16 (so the tests above exercise them),
    and a stream copied over a stale one, with other remainders of its own, gives the rows of the
    stream alone."""
    ref, nat = pair(shape, LOUD_SEED)
    toks = tokens(ref.vocab_size, 7, (2, 60))
    cache = nat.new_cache(2, 64)
    nat.hidden(cache, toks[:, :40])
    keys, values = cache._raw.marked()
    assert keys > 0 and values > 0
    # Overwrite stream 0 with a copy of stream 1 (stale remainders of stream 0 remain marked),
    # then step both: stream 0 must now follow stream 1's text.
    cache.copy_stream(0, cache, 1)
    got = nat.step(cache, toks[[1, 1], 40:45])
    want = ref.frequencies(torch.from_numpy(toks[1:2, :45])).numpy()[0, 40:45]
    assert np.array_equal(got[0], want) and np.array_equal(got[1], want)


def test_every_simd_level_of_this_cpu_passes_its_known_answer_checks():
    """A level whose kernels disagree with the portable ones is dropped at load (with a line on
    stderr), which would let the tests above pass on a slower level: here it must not happen."""
    for level in LEVELS:
        assert _native.verified_simd(level) == level, native.SIMD_NAMES[level]
    _, nat = pair(4)
    nat.simd = native.best_simd()
    assert nat.simd == native.best_simd()


def test_dot_product_peak_is_measured_at_each_level():
    """benchmarks/native_speed.py reports the int8 peak beside the matmuls' rate: a figure for every
    SIMD level this CPU runs, none for the portable path."""
    assert _native.dot_peak(1, 1000, 0) == 0.0
    for level in LEVELS[1:]:
        assert _native.dot_peak(2, 20000, level) > 1e8


def test_logits_and_tables_equal_the_reference():
    ref, nat = pair(0)
    toks = tokens(ref.vocab_size, 3, (2, 40))
    h_ref = ref.hidden(ref.new_cache(2, 40), torch.from_numpy(toks))
    h_nat = nat.hidden(nat.new_cache(2, 40), toks)
    assert np.array_equal(h_nat, h_ref.numpy())  # the residual stream itself, bit for bit
    assert np.array_equal(nat.head_logits(h_nat), ref.head_logits(h_ref).numpy())
    z32 = nat.head_logits32(h_nat)
    assert z32.dtype == np.int32 and np.array_equal(z32, ref.head_logits(h_ref).numpy())
    # beyond 2**30 the int32 rows are refused and the int64 ones come back: the same model with
    # its head's scales 2**20 times larger (logits far past any real model's)
    cfg, w = random_llama(0, max_context=160, **SHAPES[0])
    ec, t = exact_config(cfg, 160), exact_tensors(cfg, w)
    t["head.scale"] = t["head.scale"] * 2**20
    loud = NativeModel(ec, t)
    big = loud.head_logits32(h_nat)
    assert big.dtype == np.int64 and np.array_equal(big, loud.head_logits(h_nat))
    assert np.abs(big).max() > 2**30
    assert np.array_equal(nat.out_exp, ref.out_exp.numpy())


def test_long_context_uses_the_key_split_path():
    """Few query rows over many keys split the keys across threads: same rows."""
    cfg, w = random_llama(5, max_context=1500, dim=48, n_layers=1, n_heads=3, n_kv_heads=1, ffn_dim=48)
    ec, t = exact_config(cfg, 1500), exact_tensors(cfg, w)
    ref, nat = ExactModel(ec, t), NativeModel(ec, t, threads=2)
    toks = tokens(256, 1, (1, 1400))
    want = ref.frequencies(torch.from_numpy(toks)).numpy()
    cache = nat.new_cache(1, 1400)
    nat.hidden(cache, toks[:, :1300])
    assert np.array_equal(nat.step(cache, toks[:, 1300:1301]), want[:, 1300:1301])
    assert np.array_equal(nat.step(cache, toks[:, 1301:1400]), want[:, 1301:1400])


def test_rejects_bad_input_like_the_reference():
    _, nat = pair(0)
    with pytest.raises(ValueError):
        nat.frequencies(np.array([[0, 256]]))
    with pytest.raises(ValueError):
        nat.step(nat.new_cache(1, 4), np.zeros((1, 5), dtype=np.int64))
    with pytest.raises(ValueError):
        nat.new_cache(1, 10**6)



def test_attention_weights_beyond_the_integer_mix_bound_are_refused(monkeypatch):
    """The integer mixes split a weight in two int16 parts, so a model whose exp table passes 2**20
    (the bound of kernels.h) is refused when it is built rather than mixed wrongly."""
    cfg, w = random_llama(0, max_context=32, **SHAPES[0])
    ec, t = exact_config(cfg, 32), exact_tensors(cfg, w)
    real = native.model.luts.exp_table
    monkeypatch.setattr(native.model.luts, "exp_table", lambda step, bits: real(step, bits) * 2 if bits == 20 else real(step, bits))
    with pytest.raises(ValueError, match="attention weights"):
        NativeModel(ec, t)
    monkeypatch.undo()
    NativeModel(ec, t)  # the real table passes


# -- the adaptive predictor -----------------------------------------------------------------------

EXP = exp_table(10, 30)
VARIANTS = [AdaptParams(), AdaptParams(temp_lr=200, ngram_order=3), AdaptParams(match=False, mix_lr=0),
            AdaptParams(bias_lr=0, bigram_lr=0), AdaptParams(bias_lr=0, bigram_lr=0, temp_lr=0, ngram_order=0, match=False),
            AdaptParams(version=1), AdaptParams(ngram_order=2, version=1), AdaptParams(temp_lr=5000, bias_lr=65535),
            AdaptParams(version=2), AdaptParams(version=2, temp_lr=200, ngram_order=3), AdaptParams(version=2, bias_lr=0)]


@settings(max_examples=30)
@given(seed=st.integers(0, 2**31), params=st.sampled_from(VARIANTS), vocab=st.sampled_from([40, 300]),
       level=st.sampled_from(LEVELS), n=st.integers(1, 260), alphabet=st.integers(2, 30), as32=st.booleans())
def test_predictor_state_digests_equal_token_by_token(seed, params, vocab, level, n, alphabet, as32):
    _native.set_dense_level(level)
    rng = np.random.default_rng(seed)
    classes = np.arange(vocab, dtype=np.int64) % adapt.N_CLASSES
    ref, nat = AdaptivePredictor(params, EXP, vocab, classes), NativePredictor(params, EXP, vocab, classes)
    letters = rng.integers(0, vocab, alphabet)
    seq = letters[rng.integers(0, alphabet, n)]
    seq = np.concatenate([seq, seq[: n // 2]])  # a repeat for the match model
    # 2**28: logits clamped below the maximum; 2**33: wider than the uint32 lanes (the int64 path);
    # 1.5 * 2**30: int32 logits beyond LOGIT32_LIMIT (the native predictor widens them)
    scale = rng.choice([10, 3000, 60000, 2**28, 3 * 2**29, 2**33])
    for i, y in enumerate(seq.tolist()):
        z = rng.integers(-scale, scale, vocab)
        if scale == 2**33:  # entries 2**32 and a little below the maximum: they must not wrap around
            z[: vocab // 4] = z.max() - 2**32 + rng.integers(-20000, 20000, vocab // 4)
        zn = z.astype(np.int32) if as32 and np.abs(z).max() < 2**31 else z  # head_logits32's rows
        assert np.array_equal(nat.predict(zn), ref.predict(z)), i
        ref.update(y)
        nat.update(y)
        assert nat.last == ref.last
        if i % 37 == 0:
            assert nat.digest() == ref.digest(), i
    assert nat.digest() == ref.digest()


@pytest.mark.parametrize("version", [2, 3])
def test_predictor_on_teacher_sized_rows(version):
    """49152 entries and logits spread like the teacher's: the full-width loops."""
    V = 49152
    rng = np.random.default_rng(7)
    classes = np.arange(V, dtype=np.int64) % adapt.N_CLASSES
    params = AdaptParams(version=version)
    for level in LEVELS:
        _native.set_dense_level(level)
        ref, nat = AdaptivePredictor(params, EXP, V, classes), NativePredictor(params, EXP, V, classes)
        for i in range(40):
            z = (rng.standard_normal(V) * 6000).astype(np.int64)
            y = int(rng.integers(0, 50)) if i % 3 else int(np.argmax(z))
            assert np.array_equal(nat.predict(z.astype(np.int32) if i % 2 else z), ref.predict(z))
            ref.update(y)
            nat.update(y)
        assert nat.digest() == ref.digest()


@pytest.mark.parametrize("level", LEVELS)
def test_fused_coding_of_teacher_sized_rows_equals_the_reference(level):
    """The fused loops hand the coder the block maxima of the predictor's output pass (corrected
    where the n-gram and match entries changed the row): the same bytes as the reference's
    predictor and coder, both ways, at the teacher's width (where the coder searches by blocks)."""
    _native.set_dense_level(level)
    V = 49152
    rng = np.random.default_rng(5)
    classes = np.arange(V, dtype=np.int64) % adapt.N_CLASSES
    z = (rng.standard_normal((120, V)) * 6000).astype(np.int64)
    ids = np.concatenate([rng.integers(0, 8, 60), rng.integers(0, V, 20), rng.integers(0, 8, 40)])  # repeats, escapes
    ref = AdaptivePredictor(AdaptParams(), EXP, V, classes)
    enc = TokenEncoder()
    for i, y in enumerate(ids.tolist()):
        enc.encode(y, ref.predict(z[i]))
        ref.update(y)
    want = enc.finish()
    nat, nenc = NativePredictor(AdaptParams(), EXP, V, classes), NativeTokenEncoder()
    nat.encode_logits(nenc, z.astype(np.int32), ids)
    assert nenc.finish() == want
    dec = NativeTokenDecoder(want)
    nat = NativePredictor(AdaptParams(), EXP, V, classes)
    got = []
    for i in range(len(ids)):  # no guesses: one row per call, as a stream decodes
        got += dec.decode_run(nat, z[i : i + 1].astype(np.int32), [])
    assert got == ids.tolist()
    dec.check_end()


@pytest.mark.parametrize("level", LEVELS)
def test_exp3_pass_equals_the_reference_formula(level):
    """Every argument exp3 can see (0..32767 and far beyond, wrapped in uint32 as the pass forms
    them), rows of every length: values, sum and the first index of the maximum."""
    _native.set_dense_level(level)
    rng = np.random.default_rng(3)
    top = 123456789
    d = np.concatenate([np.arange(0, 40000), rng.integers(0, 2**32, 5000), [2**32 - 1, 2**31, 2**31 - 1]])
    for n in (len(d), 1, 7, 8, 9, 31):
        dd = d[-n:] if n < len(d) else d
        q = ((top - dd) % 2**32).astype(np.uint32).view(np.int32)
        et, s, arg = _native.exp3_rel(q, top)
        want = adapt.exp3(dd.astype(np.int64))
        assert np.array_equal(et.astype(np.int64), want) and s == int(want.sum())
        zero = np.flatnonzero(dd == 0)
        assert arg == (int(zero[0]) if zero.size else n)


def test_version3_remainder_goes_to_the_smallest_id_among_equals():
    """Flat logits, no biases: after context (1, 2) came 9, then 3, the two get equal mixture
    weights; the remainder goes to 3 (the smaller id), not to the first seen."""
    V, params = 40, AdaptParams(bias_lr=0, bigram_lr=0, match=False)
    classes = np.arange(V, dtype=np.int64) % adapt.N_CLASSES
    for level in LEVELS:
        _native.set_dense_level(level)
        ref, nat = AdaptivePredictor(params, EXP, V, classes), NativePredictor(params, EXP, V, classes)
        for y in [1, 2, 9, 1, 2, 3, 1, 2]:
            row = ref.predict(np.zeros(V, dtype=np.int64))
            assert np.array_equal(nat.predict(np.zeros(V, dtype=np.int64)), row)
            ref.update(y)
            nat.update(y)
        row = ref.predict(np.zeros(V, dtype=np.int64))
        assert np.array_equal(nat.predict(np.zeros(V, dtype=np.int64)), row)
        assert row[3] > row[9] > row[0] and row[3] == row.max()


def test_predict_again_without_update_is_the_same():
    """Version 3's native pass takes the unigram step in predict: asked twice (a caller that looks
    before it codes), the second answer and the learned state are the reference's."""
    V = 300
    rng = np.random.default_rng(11)
    classes = np.arange(V, dtype=np.int64) % adapt.N_CLASSES
    ref, nat = AdaptivePredictor(AdaptParams(), EXP, V, classes), NativePredictor(AdaptParams(), EXP, V, classes)
    for i in range(60):
        z = rng.integers(-30000, 30000, V)
        if i % 4 == 0:
            nat.predict(rng.integers(-30000, 30000, V))  # a look at other logits first
        zn = z.astype(np.int32) if i % 2 else z  # int32 rows too (head_logits32's)
        assert np.array_equal(nat.predict(zn), ref.predict(z)), i
        y = int(rng.integers(0, 20))
        ref.update(y)
        nat.update(y)
    assert nat.digest() == ref.digest()


# -- the coder ------------------------------------------------------------------------------------

@settings(max_examples=150)
@given(coding_cases(), st.sampled_from(LEVELS))
def test_coder_bytes_equal_constriction_and_the_specification(case, level):
    _native.set_dense_level(level)
    total_bits, top_k, syms, rows = case
    enc = NativeTokenEncoder(total_bits, top_k)
    enc.encode_many(syms, rows)
    data = enc.finish()
    ref = TokenEncoder(total_bits, top_k)
    ref.encode_many(syms, rows)
    assert data == ref.finish() == ref_encode(syms, rows, total_bits, top_k)
    assert enc.num_escapes == ref.num_escapes
    dec = NativeTokenDecoder(data, total_bits, top_k)
    assert [dec.decode(r) for r in rows] == syms.tolist()
    dec.check_end()


def test_coder_at_full_vocab_with_escapes():
    syms, rows = lm_rows(12, 49152, seed=5)
    syms[::3] = np.random.default_rng(1).integers(0, 49152, size=len(syms[::3]))
    for top_k in (16, 64, 300):
        enc = NativeTokenEncoder(top_k=top_k)
        enc.encode_many(syms, rows.astype(np.int32))
        data = enc.finish()
        assert data == ref_encode(syms, rows, 24, top_k)
        dec = NativeTokenDecoder(data, top_k=top_k)
        assert [dec.decode(r) for r in rows] == syms.tolist()
        dec.check_end()


@settings(max_examples=60)
@given(seed=st.integers(0, 2**31), top_k=st.sampled_from([1, 2, 16, 64, 100]), level=st.sampled_from(LEVELS),
       kind=st.sampled_from(["ties", "few_values", "spread"]))
def test_candidates_of_wide_rows_with_ties(seed, top_k, level, kind):
    """Rows wide enough for the block search of the top-k candidates (V > 2 * 64 * top_k), with
    ties at the threshold that must resolve by id: the bytes equal the specification's."""
    _native.set_dense_level(level)
    rng = np.random.default_rng(seed)
    V = int(rng.integers(2 * 64 * top_k + 1, 2 * 64 * top_k + 3000))
    syms, rows = [], []
    for _ in range(6):
        if kind == "ties":  # all ones but a few: the k-th candidate is a 1 chosen by id
            r = np.ones(V, dtype=np.int64)
            hot = rng.choice(V, size=int(rng.integers(0, 2 * top_k)), replace=False)
            r[hot] = rng.integers(2, 50, size=hot.size)
        elif kind == "few_values":
            r = rng.choice([1, 2, 3, 500], size=V).astype(np.int64)
        else:
            r = rng.integers(1, 4000, size=V).astype(np.int64)
        r[int(rng.integers(0, V))] += (1 << 24) - int(r.sum())  # sums to 2**24 (entries stay >= 1)
        if r.min() < 1:
            continue
        rows.append(r)
        syms.append(int(rng.integers(0, V)) if rng.random() < 0.5 else int(np.argmax(r)))
    if not rows:
        return
    syms, rows = np.asarray(syms), np.stack(rows)
    enc = NativeTokenEncoder(24, top_k)
    enc.encode_many(syms, rows.astype(np.int32))
    data = enc.finish()
    assert data == ref_encode(syms, rows, 24, top_k)
    dec = NativeTokenDecoder(data, 24, top_k)
    assert [dec.decode(r) for r in rows.astype(np.int32)] == syms.tolist()
    dec.check_end()


def _decode_all(dec_cls, data: bytes, rows, top_k: int):
    dec = dec_cls(data, 24, top_k)
    out = [dec.decode(r) for r in rows]
    dec.check_end()
    return out


@settings(max_examples=200)
@given(st.binary(max_size=64), st.sampled_from([0, 4, 64]))
def test_damaged_streams_fail_like_the_reference(data, top_k):
    """Any bytes: the native decoder either decodes what the reference decodes or raises a
    FormatError where it does; it never crashes, hangs, or reads out of bounds."""
    syms, rows = lm_rows(6, 300, seed=len(data))
    outcome = []
    for cls in (TokenDecoder, NativeTokenDecoder):
        try:
            outcome.append(_decode_all(cls, data, rows, top_k))
        except FormatError as exc:
            outcome.append(type(exc))
    assert outcome[0] == outcome[1]


def test_invalid_rows_and_arguments_are_refused():
    enc = NativeTokenEncoder(24, 4)
    for bad in (np.zeros((1, 5), np.int64), np.full((1, 5), 2**22, np.int64), np.ones((1, 5), np.float64)):
        with pytest.raises(ValueError):
            enc.encode_many([0], bad)
    with pytest.raises(ValueError):
        enc.encode_many([7], np.full((1, 4), 2**22, np.int64))
    with pytest.raises(ValueError):
        NativeTokenEncoder(25, 4)
    with pytest.raises(FormatError):
        NativeTokenDecoder(b"\x01\x00", 24, 4)


# -- whole files ----------------------------------------------------------------------------------

SMALL = dict(window=48, overlap=16, segment_size=160)


@pytest.fixture(scope="module")
def both(tiny_model_dir):
    return load_with_runtime(tiny_model_dir, "native"), load_with_runtime(tiny_model_dir, "reference")


@settings(max_examples=25)
@given(data=st.binary(max_size=500) | st.text(max_size=400).map(str.encode), params=st.sampled_from(VARIANTS + [None]),
       fallback=st.booleans(), top_k=st.sampled_from([0, 8, 64]))
def test_files_are_byte_identical_across_runtimes(both, data, params, fallback, top_k):
    nat, ref = both
    opts = dict(SMALL, adapt=params or False, fallback=fallback, top_k=top_k)
    a = lmzip.Compressor(nat, **opts).compress(data)
    assert a == lmzip.Compressor(ref, **opts).compress(data)
    assert lmzip.decompress(a, ref) == data == lmzip.decompress(a, nat)


def test_fused_and_stepwise_native_paths_agree(both, monkeypatch):
    nat, _ = both
    data = b"the fused loop and the stepwise one code the same rows. " * 12
    fused = lmzip.Compressor(nat, **SMALL, fallback=False).compress(data)
    monkeypatch.setattr(codec, "FUSED", False)
    assert lmzip.Compressor(nat, **SMALL, fallback=False).compress(data) == fused
    assert lmzip.decompress(fused, nat) == data


def test_damaged_payloads_reach_the_native_decoder_safely(both):
    """Mutate LM payload bytes and rewrite the container with valid checksums: the native decoder
    sees arbitrary streams and must answer with a FormatError (or the right bytes), never crash."""
    nat, _ = both
    data = b"payload bytes that the tiny model codes, damaged on purpose. " * 4
    blob = lmzip.Compressor(nat, **SMALL, fallback=False).compress(data)
    header, payloads = container.read_container(blob)
    rng = np.random.default_rng(3)
    for trial in range(60):
        bad = [bytearray(p) for p in payloads]
        k = int(rng.integers(0, len(bad)))
        if trial % 3 == 0 and len(bad[k]) > 1:
            bad[k] = bad[k][: int(rng.integers(1, len(bad[k])))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                if bad[k]:
                    bad[k][int(rng.integers(0, len(bad[k])))] ^= int(rng.integers(1, 256))
        segs = [s.__class__(**{**s.__dict__, "payload_length": len(b)}) for s, b in zip(header.segments, bad)]
        h2 = header.__class__(**{**header.__dict__, "segments": segs})
        try:
            out = lmzip.decompress(container.write_container(h2, [bytes(b) for b in bad]), nat)
        except FormatError:
            continue
        assert out == data
