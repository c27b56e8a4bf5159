"""``lmzip bench``: lmzip against the classic compressors, with a round-trip check for every row.

    lmzip bench FILE|DIR...                       every file (directories walked, sorted, no hidden files)
    lmzip bench --corpus DIR canterbury calgary   corpus files, checked against the shipped manifest
    lmzip bench --codec xz --codec ppmd --json out.json --plot out.png PATH...

Every compressor sits behind one small interface, ``name``, ``compress(bytes) -> bytes`` and
``decompress(bytes) -> bytes`` (``Codec`` for the classic ones, ``LmzipCodec`` for a model),
and the classic ones live in the registry dict ``CODECS``, so one loop measures them all.
Each (file, compressor) row compresses, decompresses and compares with the original: a row
that does not round-trip is an error (reported, exit code 1), never a number.

Figures: bits/byte = 8 x compressed / original, ratio = original / compressed, MB/s = 10^6
bytes of original data per second of wall-clock time (one run each, ``time.perf_counter``).
Totals per compressor are total compressed bits / total original bytes and total original
bytes / total seconds.
"""

from __future__ import annotations

import bz2
import contextlib
import datetime as _dt
import gzip
import json
import lzma
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn

import click

from . import cmdline, corpora
from ..errors import EXIT_ERROR, EXIT_INTERRUPT, EXIT_OK, UsageError, run_standalone
from .progress import Progress
from ..resources import check_device

MB = 1_000_000  # throughput unit: 10^6 bytes per second


LMZIP = "lmzip"  # the codec name that selects lmzip rows (one per --model)

PPMD_ORDER = 6
PPMD_MEMORY = 16 << 20  # 16 MiB of model memory: 7-Zip's default for PPMd at order 6
BROTLI_LGWIN = 24  # the brotli command line's default window (2^24 bytes)


# --------------------------------------------------------------------------- compressors


@dataclass(frozen=True)
class Codec:
    """A classic compressor: ``compress(bytes) -> bytes`` and its exact inverse."""

    name: str
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]
    settings: str = ""  # what it is, as a command line would say it


def _gzip_compress(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def _bzip2_compress(data: bytes) -> bytes:
    return bz2.compress(data, 9)


def _xz_compress(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=9 | lzma.PRESET_EXTREME)


def _zstd_compressor(level: int) -> Callable[[bytes], bytes]:
    def compress(data: bytes) -> bytes:
        import zstandard

        # Content size and checksum in the frame, as the zstd command line writes them.
        return zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True).compress(data)

    return compress


def _zstd_decompress(blob: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompress(blob)


def _brotli_compress(data: bytes) -> bytes:
    import brotli

    return brotli.compress(data, quality=11, lgwin=BROTLI_LGWIN)


def _brotli_decompress(blob: bytes) -> bytes:
    import brotli

    return brotli.decompress(blob)


def _ppmd_compress(data: bytes) -> bytes:
    import pyppmd

    enc = pyppmd.Ppmd7Encoder(PPMD_ORDER, PPMD_MEMORY)
    return enc.encode(data) + enc.flush(endmark=True)


def _ppmd_decompress(blob: bytes) -> bytes:
    import pyppmd

    dec = pyppmd.Ppmd7Decoder(PPMD_ORDER, PPMD_MEMORY)
    out = dec.decode(blob, -1)  # -1: up to the end mark
    if not dec.eof:
        raise ValueError("PPMd stream ends before its end mark")
    return out


CODECS: dict[str, Codec] = {c.name: c for c in (
    Codec("gzip", _gzip_compress, gzip.decompress, "gzip -9 (zlib deflate level 9; stdlib gzip, no name, mtime 0)"),
    Codec("bzip2", _bzip2_compress, bz2.decompress, "bzip2 -9 (900 kB blocks; stdlib bz2)"),
    Codec("xz", _xz_compress, lzma.decompress, "xz -9e (LZMA2 preset 9|PRESET_EXTREME, CRC64; stdlib lzma)"),
    Codec("zstd-19", _zstd_compressor(19), _zstd_decompress, "zstd -19 (python zstandard; content size + checksum)"),
    Codec("zstd-22", _zstd_compressor(22), _zstd_decompress, "zstd --ultra -22 (python zstandard; content size + checksum)"),
    Codec("brotli", _brotli_compress, _brotli_decompress, f"brotli -q 11 (window 2^{BROTLI_LGWIN}; PyPI brotli)"),
    Codec("ppmd", _ppmd_compress, _ppmd_decompress,
          f"PPMd var. H (Ppmd7, 7-Zip's) order {PPMD_ORDER}, {PPMD_MEMORY >> 20} MiB, end mark (PyPI pyppmd)"),
)}
"""The classic compressors by name; ``lmzip bench --codec NAME`` picks from these (and ``lmzip``)."""


class LmzipCodec:
    """lmzip with one model, behind the ``Codec`` interface (plus an optional progress callback)."""

    reports_progress = True

    def __init__(self, model: Any = None, *, window: int | None = None, overlap: int | None = None,
                 device: str = "cpu") -> None:
        from ..api import Compressor, Decompressor

        self._compressor = Compressor(model, device=device, window=window, overlap=overlap)
        lm = self._compressor.model
        self._decompressor = Decompressor(lm, device=device)
        self.model_id = lm.id
        self.name = f"{LMZIP}:{lm.id[4:] if lm.id.startswith('dir:') else lm.id}"
        p = self._compressor.params
        self.settings = (f"lmzip, model {lm.id} (sha256 {lm.sha256[:12]}), window {p.window}, overlap {p.overlap}, "
                         f"top-k {p.top_k}, device {device}")

    def compress(self, data: bytes, progress: Callable[[int], None] | None = None) -> bytes:
        return self._compressor.compress(data, progress=progress)

    def decompress(self, blob: bytes, progress: Callable[[int], None] | None = None) -> bytes:
        return self._decompressor.decompress(blob, progress=progress)


def select_codecs(names: Iterable[str], lmzip_implied: bool = False) -> list[str]:
    """``--codec`` values -> codec names in canonical order (lmzip first, then ``CODECS`` order).

    No names: everything. A family name picks all its levels (``zstd`` -> zstd-19, zstd-22).
    ``lmzip_implied`` (``--model`` given) adds lmzip to an explicit selection.
    """
    names = [n.strip().lower() for n in names]
    if not names:
        return [LMZIP, *CODECS]
    chosen: set[str] = set()
    for n in names:
        if n == LMZIP or n in CODECS:
            chosen.add(n)
            continue
        family = [k for k in CODECS if k.split("-")[0] == n]
        if not family:
            known = ", ".join([LMZIP, *CODECS])
            raise UsageError(f"unknown codec {n!r} (known: {known})")
        chosen.update(family)
    if lmzip_implied:
        chosen.add(LMZIP)
    return [k for k in (LMZIP, *CODECS) if k in chosen]


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Input:
    """One file to measure: how it is shown, where it is, and its manifest row if from a corpus."""

    label: str
    path: Path
    size: int
    corpus: corpora.CorpusFile | None = None


def _walk(root: Path, shown: str) -> list[tuple[str, Path]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, root)
        for f in sorted(filenames):
            if f.startswith("."):
                continue
            p = Path(dirpath) / f
            if p.is_file():
                out.append((os.path.normpath(os.path.join(shown, rel, f)), p))
    return out


def collect_inputs(args: Iterable[str], corpus_dir: str | None = None, text_only: bool = False,
                   skipped: list[str] | None = None) -> list[Input]:
    """PATH and corpus-name arguments -> the files to measure (in order, each once).

    A bare corpus name (``canterbury``, ``calgary``) or a corpus path (``calgary/book1``) means
    the corpus files under ``corpus_dir`` (or ``$LMZIP_CORPORA``), each checked against the
    manifest; it is taken as a path only if no corpus directory is named and it exists here.
    ``text_only`` keeps text files (manifest kind, or ``corpora.guess_kind`` for other files);
    the labels of files it leaves out are appended to ``skipped``.
    """
    configured = corpus_dir is not None or bool(os.environ.get(corpora.ENV_VAR))
    names = set(corpora.corpus_names())
    relpaths = {e.relpath: e for e in corpora.entries()}
    out: list[Input] = []
    seen: set[Path] = set()

    def add(label: str, path: Path, entry: corpora.CorpusFile | None) -> None:
        key = path.resolve()
        if key in seen:
            return
        if text_only:
            kind = entry.kind if entry is not None else corpora.guess_kind(path.read_bytes())
            if kind != "text":
                if skipped is not None:
                    skipped.append(label)
                return
        seen.add(key)
        out.append(Input(label, path, path.stat().st_size, entry))

    for arg in args:
        bare = arg.rstrip("/")
        if (bare in names or bare in relpaths) and (configured or not os.path.exists(arg)):
            try:
                root = corpora.corpus_dir(corpus_dir)
            except corpora.CorpusMissingError as exc:
                raise corpora.CorpusMissingError(f"{arg} is a corpus name: {exc}") from None
            chosen = corpora.entries(bare) if bare in names else [relpaths[bare]]
            for e in chosen:
                if text_only and e.kind != "text":
                    if skipped is not None:
                        skipped.append(e.relpath)
                    continue
                add(e.relpath, corpora.verify(e, root), e)
            continue
        path = Path(arg)
        if path.is_dir():
            for label, p in _walk(path, arg):
                add(label, p, None)
        elif path.exists():
            if not path.is_file():
                raise UsageError(f"{arg}: not a regular file")
            add(arg, path, None)
        else:
            head = bare.split("/", 1)[0]
            if head in names and head != bare:  # calgary/nope: a corpus path, but no file of the corpus
                known = ", ".join(e.name for e in corpora.entries(head))
                raise corpora.CorpusMissingError(f"{arg}: no such file or directory, nor a file of the {head} "
                                                 f"corpus (it has: {known})")
            if configured:
                raise corpora.CorpusMissingError(f"{arg}: no such file or directory, nor a corpus "
                                                 f"(known: {', '.join(corpora.corpus_names())})")
            raise FileNotFoundError(2, "No such file or directory", arg)
    return out


# --------------------------------------------------------------------------- measuring


class _Figures:
    """Derived figures shared by a single measurement and a per-compressor total."""

    original: int
    compressed: int | None
    compress_seconds: float | None
    decompress_seconds: float | None

    @property
    def bits_per_byte(self) -> float | None:
        return 8 * self.compressed / self.original if self.ok and self.original else None

    @property
    def ratio(self) -> float | None:
        return self.original / self.compressed if self.ok and self.compressed else None

    @property
    def compress_mb_s(self) -> float | None:
        return _rate(self.original, self.compress_seconds) if self.ok else None

    @property
    def decompress_mb_s(self) -> float | None:
        return _rate(self.original, self.decompress_seconds) if self.ok else None


@dataclass
class Row(_Figures):
    """One (file, compressor) measurement. ``error`` set: it did not round-trip (no figures)."""

    file: str
    codec: str
    original: int
    compressed: int | None = None
    compress_seconds: float | None = None
    decompress_seconds: float | None = None
    error: str | None = None
    path: str = ""
    corpus: str | None = None
    kind: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_json(self) -> dict:
        ok = self.ok
        return {
            "file": self.file, "path": self.path, "corpus": self.corpus, "kind": self.kind, "codec": self.codec,
            "original_bytes": self.original,
            "compressed_bytes": self.compressed if ok else None,
            "bits_per_byte": self.bits_per_byte, "ratio": self.ratio,
            "compress_seconds": self.compress_seconds if ok else None,
            "decompress_seconds": self.decompress_seconds if ok else None,
            "compress_mb_s": self.compress_mb_s, "decompress_mb_s": self.decompress_mb_s,
            "roundtrip": ok, "error": self.error,
        }


def _rate(nbytes: int, seconds: float | None) -> float | None:
    if seconds is None:
        return None
    return nbytes / MB / max(seconds, 1e-9)


def _difference(want: bytes, got: bytes) -> str:
    n = min(len(want), len(got))
    at = next((i for i in range(0, n, 4096) if want[i:min(i + 4096, n)] != got[i:min(i + 4096, n)]), None)
    if at is not None:
        at += next(i for i in range(min(4096, n - at)) if want[at + i] != got[at + i])
    where = f"first difference at byte {at}" if at is not None else "one is a prefix of the other"
    return f"round trip failed: decompressed {len(got)} bytes, original {len(want)}; {where}"


def _error_text(stage: str, exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return f"{stage} failed: {type(exc).__name__}" + (f": {msg}" if msg else "")


MIN_TIME = 0.25  # seconds: a faster operation is repeated until this much time is spent, and its best run counted
MAX_RUNS = 200


def warm_up(codec: Any) -> None:
    """One small untimed round trip, so that lazy imports and first-call set-up are not timed."""
    try:
        codec.decompress(codec.compress(b"lmzip bench warm-up\n" * 8))
    except Exception:  # noqa: BLE001 - the timed run reports whatever goes wrong
        pass


def measure(codec: Any, data: bytes, progress: Callable[[int], None] | None = None,
            min_time: float = MIN_TIME, on_stage: Callable[[str], None] | None = None) -> tuple[int, float, float] | str:
    """Compress, decompress and compare: (compressed bytes, compress s, decompress s), or the error text.

    A stage that takes less than ``min_time`` seconds is run again (up to ``MAX_RUNS`` runs in all,
    until ``min_time`` is spent) and its fastest run counts: small files get stable speeds.
    ``progress(n)`` hears about ``len(data)`` bytes per stage (compress, decompress), whatever the codec
    reports; ``on_stage`` hears "compress", then "decompress".
    """
    takes = bool(getattr(codec, "reports_progress", False))

    def stage(fn: Callable, arg: bytes, name: str) -> tuple[Any, float]:
        if on_stage:
            on_stage(name)
        reported = 0

        def tick(n: int) -> None:
            nonlocal reported
            n = max(0, min(n, len(data) - reported))
            reported += n
            if progress and n:
                progress(n)

        t0 = time.perf_counter()
        try:
            out = fn(arg, progress=tick) if takes else fn(arg)
            best = spent = time.perf_counter() - t0
        finally:
            tick(len(data) - reported)
        runs = 1
        while spent < min_time and runs < MAX_RUNS:
            t0 = time.perf_counter()
            fn(arg)
            t = time.perf_counter() - t0
            best, spent, runs = min(best, t), spent + t, runs + 1
        return out, best

    try:
        blob, t_c = stage(codec.compress, data, "compress")
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            return f"compress failed: returned {type(blob).__name__}, not bytes"
        blob = bytes(blob)
    except Exception as exc:  # a compressor failing is a finding of the benchmark, not a crash
        if progress:
            progress(len(data))  # the decompress stage that will not run
        return _error_text("compress", exc)
    try:
        out, t_d = stage(codec.decompress, blob, "decompress")
    except Exception as exc:
        return _error_text("decompress", exc)
    if not isinstance(out, (bytes, bytearray, memoryview)):
        return f"decompress failed: returned {type(out).__name__}, not bytes"
    out = bytes(out)
    if out != data:
        return _difference(data, out)
    return len(blob), t_c, t_d


def run_file(inp: Input, codecs: list[Any], *, index: int = 1, count: int = 1, show_progress: bool | None = None,
             min_time: float = MIN_TIME) -> list[Row]:
    """Every codec on one file, with a progress line on stderr (when it is a terminal)."""
    data = inp.path.read_bytes()
    if len(data) != inp.size:  # changed since it was listed (or verified)
        inp = Input(inp.label, inp.path, len(data), inp.corpus)
    kind = inp.corpus.kind if inp.corpus is not None else corpora.guess_kind(data)
    rows = []
    total = 2 * len(data) * len(codecs)
    short = os.path.basename(inp.label) or inp.label
    with Progress(total, label=f"[{index}/{count}] {short}", enabled=show_progress) as progress:
        for codec in codecs:
            def on_stage(name: str, codec_name: str = codec.name) -> None:
                progress.label = f"[{index}/{count}] {short}: {codec_name} {name}"

            result = measure(codec, data, progress, min_time, on_stage)
            row = Row(inp.label, codec.name, len(data), path=str(inp.path),
                      corpus=inp.corpus.corpus if inp.corpus is not None else None, kind=kind)
            if isinstance(result, str):
                row.error = result
            else:
                row.compressed, row.compress_seconds, row.decompress_seconds = result
            rows.append(row)
    return rows


@dataclass
class Total(_Figures):
    """A compressor over all files: total bits / total bytes, total bytes / total seconds."""

    codec: str
    files: int = 0
    original: int = 0
    compressed: int = 0
    compress_seconds: float = 0.0
    decompress_seconds: float = 0.0
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_json(self) -> dict:
        ok = self.ok
        return {
            "codec": self.codec, "files": self.files, "failed_files": self.failed,
            "original_bytes": self.original, "compressed_bytes": self.compressed if ok else None,
            "bits_per_byte": self.bits_per_byte, "ratio": self.ratio,
            "compress_seconds": self.compress_seconds if ok else None,
            "decompress_seconds": self.decompress_seconds if ok else None,
            "compress_mb_s": self.compress_mb_s, "decompress_mb_s": self.decompress_mb_s, "roundtrip": ok,
        }


def totals(rows: list[Row]) -> list[Total]:
    """Per-compressor totals, in the order compressors first appear in ``rows``."""
    out: dict[str, Total] = {}
    for r in rows:
        t = out.setdefault(r.codec, Total(r.codec))
        t.files += 1
        t.original += r.original
        if r.ok:
            t.compressed += r.compressed or 0
            t.compress_seconds += r.compress_seconds or 0.0
            t.decompress_seconds += r.decompress_seconds or 0.0
        else:
            t.failed.append(r.file)
    return list(out.values())


# --------------------------------------------------------------------------- reporting


_HEADER = ("compressor", "original bytes", "compressed bytes", "bits/byte", "ratio", "compress MB/s",
           "decompress MB/s", "round trip")
_ALIGN = ("---", "---:", "---:", "---:", "---:", "---:", "---:", "---")
_DASH = "—"


def _speed(x: float | None) -> str:
    if x is None:
        return _DASH
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:.1f}"
    return f"{x:.3g}"


def _num(x: float | None, fmt: str) -> str:
    return _DASH if x is None else format(x, fmt)


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _cells(name: str, original: int, compressed: int | None, m: Row | Total, check: str) -> list[str]:
    ok = m.ok
    return [name, f"{original:,}", f"{compressed:,}" if ok and compressed is not None else _DASH,
            _num(m.bits_per_byte, ".3f"), _num(m.ratio, ".2f"), _speed(m.compress_mb_s), _speed(m.decompress_mb_s), check]


def file_table(label: str, rows: list[Row], kind: str | None = None) -> str:
    size = rows[0].original if rows else 0
    head = f"### {label}\n\n{size:,} bytes" + (f", {kind}" if kind else "") + "\n"
    lines = [head, _md_row(_HEADER), _md_row(_ALIGN)]
    for r in rows:
        check = "ok" if r.ok else f"**FAILED**: {r.error}"
        lines.append(_md_row(_cells(r.codec, r.original, r.compressed, r, check)))
    return "\n".join(lines) + "\n"


def summary_table(tots: list[Total], settings: dict[str, str]) -> str:
    nfiles = max((t.files for t in tots), default=0)
    nbytes = max((t.original for t in tots), default=0)
    lines = [f"### Summary: {nfiles} file{'s' if nfiles != 1 else ''}, {nbytes:,} bytes\n",
             _md_row(("compressor", "files", *_HEADER[1:])), _md_row(("---", "---:", *_ALIGN[1:]))]
    for t in tots:
        check = "ok" if t.ok else f"**FAILED** ({len(t.failed)} of {t.files}: {', '.join(t.failed)})"
        cells = _cells(t.codec, t.original, t.compressed, t, check)
        lines.append(_md_row([cells[0], str(t.files), *cells[1:]]))
    lines.append("")
    lines.append("bits/byte = 8 × compressed / original; ratio = original / compressed; MB/s = 10^6 bytes of "
                 "original data per second (wall clock; best of repeated runs for fast operations); totals: "
                 "total bits / total bytes, total bytes / total seconds.")
    lines.append("")
    for name, text in settings.items():
        lines.append(f"- `{name}`: {text}")
    return "\n".join(lines) + "\n"


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                    value = line.split(":", 1)[1].strip()
                    if value and not value.isdigit():
                        return value
    except OSError:
        pass
    if sys.platform == "darwin":
        import subprocess

        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or platform.processor()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def machine_info() -> dict:
    """What the figures were measured on: CPU, cores, memory, OS, Python and library versions."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }
    from .. import __version__

    versions = {"lmzip": __version__}
    for dist in ("torch", "numpy", "zstandard", "brotli", "pyppmd", "constriction", "click", "matplotlib"):
        versions[dist] = _version(dist)
    info["versions"] = versions
    import zlib

    libs: dict[str, Any] = {"zlib": zlib.ZLIB_RUNTIME_VERSION}
    try:
        import zstandard

        libs["zstd"] = ".".join(map(str, zstandard.ZSTD_VERSION))
    except ImportError:
        pass
    info["libraries"] = libs
    if "torch" in sys.modules:  # only if a model was loaded: importing torch costs seconds
        torch = sys.modules["torch"]
        info["torch_threads"] = torch.get_num_threads()
    return info


def report_json(rows: list[Row], tots: list[Total], codecs: list[Any], options: dict) -> dict:
    return {
        "tool": "lmzip bench",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "units": {"speed": "MB/s: 10^6 bytes of original data per second of wall-clock time; an operation faster "
                           "than options.min_time is repeated until that much time is spent and its best run counts",
                  "bits_per_byte": "8 * compressed_bytes / original_bytes", "ratio": "original_bytes / compressed_bytes"},
        "options": options,
        "codecs": [{"name": c.name, "settings": getattr(c, "settings", "")} for c in codecs],
        "rows": [r.as_json() for r in rows],
        "summary": [t.as_json() for t in tots],
        "ok": all(r.ok for r in rows),
    }


def _need_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib, which is not installed (pip install 'lmzip[bench]')") from None


def plot(tots: list[Total], path: str | os.PathLike | Any, *, speed: str = "compress", title: str = "") -> int:
    """Bits/byte against throughput (log x), one labelled point per compressor, as a PNG written to
    ``path`` (a file name, or a binary file object); return points drawn."""
    _need_matplotlib()
    from matplotlib.figure import Figure

    pts = [(t.codec, t.compress_mb_s if speed == "compress" else t.decompress_mb_s, t.bits_per_byte) for t in tots]
    pts = [(n, x, y) for n, x, y in pts if x is not None and y is not None and x > 0]
    fig = Figure(figsize=(8, 5.5), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    labels: dict[tuple[float, float], list[str]] = {}  # points that coincide share one label
    for name, x, y in pts:
        lm = name.startswith(LMZIP)
        ax.scatter([x], [y], s=48, color="tab:red" if lm else "tab:blue", marker="D" if lm else "o", zorder=3)
        near = next((k for k in labels if abs(k[1] - y) < 0.01 and 0.8 < k[0] / x < 1.25), (x, y))
        labels.setdefault(near, []).append(name)
    for (x, y), names in labels.items():
        # A label with a neighbour just to its right goes below its point, not across the other.
        crowded = any(x < x2 <= 2.5 * x and abs(y2 - y) < 0.06 for x2, y2 in labels)
        ax.annotate("\n".join(names) + f"\n{y:.3f}", (x, y), textcoords="offset points", fontsize=8,
                    xytext=(6, -6) if crowded else (6, 4), va="top" if crowded else "bottom")
    ax.set_xscale("log")
    if pts:
        xs = [x for _, x, _ in pts]
        ys = [y for _, _, y in pts]
        ax.set_xlim(min(xs) / 2, max(xs) * 4)
        ax.set_ylim(min(0.0, min(ys)), max(ys) * 1.15)
    ax.set_xlabel(f"{speed} throughput, MB/s (10^6 bytes/s, log scale)")
    ax.set_ylabel("bits per byte (lower is better)")
    ax.grid(True, which="both", alpha=0.3)
    failed = [t.codec for t in tots if not t.ok]
    if failed:
        ax.text(0.01, 0.01, "not shown (round trip failed): " + ", ".join(failed), transform=ax.transAxes,
                fontsize=8, color="tab:red")
    if title:
        ax.set_title(title, fontsize=10)
    fig.savefig(path if hasattr(path, "write") else os.fspath(path), format="png")
    return len(pts)


# --------------------------------------------------------------------------- the command


def _say(msg: str) -> None:
    cmdline.say_error("bench", msg)  # "lmzip: bench: ..."


def _echo(text: str, nl: bool = True) -> None:
    """Standard output; a closed pipe (``| head``) ends the run as an OSError, without a second
    complaint from the interpreter's final flush."""
    try:
        click.echo(text, nl=nl)
    except BrokenPipeError:
        cmdline.silence_stdout()
        raise


def _interrupt_code(exc: BaseException) -> int:
    return 128 + exc.signum if isinstance(exc, cmdline.Signalled) else EXIT_INTERRUPT


class _BenchCommand(click.Command):
    """Standalone (``bench_command()``), map click's usage errors to lmzip's exit code 4 and
    SIGTERM/SIGHUP to an interrupt as the ``lmzip`` group does; inside the group, the group's own
    handling applies."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra) -> Any:
        with cmdline.signals_as_interrupts():
            return self._main(args, prog_name, complete_var, standalone_mode, **extra)

    def _main(self, args, prog_name, complete_var, standalone_mode, **extra) -> Any:
        def interrupted(exc: click.Abort) -> int:
            _say("interrupted")
            return _interrupt_code(exc.__cause__ or exc.__context__ or exc)

        def run() -> Any:
            try:
                return super(_BenchCommand, self).main(args, prog_name or "lmzip bench", complete_var,
                                                       standalone_mode=False, **extra)
            except cmdline.EXPECTED as exc:  # raised outside the command itself (e.g. while writing help)
                code, cause = cmdline.describe(exc)
                _say(cause)
                return code

        return run_standalone(run, interrupted, standalone_mode)


_EPILOG = """\b
Compressors (--codec; a family name such as zstd picks all its levels):
  lmzip    lmzip with each --model (default: the default model)
""" + "\n".join(f"  {n:<8} {c.settings}" for n, c in CODECS.items()) + """

\b
Every row is decompressed and compared with the original; a row that does not
round-trip is reported as an error and the exit code is 1. Missing inputs and
unwritable outputs exit 5, bad options 4, a model that cannot be loaded 3, a
corpus file that differs from the manifest 1. Each error is one line on stderr;
--json and --plot files appear only complete."""


@click.command("bench", cls=_BenchCommand, epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, metavar="PATH|CORPUS...")
@click.option("--model", "models", multiple=True, metavar="ID|DIR",
              help="lmzip model: registry id or directory (repeatable). [default: the default model]")
@click.option("--codec", "codec_names", multiple=True, metavar="NAME",
              help="Only these compressors (repeatable; see below). --model adds lmzip. [default: all]")
@click.option("--window", type=click.IntRange(min=1), metavar="N", help="lmzip: tokens the model sees at most.")
@click.option("--overlap", type=click.IntRange(min=0), metavar="N", help="lmzip: tokens re-read at each new window.")
@click.option("--device", default="cpu", show_default=True, metavar="NAME", help="lmzip: torch device.")
@click.option("--corpus", "corpus_dir", metavar="DIR",
              help=f"Directory holding canterbury/ and calgary/, for corpus-name arguments. [default: ${corpora.ENV_VAR}]")
@click.option("--text-only", is_flag=True, help="Only text files (corpus manifest kind; a heuristic for other files).")
@click.option("--json", "json_path", metavar="FILE", help="Write machine info and every row as JSON ('-': stdout, no tables).")
@click.option("--plot", "plot_path", metavar="FILE.png",
              help="Plot bits/byte against throughput, one point per compressor (needs lmzip[bench]).")
@click.option("--plot-speed", type=click.Choice(["compress", "decompress"]), default="compress", show_default=True,
              help="Which throughput the plot's x axis shows.")
@click.option("--min-time", type=click.FloatRange(min=0), default=MIN_TIME, show_default=True, metavar="SECONDS",
              help="Repeat a faster compress/decompress until this much time is spent; its best run counts (0: one run).")
@click.option("-q", "--quiet", is_flag=True, help="No progress display on stderr.")
@click.option("--list-codecs", is_flag=True, help="List the compressors and exit.")
@click.pass_context
def bench_command(ctx: click.Context, paths, models, codec_names, window, overlap, device, corpus_dir, text_only,
                  json_path, plot_path, plot_speed, min_time, quiet, list_codecs) -> NoReturn:
    """Measure lmzip and classic compressors on files or corpora: sizes, bits/byte, ratio,
    speed, and a round-trip check for every row.

    PATH is a file or a directory (walked in sorted order, hidden files skipped); CORPUS is
    canterbury or calgary (or one file such as calgary/book1) in the directory named by
    --corpus or $LMZIP_CORPORA, each file checked against lmzip's manifest. Output: a
    Markdown table per file and a summary per compressor on stdout; progress on stderr.
    """
    # Errors as every lmzip command reports them (cmdline): one stderr line, the exit code of the
    # error's kind; a temporary output file is removed on the way out (cmdline.Output).
    try:
        code = _bench(paths=paths, models=models, codec_names=codec_names, window=window, overlap=overlap,
                      device=device, corpus_dir=corpus_dir, text_only=text_only, json_path=json_path,
                      plot_path=plot_path, plot_speed=plot_speed, min_time=min_time, quiet=quiet,
                      list_codecs=list_codecs)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (cmdline.Signalled)
        _say("interrupted")
        code = _interrupt_code(exc)
    except cmdline.EXPECTED as exc:
        code, cause = cmdline.describe(exc)
        _say(cause)
    ctx.exit(code)


def _outputs(json_path: str | None, plot_path: str | None) -> list[str]:
    """The files the run writes (``--json -`` is standard output), refused early if a directory or one name twice."""
    dests = [p for p in (json_path if json_path != cmdline.STDIO else None, plot_path) if p]
    for dest in dests:
        cmdline.check_dest(cmdline.STDIO, dest, True)  # an existing directory: IsADirectoryError
    if len(dests) == 2 and (os.path.abspath(dests[0]) == os.path.abspath(dests[1])
                            or (os.path.exists(dests[0]) and os.path.exists(dests[1])
                                and os.path.samefile(dests[0], dests[1]))):
        raise UsageError(f"--json and --plot name the same file ({dests[0]})")
    return dests


def _not_an_input(dests: list[str], inputs: list[Input]) -> None:
    for dest in dests:
        for inp in inputs:
            cmdline.check_dest(str(inp.path), dest, True)  # "input and output are the same file"


def _bench(*, paths, models, codec_names, window, overlap, device, corpus_dir, text_only, json_path, plot_path,
           plot_speed, min_time, quiet, list_codecs) -> int:
    if list_codecs:
        click.echo(f"{LMZIP:<8} lmzip with each --model (default: the default model)")
        for n, c in CODECS.items():
            click.echo(f"{n:<8} {c.settings}")
        return EXIT_OK
    if not paths:
        raise UsageError("give at least one PATH or corpus name (canterbury, calgary)")
    names = select_codecs(codec_names, lmzip_implied=bool(models))
    if LMZIP not in names and (window is not None or overlap is not None):
        raise UsageError("--window/--overlap only apply to lmzip (add --codec lmzip or --model)")
    if plot_path:
        _need_matplotlib()
    dests = _outputs(json_path, plot_path)
    with contextlib.ExitStack() as stack:
        # Each output file is a temporary file beside it from now on (an unwritable directory fails
        # here, before any measuring), moved into place only once it is complete.
        files = {dest: stack.enter_context(cmdline.Output(dest, True, None)) for dest in dests}
        return _run(paths=paths, models=models, names=names, window=window, overlap=overlap, device=device,
                    corpus_dir=corpus_dir, text_only=text_only, json_path=json_path, plot_path=plot_path,
                    plot_speed=plot_speed, min_time=min_time, quiet=quiet, files=files)


def _run(*, paths, models, names, window, overlap, device, corpus_dir, text_only, json_path, plot_path, plot_speed,
         min_time, quiet, files: dict[str, cmdline.Output]) -> int:
    skipped: list[str] = []
    inputs = collect_inputs(paths, corpus_dir, text_only, skipped)
    if skipped and not quiet:
        _say(f"--text-only: skipping {len(skipped)} binary file{'s' if len(skipped) != 1 else ''}: {', '.join(skipped)}")
    if not inputs:
        raise UsageError("no files to measure" + (" (none is text)" if skipped else ""))
    _not_an_input(list(files), inputs)

    codecs: list[Any] = []
    if LMZIP in names:
        check_device(device)
        taken: set[str] = set()
        for spec in models or (None,):
            codec = LmzipCodec(spec, window=window, overlap=overlap, device=device)
            if codec.name in taken:
                if any(getattr(c, "model_id", None) == codec.model_id and c.settings == codec.settings for c in codecs):
                    continue  # the same model named twice
                codec.name = f"{codec.name}#{sum(1 for c in codecs if c.name.startswith(codec.name)) + 1}"
            taken.add(codec.name)
            codecs.append(codec)
    codecs.extend(CODECS[n] for n in names if n != LMZIP)
    for codec in codecs:
        warm_up(codec)

    to_stdout_md = json_path != "-"
    show_progress = False if quiet else None
    rows: list[Row] = []
    for i, inp in enumerate(inputs, 1):
        file_rows = run_file(inp, codecs, index=i, count=len(inputs), show_progress=show_progress, min_time=min_time)
        rows.extend(file_rows)
        if to_stdout_md:
            _echo(file_table(inp.label, file_rows, file_rows[0].kind if file_rows else None))
        for r in file_rows:
            if not r.ok:
                _say(f"{r.file}: {r.codec}: {r.error}")

    tots = totals(rows)
    settings = {c.name: getattr(c, "settings", "") for c in codecs}
    if to_stdout_md:
        _echo(summary_table(tots, settings), nl=False)
    options = {"paths": list(paths), "models": list(models), "codecs": [c.name for c in codecs], "window": window,
               "overlap": overlap, "device": device, "corpus_dir": corpus_dir or os.environ.get(corpora.ENV_VAR),
               "text_only": text_only, "skipped": skipped, "min_time": min_time, "max_runs": MAX_RUNS}
    if json_path:
        doc = json.dumps(report_json(rows, tots, codecs, options), indent=2) + "\n"
        if json_path == cmdline.STDIO:
            _echo(doc, nl=False)
        else:
            files[json_path].write(doc.encode("utf-8"))
            files[json_path].commit()
    if plot_path:
        nbytes = sum(inp.size for inp in inputs)
        plot(tots, files[plot_path].file, speed=plot_speed,
             title=f"lmzip bench: {len(inputs)} file{'s' if len(inputs) != 1 else ''}, {nbytes:,} bytes "
                   f"({_cpu_model()}, {os.cpu_count()} cores)")
        files[plot_path].commit()
    failed = [r for r in rows if not r.ok]
    if failed:
        _say(f"{len(failed)} of {len(rows)} rows did not round-trip: "
             + ", ".join(sorted({r.codec for r in failed})))
        return EXIT_ERROR
    return EXIT_OK


__all__ = ["CODECS", "Codec", "Input", "LMZIP", "LmzipCodec", "Row", "Total", "bench_command", "collect_inputs",
           "file_table", "machine_info", "measure", "plot", "run_file", "select_codecs", "summary_table", "totals"]
