"""Reversible byte transforms applied to a segment before the model sees it (container v2).

CRLF -> LF: a model trained on LF text predicts CRLF line ends poorly (every '\\r' costs
bits and splits tokens), and alice29.txt, like much text from Windows, uses them. The
transform is used only where it is exactly reversible: every LF in the segment is preceded
by a CR, so LF -> CRLF restores it. (A lone CR elsewhere is left alone and survives both ways.)
"""

from __future__ import annotations

from .container import TRANSFORM_CRLF


def crlf_applies(data: bytes) -> bool:
    """True when the segment has CRLF line ends and no bare LF (so the transform is reversible)."""
    n = data.count(b"\n")
    return n > 0 and data.count(b"\r\n") == n


def forward(data: bytes, transforms: int) -> bytes:
    if transforms & TRANSFORM_CRLF:
        data = data.replace(b"\r\n", b"\n")
    return data


def inverse(data: bytes, transforms: int) -> bytes:
    if transforms & TRANSFORM_CRLF:
        data = data.replace(b"\n", b"\r\n")
    return data


def choose(data: bytes, allow: bool = True) -> int:
    """Transform bits for a segment: CRLF when it applies (measured: alice29 -1.3% with it)."""
    return TRANSFORM_CRLF if allow and crlf_applies(data) else 0
