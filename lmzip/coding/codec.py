"""Compression pipeline: bytes -> segments -> tokens -> exact model + range coder -> .lmz, and back.

Segments are independent (own tokenization, own coder stream), so the decoder can run
many of them as one batch. Inside a segment the model sees a sliding window of ``window``
tokens; each new window re-reads the last ``overlap`` tokens as context so that no token
is predicted cold, except at the very start of a segment. The encoder evaluates a window
in one full-sequence forward; the decoder steps token by token with a KV cache. The exact
model makes both give the same frequencies.

With ``CodecParams.adapt`` (the default) the model's integer logits go through the
adaptive predictor (``adapt.py``), which learns the segment as it is coded; the decoder
learns the same from the same tokens. Segments whose line ends are all CRLF are coded as
LF (``transforms.py``) and restored on decoding.

A segment falls back to stored bytes, zstd or xz whenever that is smaller, so binary or
incompressible input grows by no more than the container overhead; segments that do not look
like text (``sniff.py``) go to the fallback without running the model at all.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from . import container as C
from . import transforms
from ..model import zoo
from ..predict.adapt import AdaptParams, AdaptivePredictor, token_classes
from .coder import TokenDecoder, TokenEncoder
from ..predict.draft import Drafter
from ..errors import FormatError, ModelMismatchError
from .schedule import windows  # noqa: F401 - codec.windows, as before
from ..model.zoo import LoadedModel

Progress = Callable[[int], None]  # called with the number of original bytes just finished
AUTO_STREAMS = 16
MIN_STREAM_SEGMENT = 16 << 10  # segments asked for by number (CodecParams.streams) are no smaller
# The encoder runs a window through the model in parts this long, and may give up after each.
FORWARD_CHUNK = 1024
GIVE_UP_AFTER = 2048  # tokens coded before the encoder may give a segment up
CACHE_TOKEN_SLOTS = 16 * 2048  # a decoding batch holds at most this many windows' tokens (~1.5 GB for the teacher)
# What a decoding stream holds besides the cache grows with its segment's tokens: the adaptive
# predictor's n-gram and match state and the tokens themselves, ~120 bytes a token measured
# (benchmarks/text_memory.py: 16 streams of 256K tokens, 552 MB). A batch holds at most this much.
STREAM_BYTES_PER_TOKEN = 128
STREAM_STATE_BUDGET = 1 << 30
# The native runtime's fused loops (model rows predicted, coded and learned in one call per slice);
# False takes the same steps one call at a time, so tests can watch the predictor between tokens.
FUSED = True


@dataclass(frozen=True)
class CodecParams:
    """Choices recorded in the header; the decoder never guesses them."""

    # Windows of 4096 re-reading 1024: -0.7% (alice29) to -5% (dpkg.log) against 2048/512, for
    # ~30% more encoding work on a CPU and the same decoding speed (docs/BENCHMARKS.md).
    window: int = 4096  # tokens the model sees at most
    overlap: int = 1024  # tokens of context re-read at each new window (0: independent windows)
    segment_bytes: int = 0  # target original bytes per segment; 0: automatic (see segment_size)
    streams: int = 0  # automatic segments: at least this many (a GPU decodes them at once); 0: the default
    total_bits: int = 24
    top_k: int = 64
    fallback: bool = True  # False: always use the model (for measurement and tests)
    adapt: AdaptParams | None = AdaptParams()  # None: the model alone
    transforms: bool = True  # allow reversible transforms (CRLF -> LF) where they apply
    # The container layout written: 3 (compact, xz fallback), or 1/2 to reproduce older files
    # byte for byte (those layouts also reproduce the older encoder's choices: no text sniffing).
    format_version: int = C.FORMAT_VERSION

    @staticmethod
    def schedule(max_context: int, window: int | None = None, overlap: int | None = None) -> tuple[int, int]:
        """(window, overlap) with the defaults filled in: the default window, or the model's whole
        context if that is shorter, and the default overlap, at most a quarter of the window."""
        if window is None:
            window = min(CodecParams.window, max_context)
        if overlap is None:
            overlap = min(CodecParams.overlap, window // 4)
        return window, overlap

    def validate(self, max_context: int) -> None:
        if not 1 <= self.window <= max_context:
            raise ValueError(f"window must be 1..{max_context} tokens")
        if not 0 <= self.overlap < self.window:
            raise ValueError("overlap must be smaller than the window")
        if self.segment_bytes < 0:
            raise ValueError("segment size must be positive (or 0 for automatic)")
        if self.streams < 0:
            raise ValueError("streams must be positive (or 0 for automatic)")
        if self.streams and self.segment_bytes:
            raise ValueError("a segment size and a number of streams are mutually exclusive")
        if self.format_version not in C.READ_VERSIONS:
            raise ValueError(f"format version must be one of {sorted(C.READ_VERSIONS)}")

    def segment_size(self, total: int) -> int:
        """Bytes per segment. Automatic: enough segments to decode ~16 streams as one batch
        (token-by-token decoding is ~6x faster per token at batch 16 than alone), but none
        under 24 KB, where the cold start of each segment would cost more than ~1% in ratio,
        or under 256 KB when adapting, the default: the model restarts cold and the
        predictor forgets what it learned at every segment (alice29.txt: 1.0297 bits/byte
        ideal as one segment, ~1.047 in three of 50 KB). Files up to 256 KB are then one
        segment, which a CPU decodes ~2x slower than three; ``--segment-size`` trades back.
        With ``streams``: that many segments (none under ``MIN_STREAM_SEGMENT``), for a GPU that
        decodes hundreds at once, at the ratio cost of their cold starts (docs/BENCHMARKS.md)."""
        if self.segment_bytes:
            return self.segment_bytes
        if self.streams:
            streams, floor = self.streams, MIN_STREAM_SEGMENT
        else:
            streams, floor = AUTO_STREAMS, (256 << 10) if self.adapt else (24 << 10)
        size = min(1 << 20, max(floor, -(-total // streams)))
        return -(-total // max(1, -(-total // size)))  # equal parts: no short tail segment


def to_numpy(x) -> np.ndarray:
    """A model output (numpy, or a torch tensor of the reference runtime, any device) as numpy."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def logits_host(z) -> np.ndarray:
    """Integer logits for the native predictor: the native model's int32 rows as they are; the
    reference's int64 tensor narrowed to int32 on its device first (half the bytes to copy from a
    GPU), unless an entry exceeds 2**30 in magnitude (as ``NativeModel.head_logits32``: no real
    model's logits come near, but a narrowing must never wrap)."""
    if hasattr(z, "detach"):
        import torch

        z = z.detach()
        if z.dtype == torch.int64 and z.numel() and int(z.abs().amax()) <= 1 << 30:
            z = z.to(torch.int32)
        return z.cpu().numpy()
    return z


def is_native(lm: LoadedModel) -> bool:
    """Whether the model runs on the native runtime (then the coder and predictor do too)."""
    return getattr(lm.model, "runtime", "reference") == "native"


def coding_native(lm: LoadedModel) -> bool:
    """Whether the coder and the adaptive predictor run natively: with the native model; with the
    torch reference on a GPU whenever the extension is built (the host's side of a GPU step, where
    numpy's predictor at ~1 ms a token would be the whole time); with the reference on a CPU only
    if ``LMZIP_CODING=native`` (the reference path stays the oracle). ``LMZIP_CODING=reference``
    keeps them in Python everywhere. Either computes the same integers and bytes."""
    import os

    from .. import native

    choice = os.environ.get("LMZIP_CODING", "").strip().lower()
    if choice == "reference":
        return False
    if is_native(lm):
        return True
    device = getattr(getattr(lm.model, "device", None), "type", "cpu")
    return (choice == "native" or device != "cpu") and native.available()


def new_encoder(lm: LoadedModel, total_bits: int, top_k: int):
    if coding_native(lm):
        from ..native.coding import NativeTokenEncoder

        return NativeTokenEncoder(total_bits=total_bits, top_k=top_k)
    return TokenEncoder(total_bits=total_bits, top_k=top_k)


def new_decoder(lm: LoadedModel, data: bytes, total_bits: int, top_k: int):
    if coding_native(lm):
        from ..native.coding import NativeTokenDecoder

        return NativeTokenDecoder(data, total_bits=total_bits, top_k=top_k)
    return TokenDecoder(data, total_bits=total_bits, top_k=top_k)


def segment_end(data: bytes | bytearray, start: int, target: int) -> int:
    """Where the segment that starts at ``start`` ends: ``target`` bytes on, or just after the
    last newline in the second half of that span if it has one (the last segment ends with the
    data). The one cut rule of whole inputs (``split_segments``) and streamed ones
    (``streaming.Splitter``)."""
    end = min(len(data), start + target)
    if end < len(data):
        nl = data.rfind(b"\n", start + target // 2, end)
        if nl >= 0:
            end = nl + 1
    return end


def split_segments(data: bytes | memoryview, target: int) -> list[tuple[int, int]]:
    """Cut data into (offset, length) pieces of about ``target`` bytes (``segment_end``)."""
    data = bytes(data) if isinstance(data, memoryview) else data
    out, pos = [], 0
    while pos < len(data):
        end = segment_end(data, pos, target)
        out.append((pos, end - pos))
        pos = end
    return out


# -- encoding ----------------------------------------------------------------------------


def coded_rows(lm: LoadedModel, ids: np.ndarray, p: CodecParams, kind: str = "frequencies"
               ) -> Iterator[tuple[int, int, np.ndarray, tuple[int, int] | None]]:
    """The model's rows for one segment's token ids, in coding order.

    Yields (a, b, rows, part): ``rows`` [b - a, V] predict ids[a:b] (``kind``:
    "frequencies", "logits" for the integer logits (int64), "logits32" for the same in int32
    where the runtime has them (the native one: half the bytes for the predictor to read), or
    "hidden" for the head's input [b - a, d]). Each window runs through the model in parts of ``FORWARD_CHUNK`` tokens
    (the rows do not depend on the split); on a part's last slice ``part`` is the
    (first, end) range of the tokens that part coded, else None, so callers can report
    progress or give up between parts. The head runs in slices of 256 rows (32 on the native
    runtime: 6 MB of int32 logits stay in the CPU's last-level cache for the predictor, where 256
    rows are 100 MB of fresh pages).
    """
    model, n = lm.model, len(ids)
    step = 32 if is_native(lm) else 256
    s = np.concatenate([[lm.tokenizer.bos_id], ids[:-1]]).astype(np.int64) if n else None
    head = {"frequencies": model.head_frequencies, "logits": model.head_logits, "hidden": lambda h: h,
            "logits32": getattr(model, "head_logits32", model.head_logits)}[kind]
    for start, ctx, length in windows(n, p.window, p.overlap):
        cache = model.new_cache(1, length)
        for c0 in range(0, length, FORWARD_CHUNK):
            c1 = min(length, c0 + FORWARD_CHUNK)
            h = model.hidden(cache, s[None, start + c0 : start + c1])
            first = max(ctx, c0)
            for r0 in range(first, c1, step):
                r1 = min(c1, r0 + step)
                part = (start + first, start + c1) if r1 == c1 else None
                yield start + r0, start + r1, head(h[0, r0 - c0 : r1 - c0]), part


def new_predictor(lm: LoadedModel, params: AdaptParams) -> AdaptivePredictor:
    V = lm.model.cfg.vocab_size
    classes = lm.extra.get("token_classes")
    if params.mixer2 and classes is None:  # once per loaded model: a pass over the vocabulary
        classes = lm.extra["token_classes"] = token_classes(lm.tokenizer.token_bytes, V)
    if coding_native(lm):
        from ..native.coding import NativePredictor

        return NativePredictor(params, to_numpy(lm.model.out_exp), V, classes)  # type: ignore[return-value]
    return AdaptivePredictor(params, to_numpy(lm.model.out_exp), V, classes)


TokenHook = Callable[[int, AdaptivePredictor, np.ndarray], None]


def learned_rows(pred: AdaptivePredictor, z: np.ndarray, ids: np.ndarray, a: int,
                 on_token: TokenHook | None = None) -> np.ndarray:
    """The adaptive predictor's rows for tokens a.. from the model's logits ``z`` (one row each),
    each token learned right after its row is made."""
    rows = np.empty(z.shape, dtype=np.int32)  # what the model gives the coder too
    for i in range(len(z)):
        rows[i] = pred.predict(z[i])
        pred.update(int(ids[a + i]))
        if on_token:
            on_token(a + i, pred, z[i])
    return rows


def predicted_rows(lm: LoadedModel, ids: np.ndarray, p: CodecParams, on_token: TokenHook | None = None
                   ) -> Iterator[tuple[int, int, np.ndarray, tuple[int, int] | None]]:
    """The frequency rows compression codes for one segment, in coding order (see ``coded_rows``):
    the model's own, or with ``p.adapt`` the adaptive predictor's, which learns each token
    after its row is made. ``on_token(i, predictor, logits)`` runs after token i is learned.
    Encoder, cost and explanation all read the model through here (or through
    ``SegmentCoder``'s fused equivalent), so they cannot disagree about what is coded."""
    if p.adapt is None:
        yield from coded_rows(lm, ids, p)
        return
    pred = new_predictor(lm, p.adapt)
    for a, b, z, part in coded_rows(lm, ids, p, kind="logits"):
        yield a, b, learned_rows(pred, to_numpy(z), ids, a, on_token), part


def compress(data: bytes, lm: LoadedModel, params: CodecParams | None = None, progress: Progress | None = None) -> bytes:
    """Compress bytes into a complete .lmz container (``streaming.StreamCompressor`` does the
    work: the same segments whether the input arrives whole or in pieces)."""
    import io

    from .streaming import StreamCompressor

    data = bytes(data)
    out = io.BytesIO()
    sc = StreamCompressor(lm, params or CodecParams(), total=len(data), progress=progress)
    sc.write(data)
    sc.finish(out)
    return out.getvalue()


@dataclass(frozen=True)
class ModelStamp:
    """What a header records of the model: enough for a process without the model (a cluster's
    driver) to write the header its workers' model implies."""

    id: str
    sha256: str
    tokenizer_id: str

    @classmethod
    def of(cls, lm: LoadedModel) -> "ModelStamp":
        return cls(lm.id, lm.sha256, lm.tokenizer.tokenizer_id)


def make_header(lm: "LoadedModel | ModelStamp", p: CodecParams, segments: list[C.Segment],
                sha256: bytes = b"") -> C.Header:
    """The header of data coded as ``segments`` with ``lm`` and ``p`` (compression and ``lmzip
    explain`` both write it here); ``sha256`` of the whole data for the legacy layouts (v3 has
    the segments' CRC-32s only)."""
    stamp = lm if isinstance(lm, ModelStamp) else ModelStamp.of(lm)
    legacy = p.format_version < 3
    return C.Header(
        original_size=sum(s.original_length for s in segments),
        original_sha256=sha256 if legacy else b"",
        segments=segments,
        model_id=stamp.id,
        model_sha256=bytes.fromhex(stamp.sha256),
        # A registered model is named by a hash prefix; the reader's registry knows the rest.
        model_ref=b"" if legacy or not zoo.is_registered(stamp.id) else bytes.fromhex(stamp.sha256)[: C.MODEL_REF_SIZE],
        tokenizer_id=stamp.tokenizer_id,
        total_bits=p.total_bits,
        top_k=p.top_k,
        window_tokens=p.window,
        overlap_tokens=p.overlap,
        context_policy=C.POLICY_SLIDING if p.overlap else C.POLICY_INDEPENDENT,
        predictor=p.adapt.to_bytes() if p.adapt and any(s.method == C.METHOD_LM for s in segments) else b"",
    )


# -- decoding ----------------------------------------------------------------------------


class _Stream:
    """Decoding state of one LM segment inside a batch."""

    def __init__(self, index: int, seg: C.Segment, payload, header: C.Header, bos: int,
                 predictor: AdaptivePredictor | None = None, decoder=None, native: bool = False,
                 drafting: bool = True):
        decoder = decoder or (lambda data, tb, k: TokenDecoder(data, total_bits=tb, top_k=k))
        self.index, self.n = index, seg.token_count
        self.original_length, self.reported = seg.original_length, 0  # for progress reports
        self.dec = decoder(bytes(payload), header.total_bits, header.top_k)
        # Grows with what decodes, never allocated from the header's claim; 4 bytes a token (a list
        # of ints costs ~36 for ids above 256, times up to 16 streams of a million tokens).
        self.tokens = array.array("i")
        self.sched = windows(self.n, header.window_tokens, header.overlap_tokens)
        self.bos = bos
        self.predictor = predictor
        self.drafter = Drafter() if drafting else None  # None: one token a step (device_decode)
        self.native = native
        self.start = self.ctx = self.length = self.row = 0

    def input(self, i: int) -> int:
        return self.bos if i == 0 else self.tokens[i - 1]

    def next_window(self) -> bool:
        for self.start, self.ctx, self.length in self.sched:
            self.row = self.ctx
            return True
        return False

    def accept(self, syms) -> None:
        """Take symbols decoded elsewhere (a native call) as the stream's next tokens."""
        self.tokens.extend(syms)
        if self.drafter is not None:
            for sym in syms:
                self.drafter.learn(sym)
        self.row += len(syms)

    def report(self, progress: Progress) -> None:
        """Progress in bytes, in proportion to the tokens decoded so far."""
        est = self.original_length * len(self.tokens) // max(1, self.n)
        progress(est - self.reported)
        self.reported = est

    def prefill(self, model, cache, slot: int) -> None:
        """Make ``slot`` of ``cache`` this stream at the start of its window: the context's
        keys/values computed alone and copied in (those rows were coded by the previous window)."""
        cache.reset(slot)
        if self.ctx:
            sub = model.new_cache(1, self.ctx)
            ctx = np.array([[self.input(self.start + i) for i in range(self.ctx)]], dtype=np.int64)
            model.hidden(sub, ctx)  # keys/values only
            cache.copy_stream(slot, sub)

    def decode(self, rows, guesses: list[int]) -> int:
        """Decode from rows[0], rows[1], ... while the guesses hold; return how many rows were used.

        Row k was computed with the guesses before it as input, so it is the true row only
        if those guesses were the tokens decoded (see ``draft.py``)."""
        if self.native:  # the same loop in one native call: predict, decode, learn per row
            room = min(len(guesses) + 1, self.length - self.row)
            syms = self.dec.decode_run(self.predictor, rows, guesses[: room - 1])
            self.accept(syms)
            return len(syms)
        used = 0
        while True:
            f = rows[used] if self.predictor is None else self.predictor.predict(rows[used])
            sym = self.dec.decode(f)
            if self.predictor is not None:
                self.predictor.update(sym)
            self.tokens.append(sym)
            if self.drafter is not None:
                self.drafter.learn(sym)
            self.row += 1
            used += 1
            if used > len(guesses) or sym != guesses[used - 1] or self.row == self.length:
                return used


STEP_ROWS = 32  # rows (streams x tokens) a decoding step may check at most
MAX_GUESSES = 15


def _decode_lm_batch(lm: LoadedModel, header: C.Header, streams: list[_Stream], progress: Progress | None = None) -> None:
    """Decode several LM segments in lockstep: each model step takes every stream's last
    decoded token plus its guesses of the next ones (``draft.py``), so a step decodes one
    or more tokens per stream.

    ``progress`` gets byte estimates (in proportion to tokens) every 32 steps."""
    model = lm.model
    active = [st for st in streams if st.next_window()]
    for st in streams:
        if st not in active:  # zero tokens: nothing to decode, but the stream must be empty
            st.dec.check_end()
    if not active:
        return
    # A window never holds more tokens than its segment: small inputs get a small cache.
    cache = model.new_cache(len(active), min(header.window_tokens, max(st.n for st in active)))

    for slot, st in enumerate(active):
        st.prefill(model, cache, slot)
    steps = 0
    while active:
        # Every stream's tokens sit at positions row, row + 1, ... of its window (cache.lengths == row).
        room = min(STEP_ROWS // len(active), MAX_GUESSES + 1, cache.capacity - max(st.row for st in active))
        guesses = [st.drafter.guess(max(0, min(room, st.length - st.row) - 1)) for st in active]
        n = 1 + max(map(len, guesses))
        first = [st.input(st.start + st.row) for st in active]
        inputs = np.array([[x, *g] + [x] * (n - 1 - len(g)) for x, g in zip(first, guesses)], dtype=np.int64)
        h = model.hidden(cache, inputs)
        if active[0].predictor is None:
            rows = model.head_frequencies(h)
        else:  # the adaptive predictor turns each stream's logits into its frequencies
            rows = (model.head_logits32(h) if is_native(lm) else logits_host(model.head_logits(h))) \
                if streams[0].native else to_numpy(model.head_logits(h))
        steps += 1
        if progress and steps % 32 == 0:
            for st in active:
                st.report(progress)
        done = []
        for slot, st in enumerate(active):
            st.decode(rows[slot], guesses[slot])
            cache.lengths[slot] = st.row  # forget the keys/values of rows whose guesses failed
            if st.row == st.length:
                if st.next_window():
                    st.prefill(model, cache, slot)
                else:
                    done.append(slot)
        if done:
            for st in (active[i] for i in done):
                st.dec.check_end()
            keep = [i for i in range(len(active)) if i not in done]
            active = [active[i] for i in keep]
            if active:
                cache.keep(keep)


def check_model(header: C.Header, lm: LoadedModel) -> None:
    """Refuse to decode with a model (or tokenizer) other than the one the file was made with."""
    if header.model_ref:  # a registered model, tokenizer included, named by its hash prefix
        if not (zoo.is_registered(lm.id) and lm.sha256.startswith(header.model_ref.hex())):
            raise ModelMismatchError(
                f"file was compressed with the registered model whose sha256 starts {header.model_ref.hex()}, "
                f"but {lm.id} has sha256 {lm.sha256[:16]}..."
            )
        return
    if header.model_sha256 != bytes.fromhex(lm.sha256):
        raise ModelMismatchError(
            f"file was compressed with model {header.model_id} (sha256 {header.model_sha256.hex()[:16]}...), "
            f"but {lm.id} has sha256 {lm.sha256[:16]}..."
        )
    if header.tokenizer_id != lm.tokenizer.tokenizer_id:
        raise ModelMismatchError(f"file needs tokenizer {header.tokenizer_id}, model has {lm.tokenizer.tokenizer_id}")


def needs_model(header: C.Header) -> bool:
    return any(s.method == C.METHOD_LM for s in header.segments)


def check_lm_segments(header: C.Header, lm: LoadedModel) -> None:
    """FormatError for anything in the header that the model-coded segments cannot honour, before
    any decoding work or allocation follows from it."""
    check_model(header, lm)
    if header.total_bits != lm.model.total_bits:  # the model's rows sum to 2**24: nothing else decodes
        raise FormatError(f"unsupported total_bits {header.total_bits} for model-coded segments")
    if header.window_tokens > lm.model.cfg.max_context:
        raise FormatError(f"window of {header.window_tokens} tokens exceeds the model's context of {lm.model.cfg.max_context}")
    for i, seg in enumerate(header.segments):
        # The tokenizer spells every byte with at most two tokens (an escape and its identifier),
        # so a segment's claimed token count is bounded by its original length: the decoding
        # work any file can ask for stays proportional to the output it declares.
        if seg.method == C.METHOD_LM and seg.token_count > 2 * seg.original_length:
            raise FormatError(f"segment {i} claims {seg.token_count} tokens for {seg.original_length} bytes "
                              f"(at most {2 * seg.original_length})")
        most = max_tokens(seg.payload_length, lm.model.cfg.vocab_size, header.top_k)
        if seg.method == C.METHOD_LM and most is not None and seg.token_count > most:
            raise FormatError(f"segment {i} claims {seg.token_count} tokens; its {seg.payload_length}-byte payload "
                              f"holds at most {most}")


def max_tokens(payload_length: int, vocab: int, top_k: int) -> int | None:
    """Most tokens a payload of this length can code (FORMAT.md 7.3), None if unbounded (V = 1).

    Every row gives each of the V tokens a frequency >= 1 out of 2**24, so a token costs at least
    m / 2**24 bits (m = V - 1, or V - K - 1 after an escape to stage 2); the decoder reads at most
    ``ceil(length / 4) + MAX_OVERREAD`` words in all, two ahead and one per 32 bits consumed, so
    the tokens' bits sum to at most 32 * (words + 2)."""
    m = vocab - 1
    if 0 < top_k < vocab - 1:
        m = vocab - top_k - 1
    if m < 1:
        return None
    words = -(-payload_length // 4)
    return (32 * (words + 2) << 24) // m


def check_decodable(header: C.Header, lm: LoadedModel | None) -> AdaptParams | None:
    """Everything checked before decoding starts (predictor parameters, the model and what its
    segments ask of it); returns the adaptive predictor's parameters, or None."""
    adapt = None
    if header.predictor:
        try:
            adapt = AdaptParams.from_bytes(header.predictor)
        except ValueError as exc:
            raise FormatError(f"unsupported adaptive predictor: {exc}") from None
    if needs_model(header):
        if lm is None:
            raise ValueError("a model is needed for this file")
        check_lm_segments(header, lm)
    return adapt


def lockstep_streams(batch: int, window: int, token_counts: list[int]) -> int:
    """How many streams decode together: at most ``batch``, as the KV cache's bound allows
    (``CACHE_TOKEN_SLOTS``), and as the streams' own state allows (``STREAM_STATE_BUDGET`` for the
    longest segment's tokens). The result cannot depend on it; only memory and speed do."""
    longest = max(token_counts, default=0)
    by_state = STREAM_STATE_BUDGET // max(1, longest * STREAM_BYTES_PER_TOKEN)
    return max(1, min(batch, CACHE_TOKEN_SLOTS // max(1, window), by_state))


def decode_group(header: C.Header, items: list, lm: LoadedModel | None, adapt: AdaptParams | None,
                 batch: int = 16, progress: Progress | None = None) -> dict[int, bytes]:
    """Decode some segments of a file checked by ``check_decodable``: ``items`` are
    (index, segment, payload); returns index -> verified bytes. Model-coded segments decode
    ``batch`` at a time in lockstep (one model step serves all)."""
    out: dict[int, bytes] = {}
    lm_segments = []
    for i, seg, payload in items:
        if seg.method == C.METHOD_LM:
            lm_segments.append((i, seg, payload))
        else:
            out[i] = C.decode_fallback_segment(seg, payload, i)
            if progress:
                progress(seg.original_length)
    if not lm_segments:
        return out
    native = coding_native(lm) and FUSED

    def make_stream(i: int, seg: C.Segment, payload, drafting: bool = True) -> _Stream:
        return _Stream(i, seg, payload, header, lm.tokenizer.bos_id, new_predictor(lm, adapt) if adapt else None,
                       lambda data, tb, k: new_decoder(lm, data, tb, k), native, drafting)

    def finish(st: _Stream) -> None:
        seg = header.segments[st.index]
        data = transforms.inverse(lm.tokenizer.decode(np.asarray(st.tokens, dtype=np.int64)), seg.transforms)
        C.verify_segment(seg, data, st.index)
        out[st.index] = data
        if progress:
            progress(seg.original_length - st.reported)

    from . import device_decode

    if device_decode.wanted(lm):  # a GPU: fixed-shape steps over slots, segments flowing through them
        for st in device_decode.decode_streams(lm, header, lm_segments,
                                               lambda i, seg, payload: make_stream(i, seg, payload, False),
                                               batch, progress, native):
            finish(st)
        return out
    # Keys/values cost ~46 KB per token slot for the teacher: bound the cache, not just the streams.
    batch = lockstep_streams(batch, header.window_tokens, [seg.token_count for _, seg, _ in lm_segments])
    for b0 in range(0, len(lm_segments), batch):
        # Decoders and predictors (~1.5 MB each for the teacher) exist for one batch at a time.
        group = [make_stream(i, seg, payload) for i, seg, payload in lm_segments[b0 : b0 + batch]]
        _decode_lm_batch(lm, header, group, progress)
        for st in group:
            finish(st)
    return out


def decompress_parsed(header: C.Header, payloads: list, lm: LoadedModel | None, batch: int = 16,
                      progress: Progress | None = None) -> bytes:
    """Decode a parsed container held in memory (``lm`` may be None when no segment uses the model)."""
    adapt = check_decodable(header, lm)
    out = decode_group(header, list(zip(range(len(payloads)), header.segments, payloads)), lm, adapt, batch, progress)
    data = b"".join(out[i] for i in range(len(header.segments)))
    C.verify_original(header, data)
    return data


def decompress(blob: bytes, lm: LoadedModel | None, batch: int = 16, progress: Progress | None = None) -> bytes:
    header, payloads = C.read_container(blob)
    return decompress_parsed(header, payloads, lm, batch, progress)


def lm_cost_bits(lm: LoadedModel, data: bytes, p: CodecParams | None = None) -> tuple[float, int]:
    """Ideal code length (sum of -log2 p) of ``data`` as one segment under the params (its
    transform included); and its token count."""
    from .coder import ideal_bits

    p = p or CodecParams()
    ids = lm.tokenizer.encode(transforms.forward(data, transforms.choose(data, p.transforms)))
    targets = np.asarray(ids, dtype=np.int64)
    bits = sum(ideal_bits(targets[a:b], freqs, p.total_bits) for a, b, freqs, _ in predicted_rows(lm, ids, p))
    return float(bits), len(ids)


__all__ = ["CodecParams", "compress", "make_header", "check_decodable", "decode_group", "decompress", "decompress_parsed", "windows", "segment_end", "split_segments", "lm_cost_bits", "coded_rows", "predicted_rows", "FormatError"]
