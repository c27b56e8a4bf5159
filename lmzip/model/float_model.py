"""Float32 reference forward of the teacher (nanoGPT-style, plain PyTorch).

Never used to code data: float results differ between full-sequence and KV-cache
evaluation, batch sizes and devices. It exists to measure what exactness costs in ratio.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .gguf_import import LlamaConfig


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate (i, i + d/2) pairs of x [B, H, T, d] by position-dependent angles."""
    T, d = x.shape[-2], x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1).to(x.dtype)
    sin = torch.cat([ang.sin(), ang.sin()], -1).to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class FloatLlama:
    """Float32 Llama forward over whole sequences (no cache: reference use only)."""

    def __init__(self, cfg: LlamaConfig, weights: dict[str, np.ndarray]):
        self.cfg = cfg
        self.w = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in weights.items()}

    def _norm(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg.norm_eps) * g

    @torch.no_grad()
    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] -> logits [B, T, V]; row t predicts token t+1."""
        c, w = self.cfg, self.w
        B, T = tokens.shape
        hd = c.head_dim
        x = w["token_embd.weight"][tokens]
        for i in range(c.n_layers):
            p = f"blk.{i}."
            h = self._norm(x, w[p + "attn_norm.weight"])
            q = (h @ w[p + "attn_q.weight"].T).view(B, T, c.n_heads, hd).transpose(1, 2)
            k = (h @ w[p + "attn_k.weight"].T).view(B, T, c.n_kv_heads, hd).transpose(1, 2)
            v = (h @ w[p + "attn_v.weight"].T).view(B, T, c.n_kv_heads, hd).transpose(1, 2)
            q, k = _rope(q, c.rope_theta), _rope(k, c.rope_theta)
            rep = c.n_heads // c.n_kv_heads
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + a.transpose(1, 2).reshape(B, T, c.dim) @ w[p + "attn_output.weight"].T
            h = self._norm(x, w[p + "ffn_norm.weight"])
            g = F.silu(h @ w[p + "ffn_gate.weight"].T) * (h @ w[p + "ffn_up.weight"].T)
            x = x + g @ w[p + "ffn_down.weight"].T
        x = self._norm(x, w["output_norm.weight"])
        return x @ w.get("output.weight", w["token_embd.weight"]).T


def float_weights_from_exact(cfg, tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Dequantised exact-model weights in GGUF naming (norm gains already folded in, so set to 1).

    A float forward of these isolates what the exact *arithmetic* costs, apart from weight quantisation.
    """

    def deq(name: str) -> np.ndarray:
        return (tensors[name + ".q"].double() * tensors[name + ".scale"].double()[:, None]).float().numpy()

    hd = cfg.dim // cfg.n_heads
    ones = np.ones(cfg.dim, dtype=np.float32)
    w = {"token_embd.weight": deq("embed"), "output.weight": deq("head"), "output_norm.weight": ones}
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        qkv = deq(f"layers.{i}.wqkv")
        nq, nk = cfg.n_heads * hd, cfg.n_kv_heads * hd
        w[p + "attn_q.weight"], w[p + "attn_k.weight"], w[p + "attn_v.weight"] = qkv[:nq], qkv[nq : nq + nk], qkv[nq + nk :]
        w[p + "attn_output.weight"] = deq(f"layers.{i}.wo")
        gu = deq(f"layers.{i}.w13")
        w[p + "ffn_gate.weight"], w[p + "ffn_up.weight"] = gu[: cfg.ffn_dim], gu[cfg.ffn_dim :]
        w[p + "ffn_down.weight"] = deq(f"layers.{i}.w2")
        w[p + "attn_norm.weight"] = w[p + "ffn_norm.weight"] = ones
    return w
