"""Making bytes visible: how ``lmzip explain`` shows a file's bytes, its tokens and their odds.

The terminal and the HTML page share these, so both show a file the same way: controls,
format characters (bidi overrides, zero-width) and undecodable bytes are shown as escapes
(``\\x1b``, ``\\u202e``, ``\\xff``), never passed through to act on the terminal or the page.
"""

from __future__ import annotations

import codecs
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .analysis import Explanation

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


# --------------------------------------------------------------------------- tokens in context


def _plain(s: str) -> str:
    return "".join(t for _, t in _visible(s))


def _fmt_pct(p: float) -> str:
    # the page's script formats the tooltip's probabilities by the same rule (pct in page.js)
    if p >= 0.9995:
        return ">99.9%"
    if p >= 0.995:
        return f"{100 * p:.1f}%"
    if p >= 0.0995:
        return f"{100 * p:.0f}%"
    if p >= 0.000995:
        return f"{100 * p:.1f}%"
    return f"{100 * p:.2g}%"


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
