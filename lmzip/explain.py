"""``lmzip explain FILE``: where the bits go, token by token.

The model reads the file exactly as the compressor would code it as **one segment** (same
tokenization, same sliding windows, same integer frequency rows), and every token gets its
ideal code length ``bits = total_bits - log2(f[token])``: what the range coder spends on it,
give or take the coder's overhead (a few dozen bits per segment). Their sum equals
``codec.lm_cost_bits``; the frequency rows are also fed to a real ``TokenEncoder``, so the
summary states the payload an actual compression of this one segment produces, byte for byte.

Output: the text as a heatmap on the terminal (ANSI 256 colours; plain when not a terminal
or with ``--no-color``) followed by a summary with the most expensive tokens, and with
``--html OUT.html`` a self-contained page (inline CSS/JS/SVG, a strict Content-Security-Policy
allowing only its own hashed script and style) with hover tooltips showing the model's guesses.

Heavy modules (torch, numpy) are imported only when the command runs.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import hashlib
import html
import json
import math
import os
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable

import click

GUESSES = 5  # the model's top guesses kept per position
HIST_MAX_BITS = 24  # histogram range (a 24-bit frequency row cannot cost more than 24 bits)

# --------------------------------------------------------------------------- the analysis


@dataclass
class Explanation:
    """Per-token costs of one file coded as one LM segment (numpy arrays of length ``n``)."""

    name: str
    data: bytes
    model_id: str
    vocab_size: int
    window: int
    overlap: int
    total_bits_precision: int  # frequency rows sum to 2**this
    top_k: int
    ids: Any  # int64 [n] token ids
    offsets: Any  # int64 [n + 1] byte offset of each token in ``data``
    freq: Any  # int64 [n] frequency of the actual token
    bits: Any  # float64 [n] = precision - log2(freq)
    rank: Any  # int64 [n] 1-based rank of the actual token in the coder's order (freq desc, id asc)
    guess_ids: Any  # int64 [n, k] the model's top guesses, best first
    guess_freq: Any  # int64 [n, k]
    escaped: Any  # bool [n]: token spells an escaped byte (it follows a zero-byte escape token)
    total: float  # sum of bits, accumulated exactly like codec.lm_cost_bits
    windows: list  # (start, context, length) of each model window, as codec.windows yields them
    payload_bytes: int  # the LM payload an actual compression of this segment produces
    file_bytes: int  # the whole .lmz file for that one-segment compression (fallback off)
    fallback_method: str  # what the compressor would use instead, and its payload size
    fallback_bytes: int
    auto_segments: int  # segments lmzip compress would cut this file into by default
    seconds: float
    plain_bits: Any = None  # float64 [n]: bits the model alone would have cost (= bits when not adapting)
    helper: Any = None  # int64 [n]: component (index into adapt.COMPONENTS) that gave the token the most probability, -1: none
    adaptation: str = "off"  # what the adaptive predictor ran with
    transformed: bool = False  # CRLF line ends were coded as LF (the text shown is what was coded)
    labels: dict[int, str] = field(default_factory=dict)  # token id -> readable label (ids used here)
    shown: list[str] = field(default_factory=list)  # display text of each token (escaped, see _visible)

    @property
    def n_windows(self) -> int:
        return len(self.windows)

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def bits_per_byte(self) -> float | None:
        return self.total / len(self.data) if self.data else None

    @property
    def bits_per_token(self) -> float | None:
        return self.total / self.n if self.n else None

    def label(self, i: int) -> str:
        """Readable label of token i as it appears in the file (escaped bytes resolved)."""
        if self.escaped[i]:
            b = self.data[self.offsets[i] : self.offsets[i + 1]]
            return token_label(b) + " (escaped byte)"
        return self.labels[int(self.ids[i])]


def explain(lm, data: bytes, params=None, *, name: str = "", guesses: int = GUESSES,
            progress: Callable[[int], None] | None = None) -> Explanation:
    """Run ``lm`` (a ``zoo.LoadedModel``) over ``data`` as one segment under ``params`` (a ``CodecParams``)."""
    import numpy as np

    from . import container as C
    from . import transforms
    from .adapt import COMPONENTS
    from .codec import CodecParams, make_header, new_encoder, predicted_rows, split_segments, to_numpy, windows
    from .coder import ideal_bits, select_top_k

    t0 = time.monotonic()
    p = params or CodecParams()
    p.validate(lm.model.cfg.max_context)
    data = bytes(data)
    model, tok = lm.model, lm.tokenizer
    V = int(model.vocab_size)
    k = max(0, min(guesses, V - 1))
    # -- the rows compression codes (codec.predicted_rows), summed and coded as it does ---------
    original = data
    tf = transforms.choose(data, p.transforms)
    data = transforms.forward(data, tf)  # what the model sees; shown as such
    ids = tok.encode(data)
    n = len(ids)
    targets = np.asarray(ids, dtype=np.int64)
    freq = np.zeros(n, dtype=np.int64)
    bits = np.zeros(n, dtype=np.float64)
    rank = np.zeros(n, dtype=np.int64)
    g_ids = np.zeros((n, k), dtype=np.int64)
    g_freq = np.zeros((n, k), dtype=np.int64)
    enc = new_encoder(lm, p.total_bits, p.top_k)  # the encoder compression uses: the real payload
    total = 0.0
    sched = list(windows(n, p.window, p.overlap))
    vocab_ids = np.arange(V, dtype=np.int64)
    plain = np.zeros(n, dtype=np.float64)
    helper = np.full(n, -1, dtype=np.int64)

    def learned(i: int, pred, z) -> None:  # the model alone, and the component that helped most
        f0 = int(to_numpy(model.logit_frequencies(z[None]))[0, ids[i]])
        plain[i] = p.total_bits - np.log2(float(f0))
        best = max(pred.last.items(), key=lambda kv: kv[1])
        helper[i] = COMPONENTS.index(best[0]) if best[1] > f0 else -1

    for a, b, f, part in predicted_rows(lm, ids, p, on_token=learned if p.adapt else None):
        rows = to_numpy(f)
        tg = targets[a:b]
        total += ideal_bits(tg, rows, p.total_bits)  # exactly lm_cost_bits' sum
        enc.encode_many(tg, rows)  # exactly _encode_segment's calls: the real payload
        t = ids[a:b]
        fa = rows[np.arange(b - a), t].astype(np.int64)
        freq[a:b] = fa
        bits[a:b] = p.total_bits - np.log2(fa.astype(np.float64))
        rank[a:b] = 1 + (rows > fa[:, None]).sum(1) + ((rows == fa[:, None]) & (vocab_ids[None, :] < t[:, None])).sum(1)
        if k:
            gi, gf = select_top_k(rows, k)
            g_ids[a:b], g_freq[a:b] = gi, gf
        if progress and part is not None:
            progress(len(data) * part[1] // n - len(data) * part[0] // n)
    payload = enc.finish()
    if not p.adapt:
        plain[:] = bits
    # -- what a real compression of this one segment writes ---------------------------------
    segments = [C.Segment(C.METHOD_LM, tf, len(original), len(payload), n, C.crc32(original))] if data else []
    header = make_header(lm, p, segments, hashlib.sha256(original).digest())
    file_bytes = len(C.write_container(header, [payload] if data else []))
    fb_method, fb_payload = C.choose_fallback(original, p.format_version)
    auto = len(split_segments(original, CodecParams(window=p.window, overlap=p.overlap, adapt=p.adapt).segment_size(len(original))))
    offsets, escaped = _align(tok, data, ids)
    exp = Explanation(
        name=name, data=data, model_id=lm.id, vocab_size=V, window=p.window, overlap=p.overlap,
        total_bits_precision=p.total_bits, top_k=p.top_k, ids=np.asarray(ids, dtype=np.int64), offsets=offsets,
        freq=freq, bits=bits, rank=rank, guess_ids=g_ids, guess_freq=g_freq, escaped=escaped, total=total,
        windows=sched, payload_bytes=len(payload), file_bytes=file_bytes,
        fallback_method=C.METHOD_NAMES.get(fb_method, str(fb_method)),
        fallback_bytes=len(fb_payload), auto_segments=max(1, auto), seconds=0.0,
        plain_bits=plain, helper=helper, adaptation=p.adapt.describe() if p.adapt else "off", transformed=bool(tf),
    )
    used = set(exp.ids.tolist()) | set(g_ids.reshape(-1).tolist())
    exp.labels = {i: _vocab_label(tok, i) for i in sorted(used)}
    exp.shown = _display_pieces(data, offsets)
    exp.seconds = time.monotonic() - t0
    return exp


def _align(tok, data: bytes, ids) -> tuple[Any, Any]:
    """Byte offset of every token in ``data``. A token spelling no bytes (the BPE escape) makes
    the next token stand for exactly one (escaped) byte, whatever that token spells itself."""
    import numpy as np

    from .errors import TokenizerError

    n = len(ids)
    offsets = np.zeros(n + 1, dtype=np.int64)
    escaped = np.zeros(n, dtype=bool)
    spelled = {i: tok.token_bytes(i) for i in set(np.asarray(ids).tolist())}
    pos, pending = 0, False
    for i, t in enumerate(np.asarray(ids).tolist()):
        offsets[i] = pos
        b = spelled[t]
        if pending:
            escaped[i], pending = True, False
            pos += 1
        elif not b:
            pending = True
        else:
            if data[pos : pos + len(b)] != b:
                raise TokenizerError(f"internal error: token {i} does not spell the data at byte {pos}")
            pos += len(b)
    offsets[n] = pos
    if pos != len(data) or pending:
        raise TokenizerError(f"internal error: tokens cover {pos} of {len(data)} bytes")
    return offsets, escaped


# --------------------------------------------------------------------------- making bytes visible

_SPECIAL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_C_ESCAPES = {0x0D: "\\r"}


def _escape_char(ch: str) -> str | None:
    """The escape shown for a character that must not be printed as is (None: print it).

    Newline and tab are left to the caller. Undecodable bytes arrive as lone surrogates
    (``surrogateescape``) and show as ``\\xNN``; controls, format characters (bidi overrides,
    zero-width characters), private-use and unassigned code points as ``\\xNN``/``\\uNNNN``."""
    o = ord(ch)
    if o < 0x80:
        if o < 0x20 or o == 0x7F:
            return _C_ESCAPES.get(o, f"\\x{o:02x}")
        return None
    if 0xDC80 <= o <= 0xDCFF:
        return f"\\x{o - 0xDC00:02x}"
    if unicodedata.category(ch) in _SPECIAL_CATEGORIES:
        return f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}"
    return None


def _visible(s: str) -> list[tuple[str, str]]:
    """Split display text into runs: ("t", text), ("e", escape), ("n", "\\n")."""
    out: list[tuple[str, str]] = []
    run: list[str] = []
    for ch in s:
        if ch == "\n":
            esc = "\n"
            kind = "n"
        elif ch == "\t" or (ch.isprintable() and ord(ch) < 0x80) or (esc := _escape_char(ch)) is None:
            run.append(ch)
            continue
        else:
            kind = "e"
        if run:
            out.append(("t", "".join(run)))
            run = []
        out.append((kind, esc))
    if run:
        out.append(("t", "".join(run)))
    return out


def _display_pieces(data: bytes, offsets) -> list[str]:
    """Display text of each token (UTF-8 decoded across token boundaries: a character split
    over several tokens is shown with the token that completes it; invalid bytes stay as
    lone surrogates here and are escaped by ``_visible``)."""
    dec = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    off = offsets.tolist()
    n = len(off) - 1
    return [dec.decode(data[off[i] : off[i + 1]], final=(i == n - 1)) for i in range(n)]


def token_label(b: bytes) -> str:
    """A token's bytes as one readable line: ␣ for space, ↵ newline, → tab, escapes for the rest."""
    out = []
    for ch in b.decode("utf-8", "surrogateescape"):
        if ch == " ":
            out.append("␣")
        elif ch == "\n":
            out.append("↵")
        elif ch == "\t":
            out.append("→")
        else:
            out.append(_escape_char(ch) or ch)
    return "".join(out)


def _vocab_label(tok, i: int) -> str:
    b = tok.token_bytes(i)
    if b:
        return token_label(b)
    names = getattr(tok, "tokens", None)
    name = names[i] if names is not None and 0 <= i < len(names) else f"special {i}"
    return "⟨" + token_label(name.encode("utf-8", "surrogateescape")) + "⟩"


def _safe_text(s: str) -> str:
    """Any str (file names may carry surrogates) with nothing unprintable left."""
    return "".join(_escape_char(ch) or ch if ch not in "\n\t" else repr(ch)[1:-1] for ch in s)


# --------------------------------------------------------------------------- terminal

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


def _plain(s: str) -> str:
    return "".join(t for _, t in _visible(s))


def _fmt_pct(p: float) -> str:
    if p >= 0.9995:
        return ">99.9%"
    if p >= 0.995:
        return f"{100 * p:.1f}%"
    if p >= 0.0995:
        return f"{100 * p:.0f}%"
    if p >= 0.000995:
        return f"{100 * p:.1f}%"
    return f"{100 * p:.2g}%"


def _guesses_text(exp: Explanation, i: int, limit: int = GUESSES) -> str:
    scale = float(2**exp.total_bits_precision)
    parts = []
    for gid, gf in zip(exp.guess_ids[i][:limit].tolist(), exp.guess_freq[i][:limit].tolist()):
        parts.append(f"{exp.labels[gid]} {_fmt_pct(gf / scale)}")
    return "  ".join(parts)


def _context(exp: Explanation, i: int, before: int = 32, after: int = 16) -> tuple[str, str, str]:
    """One-line context of token i: (text before, the token, text after), escaped, newlines as ↵."""

    def flat(s: str) -> str:
        return _plain(s).replace("\n", "↵").replace("\t", "→")

    pre, j = "", i - 1
    while j >= 0 and len(pre) < before:
        pre = flat(exp.shown[j]) + pre
        j -= 1
    if j >= 0 or len(pre) > before:
        pre = "…" + pre[-before:]
    post, j = "", i + 1
    while j < exp.n and len(post) < after:
        post += flat(exp.shown[j])
        j += 1
    if j < exp.n or len(post) > after:
        post = post[:after] + "…"
    tok = flat(exp.shown[i]) if exp.shown[i] else exp.label(i)
    return pre, tok, post


def most_expensive(exp: Explanation, top: int) -> list[int]:
    """Indices of the ``top`` most expensive tokens, most expensive first (ties: earlier first)."""
    import numpy as np

    if top <= 0 or not exp.n:
        return []
    order = np.lexsort((np.arange(exp.n), -exp.bits))
    return order[:top].tolist()


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
    from .adapt import COMPONENTS

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


# --------------------------------------------------------------------------- HTML

_STOPS = [(0.0, (255, 255, 255)), (1.0, (253, 251, 240)), (2.5, (255, 241, 184)), (4.5, (255, 218, 110)),
          (7.0, (253, 170, 90)), (10.0, (243, 107, 66)), (14.0, (214, 47, 39)), (19.0, (150, 18, 64)),
          (24.0, (84, 10, 72))]
_BUCKETS_PER_BIT = 2
_N_BUCKETS = HIST_MAX_BITS * _BUCKETS_PER_BIT + 1  # last one: exactly 24 bits (f == 1)


def heat_rgb(bits: float) -> tuple[int, int, int]:
    """Background colour for a cost in bits (white -> yellow -> orange -> red -> purple)."""
    b = min(max(bits, 0.0), _STOPS[-1][0])
    for (x0, c0), (x1, c1) in zip(_STOPS, _STOPS[1:]):
        if b <= x1:
            t = (b - x0) / (x1 - x0)
            return tuple(round(a + (c - a) * t) for a, c in zip(c0, c1))  # type: ignore[return-value]
    return _STOPS[-1][1]


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


def _dark(rgb: tuple[int, int, int]) -> bool:
    r, g, b = (c / 255 for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.45


def _bucket(bits: float) -> int:
    return min(_N_BUCKETS - 1, max(0, int(bits * _BUCKETS_PER_BIT)))


def _bucket_css() -> str:
    rules = []
    for j in range(_N_BUCKETS):
        mid = (j + 0.5) / _BUCKETS_PER_BIT
        rgb = heat_rgb(mid)
        fg = "#fff" if _dark(rgb) else ("#8b919a" if mid < 1 else "#1d1f23")
        rules.append(f".c{j}{{background:{_hex(rgb)};color:{fg}}}")
    return "\n".join(rules)


_CSS = r"""
:root{--ink:#1d1f23;--muted:#6b7280;--line:#e5e7eb;--panel:#f8f9fb;--accent:#2f5fd0}
*{box-sizing:border-box}
html,body{margin:0;background:#fff;color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:1180px;margin:0 auto;padding:18px 22px 60px}
h1{font-size:19px;margin:0 0 2px;font-weight:650;letter-spacing:-.01em}
h1 .dim{color:var(--muted);font-weight:500}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:22px 0 8px;font-weight:600}
.sub{color:var(--muted);font-size:13px;overflow-wrap:anywhere}
.top{display:flex;gap:18px;flex-wrap:wrap;margin-top:14px}
.card{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:12px 16px}
.summary{flex:1 1 330px;min-width:300px}
.charts{flex:2 1 520px}
.big{display:flex;gap:22px;margin:2px 0 10px}
.big div{display:flex;flex-direction:column}
.big b{font-size:24px;font-weight:650;line-height:1.1;font-variant-numeric:tabular-nums}
.big span{font-size:12px;color:var(--muted)}
dl{display:grid;grid-template-columns:auto 1fr;gap:3px 14px;margin:0;font-size:13px}
dt{color:var(--muted)}dd{margin:0;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
.note{color:#92400e}
.legend{display:flex;align-items:center;gap:8px;font-size:12px;color:var(--muted);margin-top:10px}
.ramp{display:flex;height:12px;flex:1;border-radius:3px;overflow:hidden;border:1px solid var(--line)}
.ramp i{flex:1}
svg{display:block;width:100%;height:auto}
svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;fill:#6b7280}
svg .ttl{fill:#1d1f23;font-weight:600}
svg rect.bar:hover{stroke:#1d1f23;stroke-width:1}
#text{font:13.5px/1.75 ui-monospace,"SFMono-Regular","DejaVu Sans Mono",Menlo,Consolas,monospace;white-space:pre-wrap;
 overflow-wrap:anywhere;tab-size:4;background:#fff;border:1px solid var(--line);border-radius:10px;padding:14px 16px;margin:0}
#text>span{border-radius:2px;cursor:default;padding:1px 0}
#text>span:hover{outline:1px solid #1d1f23}
#text>span.pin{outline:2px solid var(--accent);outline-offset:1px}
#text i{font-style:normal}
#text i.e{font-size:.82em;border:1px solid currentColor;border-radius:3px;padding:0 2px;margin:0 1px;opacity:.85}
#text i.r{border-style:dotted;opacity:.5}
#text i.n::before{content:"\21B5";opacity:.45}
#text>span:empty::before{content:"\B7";opacity:.6}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;color:var(--muted);font-weight:600;border-bottom:1px solid var(--line);padding:4px 8px}
td{border-bottom:1px solid var(--line);padding:5px 8px;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.go{cursor:pointer}tr.go:hover{background:var(--panel)}
.ctx{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;white-space:pre;color:var(--muted)}
.ctx mark{padding:1px 2px;border-radius:2px}
.gs{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px}
.gs span{display:inline-block;background:#eef1f6;border-radius:3px;padding:0 4px;margin:1px 4px 1px 0;white-space:pre}
#tip{position:absolute;z-index:10;max-width:380px;min-width:230px;background:#1f2330;color:#e8eaf0;border-radius:8px;
 padding:10px 12px;font-size:12.5px;box-shadow:0 6px 24px rgba(0,0,0,.25);pointer-events:none}
#tip[hidden]{display:none}
#tip .tk{font:600 15px ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;color:#fff;white-space:pre-wrap;overflow-wrap:anywhere}
#tip .meta{color:#aab1c2;margin:3px 0 7px;font-variant-numeric:tabular-nums}
#tip .meta b{color:#fff}
#tip .g{display:grid;grid-template-columns:1fr 54px 70px;gap:2px 8px;align-items:center}
#tip .g .l{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;white-space:pre;overflow:hidden;text-overflow:ellipsis}
#tip .g .p{text-align:right;font-variant-numeric:tabular-nums;color:#cfd4e0}
#tip .g .b{height:7px;background:#3a4152;border-radius:3px;overflow:hidden}
#tip .g .b i{display:block;height:100%;background:#7aa2f7}
#tip .g .hit{color:#9ece6a;font-weight:600}
#tip .g .hit+.p{color:#9ece6a}
#tip .hd{color:#aab1c2;margin-bottom:3px}
.foot{color:var(--muted);font-size:12px;margin-top:26px}
"""

_JS = r"""
(function () {
  "use strict";
  var root = document.documentElement;
  try {
    var D = JSON.parse(document.getElementById("lmz-data").textContent);
    var text = document.getElementById("text");
    var tip = document.getElementById("tip");
    var spans = text.children, n = spans.length, k = D.k, scale = Math.pow(2, D.prec);
    if (n !== D.T.length) throw new Error("token spans " + n + " != tokens " + D.T.length);
    for (var i = 0; i < n; i++) spans[i].lmzIndex = i;
    var pinned = -1;

    function label(i) { return (D.X && D.X[i] !== undefined) ? D.X[i] : D.V[D.T[i]]; }
    function pct(p) {
      if (p >= 0.9995) return ">99.9%";
      if (p >= 0.995) return (100 * p).toFixed(1) + "%";
      if (p >= 0.0995) return (100 * p).toFixed(0) + "%";
      if (p >= 0.000995) return (100 * p).toFixed(1) + "%";
      return (100 * p).toPrecision(2) + "%";
    }
    function el(tag, cls, txt) {
      var e = document.createElement(tag);
      if (cls) e.className = cls;
      if (txt !== undefined) e.textContent = txt;
      return e;
    }
    function fill(i) {
      tip.textContent = "";
      var a = D.A[i], bits = D.prec - Math.log2(a);
      tip.appendChild(el("div", "tk", label(i)));
      var m = el("div", "meta");
      m.appendChild(el("b", "", bits.toFixed(2) + " bits"));
      m.appendChild(document.createTextNode("  ·  p = " + pct(a / scale) + "  ·  guess #" + D.R[i]));
      m.appendChild(el("br"));
      m.appendChild(document.createTextNode("without adaptation: " + D.P[i].toFixed(2) + " bits" +
        (D.H[i] >= 0 ? "  ·  helped most: " + D.C[D.H[i]] : "")));
      m.appendChild(el("br"));
      m.appendChild(document.createTextNode("token " + (i + 1) + " of " + n + "  ·  id " + D.T[i] +
        "  ·  bytes " + D.O[i] + "–" + D.O[i + 1]));
      tip.appendChild(m);
      if (k) {
        tip.appendChild(el("div", "hd", "model's top guesses"));
        var g = el("div", "g");
        for (var j = 0; j < k; j++) {
          var id = D.G[i * k + j], p = D.F[i * k + j] / scale;
          var hit = id === D.T[i] && !(D.X && D.X[i] !== undefined);
          g.appendChild(el("span", hit ? "l hit" : "l", (hit ? "✓ " : "") + D.V[id]));
          g.appendChild(el("span", "p", pct(p)));
          var bar = el("span", "b"), fillbar = el("i");
          fillbar.style.width = Math.max(1, Math.round(100 * p)) + "%";
          bar.appendChild(fillbar);
          g.appendChild(bar);
        }
        tip.appendChild(g);
      }
    }
    function place(s) {
      var r = s.getBoundingClientRect();
      tip.hidden = false;
      var w = tip.offsetWidth, h = tip.offsetHeight;
      var x = Math.min(window.innerWidth - w - 8, Math.max(8, r.left));
      var y = r.bottom + 6;
      if (y + h > window.innerHeight - 4 && r.top - h - 6 > 0) y = r.top - h - 6;
      tip.style.left = (x + window.scrollX) + "px";
      tip.style.top = (y + window.scrollY) + "px";
    }
    function show(i) { fill(i); place(spans[i]); }
    function hide() { if (pinned < 0) tip.hidden = true; }
    function pin(i, scroll) {
      if (pinned >= 0) spans[pinned].classList.remove("pin");
      pinned = i;
      if (i < 0) { tip.hidden = true; return; }
      spans[i].classList.add("pin");
      var r = spans[i].getBoundingClientRect();
      if (scroll && (r.top < 0 || r.bottom > window.innerHeight)) spans[i].scrollIntoView({block: "center"});
      show(i);
    }
    function tokenOf(t) {
      while (t && t !== text) {
        if (t.parentNode === text) return t.lmzIndex;
        t = t.parentNode;
      }
      return -1;
    }
    text.addEventListener("mouseover", function (e) {
      var i = tokenOf(e.target);
      if (i >= 0 && pinned < 0) show(i);
    });
    text.addEventListener("mouseleave", hide);
    text.addEventListener("click", function (e) {
      var i = tokenOf(e.target);
      pin(i === pinned ? -1 : i, false);
    });
    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape") pin(-1);
      else if (pinned >= 0 && (e.key === "ArrowRight" || e.key === "ArrowLeft")) {
        pin(Math.min(n - 1, Math.max(0, pinned + (e.key === "ArrowRight" ? 1 : -1))), true);
        e.preventDefault();
      }
    });
    var rows = document.querySelectorAll("tr[data-i]");
    for (var r = 0; r < rows.length; r++) {
      rows[r].addEventListener("click", function () { pin(parseInt(this.getAttribute("data-i"), 10), true); });
    }
    var mh = /^#t(\d+)$/.exec(location.hash);
    if (mh && +mh[1] < n) pin(+mh[1], true);
    root.setAttribute("data-lmz-ready", String(n));
  } catch (err) {
    root.setAttribute("data-lmz-error", String(err && err.message || err));
    throw err;
  }
})();
"""


def _json_for_script(obj: Any) -> str:
    """JSON that cannot end its <script> element or open a comment (all <, >, & escaped)."""
    s = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def _esc(s: str) -> str:
    return html.escape(s, quote=True)


def _span_html(shown: str) -> str:
    parts = []
    for kind, t in _visible(shown):
        if kind == "t":
            parts.append(_esc(t))
        elif kind == "n":
            parts.append('<i class="n"></i>\n')  # the ↵ comes from CSS: copying the text gives the text
        else:  # \r (CRLF files) in a lighter box than the other escapes
            cls = "e r" if t == _C_ESCAPES[0x0D] else "e"
            parts.append(f'<i class="{cls}">{_esc(t)}</i>')
    return "".join(parts)


def _heatmap_html(exp: Explanation) -> str:
    out = []
    for i in range(exp.n):
        # A token that completes no character (part of a multi-byte character, an escape
        # token) is an empty span, made visible and hoverable by CSS (:empty::before).
        out.append(f'<span class="c{_bucket(float(exp.bits[i]))}">{_span_html(exp.shown[i])}</span>')
    return "".join(out)


def _fmt_count(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 10000 else f"{x:g}"


def histogram_svg(exp: Explanation, *, width: int = 660, height: int = 310) -> str:
    """Two bar charts over 1-bit bins (0..24 bits): how many tokens, and how many of the bits."""
    import numpy as np

    bins = HIST_MAX_BITS
    if exp.n:
        idx = np.minimum(bins - 1, np.floor(exp.bits).astype(np.int64))
        counts = np.bincount(idx, minlength=bins)[:bins].astype(np.float64)
        sums = np.bincount(idx, weights=exp.bits, minlength=bins)[:bins]
    else:
        counts, sums = np.zeros(bins), np.zeros(bins)
    total = float(exp.total) or 1.0
    left, right, top_pad, tick_room, title_room = 46, 14, 24, 22, 30
    panel_h = (height - top_pad - 2 * tick_room - title_room) // 2
    plot_w = width - left - right
    bw = plot_w / bins
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="histogram of bits per token">']

    def panel(y0: int, values, title: str, fmt_tip: Callable[[int, float], str], ymax_label: str, ymax: float) -> None:
        out.append(f'<text class="ttl" x="{left}" y="{y0 - 9}">{_esc(title)}</text>')
        base = y0 + panel_h
        out.append(f'<line x1="{left}" y1="{y0}" x2="{left + plot_w}" y2="{y0}" stroke="#e3e6eb" stroke-dasharray="3 3"/>')
        out.append(f'<line x1="{left}" y1="{(y0 + base) / 2:.1f}" x2="{left + plot_w}" y2="{(y0 + base) / 2:.1f}" '
                   'stroke="#eef0f3" stroke-dasharray="3 3"/>')
        out.append(f'<text x="{left - 6}" y="{y0 + 4}" text-anchor="end">{_esc(ymax_label)}</text>')
        out.append(f'<text x="{left - 6}" y="{base + 4}" text-anchor="end">0</text>')
        for b in range(bins):
            v = float(values[b])
            hgt = 0.0 if ymax <= 0 else panel_h * v / ymax
            if v > 0:
                hgt = max(hgt, 1.5)
            x = left + b * bw
            out.append(f'<rect class="bar" x="{x + 1:.1f}" y="{base - hgt:.1f}" width="{bw - 2:.1f}" height="{hgt:.1f}" '
                       f'rx="1.5" fill="{_hex(heat_rgb(b + 0.5))}" stroke="#b9bfc9" stroke-width=".6">'
                       f'<title>{_esc(fmt_tip(b, v))}</title></rect>')
        out.append(f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#9ca3af"/>')
        for t in range(0, bins + 1, 2):
            x = left + t * bw
            out.append(f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + (4 if t % 4 == 0 else 2)}" stroke="#9ca3af"/>')
            if t % 4 == 0:
                label = f"{t} bits" if t == bins else str(t)
                anchor = "end" if t == bins else "middle"
                out.append(f'<text x="{x + (6 if t == bins else 0):.1f}" y="{base + 16}" text-anchor="{anchor}">{label}</text>')

    n = max(1, exp.n)
    cmax = float(counts.max())
    smax = float(sums.max()) / total
    y1 = top_pad
    panel(y1, counts, "tokens by cost",
          lambda b, v: f"{b}–{b + 1} bits: {int(v)} tokens ({100 * v / n:.1f}% of the tokens)", _fmt_count(cmax), cmax)
    if exp.n:  # mean cost marker
        x = left + min(bins, float(exp.bits_per_token)) * bw
        out.append(f'<line x1="{x:.1f}" y1="{y1 - 4}" x2="{x:.1f}" y2="{y1 + panel_h}" stroke="#2f5fd0" stroke-width="1.5" '
                   f'stroke-dasharray="4 3"><title>mean {exp.bits_per_token:.2f} bits/token</title></line>')
        anchor = "end" if exp.bits_per_token > bins * 0.75 else "start"
        dx = -5 if anchor == "end" else 5
        out.append(f'<text x="{x + dx:.1f}" y="{y1 + 8}" text-anchor="{anchor}" fill="#2f5fd0">'
                   f'mean {exp.bits_per_token:.2f}</text>')
    y2 = y1 + panel_h + tick_room + title_room
    panel(y2, sums / total, "share of all bits, by cost of the token",
          lambda b, v: f"{b}–{b + 1} bits: {100 * v:.1f}% of the {exp.total:.0f} bits", f"{100 * smax:.0f}%", smax)
    out.append("</svg>")
    return "".join(out)


def _page_data(exp: Explanation) -> dict:
    k = exp.guess_ids.shape[1] if exp.n else 0
    return {
        "prec": exp.total_bits_precision,
        "k": k,
        "T": exp.ids.tolist(),
        "A": exp.freq.tolist(),
        "R": exp.rank.tolist(),
        "O": exp.offsets.tolist(),
        "G": exp.guess_ids.reshape(-1).tolist(),
        "F": exp.guess_freq.reshape(-1).tolist(),
        "V": {str(i): lbl for i, lbl in exp.labels.items()},
        "X": {str(i): exp.label(i) for i in range(exp.n) if exp.escaped[i]},
        "P": [round(float(b), 3) for b in exp.plain_bits.tolist()],
        "H": exp.helper.tolist(),
        "C": list(_components()),
    }


def _components() -> tuple[str, ...]:
    from .adapt import COMPONENTS

    return COMPONENTS


def render_html(exp: Explanation, *, top: int = 10) -> str:
    """The whole self-contained page."""
    name = _safe_text(exp.name) or "(data)"
    nbytes = len(exp.data)
    css = _CSS + _bucket_css()
    csp = (f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(_JS)}; img-src data:; "
           "base-uri 'none'; form-action 'none'")

    def stat(value: str, label: str) -> str:
        return f"<div><b>{_esc(value)}</b><span>{_esc(label)}</span></div>"

    big = "".join([
        stat(f"{exp.bits_per_byte:.3f}" if exp.n else "–", "bits / byte"),
        stat(f"{exp.bits_per_token:.2f}" if exp.n else "–", "bits / token"),
        stat(f"{100 * exp.payload_bytes / nbytes:.1f}%" if nbytes else "–", "payload / original"),
    ])
    wins = f"{exp.n_windows} window{'s' if exp.n_windows != 1 else ''} of ≤ {exp.window} tokens"
    if exp.overlap:
        wins += f", overlap {exp.overlap}"
    dl = [
        ("model", exp.model_id),
        ("input", f"{nbytes:,} bytes, {exp.n:,} tokens" + (f" ({nbytes / exp.n:.2f} bytes/token)" if exp.n else "")),
        ("explained as", f"one segment: {wins}"),
        ("total", f"{exp.total:,.1f} bits = {exp.total / 8:,.1f} bytes"),
        ("adaptation", " ".join(x.strip() for x in adaptation_lines(exp)[:2]).replace("adaptation ", "", 1)),
        ("LM payload", f"{exp.payload_bytes:,} bytes (coder overhead {8 * exp.payload_bytes - exp.total:+.1f} bits)"),
        (".lmz file", f"{exp.file_bytes:,} bytes as one LM segment"),
        ("fallback", f"{exp.fallback_method}: {exp.fallback_bytes:,} bytes"
                     + (" (smaller: lmzip compress would use it)" if exp.fallback_bytes < exp.payload_bytes else "")),
        ("time", f"{exp.seconds:.2f} s"),
    ]
    dl_html = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in dl)
    if exp.auto_segments > 1:
        dl_html += (f'<dt>note</dt><dd class="note">{_esc(f"lmzip compress would cut this file into {exp.auto_segments} segments, each starting cold")}</dd>')
    ramp = "".join(f'<i class="c{j}"></i>' for j in range(0, _N_BUCKETS, 2))
    legend = f'<div class="legend"><span>0 bits</span><div class="ramp">{ramp}</div><span>{HIST_MAX_BITS} bits</span></div>'

    rows = []
    scale = float(2**exp.total_bits_precision)
    for j, i in enumerate(most_expensive(exp, top), 1):
        pre, tok, post = _context(exp, i, 40, 24)
        guesses = "".join(
            f"<span>{_esc(exp.labels[g])} {_esc(_fmt_pct(f / scale))}</span>"
            for g, f in zip(exp.guess_ids[i].tolist(), exp.guess_freq[i].tolist()))
        rows.append(
            f'<tr class="go" data-i="{i}" title="show in the text"><td class="num">{j}</td>'
            f'<td class="num">{exp.bits[i]:.2f}</td><td class="num">#{int(exp.rank[i])}</td>'
            f'<td class="num">{int(exp.offsets[i])}</td>'
            f'<td class="ctx">{_esc(pre)}<mark class="c{_bucket(float(exp.bits[i]))}">{_esc(tok)}</mark>{_esc(post)}</td>'
            f'<td class="gs">{guesses}</td></tr>')
    table = ""
    if rows:
        table = (f"<h2>Most expensive tokens (top {len(rows)} of {exp.n:,})</h2><div class=\"card\">"
                 "<table><thead><tr><th>#</th><th>bits</th><th>rank</th><th>byte</th><th>context</th>"
                 "<th>model's top guesses</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")
    data_json = _json_for_script(_page_data(exp))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_esc(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="lmzip explain">
<title>{_esc(name)} — lmzip explain</title>
<style>{css}</style>
</head>
<body>
<main>
<h1>lmzip explain <span class="dim">· {_esc(name)}</span></h1>
<div class="sub">Every token is coloured by its cost under {_esc(exp.model_id)}: −log<sub>2</sub> of the probability
the model gave it, exactly as the range coder pays for it. Hover a token for the model's guesses; click to pin
(← → to move, Esc to release).</div>
<div class="top">
<section class="card summary"><div class="big">{big}</div><dl>{dl_html}</dl>{legend}</section>
<section class="card charts">{histogram_svg(exp)}</section>
</div>
<h2>Text</h2>
<div id="text">{_heatmap_html(exp)}</div>
{table}
<div class="foot">Generated by lmzip explain. Self-contained: no external resources.</div>
</main>
<div id="tip" role="tooltip" hidden></div>
<script type="application/json" id="lmz-data">{data_json}</script>
<script>{_JS}</script>
</body>
</html>
"""


# --------------------------------------------------------------------------- the command


@contextlib.contextmanager
def _nothing():
    yield None


def _want_color(choice: bool | None, stream) -> bool:
    if choice is not None:
        return choice
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError, OSError):
        return False


@click.command("explain", epilog="The explanation codes the whole file as one segment with the compressor's "
               "windows; its total matches the LM payload of `lmzip compress --segment-size` > file size to within "
               "the range coder's overhead.")
@click.argument("file", metavar="FILE")
@click.option("--model", metavar="ID|DIR", help="Registry id or model directory. [default: the default model]")
@click.option("--device", default="cpu", show_default=True, metavar="NAME", help="Torch device for the model: cpu, cuda, ...")
@click.option("--window", type=click.IntRange(min=1), metavar="N", help="Tokens the model sees at most. [default: 4096]")
@click.option("--overlap", type=click.IntRange(min=0), metavar="N",
              help="Tokens re-read as context at each new window. [default: 1024]")
@click.option("--adapt/--no-adapt", default=True, show_default=True,
              help="Explain with the adaptive predictor (as compression does) or the model alone.")
@click.option("--html", "html_out", metavar="OUT.html", help="Also write a self-contained HTML page (heatmap, tooltips, histogram); '-': to standard output instead of the text.")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True, metavar="N",
              help="How many of the most expensive tokens to list.")
@click.option("--color/--no-color", default=None,
              help="Colour the text by cost. [default: when standard output is a terminal and NO_COLOR is unset]")
@click.option("-q", "--quiet", count=True, help="-q: summary only, no text; -qq: print nothing (with --html).")
@click.option("-v", "--verbose", count=True, help="Also list the model's windows with their costs.")
@click.pass_context
def explain_command(ctx, file, model, device, window, overlap, adapt, html_out, top, color, quiet, verbose):
    """Show how many bits each token of FILE costs under the model ('-': standard input).

    The text is printed coloured by cost (dim: predictable, red: surprising), followed by a
    summary (bits/byte, bits/token, the payload an actual compression produces) and the most
    expensive tokens with the model's top guesses. With --html, the same as one HTML page.
    """
    from . import cmdline as cl
    from .resources import check_device
    from .progress import Progress

    level = (ctx.obj or {}).get("verbosity", 0) + verbose - quiet  # 0 normal, -1 summary only, -2 nothing
    shown = cl.display(file)
    use_color = _want_color(color, cl.stdout())

    def work(src: str) -> None:
        to_file = html_out is not None and html_out != cl.STDIO
        if to_file:
            cl.check_dest(src, html_out, True)  # not a directory, not the input itself
        with cl.Input(src, compressed=False) as inp:  # the analysis needs the whole input
            data = inp.file.read()
        check_device(device)
        from .api import Compressor

        compressor = Compressor(model, device=device, window=window, overlap=overlap, fallback=False, adapt=adapt)
        name = shown if src == cl.STDIO else os.path.basename(src)
        # --html FILE: written atomically (temporary file renamed into place); --html -: to stdout, alone.
        with cl.Output(html_out if to_file else None, True, None) if html_out is not None else _nothing() as output:
            with Progress(len(data), shown, enabled=None if level >= 0 else False) as progress:
                exp = explain(compressor.model, data, compressor.params, name=name, progress=progress)
            if output is not None:
                output.write(render_html(exp, top=top).encode("utf-8"))
                output.commit()
        if level <= -2 or html_out == cl.STDIO:
            return
        text = render_terminal(exp, color=use_color, top=top, text=level >= 0, verbose=level >= 1)
        if to_file:
            text += f"\nHTML page: {_safe_text(html_out)}\n"
        try:
            click.echo(text, nl=False, color=use_color)
        except BrokenPipeError:
            cl.silence_stdout()
            raise

    cl.for_each(ctx, [file], work)


__all__ = ["Explanation", "explain", "explain_command", "render_html", "render_terminal", "summary_lines",
           "histogram_svg", "token_label", "heat_rgb", "most_expensive"]
