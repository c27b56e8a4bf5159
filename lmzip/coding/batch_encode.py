"""Compressing many segments at once: the model's forwards batched across segments.

One segment alone runs its windows through the model as [1, 1024]-token forwards, which keeps a
GPU mostly idle. Here up to ``batch`` segments go through together: the r-th window of every
segment in one forward of [segments, longest window] tokens (shorter windows padded at the end,
which causal attention never lets an earlier position see), its part of 1024 tokens at a time, as
``codec.coded_rows`` does for one. The rows every segment codes are gathered from the batch, go
through the head in groups that take the next rows of every segment (``HEAD_ROWS`` a group, at
least ``MIN_SPAN_ROWS`` a segment) and come to the host as int32 (logits for the adaptive
predictor, else frequencies).

The device's side runs in a thread of its own, so the host codes one group of rows (every segment
in it on a thread pool: the native predictor and coder release the GIL) while the device computes
the next. Each segment's ``encode.SegmentCoder`` receives its rows in coding order and decides to
give up only at the ends of parts, as it does alone: the bytes are those of one segment at a time
(tests compare them), whatever the batch.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .schedule import windows

HEAD_ROWS = 1024  # rows through the head and down to the host at a time (200 MB of int32 for the teacher)
MIN_SPAN_ROWS = 32  # but at least this many of each segment's (a task on the host's pool: ~2 ms)
RING = 2  # groups of rows queued for the host (besides the one it codes and the one being made)
DEVICE_MEMORY_SHARE = 0.5  # of the free GPU memory, at most, for the batch's caches
CUDA_BATCH = 64  # segments per forward on a GPU when nothing says otherwise
KV_BYTES = 2 * 8  # the reference's cache: float64 keys and values
# Seconds spent, summed over runs (benchmarks reset and read it): the device's thread in forwards
# ("forward"), head and copies down ("head"), waiting for the host to take a group ("device_wait");
# the coding thread waiting for rows ("host_wait") and coding them ("host_code").
STATS: Counter = Counter()
STAGE_ON_CPU = False  # tests: the torch reference on a CPU goes through the GPU's ring of host buffers too


def batch_for(lm) -> int:
    """Segments to compress together: ``LMZIP_ENCODE_BATCH`` if set (1: one at a time), else
    ``CUDA_BATCH`` for the torch reference on a GPU, else 1 (a CPU's forward of one segment's
    window is already a matrix product that fills its cores)."""
    raw = os.environ.get("LMZIP_ENCODE_BATCH", "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            raise ValueError("LMZIP_ENCODE_BATCH must be a whole number of segments") from None
        if n < 1:
            raise ValueError("LMZIP_ENCODE_BATCH must be at least 1")
        return n
    model = lm.model
    if getattr(model, "runtime", "reference") == "reference" and model.device.type == "cuda":
        return CUDA_BATCH
    return 1


def _memory_cap(model, batch: int, window: int) -> int:
    """``batch``, or as many windows' caches as half the free GPU memory holds."""
    if getattr(model, "runtime", "reference") != "reference" or model.device.type != "cuda":
        return batch
    import torch

    cfg = model.cfg
    per = window * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * KV_BYTES
    free, _ = torch.cuda.mem_get_info(model.device)
    return max(1, min(batch, int(free * DEVICE_MEMORY_SHARE) // max(1, per)))


def run(coders: list, batch: int) -> None:
    """Feed every ``encode.SegmentCoder`` in ``coders`` (one model, one kind of rows) all its rows,
    up to ``batch`` segments a forward; a coder that gives up is fed no more."""
    coders = [c for c in coders if c.n]
    if not coders:
        return
    lm, p = coders[0].lm, coders[0].p
    batch = _memory_cap(lm.model, batch, p.window)
    threads = min(batch, len(coders), os.cpu_count() or 1)
    native = coders[0].pred is None or coders[0].fused  # numpy's predictor holds the GIL: no threads
    pool = ThreadPoolExecutor(max_workers=threads) if native and threads > 1 else None
    try:
        for g in range(0, len(coders), batch):
            _run_group(coders[g : g + batch], pool)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def _run_group(coders: list, pool: ThreadPoolExecutor | None) -> None:
    """The segments of one batch: the device's thread produces their rows, this one codes them."""
    rows_q: queue.Queue = queue.Queue(maxsize=RING)
    stop = threading.Event()
    device = _Rows(coders, rows_q, stop)
    worker = threading.Thread(target=device.produce, name="lmzip-batch-encode", daemon=True)
    worker.start()
    try:
        while True:
            t0 = time.perf_counter()
            item = rows_q.get()
            t1 = time.perf_counter()
            STATS["host_wait"] += t1 - t0
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            spans, rows, release = item
            try:
                _feed(coders, spans, rows, pool)
            finally:
                release()
            STATS["host_code"] += time.perf_counter() - t1
    finally:
        stop.set()
        while worker.is_alive():  # let it see ``stop``: it may be waiting to put a group or for a buffer
            try:
                item = rows_q.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(item, tuple):
                item[2]()
        worker.join()


def _feed(coders: list, spans: list, rows: np.ndarray, pool: ThreadPoolExecutor | None) -> None:
    """Code one group: ``spans`` of (coder index, first token, end token, offset in rows, part);
    each coder appears at most once in a group, so they can run in parallel."""
    work = []
    for i, a, b, off, part in spans:
        c = coders[i]
        if not c.given_up:
            work.append(lambda c=c, a=a, b=b, off=off, part=part: c.feed(a, b, rows[off : off + b - a], part))
    if pool is None or len(work) < 2:
        for w in work:
            w()
        return
    for f in [pool.submit(w) for w in work]:
        f.result()  # the first error is raised here


class _Rows:
    """The device's side of a batch (runs in its own thread): forwards, head, rows to the host."""

    def __init__(self, coders: list, out: queue.Queue, stop: threading.Event) -> None:
        self.coders, self.out, self.stop = coders, out, stop
        lm = coders[0].lm
        self.model, self.kind, self.p = lm.model, coders[0].kind, coders[0].p
        self.bos = lm.tokenizer.bos_id
        self.torch = getattr(self.model, "runtime", "reference") == "reference"
        self.cuda = self.torch and self.model.device.type == "cuda"
        self.free: queue.Queue = queue.Queue()  # pinned host buffers not in use (CUDA)
        for _ in range(RING + 1):
            self.free.put(None)  # made (or grown) when first needed

    def produce(self) -> None:
        try:
            self._produce()
            self._put(None)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the coding thread, which raises it
            self._put(exc)

    def _put(self, item) -> None:
        t = time.perf_counter()
        try:
            while not self.stop.is_set():
                try:
                    self.out.put(item, timeout=0.05)
                    return
                except queue.Full:
                    pass
        finally:
            STATS["device_wait"] += time.perf_counter() - t

    def _produce(self) -> None:
        from .codec import FORWARD_CHUNK

        p, coders = self.p, self.coders
        plans = [list(windows(c.n, p.window, p.overlap)) for c in coders]
        inputs = [np.concatenate([[self.bos], c.targets[:-1]]).astype(np.int64) for c in coders]
        for r in range(max(map(len, plans))):
            act = [i for i in range(len(coders)) if r < len(plans[i]) and not coders[i].given_up]
            if not act:
                return
            L = max(plans[i][r][2] for i in act)
            s = np.full((len(act), L), self.bos, dtype=np.int64)  # padding: any valid id
            for j, i in enumerate(act):
                start, _, length = plans[i][r]
                s[j, :length] = inputs[i][start : start + length]
            cache = self.model.new_cache(len(act), L)
            for c0 in range(0, L, FORWARD_CHUNK):
                if self.stop.is_set():
                    return
                c1 = min(L, c0 + FORWARD_CHUNK)
                t = time.perf_counter()
                h = self.model.hidden(cache, s[:, c0:c1])
                STATS["forward"] += time.perf_counter() - t
                # Each segment's rows of this part, as coded_rows has them: from the window's
                # context (or the part's start) to the part's end.
                spans = []
                for j, i in enumerate(act):
                    start, ctx, length = plans[i][r]
                    lo, hi = max(ctx, c0), min(c1, length)
                    if lo < hi and not coders[i].given_up:
                        spans.append((i, j, start, lo, hi))
                for group in _groups(spans, HEAD_ROWS, MIN_SPAN_ROWS):
                    self._emit(h, c0, group)

    def _emit(self, h, c0: int, group: list) -> None:
        """Head rows for ``group`` (see ``_groups``), brought to the host and queued for coding."""
        bj = np.concatenate([np.full(hi - lo, j, dtype=np.int64) for _, j, _, lo, hi, _, _ in group])
        pos = np.concatenate([np.arange(lo - c0, hi - c0, dtype=np.int64) for _, _, _, lo, hi, _, _ in group])
        if self.torch:
            import torch

            hv = h[torch.from_numpy(bj).to(h.device), torch.from_numpy(pos).to(h.device)]
        else:
            hv = np.ascontiguousarray(h[bj, pos])
        t = time.perf_counter()
        rows, release = self._head(hv)
        STATS["head"] += time.perf_counter() - t
        spans, off = [], 0
        for i, _, start, lo, hi, first, ends in group:
            spans.append((i, start + lo, start + hi, off, (start + first, start + hi) if ends else None))
            off += hi - lo
        self._put((spans, rows, release))

    def _take(self):
        """A free pinned buffer (None: none made yet), waiting for the coding thread to return one."""
        while True:
            try:
                return self.free.get(timeout=0.05)
            except queue.Empty:
                if self.stop.is_set():
                    raise _Stopped() from None

    def _head(self, hv):
        """The rows for the head inputs ``hv`` on the host, and what to call once they are coded."""
        m = self.model
        if not self.torch:
            z = {"frequencies": m.head_frequencies, "logits": m.head_logits, "logits32": m.head_logits32}[self.kind](hv)
            return z, _nothing
        import torch

        if self.kind == "frequencies":
            z = m.head_frequencies(hv)
        else:
            z = m.head_logits(hv)
            # int32 unless an entry could wrap (never for a real model: see codec.logits_host)
            if self.kind == "logits32" and int(z.abs().amax()) <= 1 << 30:
                z = z.to(torch.int32)
        if not (self.cuda or STAGE_ON_CPU) or z.dtype != torch.int32:
            return z.cpu().numpy(), _nothing
        buf = self._take()
        n = z.shape[0]
        if buf is None or buf.shape[0] < n:
            buf = torch.empty(n, z.shape[1], dtype=torch.int32, pin_memory=self.cuda)
        buf[:n].copy_(z)  # into pinned memory: this thread waits, the coding thread does not
        return buf[:n].numpy(), lambda: self.free.put(buf)


class _Stopped(Exception):
    """The coding thread stopped early (an error there): the device's thread just ends."""


def _nothing() -> None:
    pass


def _groups(spans: list, limit: int, least: int = MIN_SPAN_ROWS) -> list:
    """Cut a part's spans (coder, batch row, window start, lo, hi) into groups that take the next
    rows of every span at once, about ``limit`` rows a group (at least ``least`` a span), so that
    every group keeps all the host's threads coding. Items: (coder, batch row, window start, lo,
    hi, the part's first row, whether hi ends the part)."""
    if not spans:
        return []
    quantum = max(least, limit // len(spans))
    groups = []
    for k in range(0, max(hi - lo for _, _, _, lo, hi in spans), quantum):
        group = []
        for i, j, start, lo, hi in spans:
            a, b = lo + k, min(hi, lo + k + quantum)
            if a < b:
                group.append((i, j, start, a, b, lo, b == hi))
        groups.append(group)
    return groups
