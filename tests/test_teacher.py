"""The real teacher (SmolLM2-135M, pulled through the zoo): exactness and quality on small real inputs."""

from __future__ import annotations

import numpy as np
import torch

from lmzip.exact_model import TOTAL_BITS
from lmzip.float_model import FloatLlama, float_weights_from_exact
from lmzip.gguf_import import LlamaConfig

TEXT = (
    b"Alice was beginning to get very tired of sitting by her sister on the bank, and of having "
    b"nothing to do: once or twice she had peeped into the book her sister was reading, but it had "
    b"no pictures or conversations in it, 'and what is the use of a book,' thought Alice "
    b"'without pictures or conversations?'\r\n"
)


def _tokens(teacher, data: bytes) -> torch.Tensor:
    ids = teacher.tokenizer.encode(data)
    return torch.tensor(np.concatenate([[teacher.tokenizer.bos_id], ids[:-1]]), dtype=torch.int64), torch.tensor(ids, dtype=torch.int64)


def test_registry_hash_matches_the_installed_teacher(teacher):
    from lmzip import zoo

    assert teacher.sha256 == zoo.entry("smollm2-135m").sha256


def test_teacher_full_equals_incremental_and_batched(teacher):
    m = teacher.model
    inp, _ = _tokens(teacher, TEXT)
    inp = inp[:48]
    full = m.frequencies(inp[None])
    cache = m.new_cache(1, 64)
    inc = torch.cat([m.step(cache, inp[None, i : i + 1]) for i in range(len(inp))], 1)
    assert torch.equal(full, inc)
    # Batched beside two other streams, and as a prefix of a longer evaluation.
    other = torch.randint(0, m.vocab_size, (2, 48), generator=torch.Generator().manual_seed(0))
    batched = m.frequencies(torch.stack([other[0], inp, other[1]]))
    assert torch.equal(batched[1], full[0])
    assert torch.equal(m.frequencies(inp[None, :20])[0], full[0, :20])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(m.frequencies(inp[None]), full)
    finally:
        torch.set_num_threads(before)
    assert int(full.min()) >= 1 and torch.all(full.to(torch.int64).sum(-1) == 2**TOTAL_BITS)


def test_teacher_predicts_english_and_matches_float_reference(teacher):
    """~3 nats/token on English (unpermuted Q/K; a RoPE layout error gives ~6), within 1% of float."""
    m = teacher.model
    inp, target = _tokens(teacher, TEXT)
    f = m.frequencies(inp[None])[0].double() / 2**TOTAL_BITS
    exact_nll = float(-torch.log(f[torch.arange(len(target)), target]).mean())
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
