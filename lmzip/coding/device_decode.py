"""Decoding many model-coded segments on a GPU: fixed-shape steps, the host's side in threads.

The lockstep decoder (``codec._decode_lm_batch``) sizes every step to its streams and reads
device values on the host, which on a GPU makes each step a few thousand kernel launches with
waits between them (~67 ms a step on an H100). Here the model's side is
``static_step.StaticStep``: every slot steps one token per call, attention runs over the cache's
whole capacity masked by each slot's length, so one step is one CUDA graph replay. Segments move
through the slots: a slot whose segment ends takes the next one (its window's context prefilled
into the slot), so the batch stays full until the queue runs dry.

The host's side per step: the rows come back as int32 (logits with the adaptive predictor, else
frequencies; 4 bytes a vocabulary entry) and every slot's predictor and range decoder run on a
thread pool (the native loops release the GIL). With two lanes (two graphs, each half the
slots) the GPU computes one lane's step while the host decodes the other's rows.

Nothing here can change a decoded byte: the rows are ``ExactModel.step``'s integers (tests
compare the decoded bytes with the lockstep decoder's on the same files), so a file decodes the
same on either path, on any device.
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np

from . import container as C

# Bytes of the reference KV cache per token slot: float64 keys and values, every layer and KV head.
KV_BYTES = 2 * 8
DEVICE_MEMORY_SHARE = 0.5  # of the free GPU memory, at most, for the slots' caches
MAX_SLOTS = 512
# Seconds spent, summed over runs (benchmarks reset and read it): waiting for a lane's rows
# ("rows_wait"), decoding them on the host ("host_decode"), refilling slots with their contexts
# prefilled ("refill"), launching steps ("launch"); and the steps taken ("steps").
STATS: Counter = Counter()


def wanted(lm) -> bool:
    """Whether a file decodes through the slots: the torch reference on a GPU, or anywhere the
    environment asks for it (``LMZIP_DECODE=static``, for tests on a CPU); ``LMZIP_DECODE=lockstep``
    keeps the lockstep decoder. The native model has its own batched steps."""
    choice = os.environ.get("LMZIP_DECODE", "").strip().lower()
    if choice not in ("", "static", "lockstep"):
        raise ValueError("LMZIP_DECODE must be static or lockstep")
    if choice == "lockstep" or getattr(lm.model, "runtime", "reference") != "reference":
        return False
    return choice == "static" or lm.model.device.type == "cuda"


def slot_count(lm, batch: int, capacity: int, n_segments: int) -> int:
    """Slots (streams stepped together): at most ``batch`` and the segments there are, and as many
    caches of ``capacity`` tokens as half the free device memory holds (a CPU: the lockstep
    decoder's bound, ``codec.CACHE_TOKEN_SLOTS``)."""
    from . import codec

    cfg = lm.model.cfg
    per_slot = capacity * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * KV_BYTES
    if lm.model.device.type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(lm.model.device)
        by_memory = int(free * DEVICE_MEMORY_SHARE) // max(1, per_slot)
    else:
        by_memory = codec.CACHE_TOKEN_SLOTS // max(1, capacity)
    return max(1, min(batch, n_segments, MAX_SLOTS, by_memory))


class _Lane:
    """One StaticStep and the streams in its slots; ``launch`` starts a step, ``collect`` brings
    its rows to the host (int32 [slots, V])."""

    def __init__(self, lm, slots: int, capacity: int, frequencies: bool):
        from ..model.static_step import StaticStep

        self.model = lm.model
        self.static = StaticStep(lm.model, slots, capacity)
        self.streams: list = [None] * slots
        self.frequencies = frequencies
        self.pending = None  # (logits, rows, their largest magnitude) of the step in flight
        self.cuda = self.model.device.type == "cuda"
        if self.cuda:
            import torch

            try:
                self.static.capture()
            except RuntimeError as exc:  # steps still run, one launch at a time: slower, the same rows
                _warn_once(f"lmzip: CUDA graph capture failed ({exc}); decoding without graphs")
            # The rows come down into pinned memory, queued right behind the step, so the host can
            # wait for this lane's rows while the device goes on with the other lane's step.
            V = self.model.cfg.vocab_size
            self.host_rows = torch.empty(slots, V, dtype=torch.int32, pin_memory=True)
            self.host_big = torch.zeros(1, dtype=torch.int64, pin_memory=True)
            self.arrived = torch.cuda.Event()

    def idle(self) -> bool:
        return all(st is None for st in self.streams)

    def place(self, slot: int, st) -> None:
        """Put stream ``st`` (at the start of a window) into ``slot``, its context prefilled."""
        self.streams[slot] = st
        st.prefill(self.model, self.static.cache, slot)

    def launch(self) -> None:
        import torch

        lengths = [st.row if st is not None else 0 for st in self.streams]
        tokens = [st.input(st.start + st.row) if st is not None else 0 for st in self.streams]
        self.static.set_lengths(lengths)
        z = self.static.step(tokens)
        if self.frequencies:
            rows, big = self.model.logit_frequencies(z), None
        else:  # int32 unless an entry could wrap (never for a real model: see codec.logits_host)
            big = z.abs().amax()
            rows = z.to(torch.int32)
        if self.cuda:
            self.host_rows.copy_(rows, non_blocking=True)
            if big is not None:
                self.host_big.copy_(big.view(1), non_blocking=True)
            self.arrived.record()
        self.pending = (z, rows, big)

    def collect(self) -> np.ndarray:
        z, rows, big = self.pending
        self.pending = None
        if self.cuda:
            self.arrived.synchronize()
            big = None if big is None else self.host_big
        if big is not None and int(big.reshape(-1)[0]) > 1 << 30:
            return z.cpu().numpy()
        return self.host_rows.numpy() if self.cuda else rows.cpu().numpy()


def decode_streams(lm, header: C.Header, items: list, make_stream: Callable, batch: int,
                   progress: Callable[[int], None] | None = None, native: bool = False) -> Iterator:
    """Decode the model-coded segments ``items`` ((index, segment, payload), checked by
    ``codec.check_decodable``) through the slots; yield each stream (``codec._Stream``) when its
    segment has decoded, in the order they finish. ``make_stream(index, segment, payload)`` makes a
    stream when a slot is free for it (decoders and predictors exist only for the segments in
    the slots); ``native``: they code natively (then one native call decodes a step's rows)."""
    queue = deque(items)
    if not queue:
        return
    capacity = min(header.window_tokens, max(max(seg.token_count for _, seg, _ in items), 1))
    slots = slot_count(lm, batch, capacity, len(items))
    lanes_n = 2 if lm.model.device.type == "cuda" and slots >= 2 else 1
    frequencies = not header.predictor
    sizes = [slots // lanes_n + (1 if k < slots % lanes_n else 0) for k in range(lanes_n)]
    lanes = [_Lane(lm, n, capacity, frequencies) for n in sizes]
    threads = min(slots, os.cpu_count() or 1)
    host = None  # the native step over every slot at once, where the coder is native
    pool = None  # else Python threads (the reference's numpy, which holds the GIL: little gain)
    if native:
        from ..native.coding import HostPool

        host = HostPool(threads)
    elif threads > 1:
        pool = ThreadPoolExecutor(max_workers=threads)
    finished: list = []

    def fill(lane: _Lane) -> None:
        """Every free slot of ``lane`` takes the next segment that has tokens to decode."""
        for slot in range(len(lane.streams)):
            while lane.streams[slot] is None and queue:
                st = make_stream(*queue.popleft())
                if st.next_window():
                    lane.place(slot, st)
                else:  # zero tokens: nothing to decode, but the stream must be empty
                    st.dec.check_end()
                    finished.append(st)

    def advance(lane: _Lane, slot: int) -> None:
        """After a decoded token: the stream's next window, or the slot freed when it ends."""
        st = lane.streams[slot]
        if st.row < st.length:
            return
        if st.next_window():
            lane.place(slot, st)
            return
        st.dec.check_end()
        lane.streams[slot] = None
        finished.append(st)

    def decode_rows(lane: _Lane, rows: np.ndarray) -> None:
        busy = [slot for slot, st in enumerate(lane.streams) if st is not None]
        if host is not None:
            streams = [lane.streams[s] for s in busy]
            preds = [st.predictor for st in streams] if streams[0].predictor is not None else None
            syms = host.decode_step(preds, [st.dec for st in streams], rows, busy)
            for st, sym in zip(streams, syms.tolist()):
                st.accept((sym,))
        else:
            work = [lambda s=slot: lane.streams[s].decode(rows[s : s + 1], []) for slot in busy]
            if pool is None:
                for w in work:
                    w()
            else:
                for f in [pool.submit(w) for w in work]:
                    f.result()  # the first error (a corrupt stream) is raised here
        for slot in busy:
            advance(lane, slot)

    steps = 0
    try:
        for lane in lanes:
            fill(lane)
        yield from _drain(finished)
        for lane in lanes:
            if not lane.idle():
                lane.launch()
        while any(lane.pending is not None for lane in lanes):
            for lane in lanes:
                if lane.pending is None:
                    continue
                t0 = time.perf_counter()
                rows = lane.collect()  # the other lane's step runs on the device meanwhile
                t1 = time.perf_counter()
                decode_rows(lane, rows)
                t2 = time.perf_counter()
                fill(lane)
                t3 = time.perf_counter()
                if not lane.idle():
                    lane.launch()
                STATS["rows_wait"] += t1 - t0
                STATS["host_decode"] += t2 - t1
                STATS["refill"] += t3 - t2
                STATS["launch"] += time.perf_counter() - t3
                STATS["steps"] += 1
            steps += 1
            if progress and steps % 32 == 0:
                for lane in lanes:
                    for st in lane.streams:
                        if st is not None:
                            st.report(progress)
            yield from _drain(finished)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        import sys

        print(msg, file=sys.stderr)


def _drain(finished: list) -> Iterator:
    while finished:
        yield finished.pop(0)
