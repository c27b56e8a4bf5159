"""Float Llama weights -> exact-model tensors (int8 rows + float32 row scales).

RMSNorm gains are folded into the matrices that read the normalised stream (the norm
then reduces to one per-token factor, applied after the exact integer matmul).
"""

from __future__ import annotations

import numpy as np

from .gguf_import import LlamaConfig
from .model_spec import ExactConfig


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output row: w ~= q * scale[:, None]."""
    w = np.asarray(w, dtype=np.float32)
    scale = (np.abs(w).max(axis=1) / np.float32(127)).astype(np.float32)
    scale[scale == 0] = 1
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def exact_config(cfg: LlamaConfig, max_context: int) -> ExactConfig:
    return ExactConfig(
        vocab_size=cfg.vocab_size, dim=cfg.dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
        n_kv_heads=cfg.n_kv_heads, ffn_dim=cfg.ffn_dim, rope_theta=cfg.rope_theta,
        norm_eps=cfg.norm_eps, max_context=min(max_context, cfg.max_context),
    )


def exact_tensors(cfg: LlamaConfig, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """GGUF-named float weights (HF row order) -> exact-model tensors (numpy; torch is not needed)."""
    out: dict[str, np.ndarray] = {}

    def put(name: str, mat: np.ndarray) -> None:
        out[name + ".q"], out[name + ".scale"] = quantize_rows(mat)

    emb = w["token_embd.weight"]
    put("embed", emb)
    put("head", emb * w["output_norm.weight"][None, :])  # output head tied to the embedding
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        qkv = np.concatenate([w[p + "attn_q.weight"], w[p + "attn_k.weight"], w[p + "attn_v.weight"]])
        put(f"layers.{i}.wqkv", qkv * w[p + "attn_norm.weight"][None, :])
        put(f"layers.{i}.wo", w[p + "attn_output.weight"])
        gate_up = np.concatenate([w[p + "ffn_gate.weight"], w[p + "ffn_up.weight"]])
        put(f"layers.{i}.w13", gate_up * w[p + "ffn_norm.weight"][None, :])
        put(f"layers.{i}.w2", w[p + "ffn_down.weight"])
    return out


def random_llama(seed: int = 0, vocab_size: int = 256, dim: int = 32, n_layers: int = 2, n_heads: int = 4,
                 n_kv_heads: int = 2, ffn_dim: int = 64, max_context: int = 512) -> tuple[LlamaConfig, dict[str, np.ndarray]]:
    """A tiny random-weight Llama (float, GGUF names) for tests: fast, and exercises every code path."""
    rng = np.random.default_rng(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
                      ffn_dim=ffn_dim, rope_theta=10000.0, norm_eps=1e-5, max_context=max_context)
    hd = dim // n_heads

    def mat(rows: int, cols: int, gain: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * gain / np.sqrt(cols)).astype(np.float32)

    w = {"token_embd.weight": mat(vocab_size, dim, 4.0), "output_norm.weight": (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32)}
    for i in range(n_layers):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32)
        w[p + "ffn_norm.weight"] = (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32)
        w[p + "attn_q.weight"] = mat(n_heads * hd, dim, 2.0)
        w[p + "attn_k.weight"] = mat(n_kv_heads * hd, dim, 2.0)
        w[p + "attn_v.weight"] = mat(n_kv_heads * hd, dim)
        w[p + "attn_output.weight"] = mat(dim, n_heads * hd)
        w[p + "ffn_gate.weight"] = mat(ffn_dim, dim)
        w[p + "ffn_up.weight"] = mat(ffn_dim, dim)
        w[p + "ffn_down.weight"] = mat(dim, ffn_dim)
    return cfg, w
