"""The compact container (format version 3, docs/FORMAT.md), the xz fallback and the text sniffer."""

from __future__ import annotations

import io
import lzma
import os
import random
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmzip.coding import container as C
from lmzip.coding import sniff
from lmzip.coding.container import METHOD_LM, METHOD_STORED, METHOD_XZ, METHOD_ZSTD, Header, Segment
from lmzip.errors import BadMagicError, FormatError, TruncatedError, UnsupportedVersionError

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PRESET = C.PRESETS[1]


def lm_header(segments, **kw) -> Header:
    fields = dict(total_bits=PRESET.total_bits, top_k=PRESET.top_k, window_tokens=PRESET.window_tokens,
                  overlap_tokens=PRESET.overlap_tokens, context_policy=PRESET.context_policy,
                  predictor=PRESET.predictor, model_ref=b"\x0b\xa1")
    fields.update(kw)
    fields.setdefault("original_sha256", b"")
    return Header(original_size=sum(s.original_length for s in segments), segments=segments, **fields)


@st.composite
def v3_headers(draw):
    n = draw(st.integers(0, 5))
    segments = []
    for _ in range(n):
        method = draw(st.sampled_from([METHOD_STORED, METHOD_ZSTD, METHOD_LM, METHOD_XZ]))
        length = draw(st.integers(0, 2**64 // 8))
        segments.append(Segment(
            method=method,
            transforms=draw(st.sampled_from([0, C.TRANSFORM_CRLF])) if method == METHOD_LM else 0,
            original_length=length,
            payload_length=length if method == METHOD_STORED else draw(st.integers(0, 2**40)),
            token_count=draw(st.integers(0, 2**40)) if method == METHOD_LM else 0,
            crc32=draw(st.integers(0, 2**32 - 1)),
        ))
    h = Header(original_size=sum(s.original_length for s in segments), original_sha256=b"", segments=segments)
    if any(s.method == METHOD_LM for s in segments):
        if draw(st.booleans()):
            p = C.PRESETS[draw(st.sampled_from(sorted(C.PRESETS)))]
            h.total_bits, h.top_k, h.window_tokens = p.total_bits, p.top_k, p.window_tokens
            h.overlap_tokens, h.context_policy, h.predictor = p.overlap_tokens, p.context_policy, p.predictor
        else:
            h.total_bits = draw(st.integers(1, C.MAX_TOTAL_BITS))
            h.top_k = draw(st.integers(0, 2**16 - 1))
            h.window_tokens = draw(st.integers(1, 2**32 - 1))
            sliding = draw(st.booleans())
            h.context_policy = C.POLICY_SLIDING if sliding else C.POLICY_INDEPENDENT
            h.overlap_tokens = draw(st.integers(0, h.window_tokens - 1)) if sliding else 0
            h.predictor = draw(st.binary(max_size=C.MAX_PREDICTOR_LENGTH))
        if draw(st.booleans()):
            h.model_ref = draw(st.binary(min_size=C.MODEL_REF_SIZE, max_size=C.MODEL_REF_SIZE))
        else:
            h.model_id = draw(st.text(min_size=1, max_size=20))
            h.tokenizer_id = draw(st.text(min_size=1, max_size=20))
            h.model_sha256 = draw(st.binary(min_size=32, max_size=32))
    return h


@FAST
@given(v3_headers())
def test_v3_headers_round_trip_from_bytes_and_files(h):
    prefix = C.encode_v3(h)
    assert prefix.startswith(C.MAGIC_V3)
    back, start = C.parse_header(prefix)
    assert back == h and start == len(prefix) and back.format_version == 3 == back.version
    f = io.BytesIO(prefix + b"payloads follow")
    assert C.peek(f) == (h, len(prefix)) and f.tell() == len(prefix)
    # Every shorter prefix is a clean TruncatedError, never a crash or a wrong header.
    for cut in range(len(prefix)):
        with pytest.raises(TruncatedError):
            C.parse_header(prefix[:cut])


def test_a_small_file_costs_sixteen_bytes_of_header():
    # A registered model with the default settings: preset byte, 2-byte model reference, one
    # segment (kind, two one-byte lengths, a one-byte token count, CRC-32), behind the 5-byte magic.
    h = lm_header([Segment(METHOD_LM, 0, 12, 4, 3, 0xAF083B2D)])
    assert len(C.write_container(h, [b"\x01\x02\x03\x04"])) == 16 + 4
    empty = C.write_container(Header(0, b""), [])
    assert empty == C.MAGIC_V3 + b"\x00\x00" and C.read_container(empty)[0].segments == []


def test_settings_other_than_a_preset_are_written_out():
    h = lm_header([Segment(METHOD_LM, 0, 12, 4, 3, 1)], window_tokens=2048, overlap_tokens=512)
    blob = C.write_container(h, [b"abcd"])
    assert blob[5] & 0x0F == 0 and C.read_container(blob)[0] == h
    h.model_ref, h.model_id, h.tokenizer_id, h.model_sha256 = b"", "dir:tiny", "tok", bytes(range(32))
    assert C.read_container(C.write_container(h, [b"abcd"]))[0] == h


def test_files_without_model_segments_name_no_model():
    h = lm_header([Segment(METHOD_STORED, 0, 3, 3, 0, zlib.crc32(b"abc"))])
    blob = C.write_container(h, [b"abc"])
    back = C.read_container(blob)[0]
    assert blob[5] == 0x40 and back.model_ref == b"" and back.total_bits == 0  # settings dropped: noise


@pytest.mark.parametrize("mutate, error", [
    (lambda b: b[:5] + bytes([b[5] | 0x80]) + b[6:], "reserved"),
    (lambda b: b[:5] + bytes([(b[5] & 0xF0) | 0x0F]) + b[6:], "unknown preset"),
    (lambda b: b[:5] + bytes([b[5] | 0x30]) + b[6:], "unknown model form"),
    (lambda b: b[:5] + bytes([b[5] & 0xCF]) + b[6:], "names no model"),
    (lambda b: b[:9] + b"\x8c\x00" + b[10:], "shortest form"),  # 12 as a two-byte varint
    (lambda b: b[:8] + b"\x09" + b[9:], "unknown method"),
])
def test_damaged_fields_are_format_errors(mutate, error):
    h = lm_header([Segment(METHOD_LM, 0, 12, 4, 3, 1)])
    blob = C.write_container(h, [b"abcd"])
    with pytest.raises(FormatError, match=error):
        C.read_container(mutate(blob))


def test_magic_and_versions():
    with pytest.raises(BadMagicError):
        C.parse_header(b"\x89LMZ\n\x00\x00")  # CR LF converted to LF
    with pytest.raises(UnsupportedVersionError, match="version 4"):
        C.parse_header(b"\x89LMZ\x04\x00\x00")
    with pytest.raises(TruncatedError):
        C.parse_header(b"\x89LMZ")
    legacy = lm_header([Segment(METHOD_LM, 0, 12, 4, 3, 1)], original_sha256=bytes(32))
    with pytest.raises(ValueError, match="model_id is empty"):  # the legacy layouts name a model in full
        C.write_container(legacy, [b"abcd"], 2)


def test_segment_counts_beyond_the_header_limit_fail_before_allocating():
    blob = C.MAGIC_V3 + b"\x00" + b"\xff\xff\xff\xff\x0f"
    with pytest.raises(FormatError, match="segment count"):
        C.parse_header(blob)
    many = C.MAGIC_V3 + b"\x00" + bytes([0x80 | 0x10, 0x27])  # 5000 segments, none present
    with pytest.raises(TruncatedError):
        C.parse_header(many)


# -- the xz fallback --------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=3000))
def test_xz_round_trip(data):
    payload = C.xz_encode(data)
    assert C.xz_decode(payload, len(data)) == data


def test_xz_damage_is_a_format_error():
    data = b"the quick brown fox " * 200
    payload = C.xz_encode(data)
    for bad, error in [(payload[:-3], "truncated|corrupt"), (payload + b"\x00", "trailing|corrupt"),
                       (payload[:20] + bytes([payload[20] ^ 0x40]) + payload[21:], "corrupt|decodes|truncated")]:
        with pytest.raises(FormatError, match=error):
            C.xz_decode(bad, len(data))
    with pytest.raises(FormatError, match="more than"):  # never more output than the entry claims
        C.xz_decode(payload, len(data) - 1)
    with pytest.raises(FormatError):
        C.xz_decode(payload, len(data) + 1)
    assert C.xz_dict_size(1) == 4096 and C.xz_dict_size(5000) == 8192 and C.xz_dict_size(2**40) == 2**26


def test_fallback_picks_the_smallest_method():
    rnd = random.Random(7)
    samples = [os.urandom(500), bytes(4000), b"a,b,c\n" * 300,
               bytes(rnd.choice(b"ACGT") for _ in range(5000)), (open("/bin/sh", "rb").read()[:20000])]
    for data in samples:
        method, payload = C.choose_fallback(data)
        sizes = {METHOD_STORED: len(data), METHOD_ZSTD: len(C.zstd_encode(data)), METHOD_XZ: len(C.xz_encode(data))}
        assert len(payload) == min(sizes.values()) and sizes[method] == len(payload)
        seg, p = C.make_fallback_segment(data)
        assert C.decode_fallback_segment(seg, p) == data
    assert C.choose_fallback(b"a,b,c\n" * 300, version=2)[0] != METHOD_XZ  # the old layouts know no xz


def test_xz_segments_only_in_version_3():
    data = b"x" * 1000
    seg = Segment(METHOD_XZ, 0, len(data), len(C.xz_encode(data)), 0, zlib.crc32(data))
    h = Header(len(data), b"", [seg])
    assert C.read_container(C.write_container(h, [C.xz_encode(data)]))[0] == h
    h.original_sha256 = bytes(32)
    with pytest.raises(ValueError, match="unknown method"):
        C.write_container(h, [C.xz_encode(data)], 2)


# -- the text sniffer -------------------------------------------------------------------------


def test_sniffer_tells_text_from_binary():
    assert sniff.looks_like_text(b"")
    assert sniff.looks_like_text("naïve café, 東京\r\n\tline\x1b[0m\n".encode() * 50)
    assert sniff.looks_like_text(b"terminal\x00session\x08 with a few controls\n" * 3 + b"x" * 800)
    assert not sniff.looks_like_text(open("/bin/sh", "rb").read())
    assert not sniff.looks_like_text(lzma.compress(b"compressed data " * 500))
    assert not sniff.looks_like_text(bytes(range(256)) * 4)
    assert sniff.non_text_fraction(b"\xff" * 10 + b"a" * 90) == pytest.approx(0.1)


def test_worked_example_of_the_format_document():
    seg = Segment(METHOD_STORED, 0, 5, 5, 0, zlib.crc32(b"hello"))
    blob = C.write_container(Header(5, b"", [seg]), [b"hello"])
    assert blob.hex(" ") == "89 4c 4d 5a 03 40 00 05 05 91 ce bd 3d 68 65 6c 6c 6f"
    assert zlib.crc32(blob[:9]) == 0x0BAD6817 and 0x3DBDCE91 == 0x3610A686 ^ 0x0BAD6817
    assert C.write_container(Header(0, b""), []) == bytes.fromhex("894c4d5a030000")


def test_every_header_byte_is_sealed():
    seg = Segment(METHOD_STORED, 0, 5, 5, 0, zlib.crc32(b"hello"))
    blob = C.write_container(Header(5, b"", [seg]), [b"hello"])
    for i in range(len(blob) * 8):
        bad = bytearray(blob)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(FormatError):
            h, payloads = C.read_container(bytes(bad))
            for s, p in zip(h.segments, payloads):
                C.decode_fallback_segment(s, p)


def test_registry_prefixes_are_unique():
    from lmzip.model import zoo

    refs = [bytes.fromhex(m.sha256)[: C.MODEL_REF_SIZE] for m in zoo.registry()]
    assert len(set(refs)) == len(refs)
    for m, ref in zip(zoo.registry(), refs):
        assert zoo.entry_for_ref(ref).id == m.id
