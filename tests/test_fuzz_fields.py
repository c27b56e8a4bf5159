"""Structured fuzzing: every field a file controls, mutated with the checksums made valid again.

Raw byte mutations are nearly always caught by the header's CRC, so they never reach the
fields. Here hypothesis rewrites the parsed header (counts, lengths, coder and window
parameters, predictor bytes, method and transform codes) and the payloads, re-serialises the
container (valid CRC), and decodes it with the tiny model on each runtime: the only acceptable
outcomes are the original bytes or an ``LmzipError`` (a ``FormatError`` for damaged files),
within a time bound — never another exception, a hang, or different bytes.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lmzip
from lmzip.coding import container
from lmzip.errors import LmzipError

DATA = b"fields under attack: counts, lengths and parameters. " * 5 + b"\x00\xff binary tail"
OPTS = dict(window=48, overlap=16, segment_size=120, fallback=False)
TIME_LIMIT = 20.0  # seconds for one damaged file (the honest one decodes in well under 1 s)


@pytest.fixture(scope="module")
def blobs(tiny):
    """An adaptive and a plain file of the same data, in the compact and the legacy layout, with
    their parsed headers and the layout to write them back in."""
    out = []
    for version in (container.FORMAT_VERSION, 2):
        for adapt in (True, False):
            blob = lmzip.Compressor(tiny, adapt=adapt, format_version=version, **OPTS).compress(DATA)
            header, payloads = container.read_container(blob)
            out.append((header, [bytes(p) for p in payloads], version))
    return out


SEGMENT_FIELDS = ["method", "transforms", "original_length", "payload_length", "token_count", "crc32"]
HEADER_FIELDS = ["original_size", "total_bits", "top_k", "window_tokens", "overlap_tokens", "context_policy", "flags"]
U = st.one_of(st.integers(0, 4), st.integers(0, 70), st.sampled_from([2**8 - 1, 2**16 - 1, 2**31, 2**32 - 1, 3_000_000]))


@st.composite
def mutations(draw, n_segments: int):
    """A list of edits: (target, index, field, value) applied to a copy of the header/payloads."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["segment", "header", "payload", "predictor", "ids"]))
        if kind == "segment":
            edits.append(("segment", draw(st.integers(0, n_segments - 1)), draw(st.sampled_from(SEGMENT_FIELDS)), draw(U)))
        elif kind == "header":
            edits.append(("header", 0, draw(st.sampled_from(HEADER_FIELDS)), draw(U)))
        elif kind == "payload":
            edits.append(("payload", draw(st.integers(0, n_segments - 1)), draw(st.sampled_from(["flip", "cut", "grow", "empty"])),
                          draw(st.integers(0, 2**16))))
        elif kind == "predictor":
            edits.append(("predictor", 0, "bytes", draw(st.binary(max_size=14))))
        else:
            edits.append(("ids", 0, draw(st.sampled_from(["model_id", "tokenizer_id"])), draw(st.text(max_size=6))))
    return edits


def _apply(header: container.Header, payloads: list[bytes], edits) -> tuple[container.Header, list[bytes]]:
    segs = [dataclasses.replace(s) for s in header.segments]
    pays = list(payloads)
    fields = {}
    for target, i, name, value in edits:
        if target == "segment":
            segs[i] = dataclasses.replace(segs[i], **{name: value})
        elif target == "header":
            fields[name] = value
        elif target == "payload":
            p = bytearray(pays[i])
            if name == "flip" and p:
                p[value % len(p)] ^= 1 + value % 255
            elif name == "cut":
                p = p[: value % (len(p) + 1)]
            elif name == "grow":
                p += bytes([value % 256]) * (1 + value % 7)
            else:
                p = bytearray()
            pays[i] = bytes(p)
        elif target == "predictor":
            fields["predictor"] = value
        else:
            fields[name] = value
    # Payload lengths follow the payloads unless an edit set them on purpose.
    for k, (s, p) in enumerate(zip(segs, pays)):
        if not any(t == "segment" and i == k and n == "payload_length" for t, i, n, _ in edits):
            segs[k] = dataclasses.replace(s, payload_length=len(p))
    return dataclasses.replace(header, segments=segs, **fields), pays


@settings(max_examples=200)
@given(which=st.integers(0, 3), data=st.data())
def test_damaged_fields_are_refused_or_decode_right(tiny, blobs, which, data):
    header, payloads, version = blobs[which]
    edits = data.draw(mutations(len(header.segments)))
    h2, p2 = _apply(header, payloads, edits)
    try:
        blob = container.write_container(h2, p2, version)
    except (ValueError, LmzipError):
        return  # the writer refuses values its fields cannot hold: nothing to read
    t0 = time.monotonic()
    try:
        out = lmzip.decompress(blob, tiny)
    except LmzipError:
        out = None
    assert time.monotonic() - t0 < TIME_LIMIT, edits
    if out is not None:
        assert out == DATA, edits  # never different bytes


def test_token_count_beyond_what_the_bytes_allow_is_refused_at_once(tiny, blobs):
    """The attack of a huge claimed token count: refused before decoding, not after a day."""
    header, payloads, _ = blobs[0]
    k = next(i for i, s in enumerate(header.segments) if s.method == container.METHOD_LM)
    segs = list(header.segments)
    segs[k] = dataclasses.replace(segs[k], token_count=3_000_000)
    blob = container.write_container(dataclasses.replace(header, segments=segs), payloads)
    t0 = time.monotonic()
    with pytest.raises(lmzip.FormatError, match="claims 3000000 tokens"):
        lmzip.decompress(blob, tiny)
    assert time.monotonic() - t0 < 2


def test_coder_parameters_the_model_cannot_honour_are_format_errors(tiny, blobs):
    header, payloads, _ = blobs[1]
    for fields, message in ((dict(total_bits=16), "total_bits"), (dict(window_tokens=10**6, overlap_tokens=16), "window")):
        blob = container.write_container(dataclasses.replace(header, **fields), payloads)
        with pytest.raises(lmzip.FormatError, match=message):
            lmzip.decompress(blob, tiny)


def test_token_count_beyond_what_the_payload_holds_is_refused_at_once(tiny, blobs):
    """A claim backed by as many claimed bytes, one token more than the payload can hold."""
    from lmzip.coding.codec import max_tokens

    header, payloads, version = blobs[0]
    k = next(i for i, s in enumerate(header.segments) if s.method == container.METHOD_LM)
    claim = max_tokens(len(payloads[k]), tiny.model.cfg.vocab_size, header.top_k) + 1
    segs = list(header.segments)
    segs[k] = dataclasses.replace(segs[k], token_count=claim, original_length=claim)
    h = dataclasses.replace(header, segments=segs, original_size=sum(s.original_length for s in segs))
    blob = container.write_container(h, payloads, version)
    t0 = time.monotonic()
    with pytest.raises(lmzip.FormatError, match="payload holds at most"):
        lmzip.decompress(blob, tiny)
    assert time.monotonic() - t0 < 2


def test_a_payload_that_runs_out_stops_the_decoder(tiny, blobs):
    """A real payload under the largest claim it allows: after its own tokens the decoder reads
    zeros, and stops as soon as it has read past the end more than a valid stream can."""
    from lmzip.coding.codec import max_tokens

    header, payloads, version = blobs[1]  # the model alone: its tokens past the end are not free
    k = next(i for i, s in enumerate(header.segments) if s.method == container.METHOD_LM)
    most = max_tokens(len(payloads[k]), tiny.model.cfg.vocab_size, header.top_k)
    segs = list(header.segments)
    segs[k] = dataclasses.replace(segs[k], token_count=most, original_length=most)
    pays = list(payloads)
    h = dataclasses.replace(header, segments=segs, original_size=sum(s.original_length for s in segs))
    blob = container.write_container(h, pays, version)
    t0 = time.monotonic()
    with pytest.raises(lmzip.FormatError, match="more tokens than its payload holds|corrupt"):
        lmzip.decompress(blob, tiny)
    assert time.monotonic() - t0 < 60  # a hang guard: without the limit this claim decodes for hours


@pytest.mark.parametrize("runtime", ["reference", "native"])
def test_the_decoder_stops_a_few_words_past_the_payload(runtime):
    """Under uniform rows every point decodes to some symbol, so only the over-read limit stops a
    decoder asked for more symbols than were coded: after 8 bits a symbol, within 4 words."""
    import numpy as np

    from lmzip import native
    from lmzip.coding.coder import MAX_OVERREAD, TokenDecoder, TokenEncoder

    if runtime == "native" and not native.available():
        pytest.skip("no native runtime")
    if runtime == "native":
        from lmzip.native.coding import NativeTokenDecoder as Dec, NativeTokenEncoder as Enc
    else:
        Dec, Enc = TokenDecoder, TokenEncoder
    row = np.full(256, 1 << 16, dtype=np.int64)  # sums to 2**24
    syms = np.random.default_rng(3).integers(0, 256, 100)
    enc = Enc(total_bits=24, top_k=0)
    enc.encode_many(syms, np.tile(row, (100, 1)))
    data = enc.finish()
    dec = Dec(data, total_bits=24, top_k=0)
    assert [dec.decode(row) for _ in range(100)] == syms.tolist()
    n = 0
    with pytest.raises(lmzip.FormatError, match="more tokens than its payload holds"):
        for n in range(10_000):
            dec.decode(row)
    assert n <= 4 * (MAX_OVERREAD + 1)
