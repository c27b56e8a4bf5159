"""Segment-at-a-time compression and decompression: memory bounded by a segment, not the input.

A .lmz file puts its segment table before the payloads, so a decoder can stream it front to
back, but an encoder learns the table only at the end. ``StreamCompressor`` therefore codes each
segment as its bytes arrive and spools the payloads (in memory up to ``SPOOL_MEMORY``, then in
a temporary file); ``finish`` writes the header and copies the payloads behind it. What it holds
at once: the read-ahead that learns an input's size (``PROBE``), one segment (or one run of
binary segments, ``MAX_BINARY_SEGMENT``; on a GPU a batch of segments compressed together,
``batch_encode``, at most ``ENCODE_PENDING_BYTES``) and the model.

The segments are the same however the input arrives: an input of known size (a file, a bytes
object, or a stream that ends within ``PROBE``) is cut exactly as ``codec.segment_size`` says
for that size; only a longer stream of unknown size gets segments of ``STREAM_SEGMENT`` bytes.

``iter_decode`` yields each segment's bytes in order, decoding model-coded segments ``batch`` at
a time; ``SegmentReader`` decodes only the segments that cover a requested range of a seekable
file (random access), with read-ahead for sequential reads.
"""

from __future__ import annotations

import bisect
import hashlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from . import container as C
from . import sniff
from .codec import CodecParams, Progress, check_decodable, decode_group, make_header, segment_end
from .encode import encode_pieces
from ..errors import ChecksumError, TrailingDataError, TruncatedError
from ..model.zoo import LoadedModel

PROBE = 16 << 20  # bytes read ahead from a stream of unknown size before segments are fixed
STREAM_SEGMENT = 1 << 20  # segment size for a longer stream of unknown size (codec.segment_size's cap)
MAX_BINARY_SEGMENT = 16 << 20  # binary runs are coded whole up to this (xz -9e then needs ~190 MB)
SPOOL_MEMORY = 8 << 20  # payload bytes kept in memory before the spool moves to a temporary file
PENDING_BYTES = 64 << 20  # decoded bytes held back at most while a batch of model segments fills
ENCODE_PENDING_BYTES = 64 << 20  # input bytes held at most while a batch of segments to compress fills
_COPY = 1 << 20


class Splitter:
    """``codec.split_segments`` for data that arrives in pieces: the same cuts (``codec.segment_end``),
    each made once the bytes after it are known to exist."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.buf = bytearray()

    def _cut(self) -> bytes:
        end = segment_end(self.buf, 0, self.target)
        piece = bytes(self.buf[:end])
        del self.buf[:end]
        return piece

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.buf += data
        while len(self.buf) > self.target:  # only then is the piece known not to be the last
            yield self._cut()

    def finish(self) -> Iterator[bytes]:
        while self.buf:
            yield self._cut()


class Pieces:
    """Segments to code, as (bytes, try the model): with the fallback on (format 3), consecutive
    pieces that do not look like text (``sniff.py``) become one segment, so xz and zstd find
    matches across the whole run as they would in the file alone, and the model never runs."""

    def __init__(self, p: CodecParams, target: int) -> None:
        self.split = Splitter(target)
        self.sniffing = p.fallback and p.format_version >= 3
        self.run: bytearray | None = None  # the binary run being gathered

    def _route(self, piece: bytes) -> Iterator[tuple[bytes, bool]]:
        if self.sniffing and not sniff.looks_like_text(piece):
            if self.run is not None and len(self.run) + len(piece) <= MAX_BINARY_SEGMENT:
                self.run += piece
                return
            yield from self._flush()
            self.run = bytearray(piece)
            return
        yield from self._flush()
        yield piece, True

    def _flush(self) -> Iterator[tuple[bytes, bool]]:
        if self.run is not None:
            run, self.run = bytes(self.run), None
            yield run, False

    def feed(self, data: bytes) -> Iterator[tuple[bytes, bool]]:
        for piece in self.split.feed(data):
            yield from self._route(piece)

    def finish(self) -> Iterator[tuple[bytes, bool]]:
        for piece in self.split.finish():
            yield from self._route(piece)
        yield from self._flush()


class PieceStream:
    """The segments of data written in pieces, as (bytes, try the model), cut as the input's size
    says when it is known (``total``, or learnt when a stream ends within ``PROBE``); only a longer
    stream of unknown size gets segments of ``STREAM_SEGMENT`` bytes. ``StreamCompressor`` codes
    them one after another; ``cluster.py`` codes them on many workers, with the same cuts."""

    def __init__(self, params: CodecParams, total: int | None = None) -> None:
        self.p = params
        self.pieces = Pieces(params, params.segment_size(total)) if total is not None else None
        self.probe: bytearray | None = None if total is not None else bytearray()

    def write(self, data) -> Iterator[tuple[bytes, bool]]:
        data = bytes(data)
        if self.pieces is None:
            assert self.probe is not None
            self.probe += data
            if len(self.probe) <= PROBE:
                return
            # Longer than the read-ahead and still going: the size stays unknown.
            self.pieces = Pieces(self.p, self.p.segment_size(0) if self.p.segment_bytes else STREAM_SEGMENT)
            data, self.probe = bytes(self.probe), None
        yield from self.pieces.feed(data)

    def finish(self) -> Iterator[tuple[bytes, bool]]:
        if self.pieces is None:  # the whole input fit the read-ahead: its size is known after all
            assert self.probe is not None
            data, self.probe = bytes(self.probe), None
            self.pieces = Pieces(self.p, self.p.segment_size(len(data)))
            yield from self.pieces.feed(data)
        yield from self.pieces.finish()


class StreamCompressor:
    """Compress data written in pieces into one container (see the module docstring).

    ``total``: the input's size if known (then the segments are cut for it from the start).
    ``batch``: segments compressed together (``batch_encode``; None: ``batch_encode.batch_for``,
    more than one only on a GPU); the bytes are the same for any batch.
    Call ``write`` any number of times, then ``finish(out)`` once.
    """

    def __init__(self, lm: LoadedModel, params: CodecParams, total: int | None = None,
                 progress: Progress | None = None, batch: int | None = None) -> None:
        params.validate(lm.model.cfg.max_context)
        from .batch_encode import batch_for

        self.lm, self.p, self.progress = lm, params, progress
        self.batch = batch if batch is not None else batch_for(lm)
        self.pieces = PieceStream(params, total)
        self.pending: list[tuple[bytes, bool]] = []  # pieces waiting for a batch to fill
        self.pending_bytes = 0
        self.segments: list[C.Segment] = []
        self.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
        self.sha = hashlib.sha256() if params.format_version < 3 else None
        self.finished = False

    def _code(self, coded: Iterable[tuple[bytes, bool]]) -> None:
        for piece in coded:
            self.pending.append(piece)
            self.pending_bytes += len(piece[0])
            if len(self.pending) >= self.batch or self.pending_bytes >= ENCODE_PENDING_BYTES:
                self._flush()

    def _flush(self) -> None:
        coded = encode_pieces(self.lm, self.pending, self.p, self.progress, self.batch)
        for (chunk, _), (seg, payload) in zip(self.pending, coded):
            self.segments.append(seg)
            self.spool.write(payload)
            if self.sha is not None:
                self.sha.update(chunk)
        self.pending, self.pending_bytes = [], 0

    def write(self, data) -> None:
        if self.finished:
            raise ValueError("write after finish")
        self._code(self.pieces.write(data))

    def finish(self, out: BinaryIO) -> int:
        """Code what is left and write the whole container to ``out``; return the bytes written."""
        if self.finished:
            raise ValueError("finish called twice")
        self.finished = True
        self._code(self.pieces.finish())
        if self.pending:
            self._flush()
        header = make_header(self.lm, self.p, self.segments, self.sha.digest() if self.sha else b"")
        return write_container(out, header, self.p.format_version, self.spool)


def write_container(out: BinaryIO, header: C.Header, version: int, spool) -> int:
    """Write ``header`` and then the payloads spooled in ``spool`` (which is closed); return the
    bytes written."""
    prefix = C.encode_prefix(header, version)
    out.write(prefix)
    spool.seek(0)
    shutil.copyfileobj(spool, out, _COPY)
    spool.close()
    return len(prefix) + header.payload_total


def decode_groups(header: C.Header, payloads: Iterable[bytes], batch: int = 16) -> Iterator[list]:
    """The file's segments as groups of (index, segment, payload) to decode together, in order:
    model-coded segments wait until ``batch`` of them (or ``PENDING_BYTES`` of output) can decode
    in lockstep. A missing payload or trailing data is found before the last group is yielded
    (before its long decoding)."""
    segs = header.segments
    pending: list = []
    models = held = 0
    it = iter(payloads)
    for i, seg in enumerate(segs):
        payload = next(it, None)
        if payload is None:
            raise TruncatedError(f"payload {i} is missing")
        pending.append((i, seg, payload))
        models += seg.method == C.METHOD_LM
        held += seg.original_length
        if models >= batch or held >= PENDING_BYTES or i == len(segs) - 1:
            if i == len(segs) - 1 and next(it, None) is not None:
                raise TrailingDataError("trailing data after the last payload")
            yield pending
            pending, models, held = [], 0, 0
    if not segs and next(it, None) is not None:
        raise TrailingDataError("trailing data after the header")


class OutputCheck:
    """The whole-output checks after every segment verified itself: the total size, and the legacy
    layouts' whole-file SHA-256."""

    def __init__(self, header: C.Header) -> None:
        self.header = header
        self.sha = hashlib.sha256() if header.original_sha256 else None
        self.produced = 0

    def update(self, data: bytes) -> None:
        self.produced += len(data)
        if self.sha is not None:
            self.sha.update(data)

    def finish(self) -> None:
        if self.produced != self.header.original_size:
            raise ChecksumError(f"decoded {self.produced} bytes, expected {self.header.original_size}")
        if self.sha is not None and self.sha.digest() != bytes(self.header.original_sha256):
            raise ChecksumError("decoded data does not match the recorded SHA-256")


def iter_decode(header: C.Header, payloads: Iterable[bytes], lm: LoadedModel | None, batch: int = 16,
                progress: Progress | None = None) -> Iterator[bytes]:
    """Each segment's decoded, verified bytes in order, from an iterable of its payloads (such as
    ``container.iter_payloads_from``, which reads them in bounded chunks and checks the file's end),
    decoded group by group (``decode_groups``)."""
    adapt = check_decodable(header, lm)
    check = OutputCheck(header)
    for group in decode_groups(header, payloads, batch):
        out = decode_group(header, group, lm, adapt, batch, progress)
        for k, _, _ in group:
            data = out.pop(k)
            check.update(data)
            yield data
    check.finish()


class SegmentReader:
    """Random access to the decoded bytes of a seekable .lmz file: ``read(start, end)`` decodes
    only the segments that cover the range (and, for the model's segments, up to ``batch`` that
    follow, which a sequential reader wants next and which decode in the same steps)."""

    def __init__(self, fp: BinaryIO, lm_for, batch: int = 16) -> None:
        self.fp = fp
        fp.seek(0)
        self.header, start = C.peek(fp)
        end = fp.seek(0, 2)
        need = start + self.header.payload_total
        if end < need:
            raise TruncatedError(f"truncated: payloads need {need - start} bytes, only {end - start} present")
        if end > need:
            raise TrailingDataError(f"{end - need} bytes of trailing data after the last payload")
        self.lm = lm_for(self.header)
        self.adapt = check_decodable(self.header, self.lm)
        self.batch = batch
        self.size = self.header.original_size
        self.ends, self.offsets = [], []  # original end and payload offset of each segment
        o = p = 0
        for s in self.header.segments:
            o += s.original_length
            self.ends.append(o)
            self.offsets.append(start + p)
            p += s.payload_length
        self.cache: dict[int, bytes] = {}

    def _payload(self, i: int) -> bytes:
        self.fp.seek(self.offsets[i])
        return C._read_exact(self.fp, self.header.segments[i].payload_length, f"payload {i}")

    def _segments(self, first: int, last: int) -> None:
        """Make segments first..last (inclusive) cached, decoding what is missing."""
        segs = self.header.segments
        want = [i for i in range(first, last + 1) if i not in self.cache]
        if not want:
            return
        models = [i for i in want if segs[i].method == C.METHOD_LM]
        k = last + 1
        while models and len(models) < self.batch and k < len(segs):  # read-ahead: free in lockstep
            if segs[k].method == C.METHOD_LM and k not in self.cache:
                models.append(k)
                want.append(k)
            k += 1
        keep = set(range(first, last + 1)) | set(want)
        self.cache = {i: d for i, d in self.cache.items() if i in keep}
        items = [(i, segs[i], self._payload(i)) for i in sorted(want)]
        self.cache.update(decode_group(self.header, items, self.lm, self.adapt, self.batch))

    def read(self, start: int, end: int) -> bytes:
        """Decoded bytes ``start:end`` (clipped to the file)."""
        start, end = max(0, start), min(self.size, end)
        if start >= end:
            return b""
        first = bisect.bisect_right(self.ends, start)
        last = bisect.bisect_left(self.ends, end)
        self._segments(first, last)
        parts = []
        for i in range(first, last + 1):
            base = self.ends[i] - self.header.segments[i].original_length
            parts.append(self.cache[i][max(0, start - base) : end - base])
        return b"".join(parts)
