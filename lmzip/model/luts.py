"""Deterministic integer lookup tables for the exact model's transcendental functions.

libm and CUDA intrinsics may differ in the last bit between machines, so exp, sigmoid
and the RoPE rotations come from integer tables computed here with Python's ``decimal``
module (specified, correctly rounded arithmetic), the same on every platform. Tables are
read-only numpy int64 arrays, cached per process and kept on disk under ``$LMZIP_HOME/tables``
(building them costs ~0.5 s for the teacher, reading them a few ms), checked by a digest on
every load; the pinned digests in the tests hold the builders to their definition.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from functools import lru_cache

import numpy as np

_PREC = 50  # decimal digits; far beyond the 30-bit outputs, so recurrences cannot drift


def _to_int(x: Decimal, bits: int) -> int:
    return int((x * (1 << bits)).to_integral_value(ROUND_HALF_EVEN))


@lru_cache(maxsize=None)
def exp_table(step_bits: int, out_bits: int) -> np.ndarray:
    """T[i] = round(2**out_bits * exp(-i / 2**step_bits)) for i while that is >= 1, then a final 0.

    Indexing with min(i, len(T) - 1) gives exp(-x) for any x >= 0 quantised to a
    1/2**step_bits grid, with everything beyond the table (and masked entries) at 0.
    """
    return _cached(f"exp-v1-{step_bits}-{out_bits}.npy", lambda: _exp_table(step_bits, out_bits))


def _exp_table(step_bits: int, out_bits: int) -> np.ndarray:
    with localcontext() as ctx:
        ctx.prec = _PREC
        base = (-Decimal(1) / (1 << step_bits)).exp()
        vals = []
        x = Decimal(1)
        while True:
            v = _to_int(x, out_bits)
            if v == 0:
                break
            vals.append(v)
            x *= base
    vals.append(0)
    return np.array(vals, dtype=np.int64)


@lru_cache(maxsize=None)
def sigmoid_table(step_bits: int, out_bits: int, x_max: int) -> np.ndarray:
    """T[i] = round(2**out_bits * sigmoid((i - n) / 2**step_bits)), n = x_max * 2**step_bits, i in [0, 2n]."""
    return _cached(f"sigmoid-v1-{step_bits}-{out_bits}-{x_max}.npy", lambda: _sigmoid_table(step_bits, out_bits, x_max))


def _sigmoid_table(step_bits: int, out_bits: int, x_max: int) -> np.ndarray:
    n = x_max << step_bits
    with localcontext() as ctx:
        ctx.prec = _PREC
        base = (Decimal(1) / (1 << step_bits)).exp()
        pos = [Decimal(1)]  # exp(j / 2**step_bits) for j = 0..n
        for _ in range(n):
            pos.append(pos[-1] * base)
        one = Decimal(1)
        # sigmoid(-x) = 1 / (1 + e^x), sigmoid(x) = e^x / (1 + e^x)
        neg = [_to_int(one / (one + pos[j]), out_bits) for j in range(n, 0, -1)]
        nonneg = [_to_int(pos[j] / (one + pos[j]), out_bits) for j in range(0, n + 1)]
    return np.array(neg + nonneg, dtype=np.int64)


def _cos_sin(a: Decimal) -> tuple[Decimal, Decimal]:
    """Taylor series of cos and sin for |a| <= 1 (converges to full precision in < 40 terms)."""
    c, s = Decimal(0), Decimal(0)
    term = Decimal(1)  # a^k / k!
    k = 0
    eps = Decimal(10) ** (-(_PREC + 2))
    while abs(term) > eps or k < 2:
        if k % 4 == 0:
            c += term
        elif k % 4 == 1:
            s += term
        elif k % 4 == 2:
            c -= term
        else:
            s -= term
        k += 1
        term = term * a / k
    return c, s


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # shared by every caller through the caches
    return a


@lru_cache(maxsize=None)
def rope_tables(head_dim: int, theta: float, max_pos: int, out_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer cos/sin tables [max_pos, head_dim // 2]: round(2**out_bits * cos(p * theta**(-2i/d))).

    theta is taken as the exact decimal value of the float it arrives as. Kept on disk once built.
    """
    name = f"rope-v1-{head_dim}-{float(theta).hex()}-{max_pos}-{out_bits}.npy"
    both = _cached(name, lambda: np.stack(_rope_tables(head_dim, float(theta), max_pos, out_bits)))
    return _frozen(both[0].copy()), _frozen(both[1].copy())


def _cached(name: str, build) -> np.ndarray:
    """The table stored on disk under ``name``, else ``build()`` (then stored): read-only."""
    table = _load_cached(name)
    if table is None:
        table = build()
        _store_cached(name, table)
    return _frozen(table)


def _load_cached(name: str) -> np.ndarray | None:
    """A table stored by ``_store_cached``, or None if absent or damaged."""
    from ..resources import read_cache

    body = read_cache(name)
    if body is None:
        return None
    try:
        import io

        a = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError):
        return None
    return a if a.dtype == np.int64 else None


def _store_cached(name: str, a: np.ndarray) -> None:
    import io

    from ..resources import write_cache

    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    write_cache(name, buf.getvalue())


def _rope_tables(head_dim: int, theta: float, max_pos: int, out_bits: int) -> tuple[np.ndarray, np.ndarray]:
    half = head_dim // 2
    cos_rows = [[0] * half for _ in range(max_pos)]
    sin_rows = [[0] * half for _ in range(max_pos)]
    with localcontext() as ctx:
        ctx.prec = _PREC
        ln_theta = Decimal(theta).ln()
        for i in range(half):
            w = (-(Decimal(2 * i) / head_dim) * ln_theta).exp()  # <= 1
            c1, s1 = _cos_sin(w)
            c, s = Decimal(1), Decimal(0)
            for p in range(max_pos):
                cos_rows[p][i] = _to_int(c, out_bits)
                sin_rows[p][i] = _to_int(s, out_bits)
                c, s = c * c1 - s * s1, s * c1 + c * s1
    return np.array(cos_rows, dtype=np.int64), np.array(sin_rows, dtype=np.int64)
