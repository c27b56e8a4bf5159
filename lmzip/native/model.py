"""NativeModel: the exact model on the native runtime, with ExactModel's interface.

Inputs may be numpy arrays or torch tensors; outputs are numpy arrays. Rows are bit for bit
those of ``exact_model.ExactModel`` (tests compare them on random models of several shapes,
batch sizes, step splits, thread counts and SIMD levels, and on the teacher's digest).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..model import luts
from ..errors import ModelError
from ..model.model_spec import (
    ATTN_EXP_BITS,
    EXP_STEP_BITS,
    OUT_EXP_BITS,
    QK_BITS,
    ROPE_BITS,
    SIG_BITS,
    SIG_RANGE,
    SIG_STEP_BITS,
    TOTAL_BITS,
    ExactConfig,
    check_bounds,
    check_tensors,
)
from . import _native, default_threads, simd_level
from .weights import open_safetensors


def _np(x, dtype=None) -> np.ndarray:
    """numpy view of an array-like (torch tensors on the CPU included), without copying when possible."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=dtype)


class NativeCache:
    """Keys/values of B streams in int32 (exact: |k|, |v| <= 2**20), owned by C++."""

    def __init__(self, raw):
        self._raw = raw

    @property
    def lengths(self) -> np.ndarray:
        return self._raw.lengths()  # a writable view into the cache (codec resets lengths through it)

    @property
    def batch(self) -> int:
        return self._raw.batch

    @property
    def capacity(self) -> int:
        return self._raw.capacity

    @property
    def nbytes(self) -> int:
        return self._raw.nbytes

    def reset(self, slot: int) -> None:
        self.lengths[slot] = 0

    def copy_stream(self, slot: int, other: "NativeCache", other_slot: int = 0) -> None:
        self._raw.copy_stream(slot, other._raw, other_slot)

    def keep(self, slots: list[int]) -> None:
        self._raw.keep(list(slots))


class NativeModel:
    """Exact integer Llama on the native runtime (CPU)."""

    device = "cpu"
    runtime = "native"
    total_bits = TOTAL_BITS

    def __init__(self, cfg: ExactConfig, tensors: dict, simd: int | None = None, threads: int | None = None):
        check_bounds(cfg)
        check_tensors(cfg, tensors)  # I8 / F32 of the format's shapes, before any is used
        self.cfg = cfg
        hd = cfg.head_dim
        cos, sin = luts.rope_tables(hd, float(cfg.rope_theta), cfg.max_context, ROPE_BITS)
        self.out_exp = _np(luts.exp_table(EXP_STEP_BITS, OUT_EXP_BITS), np.int64)
        tables = {
            "rope_cos": _np(cos, np.float64).reshape(-1),
            "rope_sin": _np(sin, np.float64).reshape(-1),
            "attn_exp": _np(luts.exp_table(EXP_STEP_BITS, ATTN_EXP_BITS), np.float64),
            "out_exp": self.out_exp,
            "sigmoid": _np(luts.sigmoid_table(SIG_STEP_BITS, SIG_BITS, SIG_RANGE), np.float64),
        }
        conf = {
            "vocab_size": cfg.vocab_size, "dim": cfg.dim, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads,
            "n_kv_heads": cfg.n_kv_heads, "ffn_dim": cfg.ffn_dim, "max_context": cfg.max_context,
            "norm_eps": float(cfg.norm_eps),
            # the reference's own expression, so the constant is the same double
            "score_scale": float(2 ** (EXP_STEP_BITS - 2 * QK_BITS)) / math.sqrt(hd),
        }
        self._m = _native.Model(conf, tables, simd_level() if simd is None else simd,
                                default_threads() if threads is None else threads)
        names = ["embed", "head"] + [f"layers.{i}.{w}" for i in range(cfg.n_layers) for w in ("wqkv", "wo", "w13", "w2")]
        for name in names:
            q, scale = tensors[name + ".q"], tensors[name + ".scale"]
            if hasattr(q, "detach"):
                q = q.detach().cpu().numpy()
            if hasattr(scale, "detach"):
                scale = scale.detach().cpu().numpy()
            # check_tensors saw int8 and float32: these are views, never conversions
            self._m.set_weights(name, np.ascontiguousarray(q), np.ascontiguousarray(scale))

    # -- settings -----------------------------------------------------------------------

    @property
    def simd(self) -> int:
        return self._m.simd

    @simd.setter
    def simd(self, level: int) -> None:
        self._m.simd = level

    @property
    def threads(self) -> int:
        return self._m.threads

    @threads.setter
    def threads(self, n: int) -> None:
        self._m.threads = n

    @property
    def vocab_size(self) -> int:
        return self.cfg.vocab_size

    # -- ExactModel's interface -----------------------------------------------------------

    def new_cache(self, batch: int, capacity: int | None = None) -> NativeCache:
        capacity = capacity or self.cfg.max_context
        if capacity > self.cfg.max_context:
            raise ValueError(f"cache capacity {capacity} exceeds the model's context {self.cfg.max_context}")
        return NativeCache(self._m.new_cache(batch, capacity))

    def hidden(self, cache: NativeCache, tokens) -> np.ndarray:
        """Run the layers over tokens [B, n] appended to ``cache``; the residual stream [B, n, d]."""
        return self._m.hidden(cache._raw, _np(tokens, np.int64))

    def head_logits(self, h) -> np.ndarray:
        return self._m.head_logits(_np(h, np.float64))

    def head_logits32(self, h) -> np.ndarray:
        """``head_logits`` in int32 (half the bytes for the predictor to read), or the int64 rows
        if an entry exceeds 2**30 in magnitude (no real model's logits come near: 2**20 nats)."""
        z = self._m.head_logits32(_np(h, np.float64))
        return self.head_logits(h) if z is None else z

    def head_frequencies(self, h) -> np.ndarray:
        return self._m.head_frequencies(_np(h, np.float64))

    def step(self, cache: NativeCache, tokens) -> np.ndarray:
        return self.head_frequencies(self.hidden(cache, tokens))

    def frequencies(self, tokens, chunk: int = 256) -> np.ndarray:
        t = _np(tokens, np.int64)
        squeeze = t.ndim == 1
        if squeeze:
            t = t[None]
        cache = self.new_cache(t.shape[0], max(1, t.shape[1]))
        out = self.head_frequencies(self.hidden(cache, t))
        return out[0] if squeeze else out

    def logit_frequencies(self, z) -> np.ndarray:
        """Integer logits [..., V] -> int32 frequencies (what head_frequencies makes of head_logits)."""
        return self._m.logit_frequencies(_np(z, np.int64))


def load_native(path: str | Path, simd: int | None = None, threads: int | None = None) -> NativeModel:
    """Load an exact model file (``exact_model.save_exact``) onto the native runtime, memory-mapped."""
    meta, tensors = open_safetensors(path)
    try:
        cfg = ExactConfig.from_dict(json.loads(meta["lmzip_config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"cannot load exact model {path}: no valid lmzip config ({exc})") from None
    return NativeModel(cfg, tensors, simd, threads)
