"""Memory-mapped safetensors: the model file's int8 rows are used in place, never copied.

The safetensors layout is an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the data. Mapping it with numpy gives arrays that
share the page cache (a second process loading the same model costs no memory) and start in
microseconds; torch is not needed.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import numpy as np

from ..errors import ModelError

_DTYPES = {"BOOL": np.bool_, "I8": np.int8, "U8": np.uint8, "I16": np.int16, "U16": np.uint16, "I32": np.int32,
           "U32": np.uint32, "I64": np.int64, "U64": np.uint64, "F16": np.float16, "F32": np.float32,
           "F64": np.float64}
_OPAQUE = {"BF16": 2, "F8_E5M2": 1, "F8_E4M3": 1}  # safetensors dtypes numpy lacks: their sizes
_MAX_HEADER = 100 << 20


class Opaque:
    """A tensor of a dtype numpy lacks (``BF16``, ``F8_*``): its name and shape, no data. The exact
    model uses none (``model_spec.check_tensors`` refuses one where a weight should be); any other
    tensor of the file is not looked at, as the reference runtime's loader does not."""

    def __init__(self, dtype: str, shape: tuple[int, ...]):
        self.dtype, self.shape = dtype, shape


def open_safetensors(path: str | Path) -> tuple[dict[str, str], dict[str, np.ndarray | Opaque]]:
    """(metadata, read-only arrays by name) of a safetensors file, mapped into memory (``Opaque``
    for a tensor of a dtype numpy lacks)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size < 8:
                raise ModelError(f"{path}: not a safetensors file (too short)")
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    (n,) = struct.unpack("<Q", mm[:8])
    if n > min(_MAX_HEADER, size - 8):
        raise ModelError(f"{path}: damaged safetensors header")
    try:
        header = json.loads(bytes(mm[8 : 8 + n]))
    except ValueError:
        raise ModelError(f"{path}: damaged safetensors header") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: damaged safetensors header")
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    buf = np.frombuffer(mm, dtype=np.uint8)
    arrays = {}
    for name, info in header.items():
        try:
            kind = info["dtype"]
            dtype = np.dtype(_DTYPES[kind]) if kind not in _OPAQUE else None
            itemsize = dtype.itemsize if dtype is not None else _OPAQUE[kind]
            shape = tuple(int(x) for x in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{path}: tensor {name!r} has an unsupported or damaged entry") from None
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if begin < 0 or end < begin or base + end > size or (end - begin) != count * itemsize or min(shape, default=1) < 0:
            raise ModelError(f"{path}: tensor {name!r} lies outside the file or has the wrong size")
        if dtype is None:
            arrays[name] = Opaque(kind, shape)
        else:
            arrays[name] = buf[base + begin : base + end].view(dtype).reshape(shape)
    return {str(k): str(v) for k, v in meta.items()}, arrays
