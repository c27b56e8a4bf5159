"""The exact model's definition, shared by every runtime: its numerics and its shape.

The constants below are part of every compressed file's meaning (see ``exact_model.py`` for
the torch reference that defines what they compute, and ``native/`` for the C++ runtime that
computes the same integers); ``ExactConfig`` is a model's shape; ``check_bounds`` refuses a
shape whose sums could leave the range where integer arithmetic in float64 is exact, and
``check_tensors`` weights of another dtype or shape than the format names. This
module needs neither torch nor the native extension.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from ..errors import ModelError

# Numerics, part of every compressed file's meaning: changing any of these changes the
# model's output, so they are versioned together (NUMERICS_VERSION, recorded in model configs).
NUMERICS_VERSION = 1
ACT_MAX = 32639  # int16 activations, = 127 * 256 + 127 so both int8 halves fit (see _Linear)
RES_BITS = 16  # residual stream fixed point: value * 2**16, kept integral
QK_BITS = 12  # query/key fixed point
V_BITS = QK_BITS  # value fixed point (shared: q, k, v are fixed in one operation)
QK_LIMIT = float(2**20)  # clamp for q, k, v integers (see the bounds in exact_model.py's docstring)
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
        """The config of a JSON object; keys it does not know are ignored, ``max_context`` and
        ``numerics`` default to 4096 and 1 (files written before they existed lack them)."""
        if not isinstance(d, dict):
            raise ModelError(f"model config is a JSON {type(d).__name__}, not an object")
        known = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.name not in d and f.name not in ("max_context", "numerics")]
        if missing:
            raise ModelError(f"model config lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in d.items() if k in known})


def _iter_specs(cfg: ExactConfig):
    V, d, F, D, H, Hk = cfg.vocab_size, cfg.dim, cfg.ffn_dim, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads

    def matrices():
        yield "embed", (V, d)
        yield "head", (V, d)
        for i in range(cfg.n_layers):
            yield f"layers.{i}.wqkv", ((H + 2 * Hk) * D, d)
            yield f"layers.{i}.wo", (d, H * D)
            yield f"layers.{i}.w13", (2 * F, d)
            yield f"layers.{i}.w2", (d, F)

    for name, (rows, cols) in matrices():
        yield name + ".q", ("I8", (rows, cols))
        yield name + ".scale", ("F32", (rows,))


def tensor_specs(cfg: ExactConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
    """(safetensors dtype, shape) of every tensor a model file must hold (FORMAT.md §7.5.2), in
    file order: each matrix ``X`` is ``X.q`` (I8, ``[rows, cols]``) and ``X.scale`` (F32, ``[rows]``).
    The shapes assume ``check_bounds(cfg)`` has passed (``n_heads`` divides ``dim``)."""
    return dict(_iter_specs(cfg))


def tensor_names(cfg: ExactConfig) -> list[str]:
    """Names of the integer weights (``*.q`` int8) and their per-row scales (``*.scale`` float32)."""
    return list(tensor_specs(cfg))


# numpy's and torch's dtype names (str(dtype), less torch's "torch." prefix) -> safetensors' names
_ST_DTYPES = {"bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "uint16": "U16", "float16": "F16",
              "bfloat16": "BF16", "int32": "I32", "uint32": "U32", "float32": "F32", "float64": "F64",
              "int64": "I64", "uint64": "U64", "float8_e5m2": "F8_E5M2", "float8_e4m3fn": "F8_E4M3"}


def _dtype_name(x) -> str:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return type(x).__name__
    s = str(dtype).removeprefix("torch.")
    return _ST_DTYPES.get(s, s)


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(n) for n in shape) + "]"


def check_tensors(cfg: ExactConfig, tensors: dict) -> None:
    """Refuse (``ModelError``, one line naming the tensor) weights that lack a tensor of
    ``tensor_specs(cfg)`` or hold one of another dtype or shape. ``tensors`` maps names to numpy
    arrays or torch tensors; tensors it holds beyond these are not looked at. Both runtimes call
    this before using any weight, so neither widens or narrows what the file holds: a file they
    accept means the same integers to both."""
    missing: list[str] = []
    for name, _ in _iter_specs(cfg):  # lazily: a config's n_layers may be absurd, the file's tensors are not
        if name not in tensors:
            missing.append(name)
            if len(missing) == 4:
                break
    if missing:
        raise ModelError(f"model file lacks tensors: {', '.join(missing)}")
    for name, (dtype, shape) in _iter_specs(cfg):
        t = tensors[name]
        got_dtype = _dtype_name(t)
        try:
            got_shape = tuple(int(n) for n in t.shape)
        except (AttributeError, TypeError, ValueError):
            got_shape = None
        if got_dtype != dtype or got_shape != shape:
            got = f"{got_dtype} {_shape_text(got_shape)}" if got_shape is not None else got_dtype
            raise ModelError(f"model tensor {name!r} is {got}; the format requires {dtype} {_shape_text(shape)} "
                             "(FORMAT.md §7.5.2)")


_MIN = {"vocab_size": 1, "dim": 1, "n_layers": 0, "n_heads": 1, "n_kv_heads": 1, "ffn_dim": 1, "max_context": 1,
        "numerics": 0}


def _check_types(cfg: ExactConfig) -> None:
    """Integers where the format has integers, finite positive reals where it has reals: a config
    of other values is refused before it reaches arithmetic (where the runtimes would fail apart)."""
    import math
    from numbers import Integral, Real

    for name, low in _MIN.items():
        v = getattr(cfg, name)
        if not isinstance(v, Integral) or isinstance(v, bool) or v < low:
            raise ModelError(f"model config: {name} must be an integer >= {low}, not {v!r}")
    for name in ("rope_theta", "norm_eps"):
        v = getattr(cfg, name)
        if not isinstance(v, Real) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise ModelError(f"model config: {name} must be a finite number > 0, not {v!r}")
    if cfg.vocab_size >= 2**TOTAL_BITS:
        raise ModelError(f"model config: vocab_size {cfg.vocab_size} leaves no room in 2**{TOTAL_BITS} frequencies")


def check_bounds(cfg: ExactConfig) -> None:
    """Refuse (``ModelError``) a config FORMAT.md §7.5.2 does not allow: wrong numerics version,
    inconsistent attention shape, sizes beyond the bounds that keep float64 sums exact."""
    _check_types(cfg)
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
