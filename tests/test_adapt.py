"""The adaptive predictor: exact integer state that the decoder reproduces token for token."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lmzip
from lmzip.predict import adapt
from lmzip.coding import codec, container, transforms
from lmzip.model import zoo
from lmzip.predict.adapt import AdaptParams, AdaptivePredictor
from lmzip.model.exact_model import normalize_frequencies
from lmzip.model.luts import exp_table

EXP = exp_table(10, 30)
SMALL = dict(window=48, overlap=16, segment_size=160, fallback=False)

ALL_OFF = AdaptParams(bias_lr=0, bigram_lr=0, temp_lr=0, ngram_order=0, match=False)
VARIANTS = [AdaptParams(), AdaptParams(temp_lr=200, ngram_order=3), AdaptParams(match=False, mix_lr=0),
            AdaptParams(bias_lr=0, bigram_lr=0), ALL_OFF, AdaptParams(version=1),
            AdaptParams(ngram_order=2, version=1), AdaptParams(version=2), AdaptParams(version=2, ngram_order=3)]


def _classes(V: int) -> np.ndarray:
    return np.arange(V, dtype=np.int64) % adapt.N_CLASSES


@given(st.lists(st.integers(0, 2**30), min_size=2, max_size=300).filter(lambda v: any(v)))
def test_normalize_matches_the_exact_model(e):
    a = np.asarray(e, dtype=np.int64)
    f = adapt.normalize(a.copy())
    assert f.min() >= 1 and f.sum() == 2**24
    assert np.array_equal(f, normalize_frequencies(torch.from_numpy(a)).numpy())


def test_params_bytes_round_trip():
    for p in VARIANTS:
        assert AdaptParams.from_bytes(p.to_bytes()) == p
        assert p.to_bytes()[0] == p.version  # version 1: one mixer, as first written
    raw = AdaptParams().to_bytes()
    assert raw[0] == 3  # the default: exp3
    for bad in (b"", raw[:-1], raw + b"\0", b"\x04" + raw[1:], b"\x00" + raw[1:], raw[:8] + b"\x02" + raw[9:]):
        with pytest.raises(ValueError):
            AdaptParams.from_bytes(bad)
    with pytest.raises(ValueError):
        AdaptParams(ngram_order=7).to_bytes()


def test_exp3_against_the_exponential():
    """exp3: 2**30 at 0 only, never increasing, 0 from 21294 on (as the table), and within 2**-13
    of 2**30 e**(-d/1024) wherever the value exceeds 2**16."""
    d = np.arange(0, 70000, dtype=np.int64)
    e = adapt.exp3(d)
    assert e[0] == 2**30 and (e[1:] < 2**30).all() and (np.diff(e) <= 0).all()
    assert (e[21294:] == 0).all() and e[21293] > 0
    true = 2.0**30 * np.exp(-d / 1024)
    big = true > 2**16
    assert np.abs(e[big] / true[big] - 1).max() < 2**-13
    assert adapt.exp3(np.array([2**40]))[0] == 0


def test_version3_rows_are_distributions_close_to_version2():
    """Same inputs, version 2 and 3: every row sums to 2**24 with entries >= 1, and the two
    predictors' code lengths differ by little (version 3 changes only rounding)."""
    V = 500
    rng = np.random.default_rng(4)
    letters = rng.integers(0, V, 12)
    seq = letters[rng.integers(0, 12, 400)]
    bits = {}
    for version in (2, 3):
        pred = AdaptivePredictor(AdaptParams(version=version), EXP, V, _classes(V))
        r = np.random.default_rng(9)
        total = 0.0
        for y in seq.tolist():
            f = pred.predict((r.standard_normal(V) * 3000).astype(np.int64))
            assert f.sum() == 2**24 and f.min() >= 1
            total -= np.log2(f[y] / 2**24)
            pred.update(y)
        bits[version] = total
    assert abs(bits[3] / bits[2] - 1) < 0.002


def _run(params: AdaptParams, logits: np.ndarray, tokens: list[int]) -> tuple[list[np.ndarray], AdaptivePredictor]:
    pred = AdaptivePredictor(params, EXP, logits.shape[1], _classes(logits.shape[1]))
    rows = []
    for z, y in zip(logits, tokens):
        rows.append(pred.predict(z))
        pred.update(y)
    return rows, pred


@settings(max_examples=25)
@given(st.integers(0, 2**32 - 1), st.integers(1, 120), st.sampled_from(VARIANTS), st.integers(3, 12))
def test_rows_are_valid_and_replay_identically(seed, n, params, alphabet):
    """Every row is a valid coder table; a second predictor fed the same history is bit-identical
    at every step (what the decoder does), and the state digests agree."""
    rng = np.random.default_rng(seed)
    V = 300
    logits = rng.integers(-30000, 30000, size=(n, V)).astype(np.int64)
    tokens = rng.integers(0, alphabet, size=n).tolist()  # a small alphabet: n-grams and matches fire
    rows, a = _run(params, logits, tokens)
    b = AdaptivePredictor(params, EXP, V, _classes(V))
    for z, y, row in zip(logits, tokens, rows):
        assert row.min() >= 1 and row.sum() == 2**24
        assert np.array_equal(b.predict(z.copy()), row)
        b.update(y)
    assert a.digest() == b.digest()


def test_all_off_is_the_model_alone():
    """Versions 1-2 with nothing switched on code the model's own rows; version 3 its exp3 rows
    (the biased teacher's floors, the remainder at the first maximum)."""
    rng = np.random.default_rng(1)
    logits = rng.integers(-20000, 20000, size=(40, 256)).astype(np.int64)
    tokens = rng.integers(0, 256, size=40).tolist()
    rows, _ = _run(dataclasses.replace(ALL_OFF, version=2), logits, tokens)
    d = logits.max(1, keepdims=True) - logits
    m = normalize_frequencies(torch.from_numpy(EXP[np.minimum(d, len(EXP) - 1)])).numpy()
    assert np.array_equal(np.stack(rows), m)
    rows, _ = _run(ALL_OFF, logits, tokens)
    for row, e in zip(rows, adapt.exp3(d)):
        f = ((e * ((2**24 - 256 << 32) // int(e.sum()))) >> 32) + 1
        f[int(e.argmax())] += 2**24 - int(f.sum())
        assert np.array_equal(row, f)


def _token_class_spec(b: bytes) -> int:
    """The rule as FORMAT.md states it, one token at a time."""
    letter = set(range(65, 91)) | set(range(97, 123))
    if b"\n" in b:
        return 0
    if len(b) >= 2 and b[0] == 32 and b[1] in letter:
        return 1
    if b and 48 <= b[0] <= 57:
        return 2
    if b and b[0] in letter:
        return 3
    return 4


@settings(max_examples=100)
@given(st.lists(st.binary(max_size=4) | st.lists(st.sampled_from(b"\n 09AZaz:\x00\xff"), max_size=4).map(bytes),
                max_size=40), st.integers(0, 5))
def test_token_classes_follow_the_rule_token_by_token(spellings, unspellable):
    V = len(spellings) + unspellable  # ids past the list cannot be spelled: "other"
    want = [_token_class_spec(b) for b in spellings] + [4] * unspellable
    assert adapt.token_classes(spellings.__getitem__, V).tolist() == want


def test_token_classes_and_the_second_mixer():
    spell = {0: b"\n", 1: b" the", 2: b"42", 3: b"abc", 4: b"{", 5: b"", 6: b" 7", 7: b"a\nb", 8: b"\xc3\xa9"}
    classes = adapt.token_classes(spell.__getitem__, 10)  # id 9 cannot be spelled: "other"
    assert classes.tolist() == [0, 1, 2, 3, 4, 4, 4, 0, 4, 4]
    with pytest.raises(ValueError):
        AdaptivePredictor(AdaptParams(), EXP, 10)  # the second mixer needs the classes
    AdaptivePredictor(AdaptParams(version=1), EXP, 10)  # version 1 does not
    # With both mixers the state holds a second weight table, and it changes the rows.
    rng = np.random.default_rng(7)
    logits = rng.integers(-3000, 3000, size=(200, 64)).astype(np.int64)
    tokens = (list(range(10)) * 20)
    one, a = _run(AdaptParams(version=1), logits, tokens)
    two, b = _run(AdaptParams(), logits, tokens)
    assert not a.weights2 and b.weights2
    assert any(not np.array_equal(x, y) for x, y in zip(one, two))


def test_learning_pays_on_repetition():
    """A flat model on a repeated phrase: bias, n-grams and match must drive the cost far down."""
    phrase = [5, 17, 3, 99, 42, 7, 250, 8, 1, 64]
    tokens = phrase * 30
    logits = np.zeros((len(tokens), 256), dtype=np.int64)
    for params, limit in ((AdaptParams(), 0.5), (AdaptParams(bias_lr=0, bigram_lr=0, ngram_order=0), 1.5),
                          (AdaptParams(ngram_order=0, match=False), 4.0)):
        rows, _ = _run(params, logits, tokens)
        bits = [24 - np.log2(r[y]) for r, y in zip(rows, tokens)]
        assert np.mean(bits[-100:]) < limit, params  # the flat model alone costs 8 bits
    # n-gram and match models look back across any distance: no window limits them


class _Recording:
    """Wraps the codec's predictor and records the state digest after every learned token."""

    log: list = []

    def __init__(self, inner):
        self.inner = inner
        self.digests: list[str] = []
        _Recording.log.append(self.digests)

    def predict(self, z):
        return self.inner.predict(z)

    def update(self, y):
        self.inner.update(y)
        self.digests.append(self.inner.digest())


def record_predictors(monkeypatch) -> None:
    new = codec.new_predictor
    monkeypatch.setattr(codec, "new_predictor", lambda lm, params: _Recording(new(lm, params)))
    monkeypatch.setattr(codec, "FUSED", False)  # one call per token, so the digests can be taken between them


def test_encoder_and_decoder_states_agree_after_every_token(tiny, monkeypatch):
    data = b"state after state, the decoder mirrors the encoder.\r\n" * 8 + b"and then something new."
    record_predictors(monkeypatch)
    _Recording.log = []
    blob = lmzip.Compressor(tiny, **SMALL).compress(data)
    enc = [d for d in _Recording.log if d]  # the fallback check of each segment makes no predictor
    header, _ = container.read_container(blob)
    assert header.version == container.FORMAT_VERSION and header.predictor == AdaptParams().to_bytes()
    assert sum(s.method == container.METHOD_LM for s in header.segments) == len(enc) >= 3
    for batch in (1, 2, 16):
        _Recording.log = []
        assert codec.decompress(blob, tiny, batch=batch) == data
        dec = _Recording.log
        assert len(dec) == len(enc)
        for e, d in zip(enc, dec):  # one list per segment, one digest per token
            assert len(e) == len(d) > 0 and e == d


@settings(max_examples=20)
@given(st.binary(max_size=300), st.sampled_from(VARIANTS))
def test_round_trip_any_bytes_any_params(tiny, data, params):
    c = lmzip.Compressor(tiny, adapt=params, **SMALL)
    assert lmzip.decompress(c.compress(data), tiny) == data


def test_thread_count_does_not_change_the_file(tiny):
    data = b"one thread or two: the same bytes.\n" * 6
    native = tiny.model.runtime == "native"
    old = tiny.model.threads if native else torch.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            if native:
                tiny.model.threads = n
            else:
                torch.set_num_threads(n)
            out.append(lmzip.Compressor(tiny, **SMALL).compress(data))
    finally:
        if native:
            tiny.model.threads = old
        else:
            torch.set_num_threads(old)
    assert out[0] == out[1]


def test_adapt_off_writes_format_1_on_request(tiny):
    blob = lmzip.Compressor(tiny, adapt=False, transforms=False, format_version=2, **SMALL).compress(b"plain text\r\n" * 5)
    h = container.peek_header(blob)
    assert h.version == 1 and h.predictor == b"" and not any(s.transforms for s in h.segments)


def test_adaptation_helps_the_tiny_model_on_repeats(tiny):
    data = b"the same sentence, again and again. " * 20
    plain = lmzip.Compressor(tiny, adapt=False, **SMALL).compress(data)
    learned = lmzip.Compressor(tiny, **SMALL).compress(data)
    assert len(learned) < 0.7 * len(plain)


# -- the CRLF transform ----------------------------------------------------------------------

@given(st.lists(st.sampled_from([b"a", b"b c", b"\r\n", b"\r", b"\n", b"\r\r\n", b"\xff"]), max_size=40))
def test_crlf_transform_is_reversible_where_chosen(parts):
    data = b"".join(parts)
    tf = transforms.choose(data)
    assert bool(tf) == (b"\n" in data and data.count(b"\n") == data.count(b"\r\n"))
    assert transforms.inverse(transforms.forward(data, tf), tf) == data
    assert transforms.choose(data, allow=False) == 0


def test_crlf_segments_are_marked_and_restored(tiny):
    data = b"windows line\r\n" * 30 + b"unix line\n" * 30
    blob = lmzip.Compressor(tiny, **dict(SMALL, segment_size=200)).compress(data)
    h = container.peek_header(blob)
    marks = [s.transforms for s in h.segments]
    assert container.TRANSFORM_CRLF in marks and 0 in marks
    assert lmzip.decompress(blob, tiny) == data
    off = container.peek_header(lmzip.Compressor(tiny, transforms=False, **SMALL).compress(data))
    assert not any(s.transforms for s in off.segments)
