"""Tokenizers that are lossless for *every* byte string.

lmzip codes token ids, so ``decode(encode(data)) == data`` must hold for arbitrary bytes, not just
for the text a language model was trained on. Two tokenizers share one interface (:class:`Tokenizer`):

* :class:`ByteTokenizer` -- 256 ids, id == byte value. Used by tiny test models.
* :class:`BPETokenizer` -- the byte-level BPE of SmolLM2 (GPT-2 style, ``smollm`` pre-tokenizer),
  built from the GGUF metadata of the model, with an escape mechanism for the bytes this
  vocabulary cannot express.

Why an escape is needed
-----------------------
A GPT-2 byte-level BPE normally has one token per byte value, so it can spell anything. SmolLM2's
vocabulary lacks 21 of them (04 06 13 14 16 1d c0 c1 f1 f2 f5..ff), and a BPE without an unknown
token silently *drops* such characters. Invalid UTF-8 cannot even be handed to the Rust
``tokenizers`` library, which takes ``str``. So :meth:`BPETokenizer.encode` splits the input into

* maximal runs of valid UTF-8 whose characters are all spelled with representable bytes: these go
  through the real BPE (identical ids to the plain Hugging Face tokenization of that run);
* everything else (invalid UTF-8 bytes, and every byte of a character containing a missing byte):
  byte by byte. A byte with a single-byte token is that token; a byte without one is written as the
  pair ``ESCAPE, IDENT`` where ``ESCAPE`` is token 0 (``<|endoftext|>``, a control token BPE never
  produces) and ``IDENT`` is the single-byte token of ``0x41 + i`` (``'A' + i``) for the ``i``-th
  missing byte in ascending order (so 0x04 -> ``A``, 0x06 -> ``B``, ..., 0xff -> ``U``).

Decoding never goes through UTF-8: every id maps to its raw bytes through the GPT-2 byte<->unicode
table, and ``ESCAPE, IDENT`` pairs map back to the missing byte. Any other special token, an escape
at the end, an escape followed by a non-identifier, or an out-of-range id raises
:class:`~lmzip.errors.TokenizerError`.

Only :meth:`decode` has to be reproducible between compressor and decompressor (the encoder's
choices are recorded in the stream as ids); :attr:`Tokenizer.tokenizer_id` pins the vocabulary,
the merges and the escape scheme so that a .lmz header can name exactly the tokenizer it used.
"""

from __future__ import annotations

import abc
import hashlib
import json
import marshal
import os
import re
import sys
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, Union

import numpy as np

from lmzip.errors import TokenizerError

__all__ = [
    "Tokenizer",
    "ByteTokenizer",
    "BPETokenizer",
    "load_tokenizer",
    "bytes_to_unicode",
    "TOKENIZER_JSON",
    "LMZIP_TOKENIZER_JSON",
]

#: File names written by :meth:`Tokenizer.save`.
TOKENIZER_JSON = "tokenizer.json"
LMZIP_TOKENIZER_JSON = "lmzip_tokenizer.json"

_FORMAT = "lmzip-tokenizer"
_FORMAT_VERSION = 1

#: GGUF ``tokenizer.ggml.token_type`` value of an ordinary token; anything else is "special".
GGUF_TOKEN_NORMAL = 1

PathLike = Union[str, "os.PathLike[str]"]
IdsLike = Union[Sequence[int], np.ndarray, Iterable[int]]


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character table (as used by ByteLevel BPE).

    Printable Latin-1 bytes map to themselves; the other 68 bytes map to U+0100 onwards.
    """
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def _sha16(obj: Any) -> str:
    """First 16 hex digits of sha256 over a canonical JSON serialization of ``obj``."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def _as_id_array(ids: IdsLike, vocab_size: int) -> np.ndarray:
    """Validate ``ids`` as a 1-D integer array with every id in ``[0, vocab_size)``."""
    if isinstance(ids, np.ndarray):
        arr = ids
    else:
        try:
            arr = np.asarray(ids if isinstance(ids, (list, tuple)) else list(ids))
        except (TypeError, ValueError, OverflowError) as e:
            raise TokenizerError(f"token ids are not a sequence of integers: {e}") from None
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1:
        raise TokenizerError(f"token ids must be a 1-D sequence, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TokenizerError(f"token ids must be integers, got dtype {arr.dtype}")
    lo = int(arr.min())
    hi = int(arr.max())
    if lo < 0 or hi >= vocab_size:
        bad_pos = int(np.flatnonzero((arr < 0) | (arr >= vocab_size))[0])
        raise TokenizerError(
            f"token id {int(arr[bad_pos])} at position {bad_pos} is out of range for a vocabulary of {vocab_size}"
        )
    return arr.astype(np.int64, copy=False)


class Tokenizer(abc.ABC):
    """Common interface of lmzip tokenizers.

    ``decode(encode(data)) == data`` for every ``bytes`` value ``data``; ``decode`` depends only on
    what ``tokenizer_id`` covers, so ids written by one process decode identically in another.
    """

    #: Number of token ids (ids are ``0 .. vocab_size - 1``).
    vocab_size: int
    #: Id fed to the model before the first token of a stream.
    bos_id: int
    #: Stable identifier ``"<name>-<16 hex digits of sha256>"`` of everything decoding depends on.
    tokenizer_id: str

    @abc.abstractmethod
    def encode(self, data: bytes) -> np.ndarray:
        """Token ids (int64, 1-D) of ``data``."""

    @abc.abstractmethod
    def decode(self, ids: IdsLike) -> bytes:
        """Bytes of a token-id sequence; raises :class:`TokenizerError` on malformed input."""

    @abc.abstractmethod
    def token_bytes(self, token_id: int) -> bytes:
        """Bytes spelled by one token (``b""`` for special tokens)."""

    @abc.abstractmethod
    def save(self, directory: PathLike) -> Path:
        """Write the tokenizer into ``directory`` (created if needed) so that
        :func:`load_tokenizer` rebuilds it; returns the directory."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.tokenizer_id!r}, vocab_size={self.vocab_size})"


class ByteTokenizer(Tokenizer):
    """Trivial tokenizer: 256 ids, id == byte value. ``bos_id`` is 0 (shared with byte 0x00)."""

    kind = "bytes"

    def __init__(self) -> None:
        self.vocab_size = 256
        self.bos_id = 0
        self.tokenizer_id = f"bytes-{_sha16({'format': _FORMAT, 'version': _FORMAT_VERSION, 'kind': self.kind})}"

    def encode(self, data: bytes) -> np.ndarray:
        return np.frombuffer(bytes(data), dtype=np.uint8).astype(np.int64)

    def decode(self, ids: IdsLike) -> bytes:
        arr = _as_id_array(ids, self.vocab_size)
        return arr.astype(np.uint8).tobytes()

    def token_bytes(self, token_id: int) -> bytes:
        """Bytes spelled by one token."""
        if not 0 <= token_id < 256:
            raise TokenizerError(f"token id {token_id} is out of range for a vocabulary of 256")
        return bytes([token_id])

    def save(self, directory: PathLike) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"format": _FORMAT, "version": _FORMAT_VERSION, "kind": self.kind, "tokenizer_id": self.tokenizer_id}
        (d / LMZIP_TOKENIZER_JSON).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        return d

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteTokenizer)

    def __hash__(self) -> int:
        return hash(self.tokenizer_id)


# ---------------------------------------------------------------------------------------------
# Byte-level BPE with escapes
# ---------------------------------------------------------------------------------------------

# Pre-tokenizers we know how to rebuild, by GGUF ``tokenizer.ggml.pre`` name. Only SmolLM2's: the
# fast encoder below relies on its Digits step, which makes every digit a pre-token of its own.
_SUPPORTED_PRE = ("smollm",)

# Why digits matter. The ``smollm`` pre-tokenizer first isolates every digit, then applies the
# GPT-2 regex to each piece separately; a piece of one digit is one token. So an ASCII "0" is a hard
# boundary: encoding "A0B" gives ids(A) + [id("0")] + ids(B), exactly. encode() exploits this to
# send all BPE runs of an input to Rust as ONE string joined by "0" (binary data has hundreds of
# thousands of short runs; one call per run is slow), then cuts the ids at the separator "0"
# tokens, telling them apart from the runs' own zeros by counting those.
_SEPARATOR = "0"

# Long strings are cut into chunks of about this many characters so that ``encode_batch`` can use
# several threads. Cuts are made only where the pre-tokenizer splits anyway, so the ids are
# identical to encoding the string in one piece:
# * right before an ASCII digit (see above);
# * right after a "\n" between two non-whitespace characters: no GPT-2 regex alternative matches
#   across "\n" followed by non-whitespace, and the lone "\n" is its own pre-token whether or not
#   the lookahead of ``\s+(?!\S)`` sees the next character. (Python's \s is a superset of Rust's
#   Unicode White_Space, so Python's \S is the conservative choice.)
_DEFAULT_CHUNK_CHARS = 1 << 16
_SAFE_CUT = re.compile(r"(?=[0-9])|(?<=\S\n)(?=\S)")


def _utf8_lengths_and_bytes(cps: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(mask of code points with at least k+1 UTF-8 bytes, the (k+1)-th byte) for k = 0..3."""
    n2 = cps >= 0x80
    n3 = cps >= 0x800
    n4 = cps >= 0x10000
    b0 = np.where(
        n4,
        0xF0 | (cps >> 18),
        np.where(n3, 0xE0 | (cps >> 12), np.where(n2, 0xC0 | (cps >> 6), cps)),
    )
    cont = lambda shift: 0x80 | ((cps >> shift) & 0x3F)  # noqa: E731
    b1 = np.where(n4, cont(12), np.where(n3, cont(6), cont(0)))
    b2 = np.where(n4, cont(6), cont(0))
    b3 = cont(0)
    return [(np.ones_like(n2), b0), (n2, b1), (n3, b2), (n4, b3)]


def _unrepresentable_char_class(missing: Sequence[int]) -> str:
    """A regex character class matching every character that must be sent byte by byte.

    That is: every code point whose UTF-8 encoding contains a byte without a single-byte token,
    plus the lone surrogates U+DC80..U+DCFF that ``surrogateescape`` uses for invalid UTF-8 bytes.
    """
    missing_mask = np.zeros(256, dtype=bool)
    missing_mask[list(missing)] = True
    cps = np.arange(0x110000, dtype=np.int64)
    bad = np.zeros(cps.shape, dtype=bool)
    for present, byte in _utf8_lengths_and_bytes(cps):
        bad |= present & missing_mask[byte & 0xFF]
    bad[0xD800:0xE000] = False  # surrogates never come out of a strict UTF-8 decode ...
    bad[0xDC80:0xDD00] = True  # ... except surrogateescape's stand-ins for undecodable bytes
    # Compress the mask into [start, end] ranges.
    edges = np.flatnonzero(np.diff(np.concatenate(([False], bad, [False])).astype(np.int8)))
    parts = []
    for start, stop in zip(edges[0::2], edges[1::2]):
        lo, hi = int(start), int(stop) - 1
        parts.append(re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}")
    return "[" + "".join(parts) + "]"


class BPETokenizer(Tokenizer):
    """SmolLM2's byte-level BPE, made lossless for every byte string (see the module docstring).

    Build it with :meth:`from_gguf`, or :func:`load_tokenizer` on a directory written by
    :meth:`save`. ``bos_id`` and the escape token are both id 0 (``<|endoftext|>``).
    """

    kind = "bpe"

    def __init__(
        self,
        tokens: Sequence[str],
        merges: Sequence[tuple[str, str]],
        token_types: Sequence[int],
        *,
        pre: str = "smollm",
        escape_id: int = 0,
        bos_id: int = 0,
        chunk_chars: int = _DEFAULT_CHUNK_CHARS,
    ) -> None:
        """
        Args:
            tokens: token strings in id order, in GPT-2 byte-level spelling (special tokens as is).
            merges: BPE merges in priority order, as (left, right) pairs.
            token_types: GGUF token types per id; ``1`` is an ordinary token, anything else is a
                special/control token that BPE must never produce and that ``decode`` rejects
                (except ``escape_id``).
            pre: pre-tokenizer name as in GGUF ``tokenizer.ggml.pre``; only ``smollm`` is supported.
            escape_id: the special token that introduces an escaped byte.
            bos_id: id fed to the model before the first token.
            chunk_chars: long BPE runs are cut (at invisible places) into chunks of about this size
                so that the Rust tokenizer can encode them on several threads.
        """
        self.tokens: list[str] = list(tokens)
        self.merges: list[tuple[str, str]] = [(str(a), str(b)) for a, b in merges]
        n = len(self.tokens)
        types = [int(t) for t in token_types]
        if len(types) != n:
            raise TokenizerError(f"{len(types)} token types for {n} tokens")
        if pre not in _SUPPORTED_PRE:
            raise TokenizerError(f"unsupported pre-tokenizer {pre!r} (supported: {', '.join(_SUPPORTED_PRE)})")
        if not 0 <= escape_id < n or types[escape_id] == GGUF_TOKEN_NORMAL:
            raise TokenizerError(f"escape id {escape_id} must be a special (non-normal) token")
        if not 0 <= bos_id < n:
            raise TokenizerError(f"bos id {bos_id} is out of range")
        self.vocab_size = n
        self.bos_id = bos_id
        self.escape_id = escape_id
        self.pre = pre
        self.chunk_chars = int(chunk_chars)
        self.token_types = types
        self.special_ids: frozenset[int] = frozenset(i for i, t in enumerate(types) if t != GGUF_TOKEN_NORMAL)

        # --- bytes of every ordinary token, through the GPT-2 byte<->unicode table (no UTF-8) ---
        # (str.translate to Latin-1 then encode: the same bytes as a per-character lookup, in C.)
        to_latin1 = {ord(c): b for b, c in bytes_to_unicode().items()}
        table: list[bytes] = []
        for i, tok in enumerate(self.tokens):
            if i in self.special_ids:
                table.append(b"")  # never emitted as text; decode() handles/rejects it
                continue
            if not tok:
                raise TokenizerError(f"token {i} is empty")
            try:
                table.append(tok.translate(to_latin1).encode("latin-1"))
            except UnicodeEncodeError:  # a character outside the table survived translate
                raise TokenizerError(f"token {i} {tok!r} is not in GPT-2 byte-level spelling") from None
        self._bytes_table = table
        self._special_mask = np.zeros(n, dtype=bool)
        self._special_mask[list(self.special_ids)] = True
        # Bytes per token, for a cheap "BPE dropped nothing" check in encode().
        self._token_len = np.array([len(b) for b in table], dtype=np.int64)

        vocab: dict[str, int] = {}
        for i, tok in enumerate(self.tokens):
            if tok in vocab:
                raise TokenizerError(f"duplicate token {tok!r} (ids {vocab[tok]} and {i})")
            vocab[tok] = i

        # BPE must never be able to produce a special token, or decode() would misread it.
        special_strings = {self.tokens[i] for i in self.special_ids}
        for a, b in self.merges:
            if a + b in special_strings:
                raise TokenizerError(f"merge {a!r} + {b!r} produces the special token {a + b!r}")

        # --- single-byte tokens, the missing bytes and the escape identifiers ---
        b2u = bytes_to_unicode()
        single: dict[int, int] = {}
        for b in range(256):
            i = vocab.get(b2u[b])
            if i is not None and i not in self.special_ids:
                single[b] = i
        self.missing_bytes: tuple[int, ...] = tuple(b for b in range(256) if b not in single)
        # The i-th missing byte is identified by the single-byte token of 0x41 + i ('A' + i); should
        # a vocabulary lack some of those, the next available bytes (wrapping past 0xff) are used.
        candidates = [b for b in chain(range(0x41, 256), range(0, 0x41)) if b in single]
        if len(candidates) < len(self.missing_bytes):
            raise TokenizerError("vocabulary has too few single-byte tokens to identify the missing bytes")
        self.escape_identifier_bytes: tuple[int, ...] = tuple(candidates[: len(self.missing_bytes)])
        # decode(): ids of identifier tokens -> index of the missing byte (-1: not an identifier),
        # and a table extended by virtual ids vocab_size + i spelling the i-th missing byte.
        self._ident_index = np.full(n, -1, dtype=np.int64)
        for i, ident in enumerate(self.escape_identifier_bytes):
            self._ident_index[single[ident]] = i
        self._decode_table = table + [bytes((b,)) for b in self.missing_bytes]
        # Token ids for one byte of a byte-by-byte run: (single, -1) or (ESCAPE, IDENT).
        self._raw_first = np.full(256, -1, dtype=np.int64)
        self._raw_second = np.full(256, -1, dtype=np.int64)
        for b in range(256):
            if b in single:
                self._raw_first[b] = single[b]
            else:
                self._raw_first[b] = escape_id
                self._raw_second[b] = single[self.escape_identifier_bytes[self.missing_bytes.index(b)]]
        if _SEPARATOR in self.special_ids or vocab.get(_SEPARATOR) is None:
            raise TokenizerError(f"vocabulary has no ordinary token {_SEPARATOR!r}")
        self._separator_id = vocab[_SEPARATOR]

        self._raw_split_re: re.Pattern | None = None  # built on first encode
        self._raw_split_src: str | None = None

        self._vocab = vocab
        self._hf_model = None  # the Rust BPE, built on first encode (decoding never needs it)
        self.tokenizer_id = f"bpe-{pre}-{_sha16(self._canonical())}"

    @property
    def _raw_split(self) -> re.Pattern:
        """Splits text into alternating [bpe run, raw run, bpe run, ...] (capture group)."""
        if self._raw_split_re is None:
            self._raw_split_re = re.compile(self._raw_split_source())
        return self._raw_split_re

    def _raw_split_source(self) -> str:
        # ~0.2 s to derive (a walk over the code points), so it is kept with the cached state
        if getattr(self, "_raw_split_src", None) is None:
            self._raw_split_src = "(" + _unrepresentable_char_class(self.missing_bytes) + "+)"
        return self._raw_split_src

    @property
    def _hf(self):
        """The Rust BPE: no unk token, no normalizer, no added/special tokens. (Special tokens are
        deliberately NOT registered, so a literal "<|endoftext|>" in the input is ordinary text
        and BPE can never emit the escape token.) Built when first needed (~0.1 s for SmolLM2)."""
        if self._hf_model is None:
            from tokenizers import Tokenizer as HFTokenizer
            from tokenizers import decoders, models, pre_tokenizers

            model = models.BPE(vocab=self._vocab, merges=self.merges, unk_token=None, fuse_unk=False, byte_fallback=False)
            hf = HFTokenizer(model)
            byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
            hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
            hf.decoder = decoders.ByteLevel()
            self._hf_model = hf
        return self._hf_model

    def _encode_batch(self, *args, **kwargs):
        hf = self._hf
        return getattr(hf, "encode_batch_fast", hf.encode_batch)(*args, **kwargs)

    # -- identity ---------------------------------------------------------------------------------

    def _canonical(self) -> dict[str, Any]:
        """Everything encode/decode depend on, in a canonical form (hashed into tokenizer_id)."""
        return {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "kind": self.kind,
            "pre": self.pre,
            "tokens": self.tokens,
            "special": sorted([i, self.token_types[i]] for i in self.special_ids),
            "merges": [f"{a} {b}" for a, b in self.merges],
            "escape_id": self.escape_id,
            "bos_id": self.bos_id,
            "missing_bytes": list(self.missing_bytes),
            "escape_identifier_bytes": list(self.escape_identifier_bytes),
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BPETokenizer) and other.tokenizer_id == self.tokenizer_id

    def __hash__(self) -> int:
        return hash(self.tokenizer_id)

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def from_gguf(cls, path_or_reader: PathLike | Any, **kwargs: Any) -> "BPETokenizer":
        """Build from the ``tokenizer.ggml.*`` metadata of a GGUF file (path or ``gguf.GGUFReader``)."""
        import gguf

        if isinstance(path_or_reader, gguf.GGUFReader):
            reader = path_or_reader
        else:
            try:
                reader = gguf.GGUFReader(os.fspath(path_or_reader))
            except (OSError, ValueError) as e:
                raise TokenizerError(f"cannot read GGUF {os.fspath(path_or_reader)}: {e}") from e
        fields = reader.fields

        def field(name: str) -> Any:
            f = fields.get(name)
            if f is None:
                raise TokenizerError(f"GGUF has no {name!r} field")
            return f

        def strings(name: str) -> list[str]:
            f = field(name)
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

        model = strings("tokenizer.ggml.model")[0]
        if model != "gpt2":
            raise TokenizerError(f"unsupported GGUF tokenizer model {model!r} (only byte-level BPE 'gpt2')")
        pre = strings("tokenizer.ggml.pre")[0] if "tokenizer.ggml.pre" in fields else "default"
        tokens = strings("tokenizer.ggml.tokens")
        merges = []
        for m in strings("tokenizer.ggml.merges"):
            a, sep, b = m.partition(" ")
            if not sep or not a or not b or " " in b:
                raise TokenizerError(f"malformed GGUF merge {m!r}")
            merges.append((a, b))
        tt = field("tokenizer.ggml.token_type")
        token_types = [int(tt.parts[i][0]) for i in tt.data]
        kwargs.setdefault("pre", pre)
        return cls(tokens, merges, token_types, **kwargs)

    def save(self, directory: PathLike) -> Path:
        """Write ``tokenizer.json`` (plain Hugging Face BPE) and ``lmzip_tokenizer.json`` (special
        tokens, escape scheme, tokenizer_id) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self._hf.save(str(d / TOKENIZER_JSON))
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "kind": self.kind,
            "tokenizer_id": self.tokenizer_id,
            "pre": self.pre,
            "bos_id": self.bos_id,
            "escape_id": self.escape_id,
            "special": {str(i): self.token_types[i] for i in sorted(self.special_ids)},
            "missing_bytes": list(self.missing_bytes),
            "escape_identifier_bytes": list(self.escape_identifier_bytes),
        }
        (d / LMZIP_TOKENIZER_JSON).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        return d

    # A built tokenizer's state, cached (resources.write_cache) so that loading skips parsing
    # ~2 MB of JSON and rebuilding the tables (~0.45 s of a 12-byte file's ~1.2 s). marshal, not
    # pickle: reading it back can build only plain values, never run code. The key is a hash of
    # the files it was built from, of this module's source (a state built by other code, with other
    # attributes, is never read back) and of the Python version (marshal's format).
    _LAZY = ("_raw_split_re", "_hf_model")

    def _cache_body(self) -> bytes:
        self._raw_split_source()
        state: dict[str, Any] = {}
        for k, v in vars(self).items():
            if k in self._LAZY:
                continue
            if isinstance(v, np.ndarray):
                v = ("__ndarray__", v.dtype.str, v.shape, v.tobytes())
            state[k] = v
        return marshal.dumps(state)

    @classmethod
    def _from_cache_body(cls, body: bytes) -> "BPETokenizer | None":
        try:
            state = marshal.loads(body)
            if not isinstance(state, dict):
                return None
            tok = cls.__new__(cls)
            for k, v in state.items():
                if isinstance(v, tuple) and len(v) == 4 and v[0] == "__ndarray__":
                    v = np.frombuffer(v[3], dtype=np.dtype(v[1])).reshape(v[2]).copy()
                setattr(tok, k, v)
            for k in cls._LAZY:
                setattr(tok, k, None)
            return tok
        except (ValueError, TypeError, EOFError):
            return None

    @classmethod
    def _load(cls, directory: Path, meta: dict[str, Any]) -> "BPETokenizer":
        from lmzip.resources import read_cache, write_cache

        try:
            raw = (directory / TOKENIZER_JSON).read_bytes()
        except OSError as e:
            raise TokenizerError(f"cannot read {directory / TOKENIZER_JSON}: {e}") from e
        key = hashlib.sha256(b"\0".join([raw, json.dumps(meta, sort_keys=True).encode(), _module_source(),
                                          sys.version.encode()])).hexdigest()[:24]
        cache_name = f"tokenizer-{key}.marshal"
        body = read_cache(cache_name)
        tok = cls._from_cache_body(body) if body is not None else None
        if tok is None:
            tok = cls._build(directory, raw, meta)
            try:
                write_cache(cache_name, tok._cache_body())
            except ValueError:  # a value marshal cannot hold: no cache, same tokenizer
                pass
        for k in ("missing_bytes", "escape_identifier_bytes"):
            if k in meta and tuple(meta[k]) != getattr(tok, k):
                raise TokenizerError(f"{LMZIP_TOKENIZER_JSON}: {k} does not match the vocabulary")
        if "tokenizer_id" in meta and meta["tokenizer_id"] != tok.tokenizer_id:
            raise TokenizerError(
                f"tokenizer in {directory} rebuilds as {tok.tokenizer_id}, but was saved as {meta['tokenizer_id']}"
            )
        return tok

    @classmethod
    def _build(cls, directory: Path, raw: bytes, meta: dict[str, Any]) -> "BPETokenizer":
        try:
            hf_json = json.loads(raw.decode("utf-8"))
            vocab: dict[str, int] = hf_json["model"]["vocab"]
            raw_merges = hf_json["model"]["merges"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TokenizerError(f"cannot read {directory / TOKENIZER_JSON}: {e}") from e
        try:
            tokens = [""] * len(vocab)
            for tok_str, i in vocab.items():
                if not isinstance(i, int) or not 0 <= i < len(tokens) or tokens[i]:
                    raise ValueError(f"vocabulary ids are not 0..{len(vocab) - 1}")
                tokens[i] = tok_str
            # tokenizers writes merges as "a b" strings (old) or as [a, b] pairs (>= 0.20).
            merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in raw_merges]
            if any(len(m) != 2 for m in merges):
                raise ValueError("a merge is not a pair")
            types = [GGUF_TOKEN_NORMAL] * len(tokens)
            for i, t in meta.get("special", {}).items():
                types[int(i)] = int(t)
            pre = str(meta.get("pre", "smollm"))
            escape_id = int(meta.get("escape_id", 0))
            bos_id = int(meta.get("bos_id", 0))
        except (ValueError, TypeError, IndexError, AttributeError) as e:
            raise TokenizerError(f"malformed tokenizer in {directory}: {e}") from e
        return cls(tokens, merges, types, pre=pre, escape_id=escape_id, bos_id=bos_id)  # type: ignore[arg-type]

    # -- encode -----------------------------------------------------------------------------------

    def _chunks(self, text: str) -> list[str]:
        """Cut a long string at places the pre-tokenizer splits anyway (the ids stay identical)."""
        size = self.chunk_chars
        if len(text) <= size:
            return [text]
        out = []
        start = 0
        while len(text) - start > size:
            m = _SAFE_CUT.search(text, start + size)
            if m is None:
                break
            out.append(text[start : m.start()])
            start = m.start()
        out.append(text[start:])
        return out

    def _encode_bpe_runs(self, runs: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """BPE ids of every run, concatenated, and the number of ids of each run."""
        joined = _SEPARATOR.join(runs)
        if not joined:
            return np.zeros(0, dtype=np.int64), np.zeros(len(runs), dtype=np.int64)
        encodings = self._encode_batch(self._chunks(joined), add_special_tokens=False)
        ids = np.array(list(chain.from_iterable(e.ids for e in encodings)), dtype=np.int64)
        if len(runs) == 1:
            return ids, np.array([len(ids)], dtype=np.int64)
        # The k-th separator is the (zeros in runs 0..k + k)-th "0" token, counting from 0.
        zeros = np.fromiter((r.count(_SEPARATOR) for r in runs), dtype=np.int64, count=len(runs))
        zero_pos = np.flatnonzero(ids == self._separator_id)
        if len(zero_pos) != int(zeros.sum()) + len(runs) - 1:
            raise TokenizerError(
                f"internal error: {len(zero_pos)} {_SEPARATOR!r} tokens for {int(zeros.sum())} zeros "
                f"and {len(runs) - 1} separators (pre-tokenizer does not isolate digits?)"
            )
        sep_pos = zero_pos[np.cumsum(zeros[:-1]) + np.arange(len(runs) - 1)]
        starts = np.concatenate(([0], sep_pos + 1))
        ends = np.concatenate((sep_pos, [len(ids)]))
        return np.delete(ids, sep_pos), ends - starts

    def _encode_raw_runs(self, runs: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Byte-by-byte ids of every (non-empty) raw run, concatenated, and the count per run."""
        encoded = [r.encode("utf-8", "surrogateescape") for r in runs]  # exact original bytes
        byte_counts = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        raw = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        first = self._raw_first[raw]
        second = self._raw_second[raw]
        pairs = np.stack([first, second], axis=1).reshape(-1)  # f0 s0 f1 s1 ...; s = -1 if none
        per_byte = 1 + (second >= 0)
        run_starts = np.cumsum(byte_counts) - byte_counts
        return pairs[pairs >= 0], np.add.reduceat(per_byte, run_starts)

    def encode(self, data: bytes) -> np.ndarray:
        """Token ids (int64) of ``data``; ``decode`` of them gives ``data`` back, for any bytes."""
        data = bytes(data)
        if not data:
            return np.zeros(0, dtype=np.int64)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # Each undecodable byte becomes a lone surrogate U+DC80..U+DCFF; these fall in the
            # byte-by-byte class below, and encoding back with surrogateescape restores the bytes.
            text = data.decode("utf-8", "surrogateescape")

        # parts alternates [BPE run, raw run, BPE run, ..., BPE run]; raw runs are non-empty,
        # BPE runs may be empty (at the ends, or nowhere else since raw runs are maximal).
        parts = self._raw_split.split(text)
        bpe_ids, bpe_counts = self._encode_bpe_runs(parts[0::2])
        if len(parts) == 1:
            out = bpe_ids
        else:
            raw_ids, raw_counts = self._encode_raw_runs(parts[1::2])
            # Interleave: segment lengths in output order are bpe0, raw0, bpe1, raw1, ..., bpe_last.
            seg_counts = np.empty(2 * len(bpe_counts) - 1, dtype=np.int64)
            seg_counts[0::2] = bpe_counts
            seg_counts[1::2] = raw_counts
            is_bpe = np.repeat(np.arange(len(seg_counts)) % 2 == 0, seg_counts)
            out = np.empty(len(is_bpe), dtype=np.int64)
            out[is_bpe] = bpe_ids
            out[~is_bpe] = raw_ids

        # Cheap guard against silent data loss: every byte must be accounted for, and BPE must not
        # have produced a special token (which decode would misread).
        total = int(self._token_len[out].sum())  # ESCAPE spells b"", its IDENT the one byte
        n_escaped = int((out == self.escape_id).sum())
        n_special = int(self._special_mask[out].sum())
        if total != len(data) or n_special != n_escaped:
            raise TokenizerError(
                f"internal error: tokenization lost data ({total} of {len(data)} bytes covered, "
                f"{n_special - n_escaped} stray special tokens)"
            )
        return out

    # -- decode -----------------------------------------------------------------------------------

    def decode(self, ids: IdsLike) -> bytes:
        """Bytes of a token-id sequence. Raises :class:`TokenizerError` for an id out of range, a
        special token other than the escape, an escape at the end, or an escape followed by a
        token that identifies no missing byte."""
        arr = _as_id_array(ids, self.vocab_size)
        if arr.size == 0:
            return b""
        special_pos = np.flatnonzero(self._special_mask[arr])
        if special_pos.size:
            # Validate all escapes at once, then replace each ESCAPE by a virtual id (vocab_size + i,
            # spelling the i-th missing byte) and drop the IDENT that follows it.
            bad = arr[special_pos] != self.escape_id
            if bad.any():
                p = int(special_pos[np.argmax(bad)])
                t = int(arr[p])
                raise TokenizerError(
                    f"special token {t} ({self.tokens[t]!r}) at position {p} cannot appear in lmzip data"
                )
            if special_pos[-1] == len(arr) - 1:
                raise TokenizerError(f"escape token {self.escape_id} at position {len(arr) - 1} ends the sequence")
            which = self._ident_index[arr[special_pos + 1]]
            bad = which < 0
            if bad.any():
                p = int(special_pos[np.argmax(bad)])
                t = int(arr[p + 1])
                raise TokenizerError(
                    f"escape token at position {p} is followed by token {t} ({self.tokens[t]!r}), "
                    "which identifies no escaped byte"
                )
            arr = arr.copy()
            arr[special_pos] = self.vocab_size + which
            arr = np.delete(arr, special_pos + 1)
        return b"".join(map(self._decode_table.__getitem__, arr.tolist()))

    def token_bytes(self, token_id: int) -> bytes:
        """Bytes spelled by one ordinary token (``b""`` for special tokens)."""
        if not 0 <= token_id < self.vocab_size:
            raise TokenizerError(f"token id {token_id} is out of range for a vocabulary of {self.vocab_size}")
        return self._bytes_table[token_id]


# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _module_source() -> bytes:
    """This module's source (part of the cached state's key); lmzip's version where it cannot be read."""
    try:
        return Path(__file__).read_bytes()
    except OSError:
        from lmzip import __version__

        return __version__.encode()


def load_tokenizer(directory_or_spec: PathLike | str) -> Tokenizer:
    """Rebuild a tokenizer.

    Accepts ``"bytes"`` (a :class:`ByteTokenizer`), a directory written by :meth:`Tokenizer.save`
    (or its ``lmzip_tokenizer.json``), or a ``.gguf`` file (:meth:`BPETokenizer.from_gguf`).
    """
    if isinstance(directory_or_spec, str) and directory_or_spec in ("bytes", "byte"):
        return ByteTokenizer()
    path = Path(directory_or_spec)
    if path.is_file() and path.suffix == ".gguf":
        return BPETokenizer.from_gguf(path)
    if path.is_file() and path.name == LMZIP_TOKENIZER_JSON:
        path = path.parent
    meta_path = path / LMZIP_TOKENIZER_JSON
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenizerError(f"no tokenizer at {directory_or_spec!s} (expected 'bytes', a .gguf file or a directory with {LMZIP_TOKENIZER_JSON})") from None
    except (OSError, ValueError) as e:
        raise TokenizerError(f"cannot read {meta_path}: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise TokenizerError(f"{meta_path} is not an lmzip tokenizer description")
    if meta.get("version") != _FORMAT_VERSION:
        raise TokenizerError(f"{meta_path}: unsupported tokenizer format version {meta.get('version')!r}")
    kind = meta.get("kind")
    if kind == ByteTokenizer.kind:
        tok: Tokenizer = ByteTokenizer()
        if "tokenizer_id" in meta and meta["tokenizer_id"] != tok.tokenizer_id:
            raise TokenizerError(f"{meta_path}: tokenizer_id {meta['tokenizer_id']} does not match {tok.tokenizer_id}")
        return tok
    if kind == BPETokenizer.kind:
        return BPETokenizer._load(path, meta)
    raise TokenizerError(f"{meta_path}: unknown tokenizer kind {kind!r}")
