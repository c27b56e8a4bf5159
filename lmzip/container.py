"""The byte-level ``.lmz`` container: serialization and parsing only, no model code.

A ``.lmz`` file is::

    preamble (16 bytes) | header (header_length bytes) | payload 0 | payload 1 | ... | EOF

* preamble: ``MAGIC`` (6 bytes), format version (u16), header length (u32),
  CRC32 of the header bytes (u32);
* header: fixed fields (flags, original size and sha256, model sha256, coder and
  context parameters, segment count), two length-prefixed UTF-8 strings (model id,
  tokenizer id), then the segment table (30 bytes per segment);
* payloads: one per segment, in table order, each exactly ``payload_length`` bytes.

All integers are little-endian and fixed width.  ``docs/FORMAT.md`` is the normative,
byte-by-byte description; this module is its reference implementation.

The module also holds the two model-free payload codecs, ``stored`` (identity) and
``zstd`` (level 19, content size + checksum in the frame), plus ``choose_fallback``
which picks the smaller of the two.  Decoding the language-model payload is the coder's
business; the container only carries its bytes and the parameters needed to decode it.

Parsing never allocates memory in proportion to a length field it has not checked
against the bytes actually present, so a corrupt or hostile file fails fast.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Union

import zstandard

from lmzip.errors import (
    BadMagicError,
    ChecksumError,
    FormatError,
    TrailingDataError,
    TruncatedError,
    UnsupportedVersionError,
)

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "MAX_HEADER_LENGTH",
    "PREAMBLE_SIZE",
    "HEADER_FIXED_SIZE",
    "HEADER_MIN_SIZE",
    "SEGMENT_ENTRY_SIZE",
    "METHOD_STORED",
    "METHOD_ZSTD",
    "METHOD_LM",
    "METHODS",
    "POLICY_INDEPENDENT",
    "POLICY_SLIDING",
    "TRANSFORM_CRLF",
    "SUPPORTED_TRANSFORMS",
    "READ_VERSIONS",
    "MAX_PREDICTOR_LENGTH",
    "MAX_TOTAL_BITS",
    "ZSTD_LEVEL",
    "ZSTD_MAX_WINDOW_SIZE",
    "Segment",
    "Header",
    "encode_header",
    "write_container",
    "write_container_to",
    "parse_header",
    "read_container",
    "peek_header",
    "iter_payloads_from",
    "crc32",
    "stored_encode",
    "stored_decode",
    "zstd_encode",
    "zstd_decode",
    "zstd_decode_iter",
    "choose_fallback",
    "make_fallback_segment",
    "decode_fallback_segment",
    "verify_segment",
    "verify_original",
]

# --------------------------------------------------------------------------- constants

#: File signature.  0x89 (high bit set) catches 7-bit channels, "LMZ" names the format,
#: CR LF catches both LF->CRLF and CRLF->LF text-mode conversions.
MAGIC = b"\x89LMZ\r\n"

#: Newest container version (written when a file uses a version-2 feature: the adaptive
#: predictor or a transform). Files without them are written as version 1, which
#: every lmzip reads.
FORMAT_VERSION = 2
READ_VERSIONS = frozenset({1, 2})

#: Largest accepted header (bytes); larger values are rejected before anything is read.
MAX_HEADER_LENGTH = 1 << 20

METHOD_STORED = 0
METHOD_ZSTD = 1
METHOD_LM = 2
METHODS = frozenset({METHOD_STORED, METHOD_ZSTD, METHOD_LM})

POLICY_INDEPENDENT = 0
POLICY_SLIDING = 1
POLICIES = frozenset({POLICY_INDEPENDENT, POLICY_SLIDING})

#: Transform bit 0: CRLF -> LF before coding (the segment has no LF without a CR before it).
TRANSFORM_CRLF = 0x01
#: Transform bits each version accepts.  Any other set bit is a FormatError.
SUPPORTED_TRANSFORMS = {1: 0x00, 2: TRANSFORM_CRLF}
#: Longest predictor parameter block.
MAX_PREDICTOR_LENGTH = 255

#: Upper bound on ``Header.total_bits`` (the coder works with 32-bit words).
MAX_TOTAL_BITS = 32

ZSTD_LEVEL = 19
#: zstd frames needing a larger window than this are rejected (bounds decoder memory).
ZSTD_MAX_WINDOW_SIZE = 1 << 27

# Wire structures (all little-endian, no padding).
_PREAMBLE = struct.Struct("<6sHII")  # magic, version, header_length, header_crc32
# flags, original_size, original_sha256, model_sha256, total_bits, context_policy,
# top_k, window_tokens, overlap_tokens, segment_count
_FIXED = struct.Struct("<IQ32s32sBBHIII")
_U16 = struct.Struct("<H")
# method, transforms, original_length, payload_length, token_count, crc32
_SEGMENT = struct.Struct("<BBQQQI")

PREAMBLE_SIZE = _PREAMBLE.size  # 16
HEADER_FIXED_SIZE = _FIXED.size  # 92
HEADER_MIN_SIZE = HEADER_FIXED_SIZE + 2 * _U16.size  # 96: both strings empty, no segments
SEGMENT_ENTRY_SIZE = _SEGMENT.size  # 30

_U8_MAX = 0xFF
_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFF_FFFF
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
_ZERO_SHA = bytes(32)
_IO_CHUNK = 1 << 20  # largest single read() when streaming payloads from a file

Buffer = Union[bytes, bytearray, memoryview]


def crc32(data: Buffer) -> int:
    """CRC-32 as used everywhere in the format (``zlib.crc32``: ISO-HDLC, poly 0x04C11DB7)."""
    return zlib.crc32(data) & _U32_MAX


# --------------------------------------------------------------------------- data model


@dataclass
class Segment:
    """One entry of the segment table: how one contiguous slice of the original was coded.

    Segments decode independently; the original is the concatenation of the decoded
    segments in table order, and payload ``i`` starts where payload ``i-1`` ended.
    """

    method: int
    """``METHOD_STORED`` (0), ``METHOD_ZSTD`` (1) or ``METHOD_LM`` (2)."""
    transforms: int
    """Bitmask of reversible transforms applied before coding (must be 0 in version 1)."""
    original_length: int
    """Bytes this segment decodes to (u64)."""
    payload_length: int
    """Bytes of this segment's payload in the file (u64)."""
    token_count: int
    """Number of tokens coded (``METHOD_LM`` only; 0 for other methods) (u64)."""
    crc32: int
    """CRC-32 of the segment's *original* bytes (u32); lets a decoder pinpoint a bad segment."""


@dataclass
class Header:
    """Everything a decoder needs besides the payloads.

    For files without any ``METHOD_LM`` segment the model/tokenizer/coder/context fields
    are informational and may be left at their defaults (empty strings, zero hashes,
    zeros); with an LM segment they must describe the model and coder actually used.
    """

    original_size: int
    """Size of the whole original data in bytes (u64); equals the sum of segment lengths."""
    original_sha256: bytes
    """SHA-256 of the whole original data (32 bytes)."""
    segments: list[Segment] = field(default_factory=list)
    """The segment table, in payload order."""
    model_id: str = ""
    """Registry id of the language model (UTF-8, at most 65535 bytes)."""
    model_sha256: bytes = _ZERO_SHA
    """SHA-256 of the model's weights (32 bytes)."""
    tokenizer_id: str = ""
    """Id of the tokenizer (UTF-8, at most 65535 bytes)."""
    total_bits: int = 0
    """Coder precision: probabilities are quantized to sum to ``2**total_bits`` (u8, <= 32)."""
    top_k: int = 0
    """Size of the coder's first-stage candidate set (u16)."""
    window_tokens: int = 0
    """Context window of the model in tokens (u32)."""
    overlap_tokens: int = 0
    """Tokens of the previous window kept as context when a new window starts (u32)."""
    context_policy: int = POLICY_INDEPENDENT
    """``POLICY_INDEPENDENT`` (0) or ``POLICY_SLIDING`` (1) (u8)."""
    flags: int = 0
    """Reserved bit field (u32); must be zero."""
    predictor: bytes = b""
    """Adaptive predictor parameters (version 2; ``adapt.AdaptParams.to_bytes``); empty: the model alone."""

    @property
    def version(self) -> int:
        """The container version this header needs: 2 only for version-2 features."""
        return 2 if self.predictor or any(s.transforms for s in self.segments) else 1

    @property
    def payload_total(self) -> int:
        """Total bytes of all payloads (what follows the header in the file)."""
        return sum(s.payload_length for s in self.segments)

    def payload_offsets(self, payload_start: int) -> list[tuple[int, int]]:
        """``(offset, length)`` of each payload given where the first one starts."""
        out = []
        pos = payload_start
        for s in self.segments:
            out.append((pos, s.payload_length))
            pos += s.payload_length
        return out


# --------------------------------------------------------------------------- validation


def _validate_semantics(h: Header, version: int) -> None:
    """Cross-field rules shared by reader and writer.  Raises FormatError."""
    if h.flags != 0:
        raise FormatError(f"reserved header flags are nonzero (0x{h.flags:08x})")
    if h.total_bits > MAX_TOTAL_BITS:
        raise FormatError(f"coder total_bits {h.total_bits} exceeds {MAX_TOTAL_BITS}")
    if h.context_policy not in POLICIES:
        raise FormatError(f"unknown context policy {h.context_policy}")
    if h.context_policy == POLICY_INDEPENDENT and h.overlap_tokens != 0:
        raise FormatError("independent-window policy with nonzero overlap_tokens")
    if h.context_policy == POLICY_SLIDING and not (h.overlap_tokens < h.window_tokens):
        raise FormatError(
            f"sliding-window policy needs overlap_tokens ({h.overlap_tokens}) < "
            f"window_tokens ({h.window_tokens})"
        )
    has_lm = False
    for i, s in enumerate(h.segments):
        if s.method not in METHODS:
            raise FormatError(f"segment {i}: unknown method {s.method}")
        if s.transforms & ~SUPPORTED_TRANSFORMS[version]:
            raise FormatError(f"segment {i}: unsupported transform bits 0x{s.transforms:02x}")
        if s.transforms and s.method != METHOD_LM:
            raise FormatError(f"segment {i}: transforms on a segment not coded by the model")
        if s.method == METHOD_LM:
            has_lm = True
        elif s.token_count != 0:
            raise FormatError(f"segment {i}: token_count {s.token_count} on a non-LM segment")
        if s.method == METHOD_STORED and s.payload_length != s.original_length:
            raise FormatError(
                f"segment {i}: stored payload length {s.payload_length} != "
                f"original length {s.original_length}"
            )
    if has_lm:
        if not h.model_id:
            raise FormatError("LM segment present but model_id is empty")
        if not h.tokenizer_id:
            raise FormatError("LM segment present but tokenizer_id is empty")
        if h.total_bits < 1:
            raise FormatError("LM segment present but coder total_bits is 0")
        if h.window_tokens < 1:
            raise FormatError("LM segment present but window_tokens is 0")
    total = sum(s.original_length for s in h.segments)
    if total != h.original_size:
        raise FormatError(
            f"segment lengths sum to {total} but the header says original size {h.original_size}"
        )


def _check_uint(name: str, value: object, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise ValueError(f"{name} must be an int in [0, {maximum}], got {value!r}")


def _check_sha(name: str, value: object) -> None:
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != 32:
        raise ValueError(f"{name} must be 32 bytes")


def _encode_str(name: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{name} is not encodable as UTF-8: {e}") from None
    if len(raw) > _U16_MAX:
        raise ValueError(f"{name} is {len(raw)} bytes of UTF-8; at most {_U16_MAX} allowed")
    return raw


# --------------------------------------------------------------------------- writing


def encode_header(header: Header) -> bytes:
    """Serialize ``header`` (without the preamble).

    Raises ``ValueError`` if the header is out of range or inconsistent: writing an
    invalid container is a programming error, not a format error.
    """
    _check_uint("original_size", header.original_size, _U64_MAX)
    for name in ("flags", "window_tokens", "overlap_tokens"):
        _check_uint(name, getattr(header, name), _U32_MAX)
    _check_uint("top_k", header.top_k, _U16_MAX)
    for name in ("total_bits", "context_policy"):
        _check_uint(name, getattr(header, name), _U8_MAX)
    _check_sha("original_sha256", header.original_sha256)
    _check_sha("model_sha256", header.model_sha256)
    if not isinstance(header.predictor, (bytes, bytearray)) or len(header.predictor) > MAX_PREDICTOR_LENGTH:
        raise ValueError(f"predictor must be at most {MAX_PREDICTOR_LENGTH} bytes")
    version = header.version
    model_id = _encode_str("model_id", header.model_id)
    tokenizer_id = _encode_str("tokenizer_id", header.tokenizer_id)
    segments = list(header.segments)
    for i, s in enumerate(segments):
        if not isinstance(s, Segment):
            raise ValueError(f"segment {i} is not a Segment")
        _check_uint(f"segment {i} method", s.method, _U8_MAX)
        _check_uint(f"segment {i} transforms", s.transforms, _U8_MAX)
        _check_uint(f"segment {i} original_length", s.original_length, _U64_MAX)
        _check_uint(f"segment {i} payload_length", s.payload_length, _U64_MAX)
        _check_uint(f"segment {i} token_count", s.token_count, _U64_MAX)
        _check_uint(f"segment {i} crc32", s.crc32, _U32_MAX)
    try:
        _validate_semantics(header, version)
    except FormatError as e:
        raise ValueError(f"inconsistent header: {e}") from None
    extra = 1 + len(header.predictor) if version >= 2 else 0
    size = HEADER_MIN_SIZE + extra + len(model_id) + len(tokenizer_id) + SEGMENT_ENTRY_SIZE * len(segments)
    if size > MAX_HEADER_LENGTH:
        raise ValueError(f"header would be {size} bytes; at most {MAX_HEADER_LENGTH} allowed")
    parts = [
        _FIXED.pack(
            header.flags,
            header.original_size,
            bytes(header.original_sha256),
            bytes(header.model_sha256),
            header.total_bits,
            header.context_policy,
            header.top_k,
            header.window_tokens,
            header.overlap_tokens,
            len(segments),
        ),
        _U16.pack(len(model_id)),
        model_id,
        _U16.pack(len(tokenizer_id)),
        tokenizer_id,
    ]
    if version >= 2:
        parts += [bytes([len(header.predictor)]), bytes(header.predictor)]
    parts.extend(
        _SEGMENT.pack(
            s.method, s.transforms, s.original_length, s.payload_length, s.token_count, s.crc32
        )
        for s in segments
    )
    out = b"".join(parts)
    assert len(out) == size
    return out


def _preamble_and_header(header: Header) -> bytes:
    body = encode_header(header)
    return _PREAMBLE.pack(MAGIC, header.version, len(body), crc32(body)) + body


def write_container_to(fileobj: BinaryIO, header: Header, payloads: Iterable[Buffer]) -> int:
    """Write a container to a binary file object, streaming the payloads; return bytes written.

    ``payloads`` may be any iterable (e.g. a generator producing each payload just in
    time); payload ``i`` must be exactly ``header.segments[i].payload_length`` bytes and
    there must be exactly one per segment.  On ``ValueError`` (bad header or payload) the
    output may be partially written and must be discarded by the caller.
    """
    head = _preamble_and_header(header)
    fileobj.write(head)
    written = len(head)
    segments = header.segments
    n = 0
    for payload in payloads:
        if n >= len(segments):
            raise ValueError(f"more payloads than the {len(segments)} segments in the header")
        length = memoryview(payload).nbytes
        if length != segments[n].payload_length:
            raise ValueError(
                f"payload {n} is {length} bytes but its segment says {segments[n].payload_length}"
            )
        fileobj.write(payload)
        written += length
        n += 1
    if n != len(segments):
        raise ValueError(f"got {n} payloads for {len(segments)} segments")
    return written


def write_container(header: Header, payloads: Iterable[Buffer]) -> bytes:
    """Return a complete container as bytes (see ``write_container_to``)."""
    buf = io.BytesIO()
    write_container_to(buf, header, payloads)
    return buf.getvalue()


# --------------------------------------------------------------------------- reading


def _parse_preamble(pre: memoryview) -> tuple[int, int, int]:
    """Check magic/version/length of the (possibly short) preamble; return (version, hlen, hcrc)."""
    n = len(pre)
    m = bytes(pre[: len(MAGIC)])
    if m != MAGIC[: len(m)]:
        raise BadMagicError("not an .lmz file (bad magic bytes)")
    if n < len(MAGIC):
        raise TruncatedError(f"truncated: {n} bytes, the magic alone needs {len(MAGIC)}")
    if n < len(MAGIC) + 2:
        raise TruncatedError("truncated inside the preamble (format version)")
    (version,) = _U16.unpack_from(pre, len(MAGIC))
    if version not in READ_VERSIONS:
        raise UnsupportedVersionError(
            f"unsupported .lmz format version {version} (this lmzip reads versions 1 to {FORMAT_VERSION})"
        )
    if n < PREAMBLE_SIZE:
        raise TruncatedError(f"truncated inside the preamble ({n} of {PREAMBLE_SIZE} bytes)")
    _, _, hlen, hcrc = _PREAMBLE.unpack_from(pre, 0)
    if hlen > MAX_HEADER_LENGTH:
        raise FormatError(f"header length {hlen} exceeds the limit of {MAX_HEADER_LENGTH} bytes")
    if hlen < HEADER_MIN_SIZE:
        raise FormatError(f"header length {hlen} is below the minimum of {HEADER_MIN_SIZE} bytes")
    return version, hlen, hcrc


def _decode_header(body: memoryview, version: int) -> Header:
    """Parse header bytes whose CRC has already been checked."""
    hlen = len(body)
    (
        flags,
        original_size,
        original_sha256,
        model_sha256,
        total_bits,
        context_policy,
        top_k,
        window_tokens,
        overlap_tokens,
        count,
    ) = _FIXED.unpack_from(body, 0)
    pos = HEADER_FIXED_SIZE
    # Fail fast on absurd counts before allocating anything per segment.
    if count * SEGMENT_ENTRY_SIZE > hlen - HEADER_MIN_SIZE:
        raise FormatError(f"header claims {count} segments, more than its {hlen} bytes can hold")

    def string(name: str) -> str:
        nonlocal pos
        if pos + 2 > hlen:
            raise FormatError(f"header too short for the {name} length")
        (length,) = _U16.unpack_from(body, pos)
        pos += 2
        if pos + length > hlen:
            raise FormatError(f"{name} length {length} runs past the end of the header")
        raw = bytes(body[pos : pos + length])
        pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{name} is not valid UTF-8") from None

    model_id = string("model_id")
    tokenizer_id = string("tokenizer_id")
    predictor = b""
    if version >= 2:
        if pos + 1 > hlen:
            raise FormatError("header too short for the predictor length")
        plen = body[pos]
        if pos + 1 + plen > hlen:
            raise FormatError(f"predictor length {plen} runs past the end of the header")
        predictor = bytes(body[pos + 1 : pos + 1 + plen])
        pos += 1 + plen
    if hlen - pos != count * SEGMENT_ENTRY_SIZE:
        raise FormatError(
            f"segment table is {hlen - pos} bytes, expected {count} x {SEGMENT_ENTRY_SIZE}"
        )
    table = body[pos:]
    segments = [Segment(*fields) for fields in _SEGMENT.iter_unpack(table)]
    header = Header(
        original_size=original_size,
        original_sha256=original_sha256,
        segments=segments,
        model_id=model_id,
        model_sha256=model_sha256,
        tokenizer_id=tokenizer_id,
        total_bits=total_bits,
        top_k=top_k,
        window_tokens=window_tokens,
        overlap_tokens=overlap_tokens,
        context_policy=context_policy,
        flags=flags,
        predictor=predictor,
    )
    if version >= 2 and header.version != 2:
        raise FormatError("version 2 header without any version-2 feature")
    _validate_semantics(header, version)
    return header


def parse_header(data: Buffer) -> tuple[Header, int]:
    """Parse and validate preamble and header of ``data``; return ``(header, payload_start)``.

    Does not look at the payload bytes (so it does not detect truncated payloads or
    trailing data; ``read_container`` does).
    """
    view = memoryview(data).cast("B")
    if len(view) == 0:
        raise TruncatedError("empty input (an .lmz file is at least 112 bytes)")
    version, hlen, hcrc = _parse_preamble(view[:PREAMBLE_SIZE])
    end = PREAMBLE_SIZE + hlen
    if len(view) < end:
        raise TruncatedError(
            f"truncated inside the header ({len(view) - PREAMBLE_SIZE} of {hlen} bytes present)"
        )
    body = view[PREAMBLE_SIZE:end]
    if crc32(body) != hcrc:
        raise FormatError("header is corrupt (CRC32 mismatch)")
    return _decode_header(body, version), end


def read_container(data: Buffer) -> tuple[Header, list[memoryview]]:
    """Parse a complete container held in memory.

    Returns the header and one zero-copy ``memoryview`` into ``data`` per segment.
    Raises a ``FormatError`` subclass on any structural problem (see docs/FORMAT.md);
    the payload bytes themselves cannot be checked here (see ``verify_segment``).
    """
    view = memoryview(data).cast("B")
    header, start = parse_header(view)
    have = len(view) - start
    need = header.payload_total
    if have < need:
        raise TruncatedError(f"truncated: payloads need {need} bytes, only {have} present")
    if have > need:
        raise TrailingDataError(f"{have - need} bytes of trailing data after the last payload")
    return header, [view[off : off + ln] for off, ln in header.payload_offsets(start)]


def _read_exact(fileobj: BinaryIO, n: int, what: str) -> bytes:
    """Read exactly ``n`` bytes in bounded chunks; TruncatedError on early EOF."""
    chunks = []
    left = n
    while left > 0:
        chunk = fileobj.read(min(left, _IO_CHUNK))
        if not chunk:
            raise TruncatedError(f"truncated inside {what} ({n - left} of {n} bytes present)")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def peek_header(source: Union[Buffer, BinaryIO]) -> Header:
    """Parse only the preamble and header of a container (for ``lmzip info``).

    ``source`` is either a bytes-like object or a readable binary file object.  A file
    object is left positioned at the first payload (use ``iter_payloads_from`` next).
    Payloads are not read, so truncated payloads/trailing data are not detected here.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return parse_header(source)[0]
    pre = b""
    while len(pre) < PREAMBLE_SIZE:
        chunk = source.read(PREAMBLE_SIZE - len(pre))
        if not chunk:
            break
        pre += chunk
    if not pre:
        raise TruncatedError("empty input (an .lmz file is at least 112 bytes)")
    version, hlen, hcrc = _parse_preamble(memoryview(pre))
    body = _read_exact(source, hlen, "the header")
    if crc32(body) != hcrc:
        raise FormatError("header is corrupt (CRC32 mismatch)")
    return _decode_header(memoryview(body), version)


def iter_payloads_from(fileobj: BinaryIO, header: Header) -> Iterator[bytes]:
    """Yield each payload from a file positioned just after the header (see ``peek_header``).

    Reads in bounded chunks, so a corrupt length costs at most the bytes really present.
    After the last payload, any further byte raises ``TrailingDataError``.
    """
    for i, s in enumerate(header.segments):
        yield _read_exact(fileobj, s.payload_length, f"payload {i}")
    if fileobj.read(1):
        raise TrailingDataError("trailing data after the last payload")


# --------------------------------------------------------------------------- fallback codecs


def stored_encode(data: Buffer) -> bytes:
    """The ``stored`` method: the payload is the original bytes."""
    return bytes(data)


def stored_decode(payload: Buffer, original_length: int) -> bytes:
    """Inverse of ``stored_encode``; FormatError if the length is not ``original_length``."""
    n = memoryview(payload).nbytes
    if n != original_length:
        raise FormatError(f"stored payload is {n} bytes, expected {original_length}")
    return bytes(payload)


def zstd_encode(data: Buffer) -> bytes:
    """The ``zstd`` method: one zstd frame, level 19, with content size and XXH64 checksum."""
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True, write_checksum=True)
    return cctx.compress(bytes(data))


_FCS_BYTES = (0, 2, 4, 8)
_DID_BYTES = (0, 1, 2, 4)


def _check_zstd_frame(view: memoryview, original_length: int) -> None:
    """Walk one zstd frame's header and block headers (RFC 8878 section 3.1.1).

    Requires: exactly one frame spanning all of ``view``, no dictionary, content size
    present and equal to ``original_length``, content checksum present.
    """
    n = len(view)
    if n < 6 or bytes(view[:4]) != zstandard.FRAME_HEADER:
        raise FormatError("zstd payload does not start with a zstd frame")
    fhd = view[4]
    fcs_flag, single, reserved, has_checksum, did_flag = (
        fhd >> 6,
        (fhd >> 5) & 1,
        (fhd >> 3) & 1,
        (fhd >> 2) & 1,
        fhd & 3,
    )
    if reserved:
        raise FormatError("zstd frame header has the reserved bit set")
    if did_flag:
        raise FormatError("zstd frame uses a dictionary")
    if not has_checksum:
        raise FormatError("zstd frame has no content checksum")
    if fcs_flag == 0 and not single:
        raise FormatError("zstd frame does not record its content size")
    fcs_len = _FCS_BYTES[fcs_flag] if fcs_flag else 1
    pos = 5 + (0 if single else 1)
    if pos + fcs_len > n:
        raise FormatError("zstd frame header is truncated")
    fcs = int.from_bytes(view[pos : pos + fcs_len], "little")
    if fcs_len == 2:
        fcs += 256
    if fcs != original_length:
        raise FormatError(f"zstd frame content size {fcs} != expected {original_length}")
    pos += fcs_len
    while True:
        if pos + 3 > n:
            raise FormatError("zstd frame is truncated (block header)")
        bh = int.from_bytes(view[pos : pos + 3], "little")
        pos += 3
        last, btype, bsize = bh & 1, (bh >> 1) & 3, bh >> 3
        if btype == 3:
            raise FormatError("zstd frame has a reserved block type")
        pos += 1 if btype == 1 else bsize
        if pos > n:
            raise FormatError("zstd frame is truncated (block content)")
        if last:
            break
    pos += 4  # content checksum
    if pos > n:
        raise FormatError("zstd frame is truncated (checksum)")
    if pos != n:
        raise FormatError(f"{n - pos} bytes of trailing data after the zstd frame")


def zstd_decode_iter(
    payload: Buffer, original_length: int, chunk_size: int = 1 << 20
) -> Iterator[bytes]:
    """Decode a ``zstd`` payload in chunks of at most ``chunk_size`` bytes.

    The frame must be exactly the payload, record ``original_length`` as content size and
    carry a checksum; output beyond ``original_length`` is never produced.  Memory use is
    bounded by ``chunk_size`` plus the zstd window (at most ``ZSTD_MAX_WINDOW_SIZE``).
    Raises FormatError on any corruption.
    """
    view = memoryview(payload).cast("B")
    _check_zstd_frame(view, original_length)
    dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW_SIZE)
    produced = 0
    try:
        reader = dctx.stream_reader(view, read_size=1 << 17, read_across_frames=False)
        while True:
            want = min(chunk_size, original_length - produced) if produced < original_length else 1
            chunk = reader.read(want)
            if not chunk:
                break
            produced += len(chunk)
            if produced > original_length:
                raise FormatError(f"zstd payload decodes to more than {original_length} bytes")
            yield chunk
    except zstandard.ZstdError as e:
        raise FormatError(f"corrupt zstd payload: {e}") from None
    if produced != original_length:
        raise FormatError(f"zstd payload decodes to {produced} bytes, expected {original_length}")


def zstd_decode(payload: Buffer, original_length: int) -> bytes:
    """Decode a ``zstd`` payload to exactly ``original_length`` bytes (see ``zstd_decode_iter``)."""
    return b"".join(zstd_decode_iter(payload, original_length))


def choose_fallback(data: Buffer) -> tuple[int, bytes]:
    """Return ``(method, payload)`` for the smaller of ``stored`` and ``zstd`` (ties: stored)."""
    raw = bytes(data)
    z = zstd_encode(raw)
    if len(z) < len(raw):
        return METHOD_ZSTD, z
    return METHOD_STORED, raw


def make_fallback_segment(data: Buffer) -> tuple[Segment, bytes]:
    """Code ``data`` with ``choose_fallback`` and return its segment entry and payload."""
    method, payload = choose_fallback(data)
    seg = Segment(
        method=method,
        transforms=0,
        original_length=memoryview(data).nbytes,
        payload_length=len(payload),
        token_count=0,
        crc32=crc32(data),
    )
    return seg, payload


def verify_segment(segment: Segment, decoded: Buffer, index: int | None = None) -> None:
    """Check a decoded segment's length and CRC-32; raise ChecksumError naming the segment."""
    name = "segment" if index is None else f"segment {index}"
    n = memoryview(decoded).nbytes
    if n != segment.original_length:
        raise ChecksumError(f"{name} decoded to {n} bytes, expected {segment.original_length}")
    if crc32(decoded) != segment.crc32:
        raise ChecksumError(f"{name} is corrupt (CRC32 of decoded bytes does not match)")


def decode_fallback_segment(segment: Segment, payload: Buffer, index: int | None = None) -> bytes:
    """Decode a ``stored`` or ``zstd`` segment and verify it; FormatError/ChecksumError on damage.

    Raises ``ValueError`` for ``METHOD_LM`` segments (those need the model and coder).
    """
    if segment.transforms:
        raise FormatError(f"unsupported transform bits 0x{segment.transforms:02x}")
    if segment.method == METHOD_STORED:
        out = stored_decode(payload, segment.original_length)
    elif segment.method == METHOD_ZSTD:
        out = zstd_decode(payload, segment.original_length)
    elif segment.method == METHOD_LM:
        raise ValueError("LM segments are decoded by the coder, not by the container")
    else:
        raise FormatError(f"unknown method {segment.method}")
    verify_segment(segment, out, index)
    return out


def verify_original(header: Header, data: Buffer) -> None:
    """Check the whole decoded data against ``original_size`` and ``original_sha256``."""
    n = memoryview(data).nbytes
    if n != header.original_size:
        raise ChecksumError(f"decoded {n} bytes, expected {header.original_size}")
    if hashlib.sha256(data).digest() != bytes(header.original_sha256):
        raise ChecksumError("decoded data does not match the recorded SHA-256")
