"""The exact model's definition, shared by every runtime: its numerics and its shape.

The constants below are part of every compressed file's meaning (see ``exact_model.py`` for
the torch reference that defines what they compute, and ``native/`` for the C++ runtime that
computes the same integers); ``ExactConfig`` is a model's shape; ``check_bounds`` refuses a
shape whose sums could leave the range where integer arithmetic in float64 is exact. This
module needs neither torch nor the native extension.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from .errors import ModelError

# Numerics, part of every compressed file's meaning: changing any of these changes the
# model's output, so they are versioned together (NUMERICS_VERSION, recorded in model configs).
NUMERICS_VERSION = 1
ACT_MAX = 32639  # int16 activations, = 127 * 256 + 127 so both int8 halves fit (see _Linear)
RES_BITS = 16  # residual stream fixed point: value * 2**16, kept integral
QK_BITS = 12  # query/key fixed point
V_BITS = QK_BITS  # value fixed point (shared: q, k, v are fixed in one operation)
QK_LIMIT = float(2**20)  # clamp for q, k, v integers (see bounds above)
ROPE_BITS = 16  # cos/sin table resolution
EXP_STEP_BITS = 10  # exp tables are indexed on a 1/1024 grid of the exponent
ATTN_EXP_BITS = 20  # attention weights: integers <= 2**20
OUT_EXP_BITS = 30  # output distribution before normalisation: integers <= 2**30
SIG_STEP_BITS = 10  # sigmoid table grid 1/1024
SIG_BITS = 24  # sigmoid values * 2**24
SIG_RANGE = 16  # sigmoid table covers [-16, 16]; saturates outside
TOTAL_BITS = 24  # each frequency row sums to 2**24 (the range coder's precision)
MAX_CONTEXT = 4096  # longest sequence the e.v bound allows


@dataclass(frozen=True)
class ExactConfig:
    """Shape of an exact model (the numerics are module constants, versioned by ``numerics``)."""

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    rope_theta: float
    norm_eps: float
    max_context: int = MAX_CONTEXT
    numerics: int = NUMERICS_VERSION

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> "ExactConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def tensor_names(cfg: ExactConfig) -> list[str]:
    """Names of the integer weights (``*.q`` int8) and their per-row scales (``*.scale`` float32)."""
    names = ["embed", "head"]
    for i in range(cfg.n_layers):
        names += [f"layers.{i}.{w}" for w in ("wqkv", "wo", "w13", "w2")]
    return [n + s for n in names for s in (".q", ".scale")]


def check_bounds(cfg: ExactConfig) -> None:
    if cfg.numerics != NUMERICS_VERSION:
        raise ModelError(f"model uses numerics version {cfg.numerics}; this lmzip implements {NUMERICS_VERSION}")
    if cfg.dim % cfg.n_heads or cfg.n_heads % cfg.n_kv_heads or cfg.head_dim % 2:
        raise ModelError("inconsistent attention shape in model config")
    if max(cfg.dim, cfg.ffn_dim) > 2**16 or cfg.head_dim > 256 or cfg.max_context > MAX_CONTEXT:
        raise ModelError("model shape exceeds the bounds that keep float64 reductions exact")


WEIGHTS_NAME = "model.safetensors"  # weights, with the config as JSON in the metadata: one file, one hash


def save_exact(path, cfg: ExactConfig, tensors: dict) -> None:
    """Write an exact model as one safetensors file (config in its metadata under ``lmzip_config``).

    Tensors may be numpy arrays or torch tensors; the bytes are the same either way."""
    import numpy as np
    from safetensors.numpy import save_file

    arrays = {k: np.ascontiguousarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in tensors.items()}
    save_file(arrays, str(path), metadata={"lmzip_config": cfg.to_json()})
