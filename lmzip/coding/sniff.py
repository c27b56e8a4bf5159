"""Is this segment text? Decided before the model runs, because on binary data it only loses.

The language model predicts text; on executables, images and compressed data it spends a
forward pass per token (the 64 KB ELF that once took 349 s of model work) to come out
larger than xz. The encoder would give such a segment up after 2048 tokens anyway, but by
then most of the time is gone. So a segment goes to the model only if nearly all of it is
UTF-8 text without control characters other than the ones text uses (tab, line ends, form
feed, escape for terminal colours). Cheap: two passes in C over the bytes.

A wrong "text" verdict costs only time (the encoder still gives up, and the fallback is
kept whenever it is smaller); a wrong "binary" verdict costs ratio, so the threshold is loose.
"""

from __future__ import annotations

#: Control bytes that text uses: tab, LF, VT, FF, CR, ESC.
_TEXT_CONTROLS = b"\t\n\x0b\x0c\r\x1b"
_OTHER_CONTROLS = bytes(b for b in range(32) if b not in _TEXT_CONTROLS) + b"\x7f"
#: Largest share of bytes that may be non-text (invalid UTF-8 or other control bytes).
MAX_NON_TEXT = 0.10  # calgary/trans, a terminal session, has 4.6% (NUL, BS); binaries 25-90%


def non_text_fraction(data: bytes | bytearray | memoryview) -> float:
    """Share of bytes that are control characters text does not use, or not valid UTF-8."""
    raw = bytes(data)
    if not raw:
        return 0.0
    controls = len(raw) - len(raw.translate(None, _OTHER_CONTROLS))
    if controls > MAX_NON_TEXT * len(raw):
        return controls / len(raw)  # already binary: skip the UTF-8 pass
    # Each invalid byte becomes one U+FFFD; real U+FFFD in the text count as one per 3 bytes.
    replaced = raw.decode("utf-8", errors="replace").count("\ufffd") - raw.count("\ufffd".encode())
    return (controls + replaced) / len(raw)


def looks_like_text(data: bytes | bytearray | memoryview) -> bool:
    """Whether the model should try this segment (see the module's docstring)."""
    return non_text_fraction(data) <= MAX_NON_TEXT
