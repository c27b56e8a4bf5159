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
import lzma
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
    "METHOD_XZ",
    "METHODS",
    "METHOD_NAMES",
    "MAGIC_V3",
    "PRESETS",
    "MODEL_REF_SIZE",
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
    "peek",
    "peek_header",
    "encode_prefix",
    "encode_v3",
    "xz_encode",
    "xz_decode",
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

#: Newest container version, the one lmzip writes: the compact layout (no preamble, no
#: fixed-width fields; a registered model named by a hash prefix and the coder's settings by a
#: preset byte). Versions 1 and 2 (fixed-width header behind a 16-byte preamble) are still
#: read, and written on request (``write_container(..., version=1 or 2)``).
FORMAT_VERSION = 3
READ_VERSIONS = frozenset({1, 2, 3})
#: What a version-3 file starts with: the first four bytes of ``MAGIC`` and the version byte
#: (where versions 1 and 2 continue with CR LF, 0x0D 0x0A).
MAGIC_V3 = MAGIC[:4] + bytes([3])

#: Largest accepted header (bytes); larger values are rejected before anything is read.
MAX_HEADER_LENGTH = 1 << 20
#: Version 3: bytes of the model's sha256 that name a registered model.
MODEL_REF_SIZE = 2

METHOD_STORED = 0
METHOD_ZSTD = 1
METHOD_LM = 2
METHOD_XZ = 3  # version 3: a raw LZMA2 stream (Python's lzma), the smallest fallback on most binaries
METHODS = frozenset({METHOD_STORED, METHOD_ZSTD, METHOD_LM, METHOD_XZ})
METHODS_BY_VERSION = {1: frozenset({0, 1, 2}), 2: frozenset({0, 1, 2}), 3: METHODS}
METHOD_NAMES = {METHOD_STORED: "stored", METHOD_ZSTD: "zstd", METHOD_LM: "LM", METHOD_XZ: "xz"}

POLICY_INDEPENDENT = 0
POLICY_SLIDING = 1
POLICIES = frozenset({POLICY_INDEPENDENT, POLICY_SLIDING})

#: Transform bit 0: CRLF -> LF before coding (the segment has no LF without a CR before it).
TRANSFORM_CRLF = 0x01
#: Transform bits each version accepts.  Any other set bit is a FormatError.
SUPPORTED_TRANSFORMS = {1: 0x00, 2: TRANSFORM_CRLF, 3: TRANSFORM_CRLF}
#: Longest predictor parameter block.
MAX_PREDICTOR_LENGTH = 255

#: Upper bound on ``Header.total_bits`` (the coder works with 32-bit words).
MAX_TOTAL_BITS = 32

ZSTD_LEVEL = 19
#: The xz method's encoder settings (``xz -9e``); only the dictionary size reaches the decoder,
#: and it follows from the segment's length (``xz_dict_size``), so the file need not carry it.
XZ_PRESET = 9 | lzma.PRESET_EXTREME
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
    model_ref: bytes = b""
    """Version 3: a registered model named by the first ``MODEL_REF_SIZE`` bytes of its sha256.
    A file that names its model this way carries neither ``model_id`` nor ``tokenizer_id`` nor
    the whole hash: the reader's model registry supplies them (the tokenizer is the model's own)."""
    format_version: int = field(default=0, compare=False)
    """The version a parsed header was read as (0: not read from a file; not part of equality)."""

    @property
    def legacy_version(self) -> int:
        """The fixed-width layout (1 or 2) this header needs: 2 only for version-2 features."""
        return 2 if self.predictor or any(s.transforms for s in self.segments) else 1

    @property
    def version(self) -> int:
        """The version the header was read as, else the oldest legacy layout that can hold it."""
        return self.format_version or self.legacy_version

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
        if s.method not in METHODS_BY_VERSION[version]:
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
    if h.model_ref and (version < 3 or len(h.model_ref) != MODEL_REF_SIZE):
        raise FormatError(f"model reference of {len(h.model_ref)} bytes in a version {version} header")
    if has_lm:
        if not h.model_id and not h.model_ref:
            raise FormatError("LM segment present but model_id is empty")
        if not h.tokenizer_id and not h.model_ref:
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


def _check_fields(header: Header, version: int) -> None:
    """ValueError unless every field fits its wire type and the header is consistent."""
    _check_uint("original_size", header.original_size, _U64_MAX)
    for name in ("flags", "window_tokens", "overlap_tokens"):
        _check_uint(name, getattr(header, name), _U32_MAX)
    _check_uint("top_k", header.top_k, _U16_MAX)
    for name in ("total_bits", "context_policy"):
        _check_uint(name, getattr(header, name), _U8_MAX)
    if version < 3 or any(header.original_sha256):
        _check_sha("original_sha256", header.original_sha256)
    _check_sha("model_sha256", header.model_sha256)
    if not isinstance(header.predictor, (bytes, bytearray)) or len(header.predictor) > MAX_PREDICTOR_LENGTH:
        raise ValueError(f"predictor must be at most {MAX_PREDICTOR_LENGTH} bytes")
    if header.model_ref and any(header.model_sha256) and bytes(header.model_sha256[:MODEL_REF_SIZE]) != bytes(header.model_ref):
        raise ValueError("model_ref is not a prefix of model_sha256")
    for i, s in enumerate(header.segments):
        if not isinstance(s, Segment):
            raise ValueError(f"segment {i} is not a Segment")
        _check_uint(f"segment {i} method", s.method, _U8_MAX if version < 3 else 0x0F)
        _check_uint(f"segment {i} transforms", s.transforms, _U8_MAX if version < 3 else 0x0F)
        _check_uint(f"segment {i} original_length", s.original_length, _U64_MAX)
        _check_uint(f"segment {i} payload_length", s.payload_length, _U64_MAX)
        _check_uint(f"segment {i} token_count", s.token_count, _U64_MAX)
        _check_uint(f"segment {i} crc32", s.crc32, _U32_MAX)
    # A legacy header names its model in full; a version-3 one may name it by reference alone.
    check = header if version >= 3 else _without_ref(header)
    try:
        _validate_semantics(check, version)
    except FormatError as e:
        raise ValueError(f"inconsistent header: {e}") from None


def _without_ref(header: Header) -> Header:
    if not header.model_ref:
        return header
    from dataclasses import replace

    return replace(header, model_ref=b"")


def encode_header(header: Header) -> bytes:
    """Serialize ``header`` in the fixed-width layout of versions 1/2 (without the preamble).

    Raises ``ValueError`` if the header is out of range or inconsistent: writing an
    invalid container is a programming error, not a format error.
    """
    version = header.legacy_version
    _check_fields(header, version)
    model_id = _encode_str("model_id", header.model_id)
    tokenizer_id = _encode_str("tokenizer_id", header.tokenizer_id)
    segments = list(header.segments)
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


def encode_prefix(header: Header, version: int = FORMAT_VERSION) -> bytes:
    """Everything a file holds before its first payload, in the layout of ``version``."""
    if version >= 3:
        return encode_v3(header)
    if version < header.legacy_version:
        raise ValueError(f"this header needs format version {header.legacy_version}, not {version}")
    body = encode_header(header)
    return _PREAMBLE.pack(MAGIC, header.legacy_version, len(body), crc32(body)) + body


def write_container_to(fileobj: BinaryIO, header: Header, payloads: Iterable[Buffer],
                       version: int = FORMAT_VERSION) -> int:
    """Write a container to a binary file object, streaming the payloads; return bytes written.

    ``payloads`` may be any iterable (e.g. a generator producing each payload just in
    time); payload ``i`` must be exactly ``header.segments[i].payload_length`` bytes and
    there must be exactly one per segment.  On ``ValueError`` (bad header or payload) the
    output may be partially written and must be discarded by the caller.
    """
    head = encode_prefix(header, version)
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


def write_container(header: Header, payloads: Iterable[Buffer], version: int = FORMAT_VERSION) -> bytes:
    """Return a complete container as bytes (see ``write_container_to``)."""
    buf = io.BytesIO()
    write_container_to(buf, header, payloads, version)
    return buf.getvalue()


# --------------------------------------------------------------------------- version 3 (compact)
#
# MAGIC_V3 | flags (u8) | [parameters] | [model] | [segment count] | segment entries | payloads
#
# flags: bits 0-3 preset (0: an explicit parameter block follows), bits 4-5 how the model is
# named (MODEL_NONE, MODEL_REF, MODEL_EXPLICIT), bit 6 one segment (the count is left out),
# bit 7 reserved (0). Unsigned integers are LEB128 varints in their shortest form; the CRC-32s
# are u32 little-endian. There is no header checksum of its own: the first segment's CRC-32 is
# stored XOR the CRC-32 of the header's other bytes, and every field is checked against what it
# can mean before it is used.

MODEL_NONE, MODEL_REF, MODEL_EXPLICIT = 0, 1, 2
_FLAG_SINGLE = 0x40
_FLAG_RESERVED = 0x80


@dataclass(frozen=True)
class Preset:
    """Coder and context settings one flags nibble stands for (frozen once published)."""

    total_bits: int
    top_k: int
    window_tokens: int
    overlap_tokens: int
    context_policy: int
    predictor: bytes


#: Presets 1..15. Never change a published row: files name them by number.
PRESETS = {
    # lmzip's defaults until predictor version 3: 24-bit frequencies, top-64, windows of 4096 re-reading 1024, the adaptive
    # predictor (parameters version 2: bias, bigram, temperature, n-grams 2-6, match, two mixers)
    1: Preset(24, 64, 4096, 1024, POLICY_SLIDING, bytes.fromhex("02c012802500000601d007")),
    # the same without the adaptive predictor (--no-adapt)
    2: Preset(24, 64, 4096, 1024, POLICY_SLIDING, b""),
    # lmzip's defaults since predictor parameters version 3 (preset 1 with exp3, §7.4)
    3: Preset(24, 64, 4096, 1024, POLICY_SLIDING, bytes.fromhex("03c012802500000601d007")),
}


def _settings(h: Header) -> Preset:
    return Preset(h.total_bits, h.top_k, h.window_tokens, h.overlap_tokens, h.context_policy, bytes(h.predictor))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _v3_string(name: str, value: object) -> bytes:
    raw = _encode_str(name, value)
    return _varint(len(raw)) + raw


def encode_v3(header: Header) -> bytes:
    """The version-3 prefix of a file (magic to the last segment entry); ValueError if invalid."""
    _check_fields(header, 3)
    segments = list(header.segments)
    has_lm = any(s.method == METHOD_LM for s in segments)
    parts = [MAGIC_V3, b""]
    preset = 0
    if not has_lm:  # nothing decodes with the model: its name and settings would be noise
        form = MODEL_NONE
    else:
        mine = _settings(header)
        preset = next((k for k, v in PRESETS.items() if v == mine), 0)
        if not preset:
            parts += [bytes([header.total_bits]), _varint(header.top_k), _varint(header.window_tokens),
                      _varint(header.overlap_tokens), bytes([header.context_policy, len(header.predictor)]),
                      bytes(header.predictor)]
        if header.model_ref:
            form = MODEL_REF
            parts.append(bytes(header.model_ref))
        else:
            form = MODEL_EXPLICIT
            parts += [_v3_string("model_id", header.model_id), _v3_string("tokenizer_id", header.tokenizer_id),
                      bytes(header.model_sha256)]
    flags = preset | form << 4
    if len(segments) == 1:
        flags |= _FLAG_SINGLE
    else:
        parts.append(_varint(len(segments)))
    parts[1] = bytes([flags])
    entries = []
    for s in segments:
        entry = [bytes([s.method | s.transforms << 4]), _varint(s.original_length), _varint(s.payload_length)]
        if s.method == METHOD_LM:
            entry.append(_varint(s.token_count))
        entries.append(b"".join(entry))
    # The first segment's CRC-32 also seals the header: XOR with the CRC-32 of every header byte
    # that is not a CRC field, so a damaged header fails like a damaged segment 0 (see FORMAT.md).
    seal = crc32(b"".join(parts) + b"".join(entries))
    for i, (s, entry) in enumerate(zip(segments, entries)):
        parts += [entry, struct.pack("<I", s.crc32 ^ seal if i == 0 else s.crc32)]
    out = b"".join(parts)
    if len(out) > MAX_HEADER_LENGTH:
        raise ValueError(f"header would be {len(out)} bytes; at most {MAX_HEADER_LENGTH} allowed")
    return out


class _Cursor:
    """Reads a version-3 header from memory or a file, never beyond ``MAX_HEADER_LENGTH``."""

    def __init__(self, source: Union[memoryview, BinaryIO], pos: int, head: bytes) -> None:
        self.view = source if isinstance(source, memoryview) else None
        self.file = None if self.view is not None else source
        self.pos = pos
        self.sealed = bytearray(head)  # the header bytes the seal covers (all but CRC fields)

    def crc(self, what: str) -> int:
        (value,) = struct.unpack("<I", self.take(4, what, sealed=False))
        return value

    def take(self, n: int, what: str, sealed: bool = True) -> bytes:
        if self.pos + n > MAX_HEADER_LENGTH:
            raise FormatError(f"header runs past the limit of {MAX_HEADER_LENGTH} bytes ({what})")
        if self.view is not None:
            if self.pos + n > len(self.view):
                raise TruncatedError(f"truncated inside the header ({what})")
            out = bytes(self.view[self.pos : self.pos + n])
        else:
            out = _read_exact(self.file, n, f"the header ({what})")
        self.pos += n
        if sealed:
            self.sealed += out
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str, maximum: int = _U64_MAX) -> int:
        value = 0
        for i in range(10):
            byte = self.u8(what)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if i and not byte:
                    raise FormatError(f"{what} is not in its shortest form")
                if value > maximum:
                    raise FormatError(f"{what} {value} exceeds {maximum}")
                return value
        raise FormatError(f"{what} is longer than 10 bytes")

    def string(self, what: str) -> str:
        raw = self.take(self.varint(f"{what} length", _U16_MAX), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{what} is not valid UTF-8") from None


_V3_MIN_ENTRY = 7  # kind, two one-byte lengths, CRC-32


def decode_v3(cur: _Cursor) -> Header:
    """Parse a version-3 header after its magic and version byte (see ``encode_v3``)."""
    flags = cur.u8("flags")
    if flags & _FLAG_RESERVED:
        raise FormatError(f"reserved header flag bits are set (0x{flags:02x})")
    preset, form = flags & 0x0F, (flags >> 4) & 3
    settings = Preset(0, 0, 0, 0, POLICY_INDEPENDENT, b"")
    model_id = tokenizer_id = ""
    model_sha256, model_ref = _ZERO_SHA, b""
    if form == MODEL_NONE:
        if preset:
            raise FormatError(f"preset {preset} in a file that names no model")
    elif form in (MODEL_REF, MODEL_EXPLICIT):
        if preset == 0:
            total_bits = cur.u8("total_bits")
            top_k = cur.varint("top_k", _U16_MAX)
            window = cur.varint("window_tokens", _U32_MAX)
            overlap = cur.varint("overlap_tokens", _U32_MAX)
            policy = cur.u8("context_policy")
            predictor = cur.take(cur.u8("predictor length"), "predictor")
            settings = Preset(total_bits, top_k, window, overlap, policy, predictor)
        elif preset in PRESETS:
            settings = PRESETS[preset]
        else:
            raise FormatError(f"unknown preset {preset}")
        if form == MODEL_REF:
            model_ref = cur.take(MODEL_REF_SIZE, "model reference")
        else:
            model_id = cur.string("model_id")
            tokenizer_id = cur.string("tokenizer_id")
            model_sha256 = cur.take(32, "model sha256")
    else:
        raise FormatError(f"unknown model form {form}")
    count = 1 if flags & _FLAG_SINGLE else cur.varint("segment count", MAX_HEADER_LENGTH // _V3_MIN_ENTRY)
    segments = []
    for i in range(count):
        kind = cur.u8(f"segment {i} method")
        method, transforms = kind & 0x0F, kind >> 4
        original_length = cur.varint(f"segment {i} original length")
        payload_length = cur.varint(f"segment {i} payload length")
        tokens = cur.varint(f"segment {i} token count") if method == METHOD_LM else 0
        segments.append(Segment(method, transforms, original_length, payload_length, tokens, cur.crc(f"segment {i} crc32")))
    if segments:
        segments[0].crc32 ^= crc32(cur.sealed)
    total = sum(s.original_length for s in segments)
    if total > _U64_MAX:
        raise FormatError(f"segment lengths sum to {total}, beyond 2**64")
    header = Header(
        original_size=total,
        original_sha256=b"",
        segments=segments,
        model_id=model_id,
        model_sha256=model_sha256,
        tokenizer_id=tokenizer_id,
        total_bits=settings.total_bits,
        top_k=settings.top_k,
        window_tokens=settings.window_tokens,
        overlap_tokens=settings.overlap_tokens,
        context_policy=settings.context_policy,
        predictor=settings.predictor,
        model_ref=model_ref,
        format_version=3,
    )
    _validate_semantics(header, 3)
    return header


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
    if version not in READ_VERSIONS or version >= 3:
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
    if version >= 2 and header.legacy_version != 2:
        raise FormatError("version 2 header without any version-2 feature")
    _validate_semantics(header, version)
    header.format_version = version
    return header


def _start(head: bytes) -> int:
    """The layout a file's first bytes announce: 3, or 0 for the preamble of versions 1/2."""
    if head[:4] != MAGIC[: min(4, len(head))]:
        raise BadMagicError("not an .lmz file (bad magic bytes)")
    if len(head) < 5:
        raise TruncatedError(f"truncated: {len(head)} bytes, the magic alone needs 5")
    if head[4] == MAGIC[4]:
        return 0
    if head[4] == 3:
        return 3
    if not 3 < head[4] < 10:  # 4..9 are left for later versions; a lone LF is a converted CR LF
        raise BadMagicError("not an .lmz file (bad magic bytes)")
    raise UnsupportedVersionError(
        f"unsupported .lmz format version {head[4]} (this lmzip reads versions 1 to {FORMAT_VERSION})"
    )


def parse_header(data: Buffer) -> tuple[Header, int]:
    """Parse and validate the header of ``data``; return ``(header, payload_start)``.

    Does not look at the payload bytes (so it does not detect truncated payloads or
    trailing data; ``read_container`` does).
    """
    view = memoryview(data).cast("B")
    if len(view) == 0:
        raise TruncatedError("empty input (not an .lmz file)")
    if _start(bytes(view[:5])) == 3:
        cur = _Cursor(view, len(MAGIC_V3), MAGIC_V3)
        return decode_v3(cur), cur.pos
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


def peek(source: Union[Buffer, BinaryIO]) -> tuple[Header, int]:
    """Parse only the header of a container: ``(header, payload_start)``.

    ``source`` is either a bytes-like object or a readable binary file object.  A file
    object is left positioned at the first payload (use ``iter_payloads_from`` next).
    Payloads are not read, so truncated payloads/trailing data are not detected here.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return parse_header(source)
    head = b""
    while len(head) < len(MAGIC_V3):
        chunk = source.read(len(MAGIC_V3) - len(head))
        if not chunk:
            break
        head += chunk
    if not head:
        raise TruncatedError("empty input (not an .lmz file)")
    if _start(head) == 3:
        cur = _Cursor(source, len(head), head)
        return decode_v3(cur), cur.pos
    pre = head
    while len(pre) < PREAMBLE_SIZE:
        chunk = source.read(PREAMBLE_SIZE - len(pre))
        if not chunk:
            break
        pre += chunk
    version, hlen, hcrc = _parse_preamble(memoryview(pre))
    body = _read_exact(source, hlen, "the header")
    if crc32(body) != hcrc:
        raise FormatError("header is corrupt (CRC32 mismatch)")
    return _decode_header(memoryview(body), version), PREAMBLE_SIZE + hlen


def peek_header(source: Union[Buffer, BinaryIO]) -> Header:
    """The header alone (see ``peek``), for ``lmzip info``."""
    return peek(source)[0]


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


def xz_dict_size(original_length: int) -> int:
    """The xz method's LZMA2 dictionary: the segment's length rounded up to a power of two,
    4 KB to 64 MB, so that a decoder's memory follows from what the segment decodes to."""
    return max(1 << 12, min(1 << 26, 1 << max(0, original_length - 1).bit_length()))


def _xz_filters(original_length: int, preset: int | None = None) -> list[dict]:
    f = {"id": lzma.FILTER_LZMA2, "dict_size": xz_dict_size(original_length)}
    if preset is not None:
        f["preset"] = preset
    return [f]


def xz_encode(data: Buffer) -> bytes:
    """The ``xz`` method (version 3): one raw LZMA2 stream (no .xz container: the segment
    entry already holds the length and a CRC-32), as ``xz -9e`` codes it."""
    raw = bytes(data)
    return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=_xz_filters(len(raw), XZ_PRESET))


def xz_decode(payload: Buffer, original_length: int) -> bytes:
    """Inverse of ``xz_encode``: exactly ``original_length`` bytes from a stream that ends with
    the payload (never more output than that); FormatError on any damage."""
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_xz_filters(original_length))
    try:
        out = dec.decompress(bytes(payload), max_length=original_length + 1)
    except lzma.LZMAError as e:
        raise FormatError(f"corrupt xz payload: {e}") from None
    if len(out) > original_length:
        raise FormatError(f"xz payload decodes to more than {original_length} bytes")
    if not dec.eof:
        raise FormatError("xz payload is truncated")
    if dec.unused_data:
        raise FormatError(f"{len(dec.unused_data)} bytes of trailing data after the xz stream")
    if len(out) != original_length:
        raise FormatError(f"xz payload decodes to {len(out)} bytes, expected {original_length}")
    return out


def choose_fallback(data: Buffer, version: int = FORMAT_VERSION) -> tuple[int, bytes]:
    """Return ``(method, payload)`` for the smallest of ``stored``, ``zstd`` and (version 3)
    ``xz``; ties go to the faster method."""
    raw = bytes(data)
    best = (METHOD_STORED, raw)
    candidates = [(METHOD_ZSTD, zstd_encode)]
    if version >= 3 and raw:
        candidates.append((METHOD_XZ, xz_encode))
    for method, encode in candidates:
        payload = encode(raw)
        if len(payload) < len(best[1]):
            best = (method, payload)
    return best


def make_fallback_segment(data: Buffer, version: int = FORMAT_VERSION) -> tuple[Segment, bytes]:
    """Code ``data`` with ``choose_fallback`` and return its segment entry and payload."""
    method, payload = choose_fallback(data, version)
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
    """Decode a ``stored``, ``zstd`` or ``xz`` segment and verify it; FormatError/ChecksumError on damage.

    Raises ``ValueError`` for ``METHOD_LM`` segments (those need the model and coder).
    """
    if segment.transforms:
        raise FormatError(f"unsupported transform bits 0x{segment.transforms:02x}")
    if segment.method == METHOD_STORED:
        out = stored_decode(payload, segment.original_length)
    elif segment.method == METHOD_ZSTD:
        out = zstd_decode(payload, segment.original_length)
    elif segment.method == METHOD_XZ:
        out = xz_decode(payload, segment.original_length)
    elif segment.method == METHOD_LM:
        raise ValueError("LM segments are decoded by the coder, not by the container")
    else:
        raise FormatError(f"unknown method {segment.method}")
    verify_segment(segment, out, index)
    return out


def verify_original(header: Header, data: Buffer) -> None:
    """Check the whole decoded data against ``original_size`` and ``original_sha256`` (versions
    1/2; a version-3 file is covered by its segments' CRC-32s)."""
    n = memoryview(data).nbytes
    if n != header.original_size:
        raise ChecksumError(f"decoded {n} bytes, expected {header.original_size}")
    if header.original_sha256 and hashlib.sha256(data).digest() != bytes(header.original_sha256):
        raise ChecksumError("decoded data does not match the recorded SHA-256")
