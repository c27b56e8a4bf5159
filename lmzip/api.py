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

from .coding import codec, container, streaming
from .model import zoo
from .predict.adapt import AdaptParams
from .coding.codec import CodecParams, Progress
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
    ``streams``: cut the input into this many segments instead (about 16 KB to 1 MB each), so that a GPU
    decodes them all at once; each starts cold, so ratio drops as they shrink (0: automatic).
    ``fallback``: let segments fall back to zstd/stored bytes when that is smaller (default);
    False forces the model everywhere (for measurements).
    ``adapt``: learn the file while coding it (True: default parameters; an ``AdaptParams``;
    False: the model alone). ``transforms``: code CRLF line ends as LF where reversible.
    ``format_version``: the container layout (default: the newest; 1 or 2 reproduce older files).
    """

    def __init__(self, model: ModelSpec = None, *, device: str = "cpu", window: int | None = None,
                 overlap: int | None = None, segment_size: int = CodecParams.segment_bytes, streams: int = 0,
                 top_k: int = CodecParams.top_k, fallback: bool = True, adapt: bool | AdaptParams = True,
                 transforms: bool = True, format_version: int = container.FORMAT_VERSION) -> None:
        self.model = _load(model, device)
        window, overlap = CodecParams.schedule(self.model.model.cfg.max_context, window, overlap)
        if adapt is True:
            adapt = AdaptParams()
        self.params = CodecParams(window=window, overlap=overlap, segment_bytes=segment_size, streams=streams, top_k=top_k,
                                  fallback=fallback, adapt=adapt or None, transforms=transforms,
                                  format_version=format_version)
        try:
            self.params.validate(self.model.model.cfg.max_context)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def compress(self, data: bytes | bytearray | memoryview, progress: Progress | None = None) -> bytes:
        """Return the complete .lmz representation of ``data``."""
        return codec.compress(bytes(data), self.model, self.params, progress)


CPU_BATCH = 16  # segments decoded together on a CPU (token-by-token decoding: ~6x faster a token than alone)


def decode_batch(batch: int | None, device: str) -> int:
    """Segments decoded together: ``batch`` if given; else ``CPU_BATCH`` on a CPU and, on a GPU, as many
    as the slots take (``device_decode.MAX_SLOTS``; fewer where its memory holds fewer caches)."""
    if batch is not None:
        return batch
    if str(device).startswith("cuda"):
        from .coding.device_decode import MAX_SLOTS

        return MAX_SLOTS
    return CPU_BATCH


class Decompressor:
    """Decompresses .lmz blobs. Loads the model each file names (once per process), or uses ``model``.
    ``batch``: segments decoded together (default: ``decode_batch``)."""

    def __init__(self, model: ModelSpec = None, *, device: str = "cpu", batch: int | None = None) -> None:
        self.device = device
        self.batch = decode_batch(batch, device)
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
    """Compress ``data`` into a .lmz blob (options: device, window, overlap, segment_size, streams, top_k, fallback,
    adapt, transforms)."""
    return Compressor(model, **options).compress(data)


def decompress(data: bytes | bytearray | memoryview, model: ModelSpec = None, *, device: str = "cpu") -> bytes:
    """Decompress a .lmz blob (the model is taken from its header unless given)."""
    return Decompressor(model, device=device).decompress(data)


class LmzCompressor:
    """Incremental compression, in the habit of ``lzma.LZMACompressor``: ``compress(data)``
    any number of times, then ``flush()``. A .lmz file begins with its segment table, so
    ``compress`` returns ``b""`` and ``flush`` the whole file; meanwhile each segment is coded
    as soon as its bytes are in and its payload spooled (memory stays bounded by a segment)."""

    def __init__(self, model: "ModelSpec | Compressor" = None, *, total: int | None = None,
                 progress: Progress | None = None, **options) -> None:
        """``model`` and ``options`` as for ``Compressor`` (or a ``Compressor`` to share);
        ``total``: the input's size if known (then the segments are exactly ``compress``'s)."""
        c = model if isinstance(model, Compressor) else Compressor(model, **options)
        self._stream = streaming.StreamCompressor(c.model, c.params, total, progress)

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        self._stream.write(data)
        return b""

    def flush(self) -> bytes:
        out = io.BytesIO()
        self._stream.finish(out)
        return out.getvalue()


class LmzDecompressor:
    """Incremental decompression, in the habit of ``lzma.LZMADecompressor``: feed compressed
    bytes to ``decompress`` and get back the original bytes of every segment completed so far
    (model-coded segments as soon as a batch of them, or the last one, is in). ``eof`` is True
    after the last segment; bytes after the file's end are in ``unused_data``."""

    def __init__(self, model: ModelSpec = None, *, device: str = "cpu", batch: int | None = None) -> None:
        self._dec = Decompressor(model, device=device, batch=batch)
        self._buf = bytearray()
        self._header: container.Header | None = None
        self._payloads: list[bytes] = []
        self._given = 0  # segments decoded and returned so far
        self.eof = False
        self.unused_data = b""

    @property
    def needs_input(self) -> bool:
        return not self.eof

    def decompress(self, data: bytes | bytearray | memoryview) -> bytes:
        if self.eof:
            raise EOFError("already at the end of the .lmz data")
        self._buf += data
        if self._header is None:
            try:
                self._header, start = container.parse_header(bytes(self._buf))
            except container.TruncatedError:
                return b""  # the header is not all here yet
            del self._buf[:start]
            self._lm = self._dec.model_for(self._header)
            self._adapt = codec.check_decodable(self._header, self._lm)  # once, before any payload
        out = []
        segs = self._header.segments
        while len(self._payloads) < len(segs) and len(self._buf) >= segs[len(self._payloads)].payload_length:
            n = segs[len(self._payloads)].payload_length
            self._payloads.append(bytes(self._buf[:n]))
            del self._buf[:n]
        done = len(self._payloads) == len(segs)
        models = [i for i in range(self._given, len(self._payloads)) if segs[i].method == container.METHOD_LM]
        if done or len(models) >= self._dec.batch or not models:
            upto = len(self._payloads)
            if upto > self._given:
                header = self._header
                items = [(i, segs[i], self._payloads[i]) for i in range(self._given, upto)]
                decoded = codec.decode_group(header, items, self._lm, self._adapt, self._dec.batch)
                out = [decoded[i] for i in range(self._given, upto)]
                for i in range(self._given, upto):
                    self._payloads[i] = b""  # decoded: let it go
                self._given = upto
        if done and self._given == len(segs):
            self.eof = True
            self.unused_data = bytes(self._buf)
            self._buf = bytearray()
        return b"".join(out)


class LmzFile(io.BufferedIOBase):
    """A file object over a .lmz file, like ``lzma.LZMAFile``.

    Reading a seekable file decodes only the segments that cover what is read (``seek`` is
    free; sequential reads decode the model's segments a batch at a time); a pipe is decoded
    front to back. Writing codes each segment as its bytes arrive and writes the file on
    ``close()`` (the segment table comes first); memory stays bounded by a segment.
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
        self._writer: LmzCompressor | None = None
        self._reader: streaming.SegmentReader | None = None
        self._stream = None  # (generator of segments, buffer) for a file that cannot seek
        self._pos = 0
        self._written = 0  # bytes given to write()
        self._batch = decode_batch(options.pop("batch", None) if self._mode == "r" else None, device)
        if self._mode == "w":
            self._writer = LmzCompressor(model, device=device, **options)

    def _check(self, want: str) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if self._mode != want:
            raise io.UnsupportedOperation("file not open for " + ("reading" if want == "r" else "writing"))

    def _seekable_fp(self) -> bool:
        try:
            return bool(self._fp.seekable())
        except (AttributeError, ValueError, OSError):
            return False

    def _open_reader(self) -> None:
        if self._reader is not None or self._stream is not None:
            return
        dec = Decompressor(self._model, device=self._device, batch=self._batch)
        if self._seekable_fp():
            self._reader = streaming.SegmentReader(self._fp, dec.model_for, self._batch)
        else:
            header = container.peek_header(self._fp)
            segments = streaming.iter_decode(header, container.iter_payloads_from(self._fp, header),
                                             dec.model_for(header), self._batch)
            self._stream = [segments, b"", 0]  # generator, bytes decoded but not read, their offset

    def _read_stream(self, size: int, keep: bool = False) -> bytes:
        """Read from a pipe's decoded segments; what lies behind the new position is dropped
        unless ``keep`` (``peek`` goes back to where it started)."""
        gen, buf, base = self._stream  # type: ignore[misc]
        want = None if size < 0 else self._pos + size
        while want is None or base + len(buf) < want:
            nxt = next(gen, None)
            if nxt is None:
                break
            if base + len(buf) <= self._pos:  # everything buffered is behind the position
                base, buf = base + len(buf), nxt
            else:
                buf += nxt
        start = max(0, self._pos - base)
        out = buf[start:] if want is None else buf[start : max(start, want - base)]
        self._pos += len(out)
        if not keep:
            cut = min(len(buf), self._pos - base)
            buf, base = buf[cut:], base + cut
        self._stream = [gen, buf, base]
        return out

    def readable(self) -> bool:
        return self._mode == "r" and not self.closed

    def writable(self) -> bool:
        return self._mode == "w" and not self.closed

    def seekable(self) -> bool:
        return self.readable() and self._seekable_fp()

    def read(self, size: int | None = -1, _keep: bool = False) -> bytes:
        self._check("r")
        self._open_reader()
        size = -1 if size is None else size
        if self._reader is None:
            return self._read_stream(size, _keep)
        end = self._reader.size if size < 0 else self._pos + size
        out = self._reader.read(self._pos, end)
        self._pos += len(out)
        return out

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def peek(self, size: int = 8192) -> bytes:
        """Bytes from the position without moving it (``readline`` looks ahead with it)."""
        pos = self._pos
        data = self.read(max(1, size), _keep=True)
        self._pos = pos
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check("r")
        self._open_reader()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            if self._reader is None:
                raise io.UnsupportedOperation("cannot seek from the end of a .lmz stream that cannot seek")
            target = self._reader.size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        if self._reader is None and target < self._stream[2]:  # type: ignore[index]
            raise io.UnsupportedOperation("cannot seek backwards in a .lmz stream that cannot seek")
        self._pos = target
        return target

    def tell(self) -> int:
        if self._mode == "r":
            self._check("r")
            return self._pos
        self._check("w")
        return self._written

    def write(self, data) -> int:
        self._check("w")
        assert self._writer is not None
        n = memoryview(data).nbytes
        self._writer.compress(data)
        self._written += n
        return n

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._mode == "w" and self._writer is not None:
                self._writer._stream.finish(self._fp)  # the container, written straight to the file
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


__all__ = ["Compressor", "Decompressor", "LmzCompressor", "LmzDecompressor", "LmzFile", "compress", "decompress",
           "open", "FormatError"]
