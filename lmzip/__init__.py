"""lmzip: lossless compression driven by an exact integer Transformer language model.

The API mirrors the standard library's ``lzma`` module: ``compress``, ``decompress``,
``open`` and a file class, plus reusable ``Compressor``/``Decompressor`` objects that keep
a loaded model. Every error raised on purpose derives from ``LmzipError``.
"""

from .api import Compressor, Decompressor, LmzFile, compress, decompress, open  # noqa: A004
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

__all__ = [
    "BadMagicError",
    "ChecksumError",
    "Compressor",
    "Decompressor",
    "FormatError",
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
