"""lmzip: lossless compression driven by an exact integer Transformer language model.

The API mirrors the standard library's ``lzma`` module: ``compress``, ``decompress``,
``open`` and a file class, plus reusable ``Compressor``/``Decompressor`` objects that keep
a loaded model. Every error raised on purpose derives from ``LmzipError``.
"""

from .errors import (
    BadMagicError,
    ChecksumError,
    FormatError,
    LmzipError,
    ModelError,
    ModelMismatchError,
    TokenizerError,
    TrailingDataError,
    TruncatedError,
    UnknownModelError,
    UnsupportedVersionError,
    UsageError,
)

__version__ = "0.1.0"

_API = ("Compressor", "Decompressor", "LmzCompressor", "LmzDecompressor", "LmzFile", "compress", "decompress", "open")


def __getattr__(name: str):
    # The API loads the codec and numpy; load it on first use so `lmzip --version`/`info` stay instant.
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'lmzip' has no attribute {name!r}")

__all__ = [
    "BadMagicError",
    "ChecksumError",
    "Compressor",
    "Decompressor",
    "FormatError",
    "LmzCompressor",
    "LmzDecompressor",
    "LmzFile",
    "LmzipError",
    "ModelError",
    "ModelMismatchError",
    "TokenizerError",
    "TrailingDataError",
    "TruncatedError",
    "UnknownModelError",
    "UnsupportedVersionError",
    "UsageError",
    "__version__",
    "compress",
    "decompress",
    "open",
]
