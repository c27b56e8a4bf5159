"""A trained float student -> an lmzip model directory (FORMAT.md §7.5: int8 rows + float32 row scales).

The float student has the exact runtime's shape, so the export is ``convert.exact_tensors`` (RMSNorm
gains folded into the matrices that read the normalised stream, symmetric int8 per output row),
with two additions: an untied output head (``output.weight``, times the final norm's gain, where
the teacher's head is its embedding) and fewer weight levels on request (``weight_bits`` b < 8:
``q`` in ``[-(2^(b-1) - 1), 2^(b-1) - 1]``, still stored as int8, so the runtimes read it as they
read any model; the file compresses better and the model is worse by what ``evaluate`` reports).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..model.convert import exact_config, exact_tensors
from ..model.gguf_import import LlamaConfig
from ..model.model_spec import save_exact
from ..coding.schedule import windows
from ..model.zoo import TOKENIZER_DIR, WEIGHTS


def quantize_rows_bits(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row quantisation to 2**(bits-1) - 1 levels a side (bits = 8: ``convert.quantize_rows``)."""
    qmax = 2 ** (bits - 1) - 1
    w = np.asarray(w, dtype=np.float32)
    scale = (np.abs(w).max(axis=1) / np.float32(qmax)).astype(np.float32)
    scale[scale == 0] = 1
    q = np.clip(np.rint(w / scale[:, None]), -qmax, qmax).astype(np.int8)
    return q, scale


def student_tensors(cfg: LlamaConfig, w: dict[str, np.ndarray], bits: int = 8) -> dict[str, np.ndarray]:
    """Exact-model tensors of GGUF-named float weights (``output.weight`` optional)."""
    out = exact_tensors(cfg, w)
    if "output.weight" in w:
        out["head.q"], out["head.scale"] = quantize_rows_bits(w["output.weight"] * w["output_norm.weight"][None, :], 8)
    if bits != 8:  # re-quantise every matrix from the float weights, as exact_tensors folds them
        folded = _folded(cfg, w)
        for name, mat in folded.items():
            out[name + ".q"], out[name + ".scale"] = quantize_rows_bits(mat, bits)
    return out


def _folded(cfg: LlamaConfig, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    m = {"embed": w["token_embd.weight"],
         "head": w.get("output.weight", w["token_embd.weight"]) * w["output_norm.weight"][None, :]}
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        qkv = np.concatenate([w[p + "attn_q.weight"], w[p + "attn_k.weight"], w[p + "attn_v.weight"]])
        m[f"layers.{i}.wqkv"] = qkv * w[p + "attn_norm.weight"][None, :]
        m[f"layers.{i}.wo"] = w[p + "attn_output.weight"]
        gu = np.concatenate([w[p + "ffn_gate.weight"], w[p + "ffn_up.weight"]])
        m[f"layers.{i}.w13"] = gu * w[p + "ffn_norm.weight"][None, :]
        m[f"layers.{i}.w2"] = w[p + "ffn_down.weight"]
    return m


def export_model(module, tokenizer, directory: str | Path, max_context: int | None = None, bits: int = 8,
                 card: dict | None = None) -> Path:
    """Write ``directory`` (model.safetensors, tokenizer/, training.json) atomically; return it."""
    c = module.cfg
    ctx = max_context or c.max_context
    lcfg = LlamaConfig(vocab_size=c.vocab_size, dim=c.dim, n_layers=c.n_layers, n_heads=c.n_heads,
                       n_kv_heads=c.n_kv_heads, ffn_dim=c.ffn_dim, rope_theta=c.rope_theta, norm_eps=c.norm_eps,
                       max_context=ctx)
    tensors = student_tensors(lcfg, module.to_gguf_weights(), bits)
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.{os.getpid()}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_exact(tmp / WEIGHTS, exact_config(lcfg, ctx), tensors)
    tokenizer.save(tmp / TOKENIZER_DIR)
    if card is not None:
        (tmp / "training.json").write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
    if directory.exists():
        old = directory.with_name(f".{directory.name}.{os.getpid()}.old")
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old)
    else:
        os.replace(tmp, directory)
    _forget_loaded(directory)
    return directory


def _forget_loaded(directory: Path) -> None:
    """Drop a stale in-process zoo.load of this directory (it has just been rewritten)."""
    from ..model import zoo

    where = str(directory.resolve())
    for key in [k for k in zoo._LOADED if k[1] == where]:
        del zoo._LOADED[key]


def quantized_module(module, bits: int):
    """The float Llama a module becomes once exported with ``bits``-bit weights (in memory)."""
    import torch

    from ..model.float_model import float_weights_from_exact
    from .model import Llama

    c = module.cfg
    tensors = {k: torch.from_numpy(v) for k, v in student_tensors(c, module.to_gguf_weights(), bits).items()}
    return Llama.from_gguf_weights(c, float_weights_from_exact(exact_config(c, c.max_context), tensors))


def dequantized_module(directory: str | Path):
    """The float Llama of an exported model's integer weights (gains folded in, so norms are 1)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from ..model.float_model import float_weights_from_exact
    from ..model.model_spec import ExactConfig
    from .model import Llama

    path = Path(directory) / WEIGHTS
    with safe_open(str(path), framework="pt") as f:
        ecfg = ExactConfig.from_dict(json.loads((f.metadata() or {})["lmzip_config"]))
    w = float_weights_from_exact(ecfg, load_file(str(path)))
    cfg = LlamaConfig(vocab_size=ecfg.vocab_size, dim=ecfg.dim, n_layers=ecfg.n_layers, n_heads=ecfg.n_heads,
                      n_kv_heads=ecfg.n_kv_heads, ffn_dim=ecfg.ffn_dim, rope_theta=float(ecfg.rope_theta),
                      norm_eps=float(ecfg.norm_eps), max_context=ecfg.max_context)
    return Llama.from_gguf_weights(cfg, w)


def exact_bits_per_byte(directory: str | Path, data: bytes, device: str = "cpu") -> dict:
    """Ideal code length of ``data`` (one segment, the model alone, the encoder's default windows)
    under the exported model on the exact runtime: native on the CPU where built, else the torch
    reference. The same number as ``codec.lm_cost_bits`` with ``adapt=None`` for text without CRLF
    (checked in tests/test_train.py), without importing the coder (absent on the GPU host)."""
    import time

    from .. import native
    from ..model.model_spec import TOTAL_BITS
    from ..model.tokenizer import load_tokenizer

    directory = Path(directory)
    t0 = time.perf_counter()
    if device == "cpu" and native.wanted():
        from ..native.model import load_native

        model, runtime = load_native(directory / WEIGHTS), "native"
    else:
        from ..model.exact_model import load_exact

        model, runtime = load_exact(directory / WEIGHTS, device), "reference"
    tok = load_tokenizer(directory / TOKENIZER_DIR)
    ids = np.asarray(tok.encode(data), dtype=np.int64)
    n = len(ids)
    s = np.concatenate([[tok.bos_id], ids[:-1]]).astype(np.int64)
    window = min(4096, model.cfg.max_context)
    overlap = min(1024, window // 4)
    bits = 0.0
    for start, ctx, length in windows(n, window, overlap):
        cache = model.new_cache(1, length)
        h = model.hidden(cache, s[None, start : start + length])
        for r0 in range(ctx, length, 256):
            r1 = min(length, r0 + 256)
            f = model.head_frequencies(h[0, r0:r1])
            f = f.detach().cpu().numpy() if hasattr(f, "detach") else np.asarray(f)
            tgt = ids[start + r0 : start + r1]
            bits += float(np.sum(TOTAL_BITS - np.log2(f[np.arange(r1 - r0), tgt].astype(np.float64))))
    dt = time.perf_counter() - t0
    return {"bytes": len(data), "tokens": n, "bits_per_byte": bits / max(1, len(data)), "seconds": round(dt, 3),
            "runtime": runtime, "window": window, "overlap": overlap}
