"""Native token coding and adaptive prediction with the interfaces of ``coder.TokenEncoder``/
``TokenDecoder`` and ``adapt.AdaptivePredictor``: the same bytes, the same state, the same errors."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..predict.adapt import COMPONENTS, AdaptParams, state_digest
from ..coding.coder import CONSTRICTION_PRECISION, DEFAULT_TOP_K, DEFAULT_TOTAL_BITS, _check_params
from ..coding.coder import OVERREAD_ERROR
from ..coding.coder import _as_rows  # the reference's own row checks: the same errors
from ..errors import FormatError, TrailingDataError, TruncatedError
from . import _native


def _logits(z: Any) -> np.ndarray:
    """Logit rows as the native loops take them: int32 (``NativeModel.head_logits32``) as they are,
    anything else as int64."""
    if isinstance(z, np.ndarray) and z.dtype == np.int32 and z.flags.c_contiguous:
        return z
    return np.ascontiguousarray(z, dtype=np.int64)


def _symbols(symbols: Any) -> np.ndarray:
    if hasattr(symbols, "detach"):
        symbols = symbols.detach().cpu().numpy()
    s = np.asarray(symbols).reshape(-1)
    if s.size and s.dtype.kind not in "iu":
        raise ValueError(f"symbols must be integers, got dtype {s.dtype}")
    return np.ascontiguousarray(s, dtype=np.int64)


class NativeTokenEncoder:
    """``coder.TokenEncoder`` on the native range coder (identical bytes)."""

    def __init__(self, total_bits: int = DEFAULT_TOTAL_BITS, top_k: int = DEFAULT_TOP_K) -> None:
        _check_params(total_bits, top_k)
        self.total_bits, self.top_k = total_bits, top_k
        self._e = _native.TokenEncoder(total_bits, top_k)

    @property
    def num_symbols(self) -> int:
        return self._e.num_symbols

    @property
    def num_escapes(self) -> int:
        return self._e.num_escapes

    def encode(self, symbol: int, freqs: Any) -> None:
        self.encode_many([symbol], _as_rows(freqs, 1)[None])

    def encode_many(self, symbols: Sequence[int] | np.ndarray, freqs: Any) -> None:
        rows = _as_rows(freqs, 2)
        syms = _symbols(symbols)
        if syms.shape[0] != rows.shape[0]:
            raise ValueError(f"{syms.shape[0]} symbols but {rows.shape[0]} frequency rows")
        if rows.shape[0]:
            self._e.encode_many(syms, rows)

    def num_bytes(self) -> int:
        return 4 * self._e.num_words()

    def finish(self) -> bytes:
        return self._e.finish()


def _stream_error(code: int) -> FormatError:
    if code == -2:
        return OVERREAD_ERROR()
    return FormatError("corrupt coded token stream: no symbol's interval holds the coded point")


class NativeTokenDecoder:
    """``coder.TokenDecoder`` on the native range coder; always verifies (the shadow encoder is cheap)."""

    def __init__(self, data: bytes, total_bits: int = DEFAULT_TOTAL_BITS, top_k: int = DEFAULT_TOP_K,
                 verify: bool = True) -> None:
        _check_params(total_bits, top_k)
        self.total_bits, self.top_k = total_bits, top_k
        self._data = bytes(data)
        if self._data.endswith(b"\x00"):
            raise FormatError("coded token stream ends in a zero byte (corrupt or not canonical)")
        self._d = _native.TokenDecoder(self._data, total_bits, top_k)

    @property
    def num_symbols(self) -> int:
        return self._d.num_symbols

    @property
    def num_escapes(self) -> int:
        return self._d.num_escapes

    def decode(self, freqs: Any) -> int:
        sym = self._d.decode(_as_rows(freqs, 1))
        if sym < 0:
            raise _stream_error(sym)
        return sym

    def decode_run(self, predictor: "NativePredictor | None", rows: np.ndarray, guesses: list[int]) -> list[int]:
        """Decode from rows[0], rows[1], ... while the guesses hold (see ``codec._Stream.decode``);
        with a predictor the rows are the model's logits, else frequency rows."""
        out = _native.decode_logits(predictor._p if predictor else None, self._d, _logits(rows) if predictor else rows, guesses)
        if out and out[-1] < 0:
            raise _stream_error(out[-1])
        return out

    def check_end(self) -> None:
        canonical = self._d.canonical()
        if canonical == self._data:
            return
        if canonical.startswith(self._data):
            raise TruncatedError("coded token stream is truncated")
        if self._data.startswith(canonical):
            raise TrailingDataError("coded token stream has data left after the last symbol")
        raise FormatError("coded token stream is corrupt (not the encoding of what it decodes to)")


class NativePredictor:
    """``adapt.AdaptivePredictor`` natively: ``predict(z)`` then ``update(token)``, token after token."""

    def __init__(self, params: AdaptParams, exp_table: np.ndarray, vocab_size: int, classes: np.ndarray | None = None):
        params.validate()
        if params.mixer2 and (classes is None or len(classes) != vocab_size):
            raise ValueError("the second mixer needs the token classes of the vocabulary")
        self.p = params
        cls = None if classes is None else np.ascontiguousarray(classes, dtype=np.int64)
        self._p = _native.Predictor((params.bias_lr, params.bigram_lr, params.temp_lr, params.ngram_order,
                                     params.match, params.mix_lr, params.mixer2, params.exp3),
                                    np.ascontiguousarray(exp_table, dtype=np.int64), vocab_size, cls)

    def predict(self, z: np.ndarray) -> np.ndarray:
        return self._p.predict(_logits(z))

    def update(self, y: int) -> None:
        self._p.update(int(y))

    def encode_logits(self, encoder: NativeTokenEncoder, z: np.ndarray, targets: np.ndarray) -> None:
        """Predict, code and learn each row of z [n, V] with its target, in one native call."""
        _native.encode_logits(self._p, encoder._e, _logits(z), np.ascontiguousarray(targets, dtype=np.int64))

    @property
    def last(self) -> dict[str, int]:
        raw = self._p.last()
        names = ["teacher"] + [COMPONENTS[k] for k in range(1, 7)] + ["match"]
        return {name: int(v) for name, v in zip(names, raw) if v >= 0}

    def digest(self) -> str:
        return state_digest(**self._p.state())


class HostPool:
    """Threads for the host's side of a device decoding step: one token for each of many streams,
    each stream's predictor and decoder run by one task (``device_decode``)."""

    def __init__(self, threads: int) -> None:
        self._h = _native.HostPool(max(1, int(threads)))

    @property
    def threads(self) -> int:
        return self._h.threads

    def decode_step(self, predictors: "list[NativePredictor] | None", decoders: list[NativeTokenDecoder],
                    rows: np.ndarray, slots: list[int]) -> np.ndarray:
        """Stream i decodes one token from rows[slots[i]]: logits through predictors[i], or, with no
        predictors, frequencies as they are. Returns the symbols; a stream whose data is invalid
        raises its decoder's error."""
        preds = [p._p for p in predictors] if predictors else []
        syms = self._h.decode_step(preds, [d._d for d in decoders], _logits(rows) if predictors else rows, slots)
        if syms.size and syms.min() < 0:
            raise _stream_error(int(syms[syms < 0][0]))
        return syms
