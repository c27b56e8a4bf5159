"""``lmzip explain --html``: the explanation as one self-contained page.

Everything is inline (CSS, JS, SVG charts, the data as JSON), with a strict
Content-Security-Policy allowing only the page's own hashed script and style, so the page
loads nothing and runs nothing else; hover a token for the model's guesses. The style and the
script live in ``page.css`` and ``page.js`` next to this module (package data).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html  # the standard library's (this module is lmzip.commands.explain.html)
import json
from importlib import resources
from typing import Any, Callable

from .analysis import Explanation, most_expensive
from .terminal import adaptation_lines
from .visible import _C_ESCAPES, _context, _fmt_pct, _safe_text, _visible

HIST_MAX_BITS = 24  # histogram range (a 24-bit frequency row cannot cost more than 24 bits)

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


@functools.cache
def _asset(name: str) -> str:
    """The text of ``page.css`` or ``page.js`` as the page inlines it, after a newline (so
    ``<style>``/``<script>`` stay on their own line). The Content-Security-Policy hashes
    exactly this text, so render_html computes the hashes from it, never from a copy."""
    return "\n" + resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


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
    from ...predict.adapt import COMPONENTS

    return COMPONENTS


def render_html(exp: Explanation, *, top: int = 10) -> str:
    """The whole self-contained page."""
    name = _safe_text(exp.name) or "(data)"
    nbytes = len(exp.data)
    css = _asset("page.css") + _bucket_css()
    js = _asset("page.js")
    csp = (f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; img-src data:; "
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
<script>{js}</script>
</body>
</html>
"""
