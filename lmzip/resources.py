"""Small shared helpers: where shipped data lives, and checking a device name."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError


def shipped_dir(package: str, source_dir: str) -> Path:
    """A data directory installed as ``package`` (e.g. ``models/`` as ``lmzip._models``)."""
    try:
        from importlib.resources import files

        return Path(str(files(package)))
    except ModuleNotFoundError:  # running from a source tree without installing
        return Path(__file__).resolve().parent.parent / source_dir


def check_device(device: str) -> None:
    """UsageError unless ``device`` names a torch device that exists here."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"invalid device {device!r} (examples: cpu, cuda, cuda:1)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r}: CUDA is not available here")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UsageError(f"device {device!r}: MPS is not available here")
