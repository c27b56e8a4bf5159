"""Read a llama-architecture GGUF file into float32 weights and a config.

Only the teacher's source file goes through here (SmolLM2-135M-Instruct.Q4_1.gguf);
the exact model is built from what this returns (see ``convert.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError


@dataclass(frozen=True)
class LlamaConfig:
    """Shape of a Llama-style decoder (the names follow nanoGPT/HF usage)."""

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    rope_theta: float
    norm_eps: float
    max_context: int

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


def _field(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        raise ModelError(f"GGUF file lacks metadata field {key!r}")
    return field.contents()


def _unpermute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's row permutation of Q/K weights.

    llama.cpp's converter reorders each head's rows so that its RoPE rotates adjacent
    pairs; the model was trained rotating (i, i + head_dim/2) pairs. Without this the
    model scores ~6 nats/token instead of ~3.
    """
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def read_llama_gguf(path: str | Path) -> tuple[LlamaConfig, dict[str, np.ndarray]]:
    """Return the config and float32 weights (HF layout: [out, in]) of a llama GGUF file."""
    import gguf  # imported lazily: only model conversion needs it

    reader = gguf.GGUFReader(str(path))
    if _field(reader, "general.architecture") != "llama":
        raise ModelError(f"{path}: not a llama-architecture GGUF file")
    cfg = LlamaConfig(
        vocab_size=int(_field(reader, "llama.vocab_size")),
        dim=int(_field(reader, "llama.embedding_length")),
        n_layers=int(_field(reader, "llama.block_count")),
        n_heads=int(_field(reader, "llama.attention.head_count")),
        n_kv_heads=int(_field(reader, "llama.attention.head_count_kv")),
        ffn_dim=int(_field(reader, "llama.feed_forward_length")),
        rope_theta=float(_field(reader, "llama.rope.freq_base")),
        norm_eps=float(np.float32(_field(reader, "llama.attention.layer_norm_rms_epsilon"))),
        max_context=int(_field(reader, "llama.context_length")),
    )
    weights: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        # GGUF lists dimensions innermost first; numpy shape is the reverse.
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        weights[t.name] = w
    for i in range(cfg.n_layers):
        weights[f"blk.{i}.attn_q.weight"] = _unpermute(weights[f"blk.{i}.attn_q.weight"], cfg.n_heads)
        weights[f"blk.{i}.attn_k.weight"] = _unpermute(weights[f"blk.{i}.attn_k.weight"], cfg.n_kv_heads)
    return cfg, weights
