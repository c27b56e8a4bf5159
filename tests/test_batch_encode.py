"""Compressing segments in batches (lmzip/coding/batch_encode.py, the GPU's encoder) writes the bytes
of one segment at a time: run here on the CPU with both runtimes and both host sides."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmzip import native
from lmzip.coding import batch_encode, codec, encode, streaming
from lmzip.predict.adapt import AdaptParams

CODINGS = ["native", "reference"] if native.available() else ["reference"]
TEXT = (b"A batch of segments goes through the model as one forward.\n"
        b"Each segment's rows come back in coding order; its coder decides alone.\r\n" * 8)


def params(adapt: bool, window: int = 48, segment: int = 90, fallback: bool = False) -> codec.CodecParams:
    return codec.CodecParams(window=window, overlap=window // 4, segment_bytes=segment, fallback=fallback,
                             adapt=AdaptParams() if adapt else None)


def compress(lm, data: bytes, p: codec.CodecParams, batch: int) -> tuple[bytes, int]:
    """The container and the progress reported, through the streaming compressor at ``batch``."""
    done = []
    out = io.BytesIO()
    sc = streaming.StreamCompressor(lm, p, total=len(data), progress=done.append, batch=batch)
    for i in range(0, len(data), 97):  # written in pieces, as the CLI does
        sc.write(data[i : i + 97])
    sc.finish(out)
    return out.getvalue(), sum(done)


@settings(max_examples=10, deadline=None)
@given(data=st.binary(min_size=0, max_size=400) | st.sampled_from([TEXT[:300], TEXT[41:700]]),
       adapt=st.booleans(), batch=st.integers(2, 6), coding=st.sampled_from(CODINGS),
       window=st.sampled_from([24, 48]), segment=st.sampled_from([40, 90, 500]), fallback=st.booleans())
def test_batches_write_the_bytes_of_one_segment_at_a_time(ref_lm, monkeypatch, data, adapt, batch, coding,
                                                          window, segment, fallback):
    """Any segmentation, windows that slide, more segments than the batch, both host sides, the
    fallback on or off: the same container, which decodes, and all the progress reported."""
    monkeypatch.setenv("LMZIP_CODING", coding)
    p = params(adapt, window, segment, fallback)
    one, done1 = compress(ref_lm, data, p, 1)
    many, done = compress(ref_lm, data, p, batch)
    assert many == one
    assert done == done1 == len(data)
    assert codec.decompress(many, ref_lm) == data


@pytest.mark.parametrize("adapt", [True, False])
def test_rows_through_the_ring_of_host_buffers(ref_lm, monkeypatch, adapt):
    """The GPU's way down (int32 rows copied into a ring of reused host buffers, each returned after
    its group is coded), here with unpinned buffers: small groups, so every buffer is reused many times."""
    monkeypatch.setenv("LMZIP_CODING", CODINGS[0])
    monkeypatch.setattr(batch_encode, "STAGE_ON_CPU", True)
    monkeypatch.setattr(batch_encode, "HEAD_ROWS", 8)
    monkeypatch.setattr(batch_encode, "MIN_SPAN_ROWS", 3)
    taken = []
    take = batch_encode._Rows._take
    monkeypatch.setattr(batch_encode._Rows, "_take", lambda self: taken.append(1) or take(self))
    p = params(adapt, window=32, segment=70)
    staged = compress(ref_lm, TEXT, p, 4)[0]
    if CODINGS[0] == "native" or not adapt:  # int32 rows (the Python predictor takes int64 as they are)
        assert len(taken) > 2 * (batch_encode.RING + 1)
    monkeypatch.setattr(batch_encode, "STAGE_ON_CPU", False)
    assert staged == compress(ref_lm, TEXT, p, 1)[0]


@pytest.mark.parametrize("adapt", [True, False])
def test_the_native_model_batches_too(tiny, adapt):
    p = params(adapt, window=32, segment=70)
    assert compress(tiny, TEXT, p, 5)[0] == compress(tiny, TEXT, p, 1)[0]


def test_a_segment_gives_up_as_it_does_alone(ref_lm, monkeypatch):
    """A segment that loses to the fallback stops at the same part's end in a batch (others run to
    their end): the same decisions, the same bytes."""
    monkeypatch.setattr(codec, "GIVE_UP_AFTER", 8)
    gave_up = []
    finish = encode.SegmentCoder.finish

    def spy(self):
        gave_up.append(self.given_up)
        return finish(self)

    monkeypatch.setattr(encode.SegmentCoder, "finish", spy)
    rng = np.random.default_rng(3)
    noise = bytes(rng.choice(np.frombuffer(b"etaoin shrdlu\n", np.uint8), 600))  # text, but unpredictable
    data = TEXT[:400] + noise + TEXT[:400]
    p = params(True, window=48, segment=200, fallback=True)
    one = compress(ref_lm, data, p, 1)[0]
    given_alone = list(gave_up)
    gave_up.clear()
    many = compress(ref_lm, data, p, 4)[0]
    assert many == one and gave_up == given_alone
    assert any(given_alone) and not all(given_alone)  # some stopped early, some ran to the end


def test_an_error_on_the_device_side_is_raised_here(ref_lm, monkeypatch):
    """The model failing in the device's thread surfaces in the caller, and the thread ends."""
    calls = []
    hidden = ref_lm.model.hidden

    def failing(cache, tokens):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("device lost")
        return hidden(cache, tokens)

    monkeypatch.setattr(ref_lm.model, "hidden", failing)
    with pytest.raises(RuntimeError, match="device lost"):
        compress(ref_lm, TEXT, params(True, window=24, segment=60), 3)
    assert not [t for t in threading.enumerate() if t.name == "lmzip-batch-encode"]


def test_an_error_while_coding_stops_the_device_side(ref_lm, monkeypatch):
    """The coding thread failing (while the device's thread has groups queued) is raised, and the
    device's thread ends instead of waiting to hand over its next group."""
    calls = []
    feed = encode.SegmentCoder.feed

    def failing(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return feed(self, *args)

    monkeypatch.setattr(encode.SegmentCoder, "feed", failing)
    monkeypatch.setattr(batch_encode, "HEAD_ROWS", 2)
    monkeypatch.setattr(batch_encode, "MIN_SPAN_ROWS", 1)  # many small groups: the queue fills
    with pytest.raises(OSError, match="disk full"):
        compress(ref_lm, TEXT, params(True, window=24, segment=60), 3)
    assert not [t for t in threading.enumerate() if t.name == "lmzip-batch-encode"]


@settings(max_examples=50, deadline=None)
@given(lengths=st.lists(st.integers(0, 40), min_size=1, max_size=8), limit=st.integers(1, 50),
       least=st.integers(1, 8))
def test_groups_take_every_row_once_in_order(lengths, limit, least):
    spans = [(i, i, 100 * i, 3, 3 + n) for i, n in enumerate(lengths)]
    groups = batch_encode._groups(spans, limit, least)
    quantum = max(least, limit // len(spans))
    seen = {i: [] for i in range(len(lengths))}
    for g in groups:
        assert g and len({item[0] for item in g}) == len(g)  # a coder at most once a group
        for i, _, _, lo, hi, first, ends in g:
            assert first == 3 and 0 < hi - lo <= quantum
            seen[i].append((lo, hi, ends))
    for i, n in enumerate(lengths):
        got = seen[i]
        assert [lo for lo, _, _ in got] == ([3] + [hi for _, hi, _ in got[:-1]] if got else [])
        assert (got[-1][1] if got else 3) == 3 + n
        assert [e for _, _, e in got] == [False] * (len(got) - 1) + [True] * bool(got)
    if max(lengths) >= quantum:  # every group holds each segment that still has rows
        assert len(groups[0]) == sum(n > 0 for n in lengths)


def test_the_choice_of_batch(ref_lm, monkeypatch):
    monkeypatch.delenv("LMZIP_ENCODE_BATCH", raising=False)
    assert batch_encode.batch_for(ref_lm) == 1  # a CPU: one segment at a time
    monkeypatch.setenv("LMZIP_ENCODE_BATCH", "12")
    assert batch_encode.batch_for(ref_lm) == 12
    assert streaming.StreamCompressor(ref_lm, params(True)).batch == 12
    for bad in ("0", "many"):
        monkeypatch.setenv("LMZIP_ENCODE_BATCH", bad)
        with pytest.raises(ValueError, match="LMZIP_ENCODE_BATCH"):
            batch_encode.batch_for(ref_lm)
