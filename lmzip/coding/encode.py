"""Encoding one segment: the model's rows into its range coder, or the fallback if that is smaller.

``SegmentCoder`` holds one model-coded segment's state (tokens, range encoder, adaptive predictor)
and is fed the model's rows a slice at a time in coding order: by ``run`` from ``codec.coded_rows``
(one segment alone), or by ``batch_encode`` from forwards over many segments at once; the same
calls either way, so the same bytes. ``PieceJob`` wraps it with the fallback's coding and the
choice between them; ``encode_piece``/``encode_pieces`` are what ``streaming.StreamCompressor`` and
``cluster.py`` call.
"""

from __future__ import annotations

import numpy as np

from . import codec
from . import container as C
from . import transforms
from .codec import CodecParams, Progress
from ..model.zoo import LoadedModel


class SegmentCoder:
    """One segment's LM coding: its tokens, range encoder and predictor, fed the model's rows a
    slice at a time in coding order (``run``: from ``codec.coded_rows``; ``batch_encode`` feeds many
    segments from batched forwards). ``kind`` is the rows it wants (``codec.coded_rows``' kinds).

    It gives up (``finish`` returns None) as soon as the segment is clearly losing to
    ``give_up_bits`` (the fallback's size): only at the end of a part, so the decision and the
    bytes do not depend on how the rows were sliced or batched."""

    def __init__(self, lm: LoadedModel, data: bytes, p: CodecParams, give_up_bits: float,
                 progress: Progress | None = None) -> None:
        self.lm, self.p, self.size, self.give_up_bits, self.progress = lm, p, len(data), give_up_bits, progress
        self.ids = lm.tokenizer.encode(data)
        self.n = len(self.ids)
        self.targets = np.asarray(self.ids, dtype=np.int64)
        self.enc = codec.new_encoder(lm, p.total_bits, p.top_k)
        self.pred = codec.new_predictor(lm, p.adapt) if p.adapt is not None else None
        # Native coding: the rows are predicted, coded and learned in one call per slice.
        self.fused = self.pred is not None and codec.coding_native(lm) and codec.FUSED
        self.kind = "frequencies" if self.pred is None else "logits32" if self.fused else "logits"
        self.given_up = False

    def feed(self, a: int, b: int, z, part: tuple[int, int] | None) -> bool:
        """Code tokens a..b-1 from their rows ``z``; at a part's end (``part``: the tokens it
        coded) report progress and maybe give up. False once given up: feed nothing more."""
        if self.fused:
            self.pred.encode_logits(self.enc, codec.logits_host(z), self.targets[a:b])  # type: ignore[union-attr]
        elif self.pred is not None:
            self.enc.encode_many(self.targets[a:b], codec.learned_rows(self.pred, codec.to_numpy(z), self.ids, a))
        else:
            self.enc.encode_many(self.targets[a:b], z)
        if part is None:
            return True
        first, done = part
        if self.progress:  # bytes in proportion to tokens; encode_piece reports the exact remainder
            self.progress(self.size * done // self.n - self.size * first // self.n)
        # Early exit for data the model cannot predict (binary, random): extrapolate the cost,
        # once enough tokens are coded that a cold start does not decide it.
        if done >= codec.GIVE_UP_AFTER and self.enc.num_bytes() * 8 * self.n / done > self.give_up_bits * 1.25 + 1024:
            self.given_up = True
        return not self.given_up

    def run(self) -> None:
        """Feed every row from the model, one window after another."""
        for a, b, z, part in codec.coded_rows(self.lm, self.ids, self.p, kind=self.kind):
            if not self.feed(a, b, z, part):
                return

    def finish(self) -> tuple[bytes, int] | None:
        """(payload, tokens), or None if the segment gave up."""
        return None if self.given_up else (self.enc.finish(), self.n)


class PieceJob:
    """One segment to code (``encode_piece``): the fallback's coding first, then, if the bytes look
    like text, a ``SegmentCoder`` over them (transformed) to run; ``result`` keeps the smaller.
    Reports ``len(chunk)`` bytes of progress in all."""

    def __init__(self, lm: LoadedModel, chunk: bytes, text: bool, p: CodecParams,
                 progress: Progress | None = None) -> None:
        self.chunk, self.p, self.progress, self.reported = chunk, p, progress, 0
        self.fallback = C.make_fallback_segment(chunk, p.format_version)
        self.coder: SegmentCoder | None = None
        if text:  # binary would lose to the fallback, slowly
            self.tf = transforms.choose(chunk, p.transforms)
            give_up = 8 * len(self.fallback[1]) if p.fallback else float("inf")
            self.coder = SegmentCoder(lm, transforms.forward(chunk, self.tf), p, give_up_bits=give_up,
                                      progress=self._tick if progress else None)

    def _tick(self, nbytes: int) -> None:
        self.reported += nbytes
        self.progress(nbytes)  # type: ignore[misc]

    def result(self) -> tuple[C.Segment, bytes]:
        """The segment and its payload, once the coder (if any) has run."""
        if self.progress:
            self.progress(len(self.chunk) - self.reported)
        coded = self.coder.finish() if self.coder is not None else None
        if coded is not None and (len(coded[0]) < len(self.fallback[1]) or not self.p.fallback):
            payload, n_tokens = coded
            chunk = self.chunk
            return C.Segment(C.METHOD_LM, self.tf, len(chunk), len(payload), n_tokens, C.crc32(chunk)), payload
        return self.fallback


def encode_piece(lm: LoadedModel, chunk: bytes, text: bool, p: CodecParams,
                 progress: Progress | None = None) -> tuple[C.Segment, bytes]:
    """Code one segment's bytes: with the model if ``text`` (``sniff.py``) and it beats the
    fallback (or ``p.fallback`` is off), else with the smallest fallback. Reports ``len(chunk)``
    bytes of progress in all."""
    job = PieceJob(lm, chunk, text, p, progress)
    if job.coder is not None:
        job.coder.run()
    return job.result()


def encode_pieces(lm: LoadedModel, pieces: list[tuple[bytes, bool]], p: CodecParams,
                  progress: Progress | None = None, batch: int = 1) -> list[tuple[C.Segment, bytes]]:
    """``encode_piece`` for each of ``pieces`` ((bytes, text)), in order: with ``batch`` > 1 the
    model's forwards run over up to ``batch`` segments at once (``batch_encode``; the same bytes)."""
    if batch <= 1:
        return [encode_piece(lm, chunk, text, p, progress) for chunk, text in pieces]
    from . import batch_encode

    jobs = [PieceJob(lm, chunk, text, p, progress) for chunk, text in pieces]
    batch_encode.run([j.coder for j in jobs if j.coder is not None], batch)
    return [j.result() for j in jobs]
