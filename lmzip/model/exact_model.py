"""The exact model: a Llama-style decoder whose next-token frequencies are bit-identical everywhere.

Arithmetic coding decodes only if the decoder computes the very same probabilities as
the encoder. Float inference does not: results move with the summation order, which moves
with batch size, sequence length, thread count and device. So every quantity here is
computed so that its value cannot depend on any of those:

* Reductions (matmuls, attention sums, norms, softmax denominators) only ever add
  integers whose partial sums provably stay below 2**53; float64 then represents every
  partial sum exactly, so BLAS may sum in any order, on any device, and get the same result.
  Weights are int8 per output channel, activations int16 per token (|q| <= 32639).
* Elementwise work is one IEEE operation (+ - * / sqrt, round-half-even) per step, in the
  order written here; none of it depends on neighbouring elements.
* exp, sigmoid and RoPE come from integer tables built with Python's decimal module
  (``luts.py``), never from libm or device intrinsics.
* The output is an integer frequency table per position: every entry >= 1, each row
  summing to exactly 2**TOTAL_BITS, ready for the range coder.

Bounds behind the exactness (checked by ``model_spec.check_bounds`` at load time):
  matmul     |x| < 2**15 (int16), |w| <= 127, K <= 2**16    -> |sum| < 2**15 * 2**7 * 2**16 = 2**38 (float64),
             or as two int8 halves, |sum| < 2**7 * 2**7 * 2**16 = 2**30 each (int32)
  q.k        |q|, |k| <= 2**20, head_dim <= 256             -> |sum| < 2**40 * 2**8 = 2**48
  e.v        e <= 2**20, |v| <= 2**20, context <= 4096      -> |sum| < 2**40 * 2**12 = 2**52

The model is exact in *what* it computes; the int8/int16 quantisation and the table
resolutions cost about 0.1% in ratio against the float reference (``float_model.py``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from . import luts
from ..errors import ModelError

from .model_spec import (ACT_MAX, ATTN_EXP_BITS, EXP_STEP_BITS, MAX_CONTEXT, NUMERICS_VERSION, OUT_EXP_BITS,  # noqa: F401
                         QK_BITS, QK_LIMIT, RES_BITS, ROPE_BITS, SIG_BITS, SIG_RANGE, SIG_STEP_BITS, TOTAL_BITS, V_BITS,
                         ExactConfig, check_tensors)
from .model_spec import check_bounds as _check_bounds


class _Linear:
    """int8 weights [out, in] with a float scale per output row.

    The integer accumulator acc = xq @ w.T is exact by construction; how it is obtained
    does not change it. Fast path: int16 activations split into two int8 halves
    (xq = 256 * hi + lo, |hi|, |lo| <= 128) and int8 x int8 -> int32 matmuls (VNNI / tensor
    cores; |partial sums| < 128 * 127 * 2**16 < 2**31). Fallback: float64 matmul of the same
    integers (partial sums < 2**38, exact in float64).
    """

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, device: torch.device):
        if q.dtype != torch.int8:
            raise ModelError("exact-model weights must be int8")
        self.w_t = q.t().contiguous().to(device)  # [in, out] for _int_mm
        self.scale = scale.to(device=device, dtype=torch.float64)
        self._w64: torch.Tensor | None = None
        self._int_mm = hasattr(torch, "_int_mm")

    def accumulate(self, xq: torch.Tensor) -> torch.Tensor:
        """Exact integer xq @ w.T as float64, for integral xq with |xq| <= ACT_MAX."""
        shape = xq.shape[:-1]
        x2 = xq.reshape(-1, xq.shape[-1])
        if self._int_mm and x2.shape[0] > 0:
            try:
                hi = torch.floor((x2 + 128.0) * (1.0 / 256)).to(torch.int8)
                lo = (x2 - hi.to(torch.float64) * 256.0).to(torch.int8)
                rows = x2.shape[0]
                if x2.device.type != "cpu" and rows < 32:  # cuBLASLt int8 wants more than 16 rows
                    pad = torch.zeros(32 - rows, x2.shape[1], dtype=torch.int8, device=x2.device)
                    hi, lo = torch.cat([hi, pad]), torch.cat([lo, pad])
                both = torch._int_mm(torch.cat([hi, lo]), self.w_t).to(torch.float64)  # one call, 2x rows
                n = hi.shape[0]
                acc = both[:n].mul_(256.0).add_(both[n:])
                return acc[:rows].reshape(*shape, -1)
            except RuntimeError:  # no int8 kernel for this device/shape: same integers via float64
                self._int_mm = False
        if self._w64 is None:
            self._w64 = self.w_t.to(torch.float64)
        return torch.matmul(x2, self._w64).reshape(*shape, -1)

    def __call__(self, xq: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Real-valued output for int16 activations xq with per-token factor k: (acc * scale) * k."""
        return self.accumulate(xq).mul_(self.scale).mul_(k)


def _quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token symmetric int16 quantisation: x ~= q * s with |q| <= ACT_MAX (q integral float64)."""
    # An all-zero row gets q = 0 whatever s is (and then contributes exact zeros downstream);
    # the floor only keeps the division defined.
    s = x.abs().amax(-1, keepdim=True).clamp_min_(1e-300)
    s = _true_div(s, ACT_MAX)
    q = torch.div(x, s).round_().clamp_(-ACT_MAX, ACT_MAX)
    return q, s


def _true_div(x: torch.Tensor, d: float) -> torch.Tensor:
    """x / d as one IEEE division on every device. CUDA computes ``tensor / python_number`` as
    x * (1/d), two roundings, which differs from the CPU in the last bit (seen on an H100);
    a divisor that is a tensor on x's own device takes the true division kernel there."""
    return x / x.new_full((), float(d))


def _fix(x: torch.Tensor, bits: int, limit: float) -> torch.Tensor:
    """Real -> clamped integer fixed point with ``bits`` fractional bits."""
    return torch.round(x * float(2**bits)).clamp_(-limit, limit)


class KVCache:
    """Per-layer keys/values of B streams (integers held in float64), and each stream's length."""

    def __init__(self, cfg: ExactConfig, batch: int, capacity: int, device: torch.device):
        if capacity > cfg.max_context:
            raise ValueError(f"cache capacity {capacity} exceeds the model's context {cfg.max_context}")
        shape = (batch, cfg.n_kv_heads, capacity, cfg.head_dim)
        self.k = [torch.zeros(shape, dtype=torch.float64, device=device) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, dtype=torch.float64, device=device) for _ in range(cfg.n_layers)]
        self.lengths = torch.zeros(batch, dtype=torch.int64, device=device)
        self.capacity = capacity

    @property
    def batch(self) -> int:
        return int(self.lengths.shape[0])

    def reset(self, slot: int) -> None:
        """Forget stream ``slot`` (its stale keys are masked by the length, no need to zero them)."""
        self.lengths[slot] = 0

    def copy_stream(self, slot: int, other: "KVCache", other_slot: int = 0) -> None:
        """Make stream ``slot`` a copy of ``other``'s stream ``other_slot`` (e.g. a context prefilled alone)."""
        n = int(other.lengths[other_slot])
        for mine, theirs in ((self.k, other.k), (self.v, other.v)):
            for a, b in zip(mine, theirs):
                a[slot, :, :n] = b[other_slot, :, :n]
        self.lengths[slot] = n

    def keep(self, slots: list[int]) -> None:
        """Keep only the given streams, in that order (drops finished streams from a batch)."""
        idx = torch.tensor(slots, dtype=torch.int64, device=self.lengths.device)
        self.k = [t.index_select(0, idx) for t in self.k]
        self.v = [t.index_select(0, idx) for t in self.v]
        self.lengths = self.lengths.index_select(0, idx)


class ExactModel:
    """Exact integer Llama: ``frequencies(tokens)`` for whole sequences, ``step(cache, tokens)`` for decoding.

    Row t of the output is the distribution of the token that follows tokens[..., t].
    Both entry points run the same code; results are bitwise identical whatever the
    batch size, the split into steps, the thread count or the device.
    """

    runtime = "reference"

    def __init__(self, cfg: ExactConfig, tensors: dict, device: str | torch.device = "cpu"):
        _check_bounds(cfg)
        check_tensors(cfg, tensors)  # I8 / F32 of the format's shapes: nothing is widened or narrowed
        tensors = {k: torch.as_tensor(v) for k, v in tensors.items()}  # numpy arrays too
        self.cfg = cfg
        self.device = torch.device(device)
        dev = self.device
        self.chunk_elements = _CHUNK_ELEMENTS if dev.type == "cpu" else _DEVICE_CHUNK_ELEMENTS
        self.embed_q = tensors["embed.q"].to(dev)
        self.embed_scale = tensors["embed.scale"].to(device=dev, dtype=torch.float64)
        self.head = _Linear(tensors["head.q"], tensors["head.scale"], dev)
        self.layers = [
            {w: _Linear(tensors[f"layers.{i}.{w}.q"], tensors[f"layers.{i}.{w}.scale"], dev) for w in ("wqkv", "wo", "w13", "w2")}
            for i in range(cfg.n_layers)
        ]
        hd = cfg.head_dim
        cos, sin = luts.rope_tables(hd, float(cfg.rope_theta), cfg.max_context, ROPE_BITS)

        def table(a, dtype=torch.float64):
            return torch.from_numpy(a.copy()).to(device=dev, dtype=dtype)

        self.rope_cos = table(cos)
        self.rope_sin = table(sin)
        self.attn_exp = table(luts.exp_table(EXP_STEP_BITS, ATTN_EXP_BITS))
        self.out_exp = table(luts.exp_table(EXP_STEP_BITS, OUT_EXP_BITS), torch.int64)
        self.sigmoid = table(luts.sigmoid_table(SIG_STEP_BITS, SIG_BITS, SIG_RANGE))
        # Real score = (q.k) / 2**(2*QK_BITS) / sqrt(head_dim); the exp table wants it on its grid.
        self.score_scale = float(2 ** (EXP_STEP_BITS - 2 * QK_BITS)) / math.sqrt(hd)

    # -- public interface -------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.cfg.vocab_size

    total_bits = TOTAL_BITS

    def new_cache(self, batch: int, capacity: int | None = None) -> KVCache:
        return KVCache(self.cfg, batch, capacity or self.cfg.max_context, self.device)

    @torch.no_grad()
    def frequencies(self, tokens: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """tokens [B, T] (or [T]) -> int32 frequencies [B, T, V] (or [T, V]), rows summing to 2**24."""
        squeeze = tokens.dim() == 1
        if squeeze:
            tokens = tokens[None]
        cache = self.new_cache(tokens.shape[0], max(1, tokens.shape[1]))
        h = self.hidden(cache, tokens)
        out = torch.cat([self.head_frequencies(h[:, i : i + chunk]) for i in range(0, h.shape[1], chunk)], 1)
        return out[0] if squeeze else out

    @torch.no_grad()
    def step(self, cache: KVCache, tokens: torch.Tensor) -> torch.Tensor:
        """Append tokens [B, n] to each stream of the cache; return their frequencies [B, n, V]."""
        return self.head_frequencies(self.hidden(cache, tokens))

    # -- the network --------------------------------------------------------------------

    @torch.no_grad()
    def hidden(self, cache: KVCache, tokens: torch.Tensor) -> torch.Tensor:
        """Run the layers over tokens [B, n] appended to ``cache``; return the residual stream [B, n, d]."""
        cfg = self.cfg
        tokens = torch.as_tensor(tokens).to(self.device, torch.int64)
        B, n = tokens.shape
        if B != cache.batch:
            raise ValueError(f"batch of {B} streams for a cache of {cache.batch}")
        if n == 0:
            return torch.zeros(B, 0, cfg.dim, dtype=torch.float64, device=self.device)
        if int((cache.lengths + n).max()) > cache.capacity:
            raise ValueError("sequence longer than the cache capacity / model context")
        if int(tokens.min()) < 0 or int(tokens.max()) >= cfg.vocab_size:
            raise ValueError("token id out of range")
        pos = cache.lengths[:, None] + torch.arange(n, device=self.device)[None, :]  # [B, n]
        # Embedding lookup: int8 row * row scale, into the fixed-point residual stream.
        emb = self.embed_q[tokens].to(torch.float64).mul_(self.embed_scale[tokens][..., None])
        h = emb.mul_(float(2**RES_BITS)).round_()
        for i, layer in enumerate(self.layers):
            h = h + self._attention(layer, cache, i, h, pos)
            step = max(1, self.chunk_elements // (2 * cfg.ffn_dim))  # tokens per FFN chunk
            flat = h.view(B * n, cfg.dim)
            h = h + torch.cat([self._ffn(layer, flat[t : t + step]) for t in range(0, B * n, step)]).view(B, n, cfg.dim)
        cache.lengths += n
        return h

    def _norm_factor(self, q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Per-token RMSNorm factor k for a quantised residual (norm gains are folded into the weights).

        Uses the int16 image q of the residual: its sum of squares is an exact integer.
        """
        ss = (q * q).sum(-1, keepdim=True)  # < 2**30 * 2**16: exact
        t = s * float(2.0**-RES_BITS)
        ms = _true_div(ss, self.cfg.dim) * t * t
        return t / torch.sqrt(ms + self.cfg.norm_eps)

    def _rope(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Rotate integer x [B, heads, n, hd] at positions pos [B, n] with the integer tables."""
        half = x.shape[-1] // 2
        c = self.rope_cos[pos][:, None]  # [B, 1, n, half]
        s = self.rope_sin[pos][:, None]
        x1, x2 = x[..., :half], x[..., half:]
        r = torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1)  # integers < 2**37: exact
        return torch.round(r * float(2.0**-ROPE_BITS)).clamp_(-QK_LIMIT, QK_LIMIT)

    def _attention(self, layer, cache: KVCache, li: int, h: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        B, n, _ = h.shape
        hd, H, Hk = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        rep = H // Hk
        xq, s = _quantize(h)
        qkv = layer["wqkv"](xq, self._norm_factor(xq, s))
        qkv = _fix(qkv, QK_BITS, QK_LIMIT)  # one fixed point for q, k and v (V_BITS == QK_BITS)
        qk = self._rope(qkv[..., : (H + Hk) * hd].reshape(B, n, H + Hk, hd).transpose(1, 2), pos)
        q, k = qk[:, :H], qk[:, H:]
        v = qkv[..., (H + Hk) * hd :].reshape(B, n, Hk, hd)
        # Store the new keys/values at each stream's own positions.
        b_idx = torch.arange(B, device=h.device)[:, None].expand(B, n)
        cache.k[li][b_idx, :, pos] = k.transpose(1, 2)
        cache.v[li][b_idx, :, pos] = v
        # Query heads sharing a KV head become rows (position-major): [B, Hk, n * rep, hd].
        qg = q.reshape(B, Hk, rep, n, hd).transpose(2, 3).reshape(B, Hk, n * rep, hd)
        qpos = pos.repeat_interleave(rep, 1)  # [B, n * rep]
        o = self._softmax_mix(qg, qpos, cache.k[li], cache.v[li])  # [B, Hk, n * rep, hd], value units
        o = o.view(B, Hk, n, rep, hd).transpose(1, 2).reshape(B, n, H * hd)
        oq, os_ = _quantize(o)
        out = layer["wo"](oq, os_ * float(2.0**-V_BITS))
        return out.mul_(float(2**RES_BITS)).round_()

    def _softmax_mix(self, q: torch.Tensor, qpos: torch.Tensor, keys: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
        """sum_j softmax(q.k_j) v_j over keys j <= the query's position, with integer weights from the exp table.

        Chunked over query rows (keeps temporaries small, and a causal chunk only reads
        the keys up to its last position); chunking changes nothing in the result.
        """
        B, Hk, R, _ = q.shape
        last = len(self.attn_exp) - 1
        outs = []
        r0 = 0
        while r0 < R:
            L = int(qpos[:, min(R, r0 + 1) - 1 :].max()) + 1  # upper bound for this chunk's keys
            rows = max(1, min(R - r0, self.chunk_elements // (B * Hk * L)))
            qc, pc = q[:, :, r0 : r0 + rows], qpos[:, r0 : r0 + rows]
            L = int(pc.max()) + 1
            scores = torch.matmul(qc, keys[:, :, :L].transpose(-1, -2))  # exact integers
            masked = torch.arange(L, device=q.device)[None, None, :] > pc[:, :, None]  # [B, rows, L]
            scores.masked_fill_(masked[:, None], -math.inf)
            top = scores.amax(-1, keepdim=True)
            # (top - score) on the table grid; masked entries become +inf and land on the final 0.
            idx = scores.sub_(top).neg_().mul_(self.score_scale).round_().clamp_(max=last).long()
            e = self.attn_exp[idx]  # integers <= 2**20
            z = e.sum(-1, keepdim=True)  # exact
            outs.append(torch.matmul(e, vals[:, :, :L]).div_(z))  # exact numerator, one IEEE division
            r0 += rows
        return torch.cat(outs, 2)

    def _ffn(self, layer, h: torch.Tensor) -> torch.Tensor:
        F = self.cfg.ffn_dim
        xq, s = _quantize(h)
        gu = layer["w13"](xq, self._norm_factor(xq, s))
        g, u = gu[..., :F], gu[..., F:]
        n = SIG_RANGE << SIG_STEP_BITS
        idx = (g * float(2**SIG_STEP_BITS)).round_().clamp_(-n, n).add_(n).long()
        a = self.sigmoid[idx].mul_(float(2.0**-SIG_BITS))  # sigmoid(g)
        a = torch.mul(g, a).mul_(u)  # SiLU(g) * u = (g * sigmoid(g)) * u
        aq, as_ = _quantize(a)
        return layer["w2"](aq, as_).mul_(float(2**RES_BITS)).round_()

    @torch.no_grad()
    def head_frequencies(self, h: torch.Tensor) -> torch.Tensor:
        """Residual stream [..., d] -> int32 frequencies [..., V]: every entry >= 1, rows sum to 2**24."""
        shape = h.shape[:-1]
        flat = h.reshape(-1, h.shape[-1])
        rows = max(1, self.chunk_elements // self.cfg.vocab_size)
        out = torch.empty(flat.shape[0], self.cfg.vocab_size, dtype=torch.int32, device=h.device)
        for r0 in range(0, flat.shape[0], rows):
            out[r0 : r0 + rows] = self.logit_frequencies(self._head_logits(flat[r0 : r0 + rows]))
        return out.view(*shape, self.cfg.vocab_size)

    @torch.no_grad()
    def head_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Residual stream [..., d] -> int64 logits [..., V] on the exp table's grid (units of 2**-10 nat).

        ``logit_frequencies(head_logits(h)) == head_frequencies(h)``; the adaptive predictor
        (``adapt.py``) works on these integers before they become frequencies."""
        shape = h.shape[:-1]
        flat = h.reshape(-1, h.shape[-1])
        rows = max(1, self.chunk_elements // self.cfg.vocab_size)
        out = torch.cat([self._head_logits(flat[r0 : r0 + rows]) for r0 in range(0, max(1, flat.shape[0]), rows)])
        return out[: flat.shape[0]].view(*shape, self.cfg.vocab_size)

    def _head_logits(self, flat: torch.Tensor) -> torch.Tensor:
        xq, s = _quantize(flat)
        # Logits on the exp table's grid (the factor 2**10 is exact), then rounded: integers in float64.
        return self.head(xq, self._norm_factor(xq, s).mul_(float(2**EXP_STEP_BITS))).round_().long()

    def logit_frequencies(self, z: torch.Tensor) -> torch.Tensor:
        """Integer logits [..., V] (2**-10 nat units) -> int32 frequencies >= 1 summing to 2**24 per row."""
        z = torch.as_tensor(z, device=self.device)
        idx = (z.amax(-1, keepdim=True) - z).clamp_(max=len(self.out_exp) - 1)
        return normalize_frequencies(self.out_exp[idx])


# Temporaries stay below ~16 MB of float64 on a CPU: larger ones are fresh mmaps whose page faults
# cost more than the arithmetic. On a GPU every chunk is a dozen kernel launches and memory is
# pooled: chunks of 512 MB keep a batch of segments' attention from being thousands of launches.
# (Chunks split independent rows only: the integers do not depend on the size.)
_CHUNK_ELEMENTS = 1 << 21
_DEVICE_CHUNK_ELEMENTS = 1 << 26


def normalize_frequencies(e: torch.Tensor, total_bits: int = TOTAL_BITS) -> torch.Tensor:
    """Integer weights [..., V] (0 <= e <= 2**30, some > 0) -> int32 frequencies >= 1 summing to 2**total_bits.

    Each symbol gets 1 plus floor(e * r / 2**32) with r = floor(spare * 2**32 / sum(e)),
    so the shares never exceed the spare mass; the remainder goes to the first symbol of
    largest weight. Pure integer arithmetic (products < 2**56).
    """
    V = e.shape[-1]
    spare = 2**total_bits - V
    if spare <= 0:
        raise ValueError("vocabulary too large for the coder's precision")
    z = e.sum(-1, keepdim=True)
    r = torch.div(spare << 32, z, rounding_mode="floor")
    f = e.mul(r).bitwise_right_shift_(32)
    rest = spare - f.sum(-1, keepdim=True)
    f.scatter_add_(-1, e.argmax(-1, keepdim=True), rest)
    return f.add_(1).to(torch.int32)


# -- files --------------------------------------------------------------------------------

from .model_spec import WEIGHTS_NAME  # noqa: E402,F401


def save_exact(path: str | Path, cfg: ExactConfig, tensors: dict) -> None:
    """Write an exact model as one safetensors file (config in its metadata under ``lmzip_config``)."""
    from .model_spec import save_exact as save

    save(path, cfg, tensors)


def load_exact(path: str | Path, device: str | torch.device = "cpu") -> ExactModel:
    """Load an exact model file written by ``save_exact``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        cfg = ExactConfig.from_dict(json.loads(meta["lmzip_config"]))
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error type for corrupt files
        raise ModelError(f"cannot load exact model {path}: {exc}") from exc
    return ExactModel(cfg, tensors, device)
