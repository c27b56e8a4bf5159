"""The teacher as a float torch module, with its tokenizer.

Its soft distributions are training targets only, so a float forward is enough (only the exported
student must follow the exact numerics). Three sources:

* ``exact``: an lmzip model directory or registry id; the int8 weights are dequantised
  (``float_model.float_weights_from_exact``: the teacher lmzip codes with, norm gains folded in).
* ``gguf``: the float source file (SmolLM2-135M-Instruct.Q4_1.gguf, needs the ``gguf`` package),
  optionally checked against a sha256; its tokenizer is read from the same file.
* ``random``: ``convert.random_llama(seed, **shape)`` with the byte tokenizer (tests), the same
  weights ``testing.write_tiny_model`` converts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError


@dataclass
class Teacher:
    module: object  # model.Llama
    tokenizer: object  # lmzip.model.tokenizer.Tokenizer
    description: str
    cfg: object  # LlamaConfig


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def load_teacher(spec) -> Teacher:
    """Build the teacher of a ``config.TeacherSpec`` on the CPU in float32 (the caller moves it)."""
    from ..model.gguf_import import LlamaConfig
    from .model import Llama

    if spec.kind == "random":
        from ..model.convert import random_llama
        from ..model.tokenizer import ByteTokenizer

        cfg, w = random_llama(spec.seed, **spec.shape)
        tok = ByteTokenizer() if cfg.vocab_size == 256 else None
        if tok is None:
            raise ModelError("a random teacher needs the byte vocabulary (vocab_size 256)")
        return Teacher(Llama.from_gguf_weights(cfg, w), tok, f"random Llama (seed {spec.seed}, {spec.shape})", cfg)
    if spec.kind == "gguf":
        from ..model.gguf_import import read_llama_gguf
        from ..model.tokenizer import BPETokenizer

        path = Path(spec.path)
        if not path.is_file():
            raise ModelError(f"teacher GGUF file {path} not found")
        if spec.sha256 and _sha256(path) != spec.sha256:
            raise ModelError(f"teacher GGUF file {path}: sha256 differs from teacher.sha256")
        cfg, w = read_llama_gguf(path)
        return Teacher(Llama.from_gguf_weights(cfg, w), BPETokenizer.from_gguf(path), f"GGUF {path.name}", cfg)
    # exact: a model directory or a registry id (pulled if needed)
    import json

    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from ..model import zoo
    from ..model.float_model import float_weights_from_exact
    from ..model.model_spec import ExactConfig
    from ..model.tokenizer import load_tokenizer

    model_id, directory = zoo.resolve(spec.path)
    weights = directory / zoo.WEIGHTS
    if spec.sha256 and zoo.sha256_file(weights) != spec.sha256:
        raise ModelError(f"teacher {weights}: sha256 differs from teacher.sha256")
    with safe_open(str(weights), framework="pt") as f:
        ecfg = ExactConfig.from_dict(json.loads((f.metadata() or {})["lmzip_config"]))
    tensors = load_file(str(weights))
    w = float_weights_from_exact(ecfg, {k: v.to(torch.int8) if k.endswith(".q") else v for k, v in tensors.items()})
    cfg = LlamaConfig(vocab_size=ecfg.vocab_size, dim=ecfg.dim, n_layers=ecfg.n_layers, n_heads=ecfg.n_heads,
                      n_kv_heads=ecfg.n_kv_heads, ffn_dim=ecfg.ffn_dim, rope_theta=float(ecfg.rope_theta),
                      norm_eps=float(ecfg.norm_eps), max_context=ecfg.max_context)
    tok = load_tokenizer(directory / zoo.TOKENIZER_DIR)
    return Teacher(Llama.from_gguf_weights(cfg, w), tok, f"exact model {model_id} ({directory})", cfg)
