"""The float Llama that students train as (and the teacher runs as): the shape the exact runtime implements.

It computes what ``lmzip/model/float_model.py`` computes (RMSNorm with gains, fused q/k/v with
grouped key/value heads, RoPE rotating the pairs ``(j, j + D/2)``, causal softmax attention
scaled by ``1/sqrt(D)``, a SwiGLU feed-forward, a final norm and an output head, tied to the
embedding or not), with trainable parameters, a key/value cache for sampling, and conversion to
and from GGUF-named float weights (``gguf_import``/``convert.random_llama`` naming), so that an
exported student is a plain quantisation by ``convert.exact_tensors``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..model.gguf_import import LlamaConfig


def rope_tables(head_dim: int, theta: float, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [length, head_dim] (float32) for rotating (i, i + D/2) pairs, as float_model._rope."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    ang = torch.arange(length, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cat([ang.cos(), ang.cos()], -1).float(), torch.cat([ang.sin(), ang.sin()], -1).float()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, D] rotated by cos/sin [T, D]."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return x * cos.to(x.dtype) + torch.cat([-x2, x1], -1) * sin.to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight.to(x.dtype)


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        D = cfg.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, D
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.wqkv = nn.Linear(cfg.dim, (cfg.n_heads + 2 * cfg.n_kv_heads) * D, bias=False)
        self.wo = nn.Linear(cfg.n_heads * D, cfg.dim, bias=False)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.w13 = nn.Linear(cfg.dim, 2 * cfg.ffn_dim, bias=False)
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)
        self.ffn_dim = cfg.ffn_dim

    def forward(self, x, cos, sin, cache=None, pos0: int = 0):
        B, T, _ = x.shape
        H, Hk, D = self.n_heads, self.n_kv_heads, self.head_dim
        y = self.wqkv(self.attn_norm(x))
        q, k, v = y.split([H * D, Hk * D, Hk * D], -1)
        q = _rotate(q.view(B, T, H, D).transpose(1, 2), cos, sin)
        k = _rotate(k.view(B, T, Hk, D).transpose(1, 2), cos, sin)
        v = v.view(B, T, Hk, D).transpose(1, 2)
        causal = True
        if cache is not None:  # (k_buf, v_buf) [B, Hk, capacity, D]: append, attend to everything so far
            kb, vb = cache
            kb[:, :, pos0 : pos0 + T] = k
            vb[:, :, pos0 : pos0 + T] = v
            k, v = kb[:, :, : pos0 + T], vb[:, :, : pos0 + T]
            causal = T > 1  # one new token attends to all cached keys; a prefill (pos0 == 0) is causal
            if causal and pos0:
                raise ValueError("a multi-token step must start an empty cache")
        if T == 1 and H != Hk:  # a decoding step: each key/value head serves its R query heads, no copies
            R = H // Hk
            s = (q.view(B, Hk, R, D) @ k.transpose(-1, -2)).float() / math.sqrt(D)  # [B, Hk, R, t]
            a = (torch.softmax(s, -1).to(v.dtype) @ v).view(B, H, 1, D)
        else:
            if H != Hk:  # query head u reads key/value head u // R (FORMAT.md §7.5.5)
                k = k.repeat_interleave(H // Hk, 1)
                v = v.repeat_interleave(H // Hk, 1)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        x = x + self.wo(a.transpose(1, 2).reshape(B, T, H * D))
        g, u = self.w13(self.ffn_norm(x)).split([self.ffn_dim, self.ffn_dim], -1)
        return x + self.w2(F.silu(g) * u)


class Llama(nn.Module):
    """A Llama decoder; ``forward(ids)`` -> logits [B, T, V] (row t predicts the token after ids[:, t])."""

    def __init__(self, cfg: LlamaConfig, tied: bool = True):
        super().__init__()
        self.cfg, self.tied = cfg, tied
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.head = None if tied else nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg.head_dim, cfg.rope_theta, cfg.max_context)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def init_weights(self, seed: int) -> "Llama":
        """GPT-2-style initialisation (normal 0.02, residual projections scaled by 1/sqrt(2L))."""
        g = torch.Generator().manual_seed(seed)
        std = 0.02
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                with torch.no_grad():
                    p.fill_(1.0)
                continue
            s = std / math.sqrt(2 * max(1, self.cfg.n_layers)) if name.endswith(("wo.weight", "w2.weight")) else std
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * s)
        return self

    @property
    def output_weight(self) -> torch.Tensor:
        return self.embed.weight if self.head is None else self.head.weight

    def hidden(self, ids: torch.Tensor, caches=None, pos0: int = 0) -> torch.Tensor:
        T = ids.shape[1]
        if pos0 + T > self.cfg.max_context:
            raise ValueError(f"{pos0 + T} positions exceed the model's context of {self.cfg.max_context}")
        cos, sin = self.rope_cos[pos0 : pos0 + T], self.rope_sin[pos0 : pos0 + T]
        x = self.embed(ids)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, None if caches is None else caches[i], pos0)
        return self.norm(x)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.hidden(ids)
        return F.linear(h, self.output_weight.to(h.dtype))

    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- sampling ------------------------------------------------------------------------------

    def new_caches(self, batch: int, capacity: int, dtype, device):
        c = self.cfg
        shape = (batch, c.n_kv_heads, capacity, c.head_dim)
        return [(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
                for _ in range(c.n_layers)]

    @torch.no_grad()
    def sample(self, prompts: torch.Tensor, new_tokens: int, temperature: float = 1.0,
               generator: torch.Generator | None = None, banned: list[int] | None = None) -> torch.Tensor:
        """Continue prompts [B, P] by ``new_tokens`` sampled tokens (KV cache); returns [B, P + new_tokens].
        ``banned`` ids get no probability (e.g. special tokens)."""
        B, P = prompts.shape
        dtype = next(self.parameters()).dtype
        if prompts.is_cuda and dtype == torch.float32:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        caches = self.new_caches(B, P + new_tokens, dtype, prompts.device)
        out = torch.empty(B, P + new_tokens, dtype=torch.long, device=prompts.device)
        out[:, :P] = prompts
        ids, pos = prompts, 0
        ban = torch.tensor(banned or [], dtype=torch.long, device=prompts.device)
        with torch.autocast(prompts.device.type, dtype=dtype, enabled=dtype != torch.float32):
            for t in range(new_tokens):
                h = self.hidden(ids, caches, pos)[:, -1]
                z = F.linear(h, self.output_weight.to(h.dtype)).float() / temperature
                if ban.numel():
                    z[:, ban] = -float("inf")
                nxt = torch.multinomial(torch.softmax(z, -1), 1, generator=generator)
                out[:, P + t] = nxt[:, 0]
                pos += ids.shape[1]
                ids = nxt
        return out

    # -- conversion -------------------------------------------------------------------------------

    def to_gguf_weights(self) -> dict[str, np.ndarray]:
        """Float32 weights in GGUF naming (HF row order), as ``convert.exact_tensors`` takes them;
        ``output.weight`` only for an untied head."""
        c = self.cfg
        D = c.head_dim

        def a(t: torch.Tensor) -> np.ndarray:
            return t.detach().float().cpu().numpy().copy()

        w = {"token_embd.weight": a(self.embed.weight), "output_norm.weight": a(self.norm.weight)}
        if self.head is not None:
            w["output.weight"] = a(self.head.weight)
        for i, b in enumerate(self.layers):
            p = f"blk.{i}."
            qkv = a(b.wqkv.weight)
            nq, nk = c.n_heads * D, c.n_kv_heads * D
            w[p + "attn_q.weight"], w[p + "attn_k.weight"], w[p + "attn_v.weight"] = qkv[:nq], qkv[nq : nq + nk], qkv[nq + nk :]
            w[p + "attn_output.weight"] = a(b.wo.weight)
            gu = a(b.w13.weight)
            w[p + "ffn_gate.weight"], w[p + "ffn_up.weight"] = gu[: c.ffn_dim], gu[c.ffn_dim :]
            w[p + "ffn_down.weight"] = a(b.w2.weight)
            w[p + "attn_norm.weight"] = a(b.attn_norm.weight)
            w[p + "ffn_norm.weight"] = a(b.ffn_norm.weight)
        return w

    @classmethod
    def from_gguf_weights(cls, cfg: LlamaConfig, w: dict[str, np.ndarray]) -> "Llama":
        """A module holding these GGUF-named weights (untied where ``output.weight`` is present)."""
        m = cls(cfg, tied="output.weight" not in w)

        def t(name: str) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(w[name], dtype=np.float32))

        with torch.no_grad():
            m.embed.weight.copy_(t("token_embd.weight"))
            m.norm.weight.copy_(t("output_norm.weight"))
            if m.head is not None:
                m.head.weight.copy_(t("output.weight"))
            for i, b in enumerate(m.layers):
                p = f"blk.{i}."
                b.wqkv.weight.copy_(torch.cat([t(p + "attn_q.weight"), t(p + "attn_k.weight"), t(p + "attn_v.weight")]))
                b.wo.weight.copy_(t(p + "attn_output.weight"))
                b.w13.weight.copy_(torch.cat([t(p + "ffn_gate.weight"), t(p + "ffn_up.weight")]))
                b.w2.weight.copy_(t(p + "ffn_down.weight"))
                b.attn_norm.weight.copy_(t(p + "attn_norm.weight"))
                b.ffn_norm.weight.copy_(t(p + "ffn_norm.weight"))
        return m


def llama_config(vocab_size: int, dim: int, n_layers: int, n_heads: int, n_kv_heads: int, ffn_dim: int,
                 max_context: int, rope_theta: float, norm_eps: float) -> LlamaConfig:
    return LlamaConfig(vocab_size=vocab_size, dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
                       ffn_dim=ffn_dim, rope_theta=float(rope_theta), norm_eps=float(norm_eps), max_context=max_context)
