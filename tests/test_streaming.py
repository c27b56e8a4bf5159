"""Streaming with bounded memory and random access (lmzip/coding/streaming.py, api.LmzFile, the CLI)."""

from __future__ import annotations

import io
import random

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import lmzip
from lmzip.coding import codec, container, streaming
from lmzip.commands.cli import main
from lmzip.errors import LmzipError, TrailingDataError, TruncatedError

SMALL = dict(window=48, overlap=16, segment_size=200)
LM = dict(SMALL, fallback=False)  # a random-weight model rarely beats zstd: force the model
TEXT = b"Streams arrive in pieces; the segments must not care.\n" * 12 + bytes(range(200)) + b"tail text\n" * 9


def chunked(data: bytes, rng: random.Random):
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 7, 100, 333, 4096])
        yield data[pos : pos + n]
        pos += n


@settings(max_examples=60)
@given(st.binary(max_size=3000), st.integers(2, 700), st.randoms(use_true_random=False))
def test_splitter_cuts_as_split_segments(data, target, rng):
    sp = streaming.Splitter(target)
    pieces = [p for c in chunked(data, rng) for p in sp.feed(c)] + list(sp.finish())
    assert pieces == [data[o : o + n] for o, n in codec.split_segments(data, target)]


@pytest.mark.parametrize("data, start, target, end", [
    (b"aaaa\nbbbbbb", 0, 8, 5),  # the newline in the second half: cut after it
    (b"aa\naaaaaaaaa", 0, 8, 8),  # only in the first half: a full target
    (b"aaaa\nbb\nbbbb", 0, 8, 8),  # the last newline of the span, not the first
    (b"abcdefghijklmn", 0, 8, 8),  # none at all
    (b"abc\n", 0, 8, 4),  # the data ends first
    (b"xxxxxxxxaaaa\nbbbbbb", 8, 8, 13),  # from a later start
    (b"aaaaaaa\n", 0, 8, 8),  # the newline is the span's last byte
])
def test_segment_end_rule(data, start, target, end):
    assert codec.segment_end(data, start, target) == end
    # The rule from first principles, beside the implementation.
    span_end = min(len(data), start + target)
    nls = [i for i in range(start + target // 2, span_end) if data[i:i + 1] == b"\n"]
    assert end == (span_end if span_end == len(data) or not nls else nls[-1] + 1)


@pytest.mark.parametrize("opts", [LM, SMALL, dict(SMALL, adapt=False)])
def test_written_in_pieces_is_byte_identical_to_whole(tiny, opts):
    comp = lmzip.Compressor(tiny, **opts)
    whole = comp.compress(TEXT)
    for total in (len(TEXT), None):  # a known size, or a stream that ends within the read-ahead
        sc = streaming.StreamCompressor(tiny, comp.params, total)
        for c in chunked(TEXT, random.Random(total or 1)):
            sc.write(c)
        out = io.BytesIO()
        assert sc.finish(out) == len(whole) and out.getvalue() == whole


def test_a_long_stream_of_unknown_size_gets_fixed_segments(tiny, monkeypatch):
    monkeypatch.setattr(streaming, "PROBE", 300)
    monkeypatch.setattr(streaming, "STREAM_SEGMENT", 250)
    monkeypatch.setattr(streaming, "SPOOL_MEMORY", 100)  # payloads spill to a temporary file
    comp = lmzip.Compressor(tiny, window=48, overlap=16)
    sc = streaming.StreamCompressor(tiny, comp.params, None)
    for c in chunked(TEXT, random.Random(3)):
        sc.write(c)
    out = io.BytesIO()
    sc.finish(out)
    header = container.read_container(out.getvalue())[0]
    assert max(s.original_length for s in header.segments) <= 250 + 200  # a binary run may join two
    assert lmzip.decompress(out.getvalue(), tiny) == TEXT


def test_iter_decode_yields_segments_in_order_and_checks_the_end(tiny):
    blob = lmzip.Compressor(tiny, **LM).compress(TEXT)
    header, start = container.parse_header(blob)
    for batch in (1, 2, 16):
        parts = list(streaming.iter_decode(header, container.iter_payloads_from(io.BytesIO(blob[start:]), header), tiny, batch))
        assert len(parts) == len(header.segments) and b"".join(parts) == TEXT
    with pytest.raises(TrailingDataError):
        list(streaming.iter_decode(header, container.iter_payloads_from(io.BytesIO(blob[start:] + b"x"), header), tiny))
    with pytest.raises(TruncatedError):
        list(streaming.iter_decode(header, container.iter_payloads_from(io.BytesIO(blob[start:-1]), header), tiny))


def test_random_access_decodes_only_the_covering_segments(tiny, monkeypatch):
    blob = lmzip.Compressor(tiny, **LM).compress(TEXT)
    header = container.read_container(blob)[0]
    decoded: list[int] = []
    real = streaming.decode_group

    def spy(h, items, *a, **k):
        decoded.extend(i for i, _, _ in items)
        return real(h, items, *a, **k)

    monkeypatch.setattr(streaming, "decode_group", spy)
    f = lmzip.LmzFile(io.BytesIO(blob), model=tiny, batch=1)
    ends = [sum(s.original_length for s in header.segments[: i + 1]) for i in range(len(header.segments))]
    f.seek(ends[1] + 3)
    assert f.read(5) == TEXT[ends[1] + 3 : ends[1] + 8] and decoded == [2]
    rng = random.Random(5)
    for _ in range(30):
        a = rng.randrange(len(TEXT) + 5)
        n = rng.randrange(400)
        f.seek(a)
        assert f.read(n) == TEXT[a : a + n] and f.tell() == a + len(TEXT[a : a + n])
    f.seek(-4, io.SEEK_END)
    assert f.read() == TEXT[-4:]


class _Pipe(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self.src = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        chunk = self.src.read(min(len(b), 37))
        b[: len(chunk)] = chunk
        return len(chunk)


def test_lmzfile_reads_a_pipe_front_to_back(tiny):
    blob = lmzip.Compressor(tiny, **LM).compress(TEXT)
    f = lmzip.LmzFile(_Pipe(blob), model=tiny)
    assert not f.seekable()
    assert f.read(10) == TEXT[:10]
    f.seek(20)
    assert f.readline() == TEXT[20:].split(b"\n")[0] + b"\n"
    with pytest.raises(io.UnsupportedOperation):  # a pipe cannot go back
        f.seek(0)
    pos = f.tell()
    assert f.read(900) == TEXT[pos : pos + 900]
    assert f.read() == TEXT[pos + 900 :]


def test_lmzfile_text_mode_and_writing(tiny, tmp_path):
    path = tmp_path / "t.lmz"
    with lmzip.open(path, "wb", model=tiny, **LM) as f:
        for c in chunked(TEXT, random.Random(9)):
            f.write(c)
    assert path.read_bytes() == lmzip.Compressor(tiny, **LM).compress(TEXT)
    with lmzip.open(path, "rt", model=tiny, encoding="latin-1", newline="") as f:
        assert f.readline() == TEXT.decode("latin-1").split("\n")[0] + "\n"
        assert f.read() == TEXT.decode("latin-1").split("\n", 1)[1]


def test_incremental_compressor_and_decompressor(tiny):
    c = lmzip.LmzCompressor(tiny, **LM)
    assert all(c.compress(x) == b"" for x in chunked(TEXT, random.Random(1)))
    blob = c.flush()
    assert blob == lmzip.Compressor(tiny, **LM).compress(TEXT)
    for batch in (1, 3):
        d = lmzip.LmzDecompressor(tiny, batch=batch)
        out = b"".join(d.decompress(x) for x in chunked(blob + b"NEXT", random.Random(batch)))
        assert out == TEXT and d.eof and d.unused_data == b"NEXT"
        with pytest.raises(EOFError):
            d.decompress(b"more")


def test_cli_range_and_streams(tiny_model_dir, tmp_path):
    src = tmp_path / "x.txt"
    src.write_bytes(TEXT)
    runner = CliRunner()
    common = ["--model", str(tiny_model_dir)]
    r = runner.invoke(main, ["compress", *common, "--window", "48", "--overlap", "16", "--segment-size", "200", str(src)])
    assert r.exit_code == 0, r.output
    lmz = str(src) + ".lmz"
    for span, want in (("100:350", TEXT[100:350]), (":10", TEXT[:10]), ("900:", TEXT[900:]), ("5:5", b"")):
        r = runner.invoke(main, ["decompress", *common, "--range", span, "-c", lmz])
        assert r.exit_code == 0 and r.stdout_bytes == want, (span, r.output)
    r = runner.invoke(main, ["decompress", *common, "--range", "1:2", lmz])
    assert r.exit_code != 0 and "give -c or -o" in r.output
    r = runner.invoke(main, ["decompress", *common, "--range", "9:2", "-c", lmz])
    assert r.exit_code != 0 and "ends before it starts" in r.output
    # standard input to standard output, both ways
    blob = runner.invoke(main, ["compress", *common, "-c", "-f", "-"], input=TEXT).stdout_bytes
    assert blob[:5] == container.MAGIC_V3
    assert runner.invoke(main, ["decompress", *common, "-c", "-"], input=blob).stdout_bytes == TEXT


def test_damaged_stream_writes_nothing_to_stdout(tiny_model_dir, tmp_path):
    src = tmp_path / "y.txt"
    src.write_bytes(TEXT)
    runner = CliRunner()
    common = ["--model", str(tiny_model_dir)]
    blob = runner.invoke(main, ["compress", *common, "--segment-size", "200", "-c", "-f", str(src)]).stdout_bytes
    bad = bytearray(blob)
    bad[-3] ^= 0x10
    r = runner.invoke(main, ["decompress", *common, "-c", "-"], input=bytes(bad))
    assert r.exit_code != 0 and r.stdout_bytes == b""
    with pytest.raises(LmzipError):
        lmzip.decompress(bytes(bad), lmzip.Decompressor(tiny_model_dir).model_for(container.read_container(blob)[0]))


@settings(max_examples=200, deadline=None)
@given(total=st.integers(1, 1 << 30), streams=st.integers(1, 4096), adapt=st.booleans())
def test_streams_choose_the_number_of_segments(total, streams, adapt):
    """CodecParams.streams: about that many equal segments, none much under MIN_STREAM_SEGMENT
    (equal parts round down a little) and none over 1 MB, whatever the predictor."""
    from lmzip.coding.codec import MIN_STREAM_SEGMENT, CodecParams
    from lmzip.predict.adapt import AdaptParams

    p = CodecParams(streams=streams, adapt=AdaptParams() if adapt else None)
    size = p.segment_size(total)
    assert 0 < size <= 1 << 20
    n = -(-total // size)
    if total >= MIN_STREAM_SEGMENT:
        assert size * 2 > MIN_STREAM_SEGMENT
    if MIN_STREAM_SEGMENT * streams <= total <= streams << 20:
        assert n == streams or abs(size - total / streams) <= 1
    with pytest.raises(ValueError, match="mutually exclusive"):
        CodecParams(streams=streams, segment_bytes=1000).validate(8192)
