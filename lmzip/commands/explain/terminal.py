"""``lmzip explain`` on the terminal: the text as a heatmap, then the summary.

ANSI 256 colours when asked for (``color``), plain text otherwise; either way the file's own
bytes are shown escaped (``visible``), so the only escape sequences printed are the colours.
"""

from __future__ import annotations

import math

from .analysis import GUESSES, Explanation, most_expensive
from .visible import _context, _fmt_pct, _plain, _safe_text

# (upper bound in bits, SGR codes): cheap tokens dim, then a yellow -> orange -> red background ramp.
_TERM_RAMP: list[tuple[float, str]] = [
    (1.0, "38;5;245"),
    (2.0, ""),
    (4.0, "48;5;230;38;5;16"),
    (6.0, "48;5;222;38;5;16"),
    (8.0, "48;5;215;38;5;16"),
    (11.0, "48;5;209;38;5;16"),
    (14.0, "48;5;196;38;5;231"),
    (math.inf, "48;5;125;38;5;231;1"),
]


def _sgr(bits: float) -> str:
    for limit, code in _TERM_RAMP:
        if bits < limit:
            return code
    return _TERM_RAMP[-1][1]


def _paint(text: str, code: str, color: bool) -> str:
    """Colour ``text``; newlines stay outside the colour so no background bleeds to the line end."""
    if not color or not code or not text:
        return text
    return "\n".join(f"\x1b[{code}m{part}\x1b[0m" if part else "" for part in text.split("\n"))


def _guesses_text(exp: Explanation, i: int, limit: int = GUESSES) -> str:
    scale = float(2**exp.total_bits_precision)
    parts = []
    for gid, gf in zip(exp.guess_ids[i][:limit].tolist(), exp.guess_freq[i][:limit].tolist()):
        parts.append(f"{exp.labels[gid]} {_fmt_pct(gf / scale)}")
    return "  ".join(parts)


def render_terminal(exp: Explanation, *, color: bool, top: int = 10, text: bool = True, verbose: bool = False) -> str:
    """The heatmap (if ``text``) and the summary, as one string for stdout."""
    out: list[str] = []
    if text and exp.n:
        pieces = []
        for i in range(exp.n):
            pieces.append(_paint(_plain(exp.shown[i]), _sgr(float(exp.bits[i])), color))
        body = "".join(pieces)
        out.append(body if body.endswith("\n") else body + "\n")
        out.append("\n")
    out.extend(line + "\n" for line in summary_lines(exp, color=color, top=top, verbose=verbose))
    return "".join(out)


def adaptation_lines(exp: Explanation) -> list[str]:
    """Where learning the file paid: bits with and without adaptation, and per component."""
    from ...predict.adapt import COMPONENTS

    note = "  (CRLF line ends coded as LF)" if exp.transformed else ""
    if exp.adaptation == "off":
        return [f"  {'adaptation':<13}off{note}"]
    plain = float(exp.plain_bits.sum())
    saved = plain - exp.total
    out = [f"  {'adaptation':<13}{exp.adaptation}{note}",
           f"  {'without it':<13}{plain:.1f} bits ({plain / max(1, len(exp.data)):.3f} bits/byte): learning the file "
           f"saved {saved:.1f} bits ({100 * saved / plain if plain else 0:.1f}%)"]
    gain = exp.plain_bits - exp.bits
    for c, name in enumerate(COMPONENTS):
        sel = exp.helper == c
        if sel.any():
            out.append(f"  {'':<13}{name:<8} helped most on {int(sel.sum())} tokens, saving {float(gain[sel].sum()):.1f} bits there")
    return out


def summary_lines(exp: Explanation, *, color: bool, top: int = 10, verbose: bool = False) -> list[str]:
    nbytes = len(exp.data)
    lines = [f"{_safe_text(exp.name) or '(data)'}: {nbytes} bytes, {exp.n} tokens, model {_safe_text(exp.model_id)}"]

    def row(key: str, value: str) -> None:
        lines.append(f"  {key:<13}{value}")

    wins = f"{exp.n_windows} window{'s' if exp.n_windows != 1 else ''} of at most {exp.window} tokens"
    if exp.overlap:
        wins += f", each re-reading {exp.overlap} tokens of context"
    row("explained as", f"one segment ({wins})")
    if verbose:
        for w, (start, ctx, length) in enumerate(exp.windows):
            a, b = start + ctx, start + length
            wb = float(exp.bits[a:b].sum())
            row(f"window {w + 1}", f"tokens {a}-{b - 1} (bytes {int(exp.offsets[a])}-{int(exp.offsets[b]) - 1}), "
                f"{ctx} tokens of context: {wb:.1f} bits, {wb / max(1, int(exp.offsets[b] - exp.offsets[a])):.3f} bits/byte")
    if exp.auto_segments > 1:
        row("", f"note: lmzip compress would cut this file into {exp.auto_segments} segments, each starting cold")
    if exp.n:
        row("total", f"{exp.total:.1f} bits = {exp.total / 8:.1f} bytes")
        row("bits/byte", f"{exp.bits_per_byte:.3f}")
        row("bits/token", f"{exp.bits_per_token:.3f}  ({nbytes / exp.n:.2f} bytes/token)")
        lines.extend(adaptation_lines(exp))
        over = 8 * exp.payload_bytes - exp.total
        row("payload", f"{exp.payload_bytes} bytes ({8 * exp.payload_bytes / max(1, nbytes):.3f} bits/byte; "
                       f"coder overhead {over:+.1f} bits); .lmz file {exp.file_bytes} bytes")
        alt = f"{exp.fallback_method} {exp.fallback_bytes} bytes"
        if exp.fallback_bytes < exp.payload_bytes:
            alt += " -- smaller: lmzip compress would store this segment that way"
        row("fallback", alt)
        legend = " ".join(_paint(f" {lbl} ", code, color) for lbl, code in _legend_items())
        if color:
            row("colors", legend + "  bits/token")
    else:
        row("total", "0 bits (empty input)")
    row("time", f"{exp.seconds:.2f}s ({exp.n / exp.seconds if exp.seconds > 0 else 0:.0f} tokens/s)")
    idx = most_expensive(exp, top)
    if idx:
        lines.append("")
        lines.append(f"most expensive tokens (top {len(idx)} of {exp.n}):")
        for j, i in enumerate(idx, 1):
            pre, tok, post = _context(exp, i)
            shown = _paint(tok, _sgr(float(exp.bits[i])), color) if color else f"«{tok}»"
            lines.append(f"  {j:>3}. {exp.bits[i]:6.2f} bits  byte {int(exp.offsets[i]):<7} {pre}{shown}{post}")
            lines.append(f"       token {exp.label(i)} was the model's #{int(exp.rank[i])} guess; it expected: "
                         f"{_guesses_text(exp, i)}")
    return lines


def _legend_items() -> list[tuple[str, str]]:
    items, lo = [], 0.0
    for limit, code in _TERM_RAMP:
        items.append((f"<{limit:g}" if lo == 0 else (f"≥{lo:g}" if math.isinf(limit) else f"{lo:g}-{limit:g}"), code))
        lo = limit
    return items
