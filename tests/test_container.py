"""Tests for the byte-level .lmz container (lmzip/coding/container.py, docs/FORMAT.md)."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import time
import zlib
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmzip.coding import container as C
from lmzip.coding.container import (
    FORMAT_VERSION,
    MAGIC,
    METHOD_LM,
    METHOD_STORED,
    METHOD_ZSTD,
    Header,
    Segment,
    decode_fallback_segment,
    iter_payloads_from,
    peek_header,
    read_container,
    verify_original,
    zstd_decode,
    zstd_decode_iter,
    zstd_encode,
)
from lmzip.errors import (
    BadMagicError,
    ChecksumError,
    FormatError,
    TrailingDataError,
    TruncatedError,
    UnsupportedVersionError,
)

# This file pins the fixed-width layout of versions 1 and 2 (still read, and written on request);
# tests/test_container_v3.py covers the compact version 3 that lmzip writes.


def write_container(h, payloads):
    return C.write_container(h, payloads, h.legacy_version)


def write_container_to(f, h, payloads):
    return C.write_container_to(f, h, payloads, h.legacy_version)


def make_fallback_segment(data):
    return C.make_fallback_segment(data, 2)


def choose_fallback(data):
    return C.choose_fallback(data, 2)


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
U64 = 2**64 - 1

# --------------------------------------------------------------------------- helpers


def raw_header(
    *,
    flags=0,
    original_size=0,
    original_sha256=bytes(32),
    model_sha256=bytes(32),
    total_bits=0,
    context_policy=0,
    top_k=0,
    window_tokens=0,
    overlap_tokens=0,
    segment_count=None,
    model_id=b"",
    tokenizer_id=b"",
    segments=(),
    extra=b"",
    predictor=None,
) -> bytes:
    """Independent encoder written from docs/FORMAT.md, able to produce invalid headers."""
    if segment_count is None:
        segment_count = len(segments)
    out = struct.pack(
        "<IQ32s32sBBHIII",
        flags,
        original_size,
        original_sha256,
        model_sha256,
        total_bits,
        context_policy,
        top_k,
        window_tokens,
        overlap_tokens,
        segment_count,
    )
    out += struct.pack("<H", len(model_id)) + model_id
    out += struct.pack("<H", len(tokenizer_id)) + tokenizer_id
    if predictor is not None:  # version 2
        out += bytes([len(predictor)]) + predictor
    for s in segments:  # (method, transforms, original_length, payload_length, token_count, crc)
        out += struct.pack("<BBQQQI", *s)
    return out + extra


def seal(header_body: bytes, payloads: bytes = b"", *, version=1, magic=MAGIC):
    """Preamble with a correct CRC around an arbitrary header body."""
    pre = magic + struct.pack("<HII", version, len(header_body), zlib.crc32(header_body))
    return pre + header_body + payloads


def stored_header(data: bytes, **kw) -> tuple[Header, list[bytes]]:
    segs = [Segment(METHOD_STORED, 0, len(data), len(data), 0, zlib.crc32(data))] if data else []
    digest = hashlib.sha256(data).digest()
    h = Header(original_size=len(data), original_sha256=digest, segments=segs, **kw)
    return h, [data] if data else []


def small_container() -> tuple[bytes, Header, list[bytes], bytes]:
    """A container with one segment of each method: returns (file, header, payloads, original)."""
    a = b"hello"
    b = b"abcabcabcabc" * 20
    lm_original = b"the LM part"
    seg_a, pay_a = make_fallback_segment(a)
    seg_b, pay_b = make_fallback_segment(b)
    assert seg_a.method == METHOD_STORED and seg_b.method == METHOD_ZSTD
    pay_c = bytes(range(1, 9))  # stands in for a range-coder stream
    seg_c = Segment(METHOD_LM, 0, len(lm_original), len(pay_c), 4, zlib.crc32(lm_original))
    original = a + b + lm_original
    h = Header(
        original_size=len(original),
        original_sha256=hashlib.sha256(original).digest(),
        segments=[seg_a, seg_b, seg_c],
        model_id="m1",
        model_sha256=hashlib.sha256(b"weights").digest(),
        tokenizer_id="t",
        total_bits=16,
        top_k=64,
        window_tokens=512,
        overlap_tokens=128,
        context_policy=C.POLICY_SLIDING,
    )
    payloads = [pay_a, pay_b, pay_c]
    return write_container(h, payloads), h, payloads, original


def hexdump(data: bytes) -> str:
    lines = []
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        lines.append(f"{off:08x}  " + " ".join(f"{x:02x}" for x in chunk))
    return "\n".join(lines)


# --------------------------------------------------------------------------- strategies

u32 = st.integers(0, 2**32 - 1)
ids = st.text(min_size=1, max_size=20)
sha = st.binary(min_size=32, max_size=32)


@st.composite
def segment_and_payload(draw):
    method = draw(st.sampled_from([METHOD_STORED, METHOD_ZSTD, METHOD_LM]))
    payload = draw(st.binary(max_size=40))
    if method == METHOD_STORED:
        original_length = len(payload)
    else:
        original_length = draw(st.one_of(st.integers(0, 100), st.integers(0, 2**61)))
    token_count = draw(st.integers(0, U64)) if method == METHOD_LM else 0
    seg = Segment(method, 0, original_length, len(payload), token_count, draw(u32))
    return seg, payload


@st.composite
def headers_and_payloads(draw):
    pairs = draw(st.lists(segment_and_payload(), max_size=6))
    segments = [s for s, _ in pairs]
    policy = draw(st.sampled_from([C.POLICY_INDEPENDENT, C.POLICY_SLIDING]))
    window = draw(st.integers(1, 2**32 - 1))
    overlap = 0 if policy == C.POLICY_INDEPENDENT else draw(st.integers(0, window - 1))
    h = Header(
        original_size=sum(s.original_length for s in segments),
        original_sha256=draw(sha),
        segments=segments,
        model_id=draw(ids),
        model_sha256=draw(sha),
        tokenizer_id=draw(ids),
        total_bits=draw(st.integers(1, 32)),
        top_k=draw(st.integers(0, 2**16 - 1)),
        window_tokens=window,
        overlap_tokens=overlap,
        context_policy=policy,
    )
    return h, [p for _, p in pairs]


# --------------------------------------------------------------------------- round trips


@FAST
@given(headers_and_payloads())
def test_round_trip(hp):
    h, payloads = hp
    blob = write_container(h, payloads)
    h2, views = read_container(blob)
    assert h2 == h
    assert [bytes(v) for v in views] == payloads
    assert len(blob) == C.PREAMBLE_SIZE + len(C.encode_header(h)) + sum(map(len, payloads))
    # Independent encoder from the spec produces the same header bytes.
    spec = raw_header(
        original_size=h.original_size,
        original_sha256=h.original_sha256,
        model_sha256=h.model_sha256,
        total_bits=h.total_bits,
        context_policy=h.context_policy,
        top_k=h.top_k,
        window_tokens=h.window_tokens,
        overlap_tokens=h.overlap_tokens,
        model_id=h.model_id.encode(),
        tokenizer_id=h.tokenizer_id.encode(),
        segments=[
            (s.method, s.transforms, s.original_length, s.payload_length, s.token_count, s.crc32)
            for s in h.segments
        ],
    )
    assert blob == seal(spec, b"".join(payloads))


@FAST
@given(headers_and_payloads())
def test_streaming_write_and_read(hp):
    h, payloads = hp
    blob = write_container(h, payloads)
    out = io.BytesIO()
    n = write_container_to(out, h, (p for p in payloads))
    assert out.getvalue() == blob and n == len(blob)
    assert peek_header(blob) == h
    assert peek_header(bytearray(blob)) == h
    f = io.BytesIO(blob)
    assert peek_header(f) == h
    assert f.tell() == len(blob) - sum(map(len, payloads))
    assert list(iter_payloads_from(f, h)) == payloads


@FAST
@given(st.binary(max_size=3000))
def test_fallback_round_trip_and_no_growth(data):
    seg, payload = make_fallback_segment(data)
    assert len(payload) <= len(data)
    digest = hashlib.sha256(data).digest()
    h = Header(original_size=len(data), original_sha256=digest, segments=[seg])
    blob = write_container(h, [payload])
    # At most preamble + fixed header + one segment entry beyond the input.
    assert len(blob) <= len(data) + C.PREAMBLE_SIZE + C.HEADER_MIN_SIZE + C.SEGMENT_ENTRY_SIZE
    h2, views = read_container(blob)
    out = decode_fallback_segment(h2.segments[0], views[0])
    assert out == data
    verify_original(h2, out)


def test_random_bytes_choose_stored_and_compressible_choose_zstd():
    rnd = os.urandom(50_000)
    assert choose_fallback(rnd) == (METHOD_STORED, rnd)
    text = b"the quick brown fox jumps over the lazy dog\n" * 1000
    method, payload = choose_fallback(text)
    assert method == METHOD_ZSTD and len(payload) < len(text) // 20
    assert zstd_decode(payload, len(text)) == text


def test_empty_container():
    h = Header(original_size=0, original_sha256=hashlib.sha256(b"").digest())
    blob = write_container(h, [])
    assert len(blob) == C.PREAMBLE_SIZE + C.HEADER_MIN_SIZE == 112
    h2, views = read_container(blob)
    assert h2 == h and views == []
    verify_original(h2, b"")
    assert list(iter_payloads_from(io.BytesIO(blob[112:]), h2)) == []
    # A zero-length segment is allowed too.
    h3 = Header(0, hashlib.sha256(b"").digest(), [Segment(METHOD_STORED, 0, 0, 0, 0, 0)])
    assert read_container(write_container(h3, [b""]))[0] == h3


def test_worked_example_matches_docs():
    data = b"hello"
    seg, payload = make_fallback_segment(data)
    h = Header(original_size=5, original_sha256=hashlib.sha256(data).digest(), segments=[seg])
    blob = write_container(h, [payload])
    assert len(blob) == 147
    assert blob[:6] == b"\x89LMZ\r\n"
    assert blob.endswith(b"hello")
    doc = (Path(__file__).resolve().parents[1] / "docs" / "FORMAT.md").read_text(encoding="utf-8")
    assert hexdump(blob) in doc


# --------------------------------------------------------------------------- damage


def test_every_truncation_is_detected():
    blob, h, payloads, _ = small_container()
    for n in range(len(blob)):
        with pytest.raises(TruncatedError):
            read_container(blob[:n])
        f = io.BytesIO(blob[:n])
        with pytest.raises(TruncatedError):
            hh = peek_header(f)
            list(iter_payloads_from(f, hh))


def test_every_bit_flip_is_detected_or_confined_to_a_payload():
    blob, h, payloads, original = small_container()
    payload_start = len(blob) - sum(map(len, payloads))
    bounds = []
    pos = payload_start
    for p in payloads:
        bounds.append((pos, pos + len(p)))
        pos += len(p)
    undetected_by_container = 0
    for bit in range(len(blob) * 8):
        bad = bytearray(blob)
        bad[bit // 8] ^= 1 << (bit % 8)
        bad = bytes(bad)
        try:
            h2, views = read_container(bad)
        except FormatError:
            assert bit // 8 < payload_start, f"payload flip at byte {bit // 8} rejected"
            continue
        # Only payload flips may get through, and they change exactly that payload.
        assert bit // 8 >= payload_start, f"header flip at byte {bit // 8} not detected"
        assert h2 == h
        undetected_by_container += 1
        got = [bytes(v) for v in views]
        changed = [i for i in range(3) if got[i] != payloads[i]]
        assert len(changed) == 1 and bounds[changed[0]][0] <= bit // 8 < bounds[changed[0]][1]
        # Fallback segments then never silently decode to wrong data.
        i = changed[0]
        if h2.segments[i].method == METHOD_STORED:
            with pytest.raises(ChecksumError):
                decode_fallback_segment(h2.segments[i], views[i], i)
        elif h2.segments[i].method == METHOD_ZSTD:
            try:
                out = decode_fallback_segment(h2.segments[i], views[i], i)
            except FormatError:
                pass
            else:  # e.g. a flip of an unused frame-header bit
                assert out == original[5 : 5 + h2.segments[i].original_length]
    assert undetected_by_container == 8 * sum(map(len, payloads))


def test_trailing_data():
    blob, h, payloads, _ = small_container()
    with pytest.raises(TrailingDataError):
        read_container(blob + b"\0")
    f = io.BytesIO(blob + b"x")
    hh = peek_header(f)
    with pytest.raises(TrailingDataError):
        list(iter_payloads_from(f, hh))
    empty = write_container(Header(0, hashlib.sha256(b"").digest()), [])
    with pytest.raises(TrailingDataError):
        read_container(empty + b"\n")


@pytest.mark.parametrize(
    "blob",
    [
        b"PK\x03\x04" + bytes(200),
        b"LMZ" + bytes(200),
        b"\x89LMZ\n" + bytes(200),  # CRLF -> LF mangling
        b"\x89LMZ\r\r\n" + bytes(200),  # LF -> CRLF mangling
        b"\x09LMZ\r\n" + bytes(200),  # high bit stripped
        b"x",
        b"\x89LMY",
    ],
)
def test_bad_magic(blob):
    with pytest.raises(BadMagicError):
        read_container(blob)
    with pytest.raises(BadMagicError):
        peek_header(io.BytesIO(blob))


def test_empty_and_magic_prefix_are_truncated():
    for blob in (b"", MAGIC[:1], MAGIC[:5], MAGIC, MAGIC + b"\x01"):
        with pytest.raises(TruncatedError):
            read_container(blob)
        with pytest.raises(TruncatedError):
            peek_header(io.BytesIO(blob))


@pytest.mark.parametrize("version", [0, 3, 0x0100, 0xFFFF])
def test_unknown_version(version):
    body = raw_header()
    blob = seal(body, version=version)
    with pytest.raises(UnsupportedVersionError):
        read_container(blob)
    with pytest.raises(UnsupportedVersionError):
        peek_header(io.BytesIO(blob))
    with pytest.raises(UnsupportedVersionError):  # even if nothing follows the version
        read_container(blob[:8])


def test_header_crc_mismatch_is_reported_as_corrupt():
    blob, *_ = small_container()
    bad = bytearray(blob)
    bad[40] ^= 0x10
    with pytest.raises(FormatError, match="header is corrupt"):
        read_container(bytes(bad))
    with pytest.raises(FormatError, match="header is corrupt"):
        peek_header(io.BytesIO(bytes(bad)))


class _NoBigReads(io.BytesIO):
    def read(self, n=-1):
        assert n is not None and 0 <= n <= 1 << 20, f"unbounded read({n})"
        return super().read(n)


@pytest.mark.parametrize("count", [2**32 - 1, 2**31, 2**20, 34_950, 2])
def test_absurd_segment_count_fails_fast(count):
    # The count field is u32, so 2**40 is not representable; the largest claims must fail
    # before anything proportional to them is allocated.
    blob = seal(raw_header(segment_count=count))
    t = time.perf_counter()
    with pytest.raises(FormatError, match="segments"):
        read_container(blob)
    with pytest.raises(FormatError, match="segments"):
        peek_header(_NoBigReads(blob))
    assert time.perf_counter() - t < 0.5


def test_absurd_lengths_fail_fast():
    # A correctly sealed header claiming a 2**60-byte payload on a tiny file.
    segs = [(METHOD_ZSTD, 0, 2**60, 2**60, 0, 0), (METHOD_LM, 0, 2**61, 2**62, 2**63, 0)]
    body = raw_header(
        original_size=2**60 + 2**61,
        segments=segs,
        model_id=b"m",
        tokenizer_id=b"t",
        total_bits=16,
        window_tokens=8,
    )
    blob = seal(body, b"abc")
    with pytest.raises(TruncatedError):
        read_container(blob)
    f = _NoBigReads(blob)
    h = peek_header(f)
    assert h.segments[0].payload_length == 2**60
    with pytest.raises(TruncatedError):
        list(iter_payloads_from(f, h))
    # Header length beyond the cap is rejected before reading the header.
    huge = MAGIC + struct.pack("<HII", 2, 0xFFFFFFFF, 0)
    with pytest.raises(FormatError, match="exceeds"):
        read_container(huge)
    with pytest.raises(FormatError, match="exceeds"):
        peek_header(_NoBigReads(huge))
    cap = MAGIC + struct.pack("<HII", 2, C.MAX_HEADER_LENGTH + 1, 0)
    with pytest.raises(FormatError, match="exceeds"):
        read_container(cap + bytes(C.MAX_HEADER_LENGTH + 1))


def _ok_segments():
    return [(METHOD_STORED, 0, 5, 5, 0, zlib.crc32(b"hello"))]


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(flags=1), "flags"),
        (dict(flags=0x80000000), "flags"),
        (dict(original_size=6), "sum"),
        (dict(segments=[(3, 0, 5, 5, 0, 0)]), "method"),
        (dict(segments=[(255, 0, 5, 5, 0, 0)]), "method"),
        (dict(segments=[(METHOD_STORED, 1, 5, 5, 0, 0)]), "transform"),
        (dict(segments=[(METHOD_STORED, 0x80, 5, 5, 0, 0)]), "transform"),
        (dict(segments=[(METHOD_STORED, 0, 5, 5, 7, 0)]), "token_count"),
        (dict(segments=[(METHOD_STORED, 0, 5, 4, 0, 0)]), "stored payload"),
        (dict(segments=[(METHOD_LM, 0, 5, 5, 3, 0)]), "model_id"),
        (dict(context_policy=2), "policy"),
        (dict(context_policy=0, overlap_tokens=1, window_tokens=4), "overlap"),
        (dict(context_policy=1, overlap_tokens=4, window_tokens=4), "overlap"),
        (dict(total_bits=33), "total_bits"),
        (dict(model_id=b"\xff\xfe"), "UTF-8"),
        (dict(tokenizer_id=b"\xc3"), "UTF-8"),
        (dict(extra=b"\0"), "segment table"),
        (dict(segment_count=2), "segment"),
        (dict(segment_count=0), "segment table"),
    ],
)
def test_inconsistent_fields_are_format_errors(kw, match):
    fields = dict(original_size=5, segments=_ok_segments())
    fields.update(kw)
    blob = seal(raw_header(**fields), b"hello")
    with pytest.raises(FormatError, match=match) as exc:
        read_container(blob)
    assert type(exc.value) is FormatError
    with pytest.raises(FormatError, match=match):
        peek_header(io.BytesIO(blob))


def test_string_length_past_header_end():
    body = bytearray(raw_header(model_id=b"abc"))
    struct.pack_into("<H", body, C.HEADER_FIXED_SIZE, 500)
    with pytest.raises(FormatError, match="model_id"):
        read_container(seal(bytes(body)))


def test_header_length_below_minimum():
    body = raw_header()[:-1]
    with pytest.raises(FormatError, match="minimum"):
        read_container(seal(body))


def test_lm_segment_requires_coder_parameters():
    seg = [(METHOD_LM, 0, 5, 4, 2, 0)]
    good = dict(
        original_size=5,
        segments=seg,
        model_id=b"m",
        tokenizer_id=b"t",
        total_bits=12,
        window_tokens=16,
    )
    read_container(seal(raw_header(**good), b"abcd"))
    for change in (dict(tokenizer_id=b""), dict(total_bits=0), dict(window_tokens=0)):
        with pytest.raises(FormatError):
            read_container(seal(raw_header(**{**good, **change}), b"abcd"))


# --------------------------------------------------------------------------- writer misuse


def test_writer_rejects_bad_input():
    h, payloads = stored_header(b"hello")
    with pytest.raises(ValueError):
        write_container(h, [])
    with pytest.raises(ValueError):
        write_container(h, [b"hello", b""])
    with pytest.raises(ValueError):
        write_container(h, [b"hell"])
    bad_headers = [
        Header(6, h.original_sha256, h.segments),
        Header(5, b"short", h.segments),
        Header(5, h.original_sha256, h.segments, flags=1),
        Header(5, h.original_sha256, h.segments, top_k=2**16),
        Header(5, h.original_sha256, h.segments, model_id="\ud800"),
        Header(5, h.original_sha256, h.segments, model_id="x" * 70_000),
        Header(5, h.original_sha256, [Segment(METHOD_STORED, 0, 5, 5, 0, 2**32)]),
        Header(5, h.original_sha256, [Segment(METHOD_STORED, 1, 5, 5, 0, 0)]),
        Header(5, h.original_sha256, [Segment(METHOD_LM, 0, 5, 5, 1, 0)]),  # no model id
        Header(5, h.original_sha256, [Segment(-1, 0, 5, 5, 0, 0)]),
    ]
    for bad in bad_headers:
        with pytest.raises(ValueError):
            write_container(bad, payloads)
    too_many = [Segment(METHOD_ZSTD, 0, 0, 0, 0, 0)] * 40_000
    with pytest.raises(ValueError, match="header would be"):
        write_container(Header(0, h.original_sha256, too_many), [b""] * 40_000)


# --------------------------------------------------------------------------- zstd codec


def test_zstd_frame_is_level19_with_size_and_checksum():
    data = b"abc" * 1000
    payload = zstd_encode(data)
    params = zstandard.get_frame_parameters(payload)
    assert params.content_size == len(data) and params.has_checksum
    assert zstd_decode(payload, len(data)) == data
    assert zstd_decode(zstd_encode(b""), 0) == b""


def test_zstd_rejects_damage_and_wrong_sizes():
    data = os.urandom(300) * 10
    p = zstd_encode(data)
    no_size = zstandard.ZstdCompressor(write_content_size=False, write_checksum=True)
    cases = [
        (p, len(data) - 1),
        (p, len(data) + 1),
        (p + b"\0", len(data)),
        (p + zstd_encode(b"x"), len(data)),  # second frame
        (p[:-1], len(data)),
        (p[:10], len(data)),
        (b"", len(data)),
        (b"not zstd at all", len(data)),
        (zstandard.ZstdCompressor(write_checksum=False).compress(data), len(data)),
        (no_size.compress(data), len(data)),
    ]
    for payload, n in cases:
        with pytest.raises(FormatError):
            zstd_decode(payload, n)
    for i in range(len(p)):
        bad = bytearray(p)
        bad[i] ^= 0x40
        try:
            out = zstd_decode(bytes(bad), len(data))
        except FormatError:
            continue
        assert out == data  # only harmless (unused-bit) flips may decode


def test_zstd_output_is_bounded_by_expected_length():
    big = bytes(1_000_000)
    p = bytearray(zstd_encode(big))
    fhd = p[4]
    assert fhd >> 6 == 2  # 4-byte content size field
    pos = 5 + (0 if fhd & 0x20 else 1)
    assert struct.unpack_from("<I", p, pos)[0] == len(big)
    struct.pack_into("<I", p, pos, 10)  # frame now lies: claims 10 bytes, holds a million
    produced = 0
    with pytest.raises(FormatError):
        for chunk in zstd_decode_iter(bytes(p), 10, chunk_size=4):
            produced += len(chunk)
    assert produced <= 10
    # Claiming a huge size does not allocate it: output grows only with real data.
    struct.pack_into("<I", p, pos, 2**32 - 1)
    with pytest.raises(FormatError):
        zstd_decode(bytes(p), 2**32 - 1)


def test_decode_fallback_segment_checks_crc_and_rejects_lm():
    seg, payload = make_fallback_segment(b"hello")
    bad = Segment(seg.method, 0, 5, 5, 0, seg.crc32 ^ 1)
    with pytest.raises(ChecksumError, match="segment 3"):
        decode_fallback_segment(bad, payload, 3)
    with pytest.raises(ValueError):
        decode_fallback_segment(Segment(METHOD_LM, 0, 5, 5, 1, 0), payload)
    with pytest.raises(ChecksumError):
        verify_original(Header(5, bytes(32), [seg]), b"hello")
    with pytest.raises(ChecksumError):
        verify_original(Header(5, hashlib.sha256(b"hello").digest(), [seg]), b"hell")


# -- version 2: adaptive predictor parameters and transforms --------------------------------

def _lm_fields(**kw):
    data = b"coded by the model"
    seg = (C.METHOD_LM, kw.pop("transforms", 0), len(data), 4, 3, zlib.crc32(data))
    return dict(original_size=len(data), original_sha256=hashlib.sha256(data).digest(), total_bits=24,
                window_tokens=64, model_id=b"m", tokenizer_id=b"t", segments=[seg], **kw), data


def test_version_2_header_round_trip():
    fields, data = _lm_fields(transforms=C.TRANSFORM_CRLF, predictor=b"\x01params")
    blob = seal(raw_header(**fields), b"PAYL", version=2)
    header, payloads = read_container(blob)
    assert header.version == 2 and header.predictor == b"\x01params"
    assert header.segments[0].transforms == C.TRANSFORM_CRLF and bytes(payloads[0]) == b"PAYL"
    assert write_container(header, [b"PAYL"]) == blob  # the writer produces the same bytes
    assert peek_header(io.BytesIO(blob)) == header


def test_writer_picks_the_oldest_version_that_holds_the_header():
    fields, _ = _lm_fields()
    v1 = seal(raw_header(**fields), b"PAYL", version=1)
    header, _ = read_container(v1)
    assert header.version == 1 and write_container(header, [b"PAYL"]) == v1
    header.predictor = b"\x01"
    assert write_container(header, [b"PAYL"])[6:8] == struct.pack("<H", 2)


@pytest.mark.parametrize("version, kw, message", [
    (1, dict(transforms=C.TRANSFORM_CRLF), "transform"),  # version 1 knows no transforms
    (2, dict(transforms=0x02, predictor=b""), "transform"),  # unknown transform bit
    (2, dict(predictor=b""), "version-2 feature"),  # version 2 without any version-2 feature
])
def test_version_2_rules(version, kw, message):
    fields, _ = _lm_fields(**kw)
    with pytest.raises(FormatError, match=message):
        read_container(seal(raw_header(**fields), b"PAYL", version=version))


def test_transform_only_on_model_segments():
    data = b"stored"
    seg = (C.METHOD_STORED, C.TRANSFORM_CRLF, len(data), len(data), 0, zlib.crc32(data))
    body = raw_header(original_size=len(data), original_sha256=hashlib.sha256(data).digest(), segments=[seg], predictor=b"")
    with pytest.raises(FormatError, match="not coded by the model"):
        read_container(seal(body, data, version=2))


def test_predictor_length_past_the_header():
    fields, _ = _lm_fields(predictor=b"\x01abc")
    body = raw_header(**fields)
    cut = body[: body.index(b"\x04\x01abc") + 3]  # predictor block cut short, no segment table
    with pytest.raises(FormatError):
        read_container(seal(cut, version=2))
