"""The real teacher (SmolLM2-135M, pulled through the zoo): exactness and quality on small real inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmzip.model.exact_model import TOTAL_BITS
from lmzip.model.float_model import FloatLlama, float_weights_from_exact
from lmzip.model.gguf_import import LlamaConfig

TEXT = (
    b"Alice was beginning to get very tired of sitting by her sister on the bank, and of having "
    b"nothing to do: once or twice she had peeped into the book her sister was reading, but it had "
    b"no pictures or conversations in it, 'and what is the use of a book,' thought Alice "
    b"'without pictures or conversations?'\r\n"
)


def _tokens(teacher, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(teacher.tokenizer.encode(data), dtype=np.int64)
    return np.concatenate([[teacher.tokenizer.bos_id], ids[:-1]]).astype(np.int64), ids


def _np(x) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def test_registry_hash_matches_the_installed_teacher(teacher):
    from lmzip.model import zoo

    assert teacher.sha256 == zoo.entry("smollm2-135m").sha256


def _set_threads(m, n: int) -> int:
    if getattr(m, "runtime", "reference") == "native":
        old, m.threads = m.threads, n
        return old
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    return old


def test_teacher_full_equals_incremental_and_batched(teacher):
    m = teacher.model
    inp, _ = _tokens(teacher, TEXT)
    inp = inp[:48]
    full = _np(m.frequencies(inp[None]))
    cache = m.new_cache(1, 64)
    inc = np.concatenate([_np(m.step(cache, inp[None, i : i + 1])) for i in range(len(inp))], 1)
    assert np.array_equal(full, inc)
    # Batched beside two other streams, and as a prefix of a longer evaluation.
    other = np.random.default_rng(0).integers(0, m.vocab_size, (2, 48))
    batched = _np(m.frequencies(np.stack([other[0], inp, other[1]])))
    assert np.array_equal(batched[1], full[0])
    assert np.array_equal(_np(m.frequencies(inp[None, :20]))[0], full[0, :20])
    before = _set_threads(m, 1)
    try:
        assert np.array_equal(_np(m.frequencies(inp[None])), full)
    finally:
        _set_threads(m, before)
    assert int(full.min()) >= 1 and np.all(full.astype(np.int64).sum(-1) == 2**TOTAL_BITS)


def test_teacher_native_rows_equal_the_reference(teacher):
    """The native runtime computes the torch reference's very integers on the real teacher."""
    import pytest

    from lmzip import native
    from lmzip.model.exact_model import load_exact

    if not native.available():
        pytest.skip("native runtime not built")
    inp, _ = _tokens(teacher, TEXT)
    ref = load_exact(teacher.path / "model.safetensors")
    want = ref.frequencies(torch.from_numpy(inp[None, :40])).numpy()
    from lmzip.native.model import load_native

    nat = teacher.model if teacher.model.runtime == "native" else load_native(teacher.path / "model.safetensors")
    assert np.array_equal(nat.frequencies(inp[None, :40]), want)
    cache = nat.new_cache(1, 40)
    assert np.array_equal(np.concatenate([nat.step(cache, inp[None, :25]), nat.step(cache, inp[None, 25:40])], 1), want)


def test_teacher_predicts_english_and_matches_float_reference(teacher):
    """~3 nats/token on English (unpermuted Q/K; a RoPE layout error gives ~6), within 1% of float."""
    m = teacher.model
    inp, target = _tokens(teacher, TEXT)
    f = _np(m.frequencies(inp[None]))[0].astype(np.float64) / 2**TOTAL_BITS
    exact_nll = float(-np.log(f[np.arange(len(target)), target]).mean())
    inp, target = torch.from_numpy(inp), torch.from_numpy(target)
    c = m.cfg
    cfg = LlamaConfig(c.vocab_size, c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.ffn_dim, c.rope_theta, c.norm_eps, c.max_context)
    tensors = {k: v for k, v in _tensors(teacher).items()}
    lp = torch.log_softmax(FloatLlama(cfg, float_weights_from_exact(c, tensors)).logits(inp[None])[0].double(), -1)
    float_nll = float(-lp[torch.arange(len(target)), target].mean())
    assert exact_nll < 4.2, exact_nll
    assert abs(exact_nll - float_nll) / float_nll < 0.01, (exact_nll, float_nll)


def _tensors(teacher):
    from safetensors.torch import load_file

    return load_file(str(teacher.path / "model.safetensors"))


# The teacher's tables hashed over committed texts (tests/vectors/teacher-digest.json holds the
# CPU's digest, so a device is compared with it without a CPU run beside it; benchmarks/gpu_check.py
# recomputes it on the GPU).
DIGEST_TEXTS = ["teacher-small.orig", "device-readme.orig", "device-code.orig"]
DIGEST_TOKENS = 600


def _table_digest(rows) -> str:
    import hashlib

    from lmzip.coding.codec import to_numpy

    return hashlib.sha256(np.ascontiguousarray(to_numpy(rows), dtype=np.int32).tobytes()).hexdigest()


@pytest.mark.teacher
def test_teacher_tables_match_the_committed_digest(teacher):
    """Three ways of evaluating, one result, equal to the committed digest: the full forward, stream 1
    of a batch of three, and the decoder's path (uneven prefill chunks, then single steps)."""
    import json
    from pathlib import Path

    vectors = Path(__file__).resolve().parent / "vectors"
    ref = json.loads((vectors / "teacher-digest.json").read_text())
    text = b"".join((vectors / name).read_bytes() for name in DIGEST_TEXTS)
    ids = np.asarray(teacher.tokenizer.encode(text)[:DIGEST_TOKENS], dtype=np.int64)
    model = teacher.model
    full = _table_digest(model.frequencies(ids[None])[0])
    cache = model.new_cache(3, DIGEST_TOKENS)
    others = ids[::-1].copy()
    h = model.hidden(cache, np.stack([others, ids, np.roll(others, 7)]))
    batch = _table_digest(np.concatenate([np.asarray(model.head_frequencies(h[1, i:i + 128]))
                                          for i in range(0, DIGEST_TOKENS, 128)]))
    cache = model.new_cache(1, DIGEST_TOKENS)
    rows, pos = [], 0
    for n in [37, 200, 113] + [1] * 50:
        rows.append(np.asarray(model.step(cache, ids[None, pos:pos + n])[0]))
        pos += n
    rows.append(np.asarray(model.step(cache, ids[None, pos:])[0]))
    assert full == batch == _table_digest(np.concatenate(rows)) == ref["full"]
