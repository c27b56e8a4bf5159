"""Tiny random-weight models for tests and examples (fast, and exercise every code path)."""

from __future__ import annotations

from pathlib import Path

from .model.convert import exact_config, exact_tensors, random_llama
from .model.model_spec import save_exact
from .model.tokenizer import ByteTokenizer
from .model.zoo import TOKENIZER_DIR, WEIGHTS


def tiny_model(seed: int = 0, **shape):
    """An in-memory exact model (the torch reference) with random weights (byte vocabulary unless
    ``vocab_size`` is given)."""
    from .model.exact_model import ExactModel

    cfg, w = random_llama(seed, **shape)
    return ExactModel(exact_config(cfg, cfg.max_context), exact_tensors(cfg, w))


def load_with_runtime(spec, runtime: str):
    """``zoo.load(spec)`` on the given runtime ("native" or "reference"), whatever LMZIP_RUNTIME says."""
    import os

    from .model import zoo

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


def tiny_bpe(text: bytes, n_merges: int = 200, missing: bytes = b"\x04\x06"):
    """A small byte-level BPE learnt from ``text`` (SmolLM2's layout: one special token, the byte
    tokens, then the merges in order, merge r making id ``base + r``; the bytes in ``missing`` get no
    token, so the escapes are exercised). For tests of tokenizer-dependent code without the teacher."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from .model.tokenizer import BPETokenizer, bytes_to_unicode

    b2u = bytes_to_unicode()
    gone = {b2u[b] for b in missing}
    alphabet = [b2u[b] for b in range(256) if b2u[b] not in gone]
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    trainer = trainers.BpeTrainer(vocab_size=1 + len(alphabet) + n_merges + len(gone), initial_alphabet=alphabet,
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    hf.train_from_iterator([text.decode("utf-8", "replace")], trainer=trainer)
    tokens = ["<|endoftext|>"] + alphabet
    merges: list[tuple[str, str]] = []
    for m in json.loads(hf.to_str())["model"]["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if len(merges) < n_merges and not (set(a + b) & gone):
            merges.append((a, b))
            tokens.append(a + b)
    return BPETokenizer(tokens, merges, [3] + [1] * (len(tokens) - 1), pre="smollm", escape_id=0, bos_id=0)


def write_tiny_bpe_model(directory: str | Path, tokenizer, seed: int = 0, **shape) -> Path:
    """A model directory with random weights over ``tokenizer``'s vocabulary (e.g. ``tiny_bpe``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg, w = random_llama(seed, vocab_size=tokenizer.vocab_size, **shape)
    save_exact(directory / WEIGHTS, exact_config(cfg, cfg.max_context), exact_tensors(cfg, w))
    tokenizer.save(directory / TOKENIZER_DIR)
    return directory
