"""lmzip's native exact runtime: the model, the adaptive predictor and the coder in C++.

Built from source by ``pip install .`` (``setup.py``: pybind11, gcc/clang). It computes the very
integers of the torch reference (``lmzip/model/exact_model.py``, ``adapt.py``, ``coder.py``), which stays
as the oracle of the tests and as the path for CUDA. Kernels are chosen at run time from what the
CPU offers (AVX-512 VNNI, AVX2, or portable C++).

Environment:
  LMZIP_RUNTIME=reference   use the torch reference even where the native runtime is available
  LMZIP_SIMD=portable|avx2|avx512vnni   cap the SIMD level (for measurements and tests)
  LMZIP_THREADS=N           threads of the native model (default: the CPUs this process may use)
  LMZIP_CODING=native|reference   the coder and predictor beside a torch model: native by default on
                            a GPU where the extension is built, in Python on a CPU (codec.coding_native)
"""

from __future__ import annotations

import os
import sys

try:
    from . import _native  # type: ignore[attr-defined]

    _IMPORT_ERROR: str | None = None
except ImportError as exc:  # not built (unusual machine, build failure): the reference path works
    _native = None
    from pathlib import Path as _Path

    if not any(_Path(__file__).parent.glob("_native*")):
        _IMPORT_ERROR = "the extension was not built here (pip install . builds it)"
    else:
        _IMPORT_ERROR = str(exc)

SIMD_NAMES = ("portable", "avx2", "avx512vnni")
_warned = False


def available() -> bool:
    """True when the extension is built and loads here."""
    return _native is not None


def unavailable_reason() -> str:
    return _IMPORT_ERROR or ""


def wanted() -> bool:
    """Whether CPU work should use the native runtime (it is available and not turned off)."""
    choice = os.environ.get("LMZIP_RUNTIME", "").strip().lower()
    if choice == "reference":
        return False
    if not available():
        _warn_once()
        return False
    return True


def _warn_once() -> None:
    global _warned
    if not _warned and os.environ.get("LMZIP_RUNTIME", "").strip().lower() != "reference":
        _warned = True
        print(f"lmzip: native runtime unavailable ({_IMPORT_ERROR}); using the slower torch reference",
              file=sys.stderr)


def best_simd() -> int:
    return int(_native.best_simd()) if _native else 0


def simd_level() -> int:
    """The SIMD level in use: the best this CPU runs, capped by LMZIP_SIMD, whose kernels pass
    the known-answer checks against the portable ones here (csrc/selftest.cpp)."""
    best = best_simd()
    cap = os.environ.get("LMZIP_SIMD", "").strip().lower()
    if cap:
        if cap not in SIMD_NAMES:
            raise ValueError(f"LMZIP_SIMD must be one of {', '.join(SIMD_NAMES)}")
        best = min(best, SIMD_NAMES.index(cap))
    return int(_native.verified_simd(best)) if _native else 0


def default_threads() -> int:
    env = os.environ.get("LMZIP_THREADS", "").strip()
    if env:
        n = int(env)
        if n < 1:
            raise ValueError("LMZIP_THREADS must be >= 1")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def describe() -> str:
    """One line for ``lmzip --version`` / ``info``: which runtime and SIMD level is active."""
    if not wanted():
        why = "forced by LMZIP_RUNTIME" if available() else "native runtime not built"
        return f"reference (torch; {why})"
    return f"native ({SIMD_NAMES[simd_level()]}, {default_threads()} threads)"
