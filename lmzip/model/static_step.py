"""A decoding step of fixed shapes for the exact model, for CUDA graphs.

``ExactModel.step`` reads device values on the host (the longest stream, to size the attention;
range checks), so on a GPU every step waits for the device and launches a few thousand small
kernels one by one. :class:`StaticStep` computes the same step for B streams of one new token
each with shapes that never change: attention runs over the cache's whole capacity, masked by
each stream's own length; nothing is read back to the host and no Python branch depends on a
device value. A CUDA graph can therefore capture one step and replay it (``capture``), which
turns those launches into one.

The integers are the reference's: a masked position scores -inf, lands on the exp table's final
0 and adds exact zeros to sums of exact integers (below 2**53 at any capacity the model allows),
so attending over the whole capacity changes nothing. Stale keys and values beyond a stream's
length (a reset slot, or the capacity not yet used) are finite integers times 0.

What the caller keeps on the host instead of checking device values: every stream's length
(``lengths``, advanced by ``step``) stays below the capacity, and the token ids are in range.
"""

from __future__ import annotations

import math

import torch

from .exact_model import ExactModel, _fix, _quantize
from .model_spec import QK_BITS, QK_LIMIT, RES_BITS, V_BITS


class StaticStep:
    """One token for each of ``batch`` streams per call, on ``model``'s device.

    >>> s = StaticStep(model, batch=64)        # doctest: +SKIP
    >>> logits = s.step(tokens)                # int64 [64, V] on the device
    """

    def __init__(self, model: ExactModel, batch: int, capacity: int | None = None) -> None:
        if batch < 1:
            raise ValueError("a static step needs at least one stream")
        self.model = model
        self.cache = model.new_cache(batch, capacity)
        self.batch, self.capacity = batch, self.cache.capacity
        dev = model.device
        self._positions = torch.arange(self.capacity, device=dev)
        self._tokens = torch.zeros(batch, dtype=torch.int64, device=dev)  # the graph's input
        self._out: torch.Tensor | None = None  # the graph's output
        self._graph = None
        self.lengths = [0] * batch  # the host's copy of cache.lengths (never read back)
        # On a GPU, tokens and lengths go up from pinned memory, asynchronously: a pageable copy
        # may wait for the device. An event per staging row marks its last upload, so the row is
        # not rewritten before the device has read it (and waiting on it waits for nothing else).
        self._stage = self._staged = None
        if dev.type == "cuda":
            self._stage = torch.zeros(2, batch, dtype=torch.int64, pin_memory=True)
            self._staged = [torch.cuda.Event(), torch.cuda.Event()]

    # -- bookkeeping on the host ----------------------------------------------------------

    def reset(self, slot: int) -> None:
        """Start stream ``slot`` again at position 0 (its old keys stay, masked)."""
        self.cache.lengths[slot] = 0
        self.lengths[slot] = 0

    def set_lengths(self, lengths) -> None:
        """Every stream's length at once, from the host (one small copy): a caller that moves
        streams in and out of slots keeps the lengths itself and hands them over before a step."""
        lengths = [int(n) for n in lengths]
        if len(lengths) != self.batch or min(lengths) < 0 or max(lengths) > self.capacity:
            raise ValueError(f"expected {self.batch} lengths in [0, {self.capacity}]")
        self._upload(1, lengths, self.cache.lengths)
        self.lengths = lengths

    def _upload(self, row: int, values: list[int], dst: torch.Tensor) -> None:
        if self._stage is None:
            dst.copy_(torch.tensor(values, dtype=torch.int64))
            return
        self._staged[row].synchronize()
        self._stage[row].copy_(torch.tensor(values, dtype=torch.int64))
        dst.copy_(self._stage[row], non_blocking=True)
        self._staged[row].record()

    def step(self, tokens) -> torch.Tensor:
        """Append ``tokens`` [batch] (one per stream) and return their int64 logits [batch, V].

        Checked on the host: the ids' range (when given as a host sequence) and that no stream
        outgrows the capacity. The returned tensor is the graph's output buffer once captured:
        copy it before the next step if it must be kept."""
        if max(self.lengths) >= self.capacity:
            raise ValueError("a stream would outgrow the cache capacity")
        if not isinstance(tokens, torch.Tensor):
            ids = [int(t) for t in tokens]
            if len(ids) != self.batch or min(ids) < 0 or max(ids) >= self.model.cfg.vocab_size:
                raise ValueError(f"expected {self.batch} token ids in [0, {self.model.cfg.vocab_size})")
            self._upload(0, ids, self._tokens)
        else:
            self._tokens.copy_(tokens.reshape(self.batch), non_blocking=True)
        self.lengths = [n + 1 for n in self.lengths]
        if self._graph is not None:
            self._graph.replay()
            return self._out
        return self._body(self._tokens)

    def capture(self, warmup: int = 2) -> None:
        """Record one step in a CUDA graph; later steps replay it. Warm-up steps run on a side
        stream first (they settle the int8 matmul path and the allocator); their length updates are
        undone, and the keys they wrote sit at positions the next real step overwrites."""
        if self.model.device.type != "cuda":
            raise RuntimeError("CUDA graphs need the model on a CUDA device")
        lengths = self.cache.lengths.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self._body(self._tokens)
                self.cache.lengths.copy_(lengths)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # records the kernels (length update included) without running them
            self._out = self._body(self._tokens)
        self.cache.lengths.copy_(lengths)  # as before the warm-up
        self._graph = graph

    # -- the step ---------------------------------------------------------------------------

    @torch.no_grad()
    def _body(self, tokens: torch.Tensor) -> torch.Tensor:
        m, cfg, cache = self.model, self.model.cfg, self.cache
        B = self.batch
        pos = cache.lengths[:, None]  # [B, 1]
        t = tokens[:, None]
        emb = m.embed_q[t].to(torch.float64).mul_(m.embed_scale[t][..., None])
        h = emb.mul_(float(2**RES_BITS)).round_()  # [B, 1, d]
        for i, layer in enumerate(m.layers):
            h = h + self._attention(layer, i, h, pos)
            h = h + m._ffn(layer, h.view(B, cfg.dim)).view(B, 1, cfg.dim)  # row by row: no chunking needed
        cache.lengths += 1
        return m._head_logits(h.view(B, cfg.dim))

    def _attention(self, layer, li: int, h: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        m, cfg, cache = self.model, self.model.cfg, self.cache
        B = self.batch
        hd, H, Hk = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        rep = H // Hk
        xq, s = _quantize(h)
        qkv = _fix(layer["wqkv"](xq, m._norm_factor(xq, s)), QK_BITS, QK_LIMIT)
        qk = m._rope(qkv[..., : (H + Hk) * hd].reshape(B, 1, H + Hk, hd).transpose(1, 2), pos)
        q, k = qk[:, :H], qk[:, H:]
        v = qkv[..., (H + Hk) * hd :].reshape(B, 1, Hk, hd)
        b_idx = torch.arange(B, device=h.device)[:, None]
        cache.k[li][b_idx, :, pos] = k.transpose(1, 2)
        cache.v[li][b_idx, :, pos] = v
        qg = q.reshape(B, Hk, rep, hd)  # the query heads sharing a KV head, as rows
        scores = torch.matmul(qg, cache.k[li].transpose(-1, -2))  # [B, Hk, rep, C], exact integers
        later = self._positions[None, :] > pos  # [B, C]: the keys this stream has not written yet
        scores.masked_fill_(later[:, None, None], -math.inf)
        top = scores.amax(-1, keepdim=True)
        last = len(m.attn_exp) - 1
        idx = scores.sub_(top).neg_().mul_(m.score_scale).round_().clamp_(max=last).long()
        e = m.attn_exp[idx]
        o = torch.matmul(e, cache.v[li]).div_(e.sum(-1, keepdim=True))  # exact numerator, one division
        o = o.reshape(B, 1, H * hd)
        oq, os_ = _quantize(o)
        return layer["wo"](oq, os_ * float(2.0**-V_BITS)).mul_(float(2**RES_BITS)).round_()
