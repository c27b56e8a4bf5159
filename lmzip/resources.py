"""Small shared helpers: where shipped data and the cache live, and checking a device name."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from .errors import UsageError


def shipped_dir(package: str, source_dir: str) -> Path:
    """A data directory installed as ``package`` (e.g. ``models/`` as ``lmzip._models``)."""
    try:
        from importlib.resources import files

        return Path(str(files(package)))
    except ModuleNotFoundError:  # running from a source tree without installing
        return Path(__file__).resolve().parent.parent / source_dir


def cache_home() -> Path:
    """lmzip's data directory: $LMZIP_HOME, else the platform's user cache directory."""
    env = os.environ.get("LMZIP_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lmzip", appauthor=False))


def read_cache(name: str) -> bytes | None:
    """What ``write_cache(name, ...)`` stored under the cache's tables/, or None if it is absent
    or damaged (the body carries its sha256)."""
    try:
        raw = (cache_home() / "tables" / name).read_bytes()
    except OSError:
        return None
    body, digest = raw[:-32], raw[-32:]
    if len(raw) < 32 or hashlib.sha256(body).digest() != digest:
        return None
    return body


def write_cache(name: str, body: bytes) -> None:
    """Store ``body`` atomically with its sha256 appended; an unwritable cache is no error."""
    try:
        d = cache_home() / "tables"
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body + hashlib.sha256(body).digest())
            os.replace(tmp, d / name)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass


def check_device(device: str) -> None:
    """UsageError unless ``device`` names a torch device that exists here."""
    if device == "cpu":
        return  # always there, and the native runtime needs no torch for it
    try:
        import torch
    except ImportError:
        raise UsageError(f"device {device!r} needs PyTorch (pip install torch); the CPU works without it") from None

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"invalid device {device!r} (examples: cpu, cuda, cuda:1)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r}: CUDA is not available here")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UsageError(f"device {device!r}: MPS is not available here")
