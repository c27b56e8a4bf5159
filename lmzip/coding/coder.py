"""Entropy coding of model-predicted tokens with constriction's range coder.

The model hands us, for every token position, an integer frequency row ``f`` over the
vocabulary (``V`` entries, every entry >= 1, summing to exactly ``2**total_bits``); the
probability of symbol ``s`` is ``f[s] / 2**total_bits``.  This module turns those rows and the
actual symbols into bytes and back, deterministically and bit-exactly on every machine.

Usage::

    enc = TokenEncoder(total_bits=24, top_k=64)
    enc.encode_many(symbols, freqs)          # [N] ints, [N, V] int32/int64 (numpy or torch)
    data = enc.finish()                      # bytes
    dec = TokenDecoder(data, total_bits=24, top_k=64)
    symbols = [dec.decode(row) for row in rows_as_the_model_produces_them]
    dec.check_end()                          # raises FormatError subclasses on a bad stream

The number of symbols is *not* part of the coded stream: the caller stores it.

Two-stage coding
----------------
Each token is coded in (at most) two steps, so that the per-token model handed to constriction
has ``top_k + 1`` entries instead of ``V`` (on the CPU this costs about the same as one lazy
``V``-entry model, as ``torch.topk`` also reads the whole row; it pays where rows live on an
accelerator, as only the candidates cross to the CPU):

1. Stage 1 codes among the ``top_k`` most probable candidates plus one ESCAPE symbol.  The
   candidates are ordered by ``(frequency descending, token id ascending)`` -- a total order,
   so the selection does not depend on any library's tie-breaking.  Candidate ``r`` (its rank)
   gets its own frequency, ESCAPE (index ``top_k``) gets the rest of the mass,
   ``E = 2**total_bits - sum(top frequencies)``.  Stage 1 is *exact*: constriction codes
   exactly these integers.
2. Only if the token is not a candidate, stage 2 codes it among the remaining ``V - top_k``
   symbols (ascending token id) with frequencies proportional to their own.  Their total is
   ``E``, which is generally not a power of two, so they are rescaled to ``2**24`` with exact
   integer arithmetic: ``cum_q[i] = floor(C[i] * 2**24 / E)`` where ``C`` is the inclusive
   cumulative sum, ``q = diff(cum_q)``.  Since ``E <= 2**24`` every ``q >= 1``.  This is the
   only loss against the ideal code length (a KL divergence that is tiny in practice; see
   ``benchmarks/coder_cost.py``).

If ``V <= top_k`` or ``top_k == 0`` there is a single stage over the whole row, in token-id
order, which is exact.  Nothing is coded for a certain choice: ``V == 1``, or stage 2 when
``V == top_k + 1``.

How exact integers reach constriction
-------------------------------------
constriction's Python range coder has a fixed precision of 24 bits.  Its
``Categorical(perfect=False)`` models (lazy or not) quantise float weights ``w`` (``n`` of them)
as ``cdf[i] = floor(W[i] * scale) + i`` with ``W`` the running float sum of ``w[:i]`` and
``scale = (2**24 - n) / sum(w)``: one slot per symbol is reserved, the rest is distributed
proportionally.  Feeding ``p = f / 2**24`` therefore does *not* reproduce ``f`` (every symbol
would get about ``f * (1 - n / 2**24) + 1``).  Feeding ``w = f' - 1`` (``f'`` our integer
frequencies scaled to sum to ``2**24``) does: every running sum is an integer below ``2**24``
(exact in float64, even float32), ``sum(w) = 2**24 - n`` so ``scale`` is exactly 1.0, and
``cdf[i] = W[i] + i = f'[0] + ... + f'[i-1]``.  So the format is defined by our integer
frequencies alone, not by constriction's float code; ``tests/test_coder.py`` checks this by
comparing the bytes against a pure-Python re-implementation of the range coder that is given the
integer cumulative frequencies directly.

Byte format
-----------
constriction produces 32-bit words.  They are written big-endian and trailing zero bytes are
dropped (the decoder re-pads with zeros, and constriction's decoder reads zeros past the end
anyway), so a non-empty stream never ends in a zero byte.  The empty message is ``b""``.

Error detection
---------------
constriction's range decoder never fails on garbage: any bytes decode to *some* symbols, and
reads past the end see zero words.  ``TokenDecoder`` therefore re-encodes every decoded symbol
into a shadow encoder (``verify=True``, the default; cheap) and ``check_end`` demands that the
data be exactly the canonical encoding of the decoded symbols: ``TruncatedError`` for a strict
prefix, ``TrailingDataError`` for an extension, ``FormatError`` otherwise.  A stream ending in a
zero byte is rejected up front.  What is *not* detectable here: corruption that happens to yield
the canonical encoding of other symbols (the container's checksum is the real integrity check).
"""

from __future__ import annotations

from typing import Any, Sequence

from typing import TYPE_CHECKING

import constriction
import numpy as np

from lmzip.errors import FormatError, TrailingDataError, TruncatedError

__all__ = [
    "CONSTRICTION_PRECISION",
    "DEFAULT_TOP_K",
    "DEFAULT_TOTAL_BITS",
    "TokenDecoder",
    "TokenEncoder",
    "ideal_bits",
    "select_top_k",
]

#: Fixed-point precision of constriction's Python ``RangeEncoder``/``RangeDecoder`` (u32 words,
#: u64 state, 24-bit probabilities).
CONSTRICTION_PRECISION = 24
DEFAULT_TOTAL_BITS = 24
DEFAULT_TOP_K = 64

# Rows processed per vectorised step in ``encode_many`` (bounds temporaries: 64 x 49152 ints).
_CHUNK_ROWS = 64

_Categorical = constriction.stream.model.Categorical
# One model *family*; its parameters are given per call.  perfect=False => lazy fast quantiser.
_FAMILY = _Categorical(perfect=False)


if TYPE_CHECKING:
    import torch


def _is_tensor(x: Any) -> bool:
    """A torch tensor (checked without importing torch: the native path runs without it)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _check_params(total_bits: int, top_k: int) -> None:
    if not isinstance(total_bits, int) or not 1 <= total_bits <= CONSTRICTION_PRECISION:
        raise ValueError(f"total_bits must be an int in 1..{CONSTRICTION_PRECISION}, got {total_bits!r}")
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be a non-negative int, got {top_k!r}")


def _as_rows(freqs: Any, ndim: int, keep_device: bool = False) -> np.ndarray | torch.Tensor:
    """``freqs`` (numpy array or torch tensor, int32/int64) as a C-contiguous numpy array.

    No copy for CPU data of those dtypes.  With ``keep_device`` a tensor on an accelerator is
    returned as a tensor on that device (the top-K work then runs there).  CPU work is done in
    numpy on purpose: small multi-threaded torch ops can stall badly on a busy machine.
    """
    if _is_tensor(freqs):
        import torch

        t = freqs.detach()
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"frequencies must be integers, got dtype {t.dtype}")
        if t.dtype not in (torch.int32, torch.int64):
            t = t.to(torch.int64)
        if t.device.type != "cpu" and keep_device:
            if t.dim() != ndim or t.shape[-1] < 1:
                raise ValueError(f"expected a {ndim}-d frequency array with rows, got shape {tuple(t.shape)}")
            return t.contiguous()
        a = t.cpu().numpy()
    else:
        a = np.asarray(freqs)
        if a.dtype.kind not in "iu":
            raise ValueError(f"frequencies must be integers, got dtype {a.dtype}")
        if a.dtype not in (np.int32, np.int64):
            a = a.astype(np.int64)
    if a.ndim != ndim or a.shape[-1] < 1:
        raise ValueError(f"expected a {ndim}-d frequency array with rows, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _validate(rows: np.ndarray | torch.Tensor, total_bits: int) -> None:
    """Every entry >= 1 and every row sums to exactly 2**total_bits (rows: [n, V]).

    Not only a courtesy: an entry <= 0 would hand constriction a negative weight.
    """
    if rows.shape[0] == 0:
        return
    if _is_tensor(rows):
        low = int(rows.min())
        sums = rows.sum(dim=1).cpu().numpy()  # int64 for integer input
    else:
        low = int(rows.min())
        sums = rows.sum(axis=1, dtype=np.int64)
    if low < 1:
        raise ValueError("frequency rows must have every entry >= 1")
    bad = sums != (1 << total_bits)
    if bad.any():
        raise ValueError(
            f"frequency rows must sum to 2**{total_bits} = {1 << total_bits}, got {int(sums[bad][0])}"
        )


def select_top_k(rows: np.ndarray | torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best entries of each row, ordered by (frequency desc, token id asc).

    ``rows``: integer array or tensor ``[n, V]`` (any device) with ``1 <= k < V``.  Returns ``(ids, freqs)``,
    both int64 numpy arrays ``[n, k]``.  The result is fully determined by the data (ties broken
    by the smaller id), independent of how ``torch.topk`` picks or orders equal values.
    """
    n, v = rows.shape
    if not 1 <= k < v:
        raise ValueError(f"need 1 <= k < V, got k={k}, V={v}")
    # Take k2 > k candidates.  The multiset of the k2 largest values is unique; if the k-th
    # largest value is bigger than the k2-th, every entry >= the k-th value is a candidate, so
    # ordering the candidates by the unique key (freq desc, id asc) and keeping k is exact,
    # whichever of several equal entries topk happened to pick at the k2 boundary.
    k2 = min(v, k + max(16, k // 4))
    t = rows
    if _is_tensor(rows):
        import torch

        vals_t, idx_t = torch.topk(t, k2, dim=1, largest=True, sorted=True)
        vals = vals_t.cpu().numpy().astype(np.int64)
        idx = idx_t.cpu().numpy().astype(np.int64)
    else:
        part = np.argpartition(t, v - k2, axis=1)[:, v - k2:]  # the k2 largest, in no order
        pv = np.take_along_axis(t, part, 1).astype(np.int64)
        order = np.argsort(-pv, axis=1, kind="stable")
        idx = np.take_along_axis(part, order, 1).astype(np.int64)
        vals = np.take_along_axis(pv, order, 1)
    if k2 < v:
        unsure = np.flatnonzero(vals[:, k - 1] == vals[:, k2 - 1])
        for r in unsure.tolist():  # more than k2 - k ties at the k-th value: exact pass over the row
            row = t[r].cpu().numpy() if _is_tensor(t) else t[r]
            kth = vals[r, k - 1]
            above = np.flatnonzero(row > kth)
            equal = np.flatnonzero(row == kth)[: k - above.shape[0]]  # the smallest ids
            idx[r, :k] = np.concatenate([above, equal])
            vals[r, :k] = row[idx[r, :k]]
            vals[r, k:] = -1  # sorts after the k exact picks
    # freq <= 2**24 and id < 2**31: the key is unique and fits int64.
    order = np.argsort((vals << 32) - idx, axis=1)[:, : -k - 1 : -1]
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(vals, order, axis=1)


def _stage1_weights(top_f: np.ndarray, total_bits: int) -> np.ndarray:
    """[n, k] candidate frequencies -> float64 [n, k + 1] weights (candidates, then ESCAPE).

    Weight = (frequency scaled to 2**24) - 1: constriction then reproduces the integers exactly.
    """
    shift = CONSTRICTION_PRECISION - total_bits
    n, k = top_f.shape
    w = np.empty((n, k + 1), dtype=np.float64)
    w[:, :k] = (top_f << shift) - 1
    w[:, k] = (((1 << total_bits) - top_f.sum(axis=1)) << shift) - 1
    return w


def _single_weights(rows: np.ndarray, total_bits: int) -> np.ndarray:
    """[n, V] frequencies -> float64 [n, V] weights (frequency scaled to 2**24, minus 1)."""
    shift = CONSTRICTION_PRECISION - total_bits
    if shift:
        rows = rows.astype(np.int64) << shift
    return np.subtract(rows, 1, dtype=np.float64)


def _stage2_weights(row: np.ndarray, top_ids: np.ndarray) -> np.ndarray:
    """Stage-2 weights for one row: the non-candidates in ascending id order, float64 [V - k].

    The remaining frequencies (total E = escape mass <= 2**24) are rescaled to exactly 2**24
    with integer arithmetic, ``cum_q = floor(C * 2**24 / E)`` on the inclusive cumulative sums
    ``C``; each ``q = diff(cum_q) >= 1`` because every frequency is >= 1 and E <= 2**24.  The
    weights ``q - 1`` make constriction reproduce ``q`` exactly.
    """
    cum = np.cumsum(np.delete(row, top_ids), dtype=np.int64)
    cum_q = (cum << CONSTRICTION_PRECISION) // int(cum[-1])  # <= 2**48: no overflow
    w = np.empty(cum_q.shape[0], dtype=np.float64)
    w[0] = cum_q[0] - 1
    np.subtract(cum_q[1:], cum_q[:-1], out=w[1:])
    w[1:] -= 1
    return w


def _stage2_index(symbol: int, sorted_top: np.ndarray) -> int:
    """Index of ``symbol`` (not a candidate) among the non-candidates in ascending id order."""
    return symbol - int(np.searchsorted(sorted_top, symbol))


def _stage2_symbol(index: int, sorted_top: np.ndarray) -> int:
    """Inverse of ``_stage2_index``: the ``index``-th non-candidate id."""
    s = index
    for t in sorted_top.tolist():  # ascending; each candidate at or below s pushes s up by one
        if t <= s:
            s += 1
        else:
            break
    return s


def _words_to_bytes(words: np.ndarray) -> bytes:
    return words.astype(">u4").tobytes().rstrip(b"\x00")


class TokenEncoder:
    """Range-encodes symbols, each under its own integer frequency row.

    ``total_bits``: every row sums to ``2**total_bits`` (<= 24).  ``top_k``: number of stage-1
    candidates (0 = always code the whole row in one stage).  Encoder and decoder must use the
    same ``total_bits`` and ``top_k``: both are part of the format.
    """

    def __init__(self, total_bits: int = DEFAULT_TOTAL_BITS, top_k: int = DEFAULT_TOP_K) -> None:
        _check_params(total_bits, top_k)
        self.total_bits = total_bits
        self.top_k = top_k
        self._enc = constriction.stream.queue.RangeEncoder()
        self._finished = False
        #: number of symbols encoded so far / how many needed the escape (stage 2)
        self.num_symbols = 0
        self.num_escapes = 0

    def encode(self, symbol: int, freqs: Any) -> None:
        """Encode one symbol under the frequency row ``freqs`` ([V])."""
        self.encode_many([symbol], _as_rows(freqs, 1, keep_device=True)[None])

    def encode_many(self, symbols: Sequence[int] | np.ndarray | torch.Tensor, freqs: Any) -> None:
        """Encode ``symbols[i]`` under row ``freqs[i]`` for i = 0..N-1 (``freqs``: [N, V]).

        ``freqs`` may live on an accelerator: the top-K selection then runs there and only the
        candidates (and the rows of escaped tokens) are copied to the CPU.
        """
        if self._finished:
            raise ValueError("encoder already finished")
        rows = _as_rows(freqs, 2, keep_device=True)
        if _is_tensor(symbols):
            syms = symbols.detach().cpu().numpy()
        else:
            syms = np.asarray(symbols)
        syms = syms.reshape(-1)
        if syms.size and syms.dtype.kind not in "iu":
            raise ValueError(f"symbols must be integers, got dtype {syms.dtype}")
        syms = syms.astype(np.int64)
        n, v = rows.shape
        if syms.shape[0] != n:
            raise ValueError(f"{syms.shape[0]} symbols but {n} frequency rows")
        if n == 0:
            return
        if int(syms.min()) < 0 or int(syms.max()) >= v:
            raise ValueError(f"symbol out of range 0..{v - 1}")
        for start in range(0, n, _CHUNK_ROWS):
            self._encode_chunk(syms[start : start + _CHUNK_ROWS], rows[start : start + _CHUNK_ROWS])
        self.num_symbols += n

    def _encode_chunk(self, syms: np.ndarray, rows: np.ndarray | torch.Tensor) -> None:
        _validate(rows, self.total_bits)
        n, v = rows.shape
        k = self.top_k
        if v == 1:
            return  # a certain symbol costs nothing
        if k == 0 or v <= k:
            if _is_tensor(rows):
                rows = rows.cpu().numpy()
            self._enc.encode(syms.astype(np.int32), _FAMILY, _single_weights(rows, self.total_bits))
            return
        top_np, top_f = select_top_k(rows, k)
        weights = _stage1_weights(top_f, self.total_bits)
        hits = top_np == syms[:, None]  # [n, k]; at most one True per row
        found = hits.any(axis=1)
        stage1 = np.where(found, hits.argmax(axis=1), k).astype(np.int32)
        escaped = np.flatnonzero(~found)
        if escaped.size == 0:
            self._enc.encode(stage1, _FAMILY, weights)
            return
        self.num_escapes += int(escaped.size)
        if _is_tensor(rows):
            import torch

            esc_rows = rows.index_select(0, torch.from_numpy(escaped).to(rows.device)).cpu().numpy()
        else:
            esc_rows = rows[escaped]
        start = 0
        for e, r in enumerate(escaped.tolist()):
            # Stage-1 symbols up to and including row r's ESCAPE, then row r's stage 2: the
            # decoder needs them in exactly this order.
            self._enc.encode(stage1[start : r + 1], _FAMILY, weights[start : r + 1])
            if v - k > 1:  # a single non-candidate is certain once ESCAPE is coded
                w2 = _stage2_weights(esc_rows[e], top_np[r])
                j = _stage2_index(int(syms[r]), np.sort(top_np[r]))
                self._enc.encode(np.array([j], dtype=np.int32), _FAMILY, w2[None, :])
            start = r + 1
        if start < n:
            self._enc.encode(stage1[start:], _FAMILY, weights[start:])

    def num_bytes(self) -> int:
        """Upper bound of the size ``finish()`` would return now (trailing zero bytes are dropped)."""
        return 4 * self._enc.num_words()

    def finish(self) -> bytes:
        """The compressed bytes; the encoder accepts no more symbols afterwards."""
        self._finished = True
        return _words_to_bytes(self._enc.get_compressed())


#: Words a valid stream's decoder reads past the end of its payload at most (bar 2**-64; see
#: FORMAT.md 7.3): beyond that the stream claims more symbols than its payload holds.
MAX_OVERREAD = 3


def OVERREAD_ERROR() -> FormatError:
    return FormatError("coded token stream claims more tokens than its payload holds")


class TokenDecoder:
    """Decodes what ``TokenEncoder`` wrote, one symbol per call, given the same frequency rows.

    Construct with the bytes of exactly one encoder's ``finish()`` and the same ``total_bits``
    and ``top_k``.  After the last symbol call ``check_end``.

    With ``verify=True`` (default) every decoded symbol is also re-encoded into a shadow encoder
    (a few microseconds per token), so that ``check_end`` can insist that ``data`` is exactly the
    canonical encoding of the decoded symbols: this catches trailing bytes, and most truncation
    and corruption (a damaged stream passes only if it happens to be the exact canonical encoding
    of whatever it decoded to; measured: ~94% of random truncations and single bit flips of a
    100-token V=49152 stream are caught, ~6% decode to wrong symbols unnoticed).
    """

    def __init__(
        self,
        data: bytes,
        total_bits: int = DEFAULT_TOTAL_BITS,
        top_k: int = DEFAULT_TOP_K,
        verify: bool = True,
    ) -> None:
        _check_params(total_bits, top_k)
        self.total_bits = total_bits
        self.top_k = top_k
        self._data = bytes(data)
        if self._data.endswith(b"\x00"):
            raise FormatError("coded token stream ends in a zero byte (corrupt or not canonical)")
        pad = -len(self._data) % 4
        words = np.frombuffer(self._data + b"\x00" * pad, dtype=">u4").astype(np.uint32)
        self._dec = constriction.stream.queue.RangeDecoder(words)
        self._shadow = constriction.stream.queue.RangeEncoder() if verify else None
        # The decoder's range, followed alongside constriction's to count the words it reads
        # (two ahead, one per renormalisation): constriction reads zeros past the end silently.
        self._range, self._reads, self._words = (1 << 64) - 1, 2, len(words)
        self.num_symbols = 0
        self.num_escapes = 0

    def _decode_one(self, weights: np.ndarray, n: int) -> int:
        """Decode an index in 0..n-1 under exact integer weights (see module docstring)."""
        model = _Categorical(weights, lazy=True, perfect=False)
        try:
            index = int(self._dec.decode(model))
        except (AssertionError, ValueError) as e:  # constriction: invalid data / state
            raise FormatError(f"corrupt coded token stream: {e}") from e
        if not 0 <= index < n:  # cannot happen with constriction 0.5; keep garbage from escaping
            raise FormatError(f"decoded index {index} outside 0..{n - 1}")
        self._range = (self._range >> 24) * (int(weights[index]) + 1)  # q = weight + 1, in 2**-24
        if self._range < 1 << 32:
            self._range <<= 32
            self._reads += 1
            if self._reads - self._words > MAX_OVERREAD:
                raise OVERREAD_ERROR()
        if self._shadow is not None:
            self._shadow.encode(index, model)
        return index

    def decode(self, freqs: Any) -> int:
        """Decode the next symbol, whose frequency row (as given to the encoder) is ``freqs`` ([V])."""
        rows = _as_rows(freqs, 1)[None]
        _validate(rows, self.total_bits)
        v = rows.shape[1]
        k = self.top_k
        self.num_symbols += 1
        if v == 1:
            return 0
        if k == 0 or v <= k:
            return self._decode_one(_single_weights(rows, self.total_bits)[0], v)
        top_ids, top_f = select_top_k(rows, k)
        r = self._decode_one(_stage1_weights(top_f, self.total_bits)[0], k + 1)
        if r < k:
            return int(top_ids[0, r])
        self.num_escapes += 1
        j = 0
        if v - k > 1:
            j = self._decode_one(_stage2_weights(rows[0], top_ids[0]), v - k)
        return _stage2_symbol(j, np.sort(top_ids[0]))

    def check_end(self) -> None:
        """Call after the last symbol: raise if the data does not end where the symbols do.

        With ``verify``: ``TruncatedError`` if the data is a strict prefix of the canonical encoding
        of the decoded symbols, ``TrailingDataError`` if it extends it, ``FormatError`` if it differs
        otherwise.  Without ``verify`` only constriction's own test is available: it reports
        ``TrailingDataError`` when compressed words are left unread, but misses up to one extra
        32-bit word and any truncation.  Passing is no proof that the symbols are right.
        """
        if self._shadow is not None:
            canonical = _words_to_bytes(self._shadow.get_compressed())
            if canonical == self._data:
                return
            if canonical.startswith(self._data):
                raise TruncatedError("coded token stream is truncated")
            if self._data.startswith(canonical):
                raise TrailingDataError("coded token stream has data left after the last symbol")
            raise FormatError("coded token stream is corrupt (not the encoding of what it decodes to)")
        if not self._dec.maybe_exhausted():
            raise TrailingDataError("coded token stream has data left after the last symbol")


def ideal_bits(symbols: Any, freqs: Any, total_bits: int = DEFAULT_TOTAL_BITS) -> float:
    """Ideal code length in bits: ``sum(total_bits - log2(freqs[i, symbols[i]]))``."""
    rows = _as_rows(freqs, 2)
    if _is_tensor(symbols):
        symbols = symbols.detach().cpu().numpy()
    syms = np.asarray(symbols, dtype=np.int64).reshape(-1)
    if syms.shape[0] != rows.shape[0]:
        raise ValueError(f"{syms.shape[0]} symbols but {rows.shape[0]} frequency rows")
    f = rows[np.arange(rows.shape[0]), syms].astype(np.float64)
    return float(np.sum(total_bits - np.log2(f)))
