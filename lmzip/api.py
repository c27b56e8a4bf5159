"""The Python API, shaped like the standard library's ``lzma``/``gzip`` modules.

    import lmzip
    blob = lmzip.compress(b"some text")            # default model, pulled on first use
    assert lmzip.decompress(blob) == b"some text"  # the model is read from the header
    with lmzip.open("notes.txt.lmz", "wb") as f:
        f.write(b"...")

For loops over many inputs, ``Compressor``/``Decompressor`` hold the loaded model.
"""

from __future__ import annotations

import builtins
import io
import os
from typing import BinaryIO

from . import codec, container, zoo
from .adapt import AdaptParams
from .codec import CodecParams, Progress
from .errors import FormatError, ModelError, UsageError

ModelSpec = str | os.PathLike | zoo.LoadedModel | None


def _load(model: ModelSpec, device: str) -> zoo.LoadedModel:
    if isinstance(model, zoo.LoadedModel):
        return model
    return zoo.load(model, device=device)


class Compressor:
    """Compresses byte strings into complete .lmz blobs with one loaded model (reused across calls).

    ``model``: a registry id (default: the default model), a model directory, or a loaded model.
    ``window``/``overlap``: tokens the model sees at most / re-reads at each new window
    (default 4096 / 1024, or the model's context and a quarter of it if that is shorter).
    ``segment_size``: target bytes per independently decodable segment (0: automatic).
    ``fallback``: let segments fall back to zstd/stored bytes when that is smaller (default);
    False forces the model everywhere (for measurements).
    ``adapt``: learn the file while coding it (True: default parameters; an ``AdaptParams``;
    False: the model alone). ``transforms``: code CRLF line ends as LF where reversible.
    ``format_version``: the container layout (default: the newest; 1 or 2 reproduce older files).
    """

    def __init__(self, model: ModelSpec = None, *, device: str = "cpu", window: int | None = None,
                 overlap: int | None = None, segment_size: int = CodecParams.segment_bytes,
                 top_k: int = CodecParams.top_k, fallback: bool = True, adapt: bool | AdaptParams = True,
                 transforms: bool = True, format_version: int = container.FORMAT_VERSION) -> None:
        self.model = _load(model, device)
        window, overlap = CodecParams.schedule(self.model.model.cfg.max_context, window, overlap)
        if adapt is True:
            adapt = AdaptParams()
        self.params = CodecParams(window=window, overlap=overlap, segment_bytes=segment_size, top_k=top_k,
                                  fallback=fallback, adapt=adapt or None, transforms=transforms,
                                  format_version=format_version)
        try:
            self.params.validate(self.model.model.cfg.max_context)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def compress(self, data: bytes | bytearray | memoryview, progress: Progress | None = None) -> bytes:
        """Return the complete .lmz representation of ``data``."""
        return codec.compress(bytes(data), self.model, self.params, progress)


class Decompressor:
    """Decompresses .lmz blobs. Loads the model each file names (once per process), or uses ``model``."""

    def __init__(self, model: ModelSpec = None, *, device: str = "cpu", batch: int = 16) -> None:
        self.device = device
        self.batch = batch
        self._model = _load(model, device) if model is not None else None

    def model_for(self, header: container.Header) -> zoo.LoadedModel | None:
        """The model needed to decode a file with this header (None if it has no LM segment)."""
        if not codec.needs_model(header):
            return None
        if self._model is not None:
            return self._model
        if header.model_ref:
            return zoo.load(zoo.entry_for_ref(header.model_ref).id, device=self.device)
        if header.model_id.startswith("dir:"):
            raise ModelError(f"file was compressed with a model directory ({header.model_id[4:]}); name it with model=/--model")
        return zoo.load(header.model_id, device=self.device)

    def decompress(self, data: bytes | bytearray | memoryview, progress: Progress | None = None) -> bytes:
        """Return the original bytes; raises a FormatError subclass for damaged or foreign data."""
        header, payloads = container.read_container(bytes(data))
        return codec.decompress_parsed(header, payloads, self.model_for(header), self.batch, progress)


def compress(data: bytes | bytearray | memoryview, model: ModelSpec = None, **options) -> bytes:
    """Compress ``data`` into a .lmz blob (options: device, window, overlap, segment_size, top_k, fallback,
    adapt, transforms)."""
    return Compressor(model, **options).compress(data)


def decompress(data: bytes | bytearray | memoryview, model: ModelSpec = None, *, device: str = "cpu") -> bytes:
    """Decompress a .lmz blob (the model is taken from its header unless given)."""
    return Decompressor(model, device=device).decompress(data)


class LmzFile(io.BufferedIOBase):
    """A file object over a .lmz file, like ``lzma.LZMAFile``.

    Reading decompresses the whole file on first access (segments decode as a batch);
    writing buffers the data and writes the .lmz on ``close()``.
    """

    def __init__(self, filename: str | bytes | os.PathLike | BinaryIO, mode: str = "rb", *, model: ModelSpec = None,
                 device: str = "cpu", **options) -> None:
        super().__init__()
        if mode in ("r", "rb"):
            self._mode = "r"
        elif mode in ("w", "wb", "x", "xb", "a", "ab"):
            if mode.startswith("a"):
                raise UsageError("appending to a .lmz file is not supported")
            self._mode = "w"
        else:
            raise ValueError(f"invalid mode {mode!r}")
        if isinstance(filename, (str, bytes, os.PathLike)):
            self._fp: BinaryIO = builtins.open(filename, mode[0] + "b")
            self._own = True
        elif hasattr(filename, "read") or hasattr(filename, "write"):
            self._fp = filename  # type: ignore[assignment]
            self._own = False
        else:
            raise TypeError("filename must be a path or a binary file object")
        self._model, self._device, self._options = model, device, options
        self._buffer: io.BytesIO | None = io.BytesIO() if self._mode == "w" else None
        self._reader: io.BytesIO | None = None

    def _check(self, want: str) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if self._mode != want:
            raise io.UnsupportedOperation("file not open for " + ("reading" if want == "r" else "writing"))

    def _load_reader(self) -> io.BytesIO:
        if self._reader is None:
            data = Decompressor(self._model, device=self._device).decompress(self._fp.read())
            self._reader = io.BytesIO(data)
        return self._reader

    def readable(self) -> bool:
        return self._mode == "r" and not self.closed

    def writable(self) -> bool:
        return self._mode == "w" and not self.closed

    def seekable(self) -> bool:
        return self.readable()

    def read(self, size: int | None = -1) -> bytes:
        self._check("r")
        return self._load_reader().read(size)

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, b) -> int:
        self._check("r")
        return self._load_reader().readinto(b)

    def readline(self, size: int | None = -1) -> bytes:
        self._check("r")
        return self._load_reader().readline(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check("r")
        return self._load_reader().seek(offset, whence)

    def tell(self) -> int:
        if self._mode == "r":
            return self._load_reader().tell()
        self._check("w")
        assert self._buffer is not None
        return self._buffer.tell()

    def write(self, data) -> int:
        self._check("w")
        assert self._buffer is not None
        return self._buffer.write(data)

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._mode == "w" and self._buffer is not None:
                blob = Compressor(self._model, device=self._device, **self._options).compress(self._buffer.getvalue())
                self._fp.write(blob)
                self._fp.flush()
        finally:
            try:
                if self._own:
                    self._fp.close()
            finally:
                super().close()


def open(filename, mode: str = "rb", *, model: ModelSpec = None, device: str = "cpu",  # noqa: A001 - mirrors lzma.open
         encoding: str | None = None, errors: str | None = None, newline: str | None = None, **options):
    """Open a .lmz file in binary ("rb", "wb", "xb") or text ("rt", "wt", "xt") mode, like ``lzma.open``."""
    if "t" in mode:
        if "b" in mode:
            raise ValueError(f"invalid mode {mode!r}")
        binary = LmzFile(filename, mode.replace("t", ""), model=model, device=device, **options)
        return io.TextIOWrapper(binary, encoding, errors, newline)
    if encoding is not None or errors is not None or newline is not None:
        raise ValueError("encoding/errors/newline are for text mode only")
    return LmzFile(filename, mode, model=model, device=device, **options)


__all__ = ["Compressor", "Decompressor", "LmzFile", "compress", "decompress", "open", "FormatError"]
