"""Round trips through the Python API, fallbacks, corruption detection and committed .lmz vectors."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lmzip
from conftest import RUNTIMES
from lmzip.testing import load_with_runtime
from lmzip.coding import codec, container
from lmzip.model import zoo
from lmzip.errors import LmzipError, ModelError, ModelMismatchError
from lmzip.testing import write_tiny_model

import make_vectors  # tests/make_vectors.py: the Compressor behind each committed vector

VECTORS = Path(__file__).parent / "vectors"
SMALL = dict(window=48, overlap=16, segment_size=200)  # many windows and segments on small inputs
# A random-weight model rarely beats zstd: force the model to exercise the LM path.
LM = dict(SMALL, fallback=False)


@pytest.fixture(scope="module")
def small(tiny):
    return lmzip.Compressor(tiny, **SMALL)


@settings(max_examples=60)
@given(data=st.binary(max_size=700), window=st.integers(2, 80), overlap=st.integers(0, 79), seg=st.integers(1, 500),
       fallback=st.booleans(), top_k=st.sampled_from([0, 1, 16, 300]))
def test_api_round_trip_any_bytes(tiny, data, window, overlap, seg, fallback, top_k):
    overlap = overlap % window
    blob = lmzip.Compressor(tiny, window=window, overlap=overlap, segment_size=seg, fallback=fallback, top_k=top_k).compress(data)
    assert lmzip.decompress(blob, tiny) == data


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"x", bytes(range(256)), b"\xff\xfe\xc0\xc1 invalid \x80 utf-8 \xed\xa0\x80",
     b"line one\r\nline two\r\n\r\n" * 40, "naïve café – ünïcödé ✓\n".encode() * 20],
)
def test_api_round_trip_edge_cases(small, tiny, data):
    for blob in (small.compress(data), lmzip.Compressor(tiny, **LM).compress(data)):
        assert lmzip.decompress(blob, tiny) == data
    header, _ = container.read_container(blob)
    assert header.original_size == len(data)


def test_forced_model_codes_every_segment(tiny):
    data = b"abcabcabd" * 300
    blob = lmzip.Compressor(tiny, **LM).compress(data)
    header, _ = container.read_container(blob)
    assert len(header.segments) > 1 and all(s.method == container.METHOD_LM for s in header.segments)
    assert sum(s.token_count for s in header.segments) == len(data)  # byte tokenizer
    assert lmzip.decompress(blob, tiny) == data


def test_random_megabytes_fall_back_and_barely_grow(tiny):
    data = random.Random(1).randbytes(3 << 20)
    blob = lmzip.compress(data, tiny)
    header, _ = container.read_container(blob)
    assert all(s.method != container.METHOD_LM for s in header.segments)
    assert len(blob) <= len(data) * 1.001 + 1024
    assert lmzip.decompress(blob, tiny) == data


def test_decoding_batch_size_does_not_matter(tiny):
    data = b"The quick brown fox jumps over the lazy dog. " * 30
    blob = lmzip.Compressor(tiny, **LM).compress(data)
    outs = {lmzip.Decompressor(tiny, batch=b).decompress(blob) for b in (1, 2, 7, 64)}
    assert outs == {data}


def test_lockstep_streams_bounded_by_cache_and_stream_state(tiny, monkeypatch):
    from lmzip.coding import codec

    assert codec.lockstep_streams(16, 4096, [280_000] * 20) == 8  # the KV cache's bound
    assert codec.lockstep_streams(16, 512, [1000] * 3) == 16
    per = codec.STREAM_STATE_BUDGET // codec.STREAM_BYTES_PER_TOKEN
    assert codec.lockstep_streams(16, 512, [per // 4, 10]) == 4  # the longest stream's state
    assert codec.lockstep_streams(16, 512, [per * 10]) == 1 and codec.lockstep_streams(16, 512, []) == 16
    # A tight budget changes how many streams step together, never the bytes.
    data = b"The quick brown fox jumps over the lazy dog. " * 30
    blob = lmzip.Compressor(tiny, **dict(LM, segment_size=200)).compress(data)
    monkeypatch.setattr(codec, "STREAM_STATE_BUDGET", 300 * codec.STREAM_BYTES_PER_TOKEN)
    assert lmzip.Decompressor(tiny, batch=16).decompress(blob) == data


def test_model_mismatch_is_refused(tmp_path, small, tiny):
    other = zoo.load(write_tiny_model(tmp_path / "other", seed=99))
    blob = lmzip.Compressor(tiny, **LM).compress(b"hello hello hello hello")
    with pytest.raises(ModelMismatchError):
        lmzip.decompress(blob, other)


def test_directory_model_must_be_named(tiny):
    blob = lmzip.Compressor(tiny, **LM).compress(b"some text that the model codes")
    with pytest.raises(ModelError):
        lmzip.decompress(blob)


def _lm_blob(tiny) -> bytes:
    blob = lmzip.Compressor(tiny, **LM).compress(b"tiny text, tiny text!")
    header, _ = container.read_container(blob)
    assert header.segments[0].method == container.METHOD_LM
    return blob


def test_every_bit_flip_is_detected(small, tiny):
    blob = _lm_blob(tiny)
    for i in range(len(blob) * 8):
        bad = bytearray(blob)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(LmzipError):
            lmzip.decompress(bytes(bad), tiny)


def test_every_truncation_is_detected(small, tiny):
    blob = _lm_blob(tiny)
    for n in range(len(blob)):
        with pytest.raises(LmzipError):
            lmzip.decompress(blob[:n], tiny)
    with pytest.raises(LmzipError):
        lmzip.decompress(blob + b"\x00", tiny)


def test_fuzzed_files_never_crash(small, tiny):
    """Bounded fuzz loop: mutated files give the original back or a LmzipError, nothing else."""
    data = b"fuzz me: " + bytes(range(40)) + b" and some text " * 5
    blob = lmzip.Compressor(tiny, **LM).compress(data)
    rng = random.Random(7)
    for _ in range(300):
        bad = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            op, pos = rng.random(), rng.randrange(len(bad))
            if op < 0.6:
                bad[pos] = rng.randrange(256)
            elif op < 0.8:
                del bad[pos]
            else:
                bad.insert(pos, rng.randrange(256))
        try:
            out = lmzip.decompress(bytes(bad), tiny)
        except LmzipError:
            continue
        assert out == data


def test_lmz_file_object(tmp_path, tiny):
    path = tmp_path / "x.lmz"
    with lmzip.open(path, "wb", model=tiny, **SMALL) as f:
        f.write(b"first line\n")
        f.write(b"second line\n")
    with lmzip.open(path, "rb", model=tiny) as f:
        assert f.readline() == b"first line\n"
        assert f.read() == b"second line\n"
    with lmzip.open(path, "rt", model=tiny, encoding="utf-8") as f:
        assert f.read().splitlines() == ["first line", "second line"]
    buf = io.BytesIO()
    with lmzip.LmzFile(buf, "wb", model=tiny) as f:
        f.write(b"to a file object")
    assert lmzip.decompress(buf.getvalue(), tiny) == b"to a file object"
    with pytest.raises(ValueError):
        lmzip.open(path, "rwb")


def test_public_api_is_pinned():
    assert sorted(lmzip.__all__) == sorted([
        "BadMagicError", "ChecksumError", "Compressor", "Decompressor", "FormatError", "LmzCompressor",
        "LmzDecompressor", "LmzFile", "LmzipError",
        "ModelError", "ModelMismatchError", "TokenizerError", "TrailingDataError", "TruncatedError",
        "UnknownModelError", "UnsupportedVersionError", "UsageError", "__version__", "compress", "decompress", "open",
    ])
    for name in lmzip.__all__:
        assert hasattr(lmzip, name)
    assert issubclass(lmzip.FormatError, lmzip.LmzipError) and issubclass(lmzip.ModelError, lmzip.LmzipError)


def test_window_schedule_covers_every_token_once():
    for n in range(0, 60):
        for window in range(1, 12):
            for overlap in range(window):
                coded = []
                for start, ctx, length in codec.windows(n, window, overlap):
                    assert length <= window and ctx <= overlap
                    coded += range(start + ctx, start + length)
                assert coded == list(range(n))


# -- committed vectors: must keep decoding, bit for bit --------------------------------------

@pytest.mark.parametrize("runtime", RUNTIMES)
def test_committed_tiny_model_vectors_decode(runtime):
    tiny = load_with_runtime(VECTORS / "tiny-model", runtime)
    manifest = json.loads((VECTORS / "manifest.json").read_text())
    assert any(name.startswith("tiny-") for name in manifest)
    for name, params in manifest.items():
        if not name.startswith("tiny-"):
            continue
        blob, original = (VECTORS / f"{name}.lmz").read_bytes(), (VECTORS / f"{name}.orig").read_bytes()
        assert lmzip.decompress(blob, tiny) == original, name
        # The encoder still produces the very same bytes (format and numerics unchanged).
        assert make_vectors.compressor(tiny, params).compress(original) == blob, name


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_committed_shipped_model_vectors_decode(runtime):
    """shipped-<id>: coded by a model that ships inside lmzip (no download), which the header names."""
    manifest = json.loads((VECTORS / "manifest.json").read_text())
    shipped = [e.id for e in zoo.registry() if e.source.get("kind") == "shipped"]
    assert {f"shipped-{i}" for i in shipped} <= set(manifest)
    for model_id in shipped:
        name = f"shipped-{model_id}"
        blob = (VECTORS / f"{name}.lmz").read_bytes()
        lm = load_with_runtime(model_id, runtime)
        assert lmzip.decompress(blob) == make_vectors.SHIPPED_TEXT, name  # the model is found from the header
        assert lmzip.decompress(blob, lm) == make_vectors.SHIPPED_TEXT, name
        assert make_vectors.compressor(lm, manifest[name]).compress(make_vectors.SHIPPED_TEXT) == blob, name


@pytest.mark.teacher
def test_committed_teacher_vectors_decode(teacher):
    """Made by the teacher: without adaptation (format 1), with it (format 2), and in the compact
    layout that names the teacher by reference (format 3), with predictor version 3 (preset 3):
    all still decode and re-encode."""
    manifest = json.loads((VECTORS / "manifest.json").read_text())
    names = [n for n in manifest if n.startswith("teacher-")]
    assert {"teacher-small", "teacher-adapt", "teacher-adapt2", "teacher-compact", "teacher-adapt3"} <= set(names)
    original = (VECTORS / "teacher-small.orig").read_bytes()
    for name in names:
        blob = (VECTORS / f"{name}.lmz").read_bytes()
        assert container.peek_header(blob).version == {"teacher-small": 1, "teacher-compact": 3, "teacher-adapt3": 3}.get(name, 2)
        assert lmzip.decompress(blob) == original, name  # the model is found from the header
        assert make_vectors.compressor(teacher, manifest[name]).compress(original) == blob, name


@pytest.mark.teacher
def test_vectors_coded_on_a_gpu_decode_on_the_cpu(teacher):
    """device-*: coded by the teacher on an H100 (CUDA); the CPU decodes them and codes the same bytes."""
    manifest = json.loads((VECTORS / "manifest.json").read_text())
    names = [n for n in manifest if n.startswith("device-")]
    assert len(names) >= 2 and all(manifest[n]["made_on"].startswith("cuda") for n in names)
    for name in names:
        blob, original = (VECTORS / f"{name}.lmz").read_bytes(), (VECTORS / f"{name}.orig").read_bytes()
        assert lmzip.decompress(blob, teacher) == original, name
        assert make_vectors.compressor(teacher, manifest[name]).compress(original) == blob, name


@pytest.mark.teacher
def test_teacher_round_trip_and_coder_overhead(teacher):
    data = (VECTORS / "teacher-small.orig").read_bytes()[:600]
    blob = lmzip.Compressor(teacher).compress(data)
    assert lmzip.decompress(blob, teacher) == data
    header, payloads = container.read_container(blob)
    ideal, n = codec.lm_cost_bits(teacher, data, codec.CodecParams(window=header.window_tokens, overlap=header.overlap_tokens))
    payload_bits = 8 * len(payloads[0])
    assert header.segments[0].token_count == n
    assert payload_bits <= ideal * 1.005 + 40
    assert payload_bits / len(data) < 2.5  # English through the teacher: far below zstd's ~3.5


def _rows_in_parts(lm, ids, p, part_tokens):
    saved, codec.FORWARD_CHUNK = codec.FORWARD_CHUNK, part_tokens
    try:
        return list(codec.coded_rows(lm, ids, p))
    finally:
        codec.FORWARD_CHUNK = saved


@settings(max_examples=30)
@given(data=st.binary(min_size=1, max_size=400), part=st.integers(1, 70), window=st.integers(2, 80),
       overlap=st.integers(0, 79))
def test_encoder_rows_do_not_depend_on_the_forward_parts(tiny, data, part, window, overlap):
    """Windows run through the model in parts (so the encoder can give up early): same rows,
    contiguous slices, and part ranges that cover every token once."""
    ids = np.asarray(tiny.tokenizer.encode(data), dtype=np.int64)
    p = codec.CodecParams(window=window, overlap=overlap % window, adapt=None)
    parted, whole = _rows_in_parts(tiny, ids, p, part), _rows_in_parts(tiny, ids, p, 10**6)
    cat = lambda rows: np.concatenate([codec.to_numpy(r) for _, _, r, _ in rows])  # noqa: E731
    assert np.array_equal(cat(parted), cat(whole))
    assert [a for a, *_ in parted] == [0] + [b for _, b, *_ in parted][:-1] and parted[-1][1] == len(ids)
    ranges = [pt for *_, pt in parted if pt is not None]
    assert [f for f, _ in ranges] == [0] + [e for _, e in ranges][:-1] and ranges[-1][1] == len(ids)
