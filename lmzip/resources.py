"""Small shared helpers: where shipped data and the cache live, and checking a device name."""

from __future__ import annotations

import os
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
