"""Tiny random-weight models for tests and examples (fast, and exercise every code path)."""

from __future__ import annotations

from pathlib import Path

from .convert import exact_config, exact_tensors, random_llama
from .model_spec import save_exact
from .tokenizer import ByteTokenizer
from .zoo import TOKENIZER_DIR, WEIGHTS


def tiny_model(seed: int = 0, **shape):
    """An in-memory exact model (the torch reference) with random weights (byte vocabulary unless
    ``vocab_size`` is given)."""
    from .exact_model import ExactModel

    cfg, w = random_llama(seed, **shape)
    return ExactModel(exact_config(cfg, cfg.max_context), exact_tensors(cfg, w))


def load_with_runtime(spec, runtime: str):
    """``zoo.load(spec)`` on the given runtime ("native" or "reference"), whatever LMZIP_RUNTIME says."""
    import os

    from . import zoo

    old = os.environ.get("LMZIP_RUNTIME")
    os.environ["LMZIP_RUNTIME"] = runtime
    try:
        lm = zoo.load(spec)
    finally:
        if old is None:
            del os.environ["LMZIP_RUNTIME"]
        else:
            os.environ["LMZIP_RUNTIME"] = old
    if getattr(lm.model, "runtime", "reference") != runtime:
        raise RuntimeError(f"runtime {runtime} is not available here")
    return lm


def write_tiny_model(directory: str | Path, seed: int = 0, **shape) -> Path:
    """A model directory (weights + byte tokenizer) usable anywhere a model id is, e.g. ``--model DIR``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg, w = random_llama(seed, **shape)
    if cfg.vocab_size != 256:
        raise ValueError("model directories made here use the byte tokenizer: vocab_size must be 256")
    save_exact(directory / WEIGHTS, exact_config(cfg, cfg.max_context), exact_tensors(cfg, w))
    ByteTokenizer().save(directory / TOKENIZER_DIR)
    return directory
