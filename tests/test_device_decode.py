"""Decoding through fixed-shape slots (lmzip/coding/device_decode.py, the GPU's decoder) gives the
lockstep decoder's bytes: run here on the CPU with the torch reference (``LMZIP_DECODE=static``),
with the host's side native (one HostPool call a step) and in Python."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmzip import native
from lmzip.coding import codec, device_decode
from lmzip.errors import FormatError, LmzipError
from lmzip.model.static_step import StaticStep
from lmzip.predict.adapt import AdaptParams
from lmzip.testing import tiny_model

CODINGS = ["native", "reference"] if native.available() else ["reference"]
TEXT = (b"The slot decoder moves segments through a fixed batch.\n"
        b"Each step is one token per slot; a slot whose segment ends takes the next one.\r\n" * 6)


def params(adapt: bool, window: int = 48, overlap: int = 12, segment: int = 90) -> codec.CodecParams:
    return codec.CodecParams(window=window, overlap=overlap, segment_bytes=segment, fallback=False,
                             adapt=AdaptParams() if adapt else None)


@settings(max_examples=8)
@given(data=st.binary(min_size=0, max_size=260) | st.sampled_from([TEXT[:200], TEXT[37:300]]),
       adapt=st.booleans(), batch=st.integers(1, 5), coding=st.sampled_from(CODINGS),
       window=st.sampled_from([24, 48]), segment=st.sampled_from([40, 90, 400]))
def test_slots_decode_what_lockstep_decodes(ref_lm, monkeypatch, data, adapt, batch, coding, window, segment):
    """Any segmentation, windows that slide (context prefilled into a slot), more segments than
    slots (slots refilled), batch sizes, both host sides: the very bytes back."""
    monkeypatch.setenv("LMZIP_CODING", coding)
    blob = codec.compress(data, ref_lm, params(adapt, window, window // 4, segment))
    monkeypatch.setenv("LMZIP_DECODE", "static")
    assert device_decode.wanted(ref_lm)
    assert codec.decompress(blob, ref_lm, batch=batch) == data


def test_mixed_coding_makes_the_reference_bytes(ref_lm, monkeypatch):
    """The native coder and predictor beside the torch model (the GPU's arrangement) write the
    bytes the all-Python path writes."""
    if "native" not in CODINGS:
        pytest.skip("native runtime not built")
    blobs = {}
    for coding in CODINGS:
        monkeypatch.setenv("LMZIP_CODING", coding)
        assert codec.coding_native(ref_lm) == (coding == "native")
        blobs[coding] = codec.compress(TEXT, ref_lm, params(True))
    assert blobs["native"] == blobs["reference"]


@pytest.mark.parametrize("coding", CODINGS)
def test_a_damaged_stream_fails_cleanly(ref_lm, monkeypatch, coding):
    monkeypatch.setenv("LMZIP_CODING", coding)
    blob = bytearray(codec.compress(TEXT, ref_lm, params(True, segment=120)))
    header, payloads = codec.C.read_container(bytes(blob))
    start = len(blob) - sum(len(p) for p in payloads)  # the payloads end the container
    blob[start + 5] ^= 0x5A
    monkeypatch.setenv("LMZIP_DECODE", "static")
    with pytest.raises((FormatError, LmzipError)):
        codec.decompress(bytes(blob), ref_lm, batch=3)


def test_the_choice_of_decoder(ref_lm, tiny, monkeypatch):
    monkeypatch.delenv("LMZIP_DECODE", raising=False)
    assert not device_decode.wanted(ref_lm)  # a CPU: the lockstep decoder
    monkeypatch.setenv("LMZIP_DECODE", "static")
    assert device_decode.wanted(ref_lm)
    if tiny.model.runtime == "native":
        assert not device_decode.wanted(tiny)  # the native model steps its own batches
    monkeypatch.setenv("LMZIP_DECODE", "lockstep")
    assert not device_decode.wanted(ref_lm)
    monkeypatch.setenv("LMZIP_DECODE", "fast")
    with pytest.raises(ValueError):
        device_decode.wanted(ref_lm)


def test_slot_count_is_bounded(ref_lm):
    assert device_decode.slot_count(ref_lm, 16, 48, 3) == 3
    assert device_decode.slot_count(ref_lm, 2, 48, 30) == 2
    assert device_decode.slot_count(ref_lm, 10**6, 48, 10**6) <= device_decode.MAX_SLOTS
    assert device_decode.slot_count(ref_lm, 16, codec.CACHE_TOKEN_SLOTS, 30) == 1


def test_set_lengths_is_checked():
    m = tiny_model(0, max_context=64, dim=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=32)
    s = StaticStep(m, 3, 16)
    s.set_lengths([0, 5, 16])
    assert s.lengths == [0, 5, 16] == s.cache.lengths.tolist()
    for bad in ([0, 5], [0, -1, 2], [0, 0, 17]):
        with pytest.raises(ValueError):
            s.set_lengths(bad)


@pytest.mark.skipif(not native.available(), reason="native runtime not built")
def test_host_pool_step_equals_one_stream_at_a_time(ref_lm):
    """HostPool.decode_step over many streams at once decodes what each stream's own calls do,
    with one thread or two; a decoder given twice in one step is refused."""
    from lmzip.native.coding import HostPool, NativePredictor, NativeTokenDecoder

    rng = np.random.default_rng(3)
    V = ref_lm.model.cfg.vocab_size
    classes = codec.token_classes(ref_lm.tokenizer.token_bytes, V)
    exp = codec.to_numpy(ref_lm.model.out_exp)
    streams = []
    for k in range(5):  # each stream: its own tokens coded from its own logits rows
        z = rng.integers(-4000, 4000, size=(12, V)).astype(np.int32)
        toks = rng.integers(0, V, size=12)
        from lmzip.native.coding import NativeTokenEncoder

        enc, pred = NativeTokenEncoder(), NativePredictor(AdaptParams(), exp, V, classes)
        pred.encode_logits(enc, z, toks)
        streams.append((z, toks, enc.finish()))
    for threads in (1, 2):
        pool = HostPool(threads)
        decs = [NativeTokenDecoder(p) for _, _, p in streams]
        preds = [NativePredictor(AdaptParams(), exp, V, classes) for _ in streams]
        for i in range(12):
            rows = np.stack([z[i] for z, _, _ in streams])[::-1].copy()  # slots in another order
            syms = pool.decode_step(preds, decs, rows, [len(streams) - 1 - k for k in range(len(streams))])
            assert syms.tolist() == [int(t[i]) for _, t, _ in streams]
        for d in decs:
            d.check_end()
        with pytest.raises(ValueError):
            pool.decode_step(preds[:2], [decs[0], decs[0]], rows[:2], [0, 1])


def test_the_default_batch_follows_the_device():
    """A CPU decodes 16 segments together; a GPU as many as the slots take (memory bounds them later)."""
    from lmzip.api import CPU_BATCH, Decompressor, decode_batch

    assert decode_batch(None, "cpu") == CPU_BATCH == Decompressor().batch
    assert decode_batch(None, "cuda") == decode_batch(None, "cuda:1") == device_decode.MAX_SLOTS
    assert decode_batch(3, "cuda") == 3 == Decompressor(batch=3).batch
