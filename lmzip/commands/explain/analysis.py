"""The analysis behind ``lmzip explain``: what each token of a file costs, coded as compression codes it.

The model reads the file exactly as the compressor would code it as **one segment** (same
tokenization, same sliding windows, same integer frequency rows), and every token gets its
ideal code length ``bits = total_bits - log2(f[token])``: what the range coder spends on it,
give or take the coder's overhead (a few dozen bits per segment). Their sum equals
``codec.lm_cost_bits``; the frequency rows are also fed to a real ``TokenEncoder``, so the
summary states the payload an actual compression of this one segment produces, byte for byte.

numpy and the codec are imported inside the functions: the command's module is loaded with
every ``lmzip`` command, and this one with it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .visible import _display_pieces, _vocab_label, token_label

GUESSES = 5  # the model's top guesses kept per position


@dataclass
class Explanation:
    """Per-token costs of one file coded as one LM segment (numpy arrays of length ``n``)."""

    name: str
    data: bytes
    model_id: str
    vocab_size: int
    window: int
    overlap: int
    total_bits_precision: int  # frequency rows sum to 2**this
    top_k: int
    ids: Any  # int64 [n] token ids
    offsets: Any  # int64 [n + 1] byte offset of each token in ``data``
    freq: Any  # int64 [n] frequency of the actual token
    bits: Any  # float64 [n] = precision - log2(freq)
    rank: Any  # int64 [n] 1-based rank of the actual token in the coder's order (freq desc, id asc)
    guess_ids: Any  # int64 [n, k] the model's top guesses, best first
    guess_freq: Any  # int64 [n, k]
    escaped: Any  # bool [n]: token spells an escaped byte (it follows a zero-byte escape token)
    total: float  # sum of bits, accumulated exactly like codec.lm_cost_bits
    windows: list  # (start, context, length) of each model window, as codec.windows yields them
    payload_bytes: int  # the LM payload an actual compression of this segment produces
    file_bytes: int  # the whole .lmz file for that one-segment compression (fallback off)
    fallback_method: str  # what the compressor would use instead, and its payload size
    fallback_bytes: int
    auto_segments: int  # segments lmzip compress would cut this file into by default
    seconds: float
    plain_bits: Any = None  # float64 [n]: bits the model alone would have cost (= bits when not adapting)
    helper: Any = None  # int64 [n]: component (index into adapt.COMPONENTS) that gave the token the most probability, -1: none
    adaptation: str = "off"  # what the adaptive predictor ran with
    transformed: bool = False  # CRLF line ends were coded as LF (the text shown is what was coded)
    labels: dict[int, str] = field(default_factory=dict)  # token id -> readable label (ids used here)
    shown: list[str] = field(default_factory=list)  # display text of each token (escaped, see _visible)

    @property
    def n_windows(self) -> int:
        return len(self.windows)

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def bits_per_byte(self) -> float | None:
        return self.total / len(self.data) if self.data else None

    @property
    def bits_per_token(self) -> float | None:
        return self.total / self.n if self.n else None

    def label(self, i: int) -> str:
        """Readable label of token i as it appears in the file (escaped bytes resolved)."""
        if self.escaped[i]:
            b = self.data[self.offsets[i] : self.offsets[i + 1]]
            return token_label(b) + " (escaped byte)"
        return self.labels[int(self.ids[i])]


def explain(lm, data: bytes, params=None, *, name: str = "", guesses: int = GUESSES,
            progress: Callable[[int], None] | None = None) -> Explanation:
    """Run ``lm`` (a ``zoo.LoadedModel``) over ``data`` as one segment under ``params`` (a ``CodecParams``)."""
    import numpy as np

    from ...coding import container as C
    from ...coding import transforms
    from ...predict.adapt import COMPONENTS
    from ...coding.codec import (
        CodecParams,
        make_header,
        new_encoder,
        predicted_rows,
        split_segments,
        to_numpy,
        windows,
    )
    from ...coding.coder import ideal_bits, select_top_k

    t0 = time.monotonic()
    p = params or CodecParams()
    p.validate(lm.model.cfg.max_context)
    data = bytes(data)
    model, tok = lm.model, lm.tokenizer
    V = int(model.vocab_size)
    k = max(0, min(guesses, V - 1))
    # -- the rows compression codes (codec.predicted_rows), summed and coded as it does ---------
    original = data
    tf = transforms.choose(data, p.transforms)
    data = transforms.forward(data, tf)  # what the model sees; shown as such
    ids = tok.encode(data)
    n = len(ids)
    targets = np.asarray(ids, dtype=np.int64)
    freq = np.zeros(n, dtype=np.int64)
    bits = np.zeros(n, dtype=np.float64)
    rank = np.zeros(n, dtype=np.int64)
    g_ids = np.zeros((n, k), dtype=np.int64)
    g_freq = np.zeros((n, k), dtype=np.int64)
    enc = new_encoder(lm, p.total_bits, p.top_k)  # the encoder compression uses: the real payload
    total = 0.0
    sched = list(windows(n, p.window, p.overlap))
    vocab_ids = np.arange(V, dtype=np.int64)
    plain = np.zeros(n, dtype=np.float64)
    helper = np.full(n, -1, dtype=np.int64)

    def learned(i: int, pred, z) -> None:  # the model alone, and the component that helped most
        f0 = int(to_numpy(model.logit_frequencies(z[None]))[0, ids[i]])
        plain[i] = p.total_bits - np.log2(float(f0))
        best = max(pred.last.items(), key=lambda kv: kv[1])
        helper[i] = COMPONENTS.index(best[0]) if best[1] > f0 else -1

    for a, b, f, part in predicted_rows(lm, ids, p, on_token=learned if p.adapt else None):
        rows = to_numpy(f)
        tg = targets[a:b]
        total += ideal_bits(tg, rows, p.total_bits)  # exactly lm_cost_bits' sum
        enc.encode_many(tg, rows)  # the encoder's calls (encode.SegmentCoder.feed): the real payload
        t = ids[a:b]
        fa = rows[np.arange(b - a), t].astype(np.int64)
        freq[a:b] = fa
        bits[a:b] = p.total_bits - np.log2(fa.astype(np.float64))
        rank[a:b] = 1 + (rows > fa[:, None]).sum(1) + ((rows == fa[:, None]) & (vocab_ids[None, :] < t[:, None])).sum(1)
        if k:
            gi, gf = select_top_k(rows, k)
            g_ids[a:b], g_freq[a:b] = gi, gf
        if progress and part is not None:
            progress(len(data) * part[1] // n - len(data) * part[0] // n)
    payload = enc.finish()
    if not p.adapt:
        plain[:] = bits
    # -- what a real compression of this one segment writes ---------------------------------
    segments = [C.Segment(C.METHOD_LM, tf, len(original), len(payload), n, C.crc32(original))] if data else []
    header = make_header(lm, p, segments, hashlib.sha256(original).digest())
    file_bytes = len(C.write_container(header, [payload] if data else []))
    fb_method, fb_payload = C.choose_fallback(original, p.format_version)
    auto = len(split_segments(original, CodecParams(window=p.window, overlap=p.overlap, adapt=p.adapt).segment_size(len(original))))
    offsets, escaped = _align(tok, data, ids)
    exp = Explanation(
        name=name, data=data, model_id=lm.id, vocab_size=V, window=p.window, overlap=p.overlap,
        total_bits_precision=p.total_bits, top_k=p.top_k, ids=np.asarray(ids, dtype=np.int64), offsets=offsets,
        freq=freq, bits=bits, rank=rank, guess_ids=g_ids, guess_freq=g_freq, escaped=escaped, total=total,
        windows=sched, payload_bytes=len(payload), file_bytes=file_bytes,
        fallback_method=C.METHOD_NAMES.get(fb_method, str(fb_method)),
        fallback_bytes=len(fb_payload), auto_segments=max(1, auto), seconds=0.0,
        plain_bits=plain, helper=helper, adaptation=p.adapt.describe() if p.adapt else "off", transformed=bool(tf),
    )
    used = set(exp.ids.tolist()) | set(g_ids.reshape(-1).tolist())
    exp.labels = {i: _vocab_label(tok, i) for i in sorted(used)}
    exp.shown = _display_pieces(data, offsets)
    exp.seconds = time.monotonic() - t0
    return exp


def _align(tok, data: bytes, ids) -> tuple[Any, Any]:
    """Byte offset of every token in ``data``. A token spelling no bytes (the BPE escape) makes
    the next token stand for exactly one (escaped) byte, whatever that token spells itself."""
    import numpy as np

    from ...errors import TokenizerError

    n = len(ids)
    offsets = np.zeros(n + 1, dtype=np.int64)
    escaped = np.zeros(n, dtype=bool)
    spelled = {i: tok.token_bytes(i) for i in set(np.asarray(ids).tolist())}
    pos, pending = 0, False
    for i, t in enumerate(np.asarray(ids).tolist()):
        offsets[i] = pos
        b = spelled[t]
        if pending:
            escaped[i], pending = True, False
            pos += 1
        elif not b:
            pending = True
        else:
            if data[pos : pos + len(b)] != b:
                raise TokenizerError(f"internal error: token {i} does not spell the data at byte {pos}")
            pos += len(b)
    offsets[n] = pos
    if pos != len(data) or pending:
        raise TokenizerError(f"internal error: tokens cover {pos} of {len(data)} bytes")
    return offsets, escaped


def most_expensive(exp: Explanation, top: int) -> list[int]:
    """Indices of the ``top`` most expensive tokens, most expensive first (ties: earlier first)."""
    import numpy as np

    if top <= 0 or not exp.n:
        return []
    order = np.lexsort((np.arange(exp.n), -exp.bits))
    return order[:top].tolist()
