"""The ``lmzip`` command line, with the habits of gzip and zstd.

    lmzip FILE...                 compress each FILE into FILE.lmz (same as ``lmzip compress``)
    lmzip -d FILE.lmz...          restore FILE                (same as ``lmzip decompress``)
    lmzip info FILE.lmz...        describe .lmz files from their headers (no model needed)
    lmzip test FILE.lmz...        decode and verify, write nothing
    lmzip models list | pull ID   the model zoo

Inputs are kept unless ``--rm``; existing outputs are never overwritten without ``-f``;
outputs go to a temporary file in the destination directory that is renamed into place
only when complete, so an interrupted run never leaves a truncated file. Errors are one
line on stderr, ``lmzip: FILE: cause``, with the exit codes of ``EXIT_CODES``.

Heavy modules (torch, through the codec) are imported only when a command needs a model.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from typing import Any, Callable, NoReturn

import click

from ..coding import container
from ..errors import (
    EXIT_ERROR,
    EXIT_FORMAT,
    EXIT_INTERRUPT,
    EXIT_MODEL,
    EXIT_OK,
    EXIT_OS,
    EXIT_USAGE,
    LmzipError,
    TrailingDataError,
    TruncatedError,
    UsageError,
    run_standalone,
)
from .cmdline import (
    Signalled as _Signalled,
    signals_as_interrupts,
    Fatal as _Fatal,
    say_error as _say_error,
    report as _report,
    EXPECTED as _EXPECTED,
    for_each as _for_each,
    display as _display,
    Size as _Size,
    Span as _Span,
    stdin as _stdin,
    stdout as _stdout,
    isatty as _isatty,
    Input as _Input,
    CHUNK as _CHUNK,
    Output as _Output,
    check_dest as _check_dest,
    STDIO,
    SUFFIX,
)
from .progress import Progress, human_bytes, human_duration
from ..resources import check_device

try:
    from .. import __version__
except ImportError:  # pragma: no cover - package metadata is the fallback
    from importlib.metadata import version as _version

    __version__ = _version("lmzip")



EXIT_CODES = f"""\b
Exit codes:
  {EXIT_OK}    success
  {EXIT_ERROR}    other lmzip error (e.g. --rm verification found a difference)
  {EXIT_FORMAT}    corrupt, truncated or foreign .lmz data (checksum, tokenizer)
  {EXIT_MODEL}    model error: unknown id, cannot pull, damaged, not the file's model
  {EXIT_USAGE}    usage error: bad option or combination, output exists (no -f),
       input without .lmz suffix (no -o/-c)
  {EXIT_OS}    operating-system error: missing file, permission denied, disk full
  {EXIT_INTERRUPT}  interrupted (Ctrl-C); 143 for SIGTERM, 129 for SIGHUP.
       An interrupted run leaves no partial output behind.
With several files lmzip goes on after an error and exits with the first
non-zero code."""

_METHOD_NAMES = container.METHOD_NAMES


# --------------------------------------------------------------------------- errors


# --------------------------------------------------------------------------- click plumbing


class LmzipGroup(click.Group):
    """``lmzip`` itself: routes ``lmzip [-d] FILE...`` to ``compress`` like zstd, and maps
    every failure to one stderr line and an exit code (see ``EXIT_CODES``)."""

    _LEADING = re.compile(r"-[vq]+|--verbose|--quiet")
    _OWN = {"-h", "--help", "-V", "--version"}
    # Commands in modules of their own, imported when named (compressing a small file should not
    # pay for bench's and explain's imports).
    _LAZY = {"bench": ("lmzip.commands.bench", "bench_command"), "explain": ("lmzip.commands.explain", "explain_command")}

    def _known(self, name: str) -> bool:
        return name in self.commands or name in self._LAZY

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._LAZY))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self._LAZY and name not in self.commands:
            import importlib

            module, attr = self._LAZY[name]
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = list(args)
        i = 0
        while i < len(args) and self._LEADING.fullmatch(args[i]):
            i += 1
        # `lmzip -f compress FILE` (options, then the command): the command goes first.
        j = i
        while j < len(args) and args[j].startswith("-") and args[j] != "-" and args[j] not in self._OWN:
            j += 1
        if j > i and j < len(args) and self._known(args[j]):
            args[i : j + 1] = [args[j], *args[i:j]]
        if i == len(args) or (not self._known(args[i]) and args[i] not in self._OWN):
            args.insert(i, "compress")
        return super().parse_args(ctx, args)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra) -> Any:
        def interrupted(exc: click.Abort) -> int:
            _say_error(None, "interrupted")
            cause = exc.__cause__ or exc.__context__
            return 128 + cause.signum if isinstance(cause, _Signalled) else EXIT_INTERRUPT

        def run() -> Any:
            try:
                return super(LmzipGroup, self).main(args, prog_name or "lmzip", complete_var, standalone_mode=False, **extra)
            except _EXPECTED as exc:  # raised outside the per-file loops (e.g. while writing help)
                return _report(exc, None)

        with signals_as_interrupts():
            return run_standalone(run, interrupted, standalone_mode)


def _verbosity(ctx: click.Context, verbose: int, quiet: int) -> int:
    """0 quiet, 1 normal, 2+ verbose: group-level -v/-q plus the command's own."""
    base = (ctx.obj or {}).get("verbosity", 0)
    return max(0, 1 + base + verbose - quiet)


def _options(*decorators):
    def apply(f):
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


_verbose_opts = _options(
    click.option("-q", "--quiet", count=True, help="Print nothing but errors (no progress display)."),
    click.option("-v", "--verbose", count=True, help="Print a summary line per file (sizes, ratio, bits/byte, speed)."),
)
_model_opts = _options(
    click.option("--device", default="cpu", show_default=True, metavar="NAME", help="Torch device for the model: cpu, cuda, cuda:1, ..."),
)
_io_opts = _options(
    click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write to standard output (inputs are kept)."),
    click.option("-o", "--output", metavar="FILE", help="Write to FILE ('-': standard output); one input only."),
    click.option("--rm/--keep", " /-k", "remove", default=False,
                 help="Remove inputs once their output is complete and verified. Default: keep them."),
    click.option("-f", "--force", is_flag=True,
                 help="Overwrite existing outputs; write compressed data to a terminal; compress *.lmz."),
    click.option("-r", "--recursive", is_flag=True,
                 help="Directories: every file below them (compressing: those without the .lmz suffix; "
                      "decompressing: those with it), in sorted order."),
)
_compress_opts = _options(
    click.option("--model", metavar="ID|DIR", help="Registry id or model directory. [default: the default model]"),
    click.option("-1", "--fast", "level", flag_value=1,
                 help="Levels -1 (fastest) ... -9 (best, the teacher) choose the model: `lmzip -v models list` shows "
                      "each level's. [default: the default model]"),
    *[click.option(f"-{n}", "level", flag_value=n, hidden=True) for n in range(2, 9)],
    click.option("-9", "--best", "level", flag_value=9, help="The best model (level 9)."),
    click.option("--window", type=click.IntRange(min=1), metavar="N", help="Tokens the model sees at most. [default: 4096]"),
    click.option("--overlap", type=click.IntRange(min=0), metavar="N",
                 help="Tokens re-read as context at each new window. [default: 1024]"),
    click.option("--segment-size", type=_Size(), help="Bytes per independently decodable segment (0: auto). [default: 0]"),
    click.option("--streams", type=click.IntRange(min=1), metavar="N",
                 help="Cut the input into N segments instead (about 16 KB to 1 MB each), so that a GPU decodes them all "
                      "at once; each starts cold, so smaller ones cost ratio. [default: about 16, of 256 KB or more]"),
    click.option("--top-k", type=click.IntRange(0, 0xFFFF), metavar="N", help="Coder's first-stage candidates. [default: 64]"),
    click.option("--adapt/--no-adapt", default=None,
                 help="Learn the file while coding it (bias, n-gram and match models). [default: adapt]"),
    click.option("--transforms/--no-transforms", default=None,
                 help="Code CRLF line ends as LF where that is reversible. [default: transforms]"),
)
_cluster_opts = _options(
    click.option("--cluster", metavar="ADDRESS",
                 help="Code the segments on a Ray cluster: 'auto' (the cluster this machine is part of), 'local' "
                      "(start Ray here), or host:port. Output is byte-identical to the local run. Needs lmzip[ray]."),
    click.option("--workers", type=click.IntRange(min=1), metavar="N",
                 help="Cluster workers, each holding a model. [default: one per GPU, else one per --worker-cpus CPUs]"),
    click.option("--worker-cpus", type=click.IntRange(min=1), metavar="N",
                 help="CPUs (model threads) per CPU worker. [default: 1]"),
)


def _cluster(cluster: str | None, workers: int | None, worker_cpus: int | None, device: str) -> dict | None:
    if cluster is None:
        if workers is not None or worker_cpus is not None:
            raise UsageError("--workers and --worker-cpus go with --cluster")
        return None
    return dict(address=cluster, workers=workers, worker_cpus=worker_cpus, device_given=device != "cpu")


_batch_opt = click.option("--batch", type=click.IntRange(min=1), default=None, metavar="N",
                          help="Segments decoded together (memory vs speed). [default: 16; on a GPU 512, "
                               "fewer where its memory holds fewer]")


# --------------------------------------------------------------------------- models and streams


class _Coders:
    """The Compressor/Decompressor of one command: created on first use, once per process."""

    def __init__(self, model: str | None, device: str, batch: int | None = None, params: dict | None = None,
                 cluster: dict | None = None):
        self.model, self.device, self.batch, self.params = model, device, batch, params or {}
        self.cluster = cluster  # address, workers, worker_cpus: code on a Ray cluster instead
        self._compressor = self._decompressor = None

    def cluster_coder(self):
        """The ``cluster.ClusterCoder`` of ``--cluster`` (connects, starts no worker yet)."""
        from ..cluster import ClusterCoder

        assert self.cluster is not None
        device = None if self.device == "cpu" and not self.cluster.get("device_given") else self.device
        return ClusterCoder(self.cluster["address"], model=self.model, device=device,
                            workers=self.cluster.get("workers"), worker_cpus=self.cluster.get("worker_cpus") or 1,
                            batch=self.batch, **self.params)

    def compressor(self):
        if self._compressor is None:
            try:
                check_device(self.device)
                from ..api import Compressor

                self._compressor = Compressor(self.model, device=self.device, **self.params)
            except _EXPECTED as exc:
                raise _Fatal(exc) from exc
        return self._compressor

    def decompressor(self):
        if self._decompressor is None:
            try:
                check_device(self.device)
                from ..api import Decompressor

                model = self.model
                if model is None and self._compressor is not None:
                    model = self._compressor.model
                self._decompressor = Decompressor(model, device=self.device, batch=self.batch)
            except _EXPECTED as exc:
                raise _Fatal(exc) from exc
        return self._decompressor


def _walk(names: list[str], compressing: bool) -> list[str]:
    """``-r``: each directory replaced by the files below it that the command takes."""
    out = []
    for name in names:
        if name == STDIO or not os.path.isdir(name):
            out.append(name)
            continue
        for root, dirs, files in os.walk(name):
            dirs.sort()
            for f in sorted(files):
                path = os.path.join(root, f)
                if os.path.isfile(path) and not os.path.islink(path) and f.endswith(SUFFIX) != compressing:
                    out.append(path)
    return out


def _plan(inputs: tuple[str, ...], output: str | None, to_stdout: bool, remove: bool, force: bool,
          compressing: bool, verbosity: int, recursive: bool = False) -> tuple[list[str], bool, str | None]:
    """Validate the I/O options; return (inputs, write to stdout?, output name)."""
    names = _walk(list(inputs), compressing) if recursive else list(inputs)
    if recursive and inputs and not names:
        raise UsageError("no files to " + ("compress" if compressing else "decompress") + " below the directories given")
    if not names:
        if _isatty(_stdin()):
            raise UsageError("no input files (give FILE..., or - for standard input); see lmzip --help")
        names = [STDIO]
    if to_stdout and output is not None:
        raise UsageError("-c/--stdout and -o/--output are mutually exclusive")
    if output is not None and len(names) > 1:
        raise UsageError("-o/--output takes one input only")
    if names.count(STDIO) > 1:
        raise UsageError("standard input (-) named more than once")
    stdout = to_stdout or output == STDIO or (output is None and names == [STDIO])
    if compressing and stdout and len(names) > 1:
        raise UsageError("compressing several inputs to standard output would concatenate .lmz files, "
                         "which cannot be decompressed; use one input, or no -c")
    if compressing and stdout and not force and _isatty(_stdout()):
        raise UsageError("compressed data not written to a terminal (use -f to force, or redirect)")
    if remove and stdout and verbosity and any(n != STDIO for n in names):
        _say_error(None, "--rm ignored when writing to standard output")
    if output == STDIO:
        output = None
    return names, stdout, output


# --------------------------------------------------------------------------- compress / decompress


def _ratio_text(original: int, compressed: int) -> str:
    if not original:
        return f"{original} -> {compressed} bytes"
    return (f"{original} -> {compressed} bytes ({100 * compressed / original:.2f}%, "
            f"{8 * compressed / original:.3f} bits/byte)")


def _expand_text(compressed: int, original: int) -> str:
    if not original:
        return f"{compressed} -> {original} bytes"
    return f"{compressed} -> {original} bytes ({8 * compressed / original:.3f} bits/byte)"


def _speed_text(nbytes: int, seconds: float) -> str:
    rate = nbytes / seconds if seconds > 0 else 0.0
    return f"{human_duration(seconds) if seconds >= 60 else f'{seconds:.2f}s'}, {human_bytes(rate)}/s"


def _run_compress(ctx, inputs, *, output, to_stdout, remove, force, verbosity, coders: _Coders,
                  recursive: bool = False) -> NoReturn:
    names, stdout, output = _plan(inputs, output, to_stdout, remove, force, True, verbosity, recursive)
    progress_on = None if verbosity >= 1 else False

    def dest_for(src: str) -> str | None:
        if stdout:
            return None
        if output is not None:
            return output
        if src.endswith(SUFFIX) and not force:
            raise UsageError(f"already has the {SUFFIX} suffix -- unchanged (use -f, -o or -c to compress it anyway)")
        return src + SUFFIX

    if coders.cluster is not None:
        from .cluster_commands import run_compress

        with coders.cluster_coder() as coder:
            run_compress(ctx, coder, names, dest_for, force=force, remove=remove, verbosity=verbosity,
                         speed=_speed_text, ratio=_ratio_text)

    def one(src: str) -> None:
        shown = _display(src)
        dest = dest_for(src)
        if dest is not None:
            _check_dest(src, dest, force)
        with _Input(src, compressed=False) as inp, _Output(dest, force, inp.st) as out:
            compressor = coders.compressor()
            t0 = time.monotonic()
            digest = hashlib.sha256()
            nbytes = 0
            with Progress(inp.size, shown, enabled=progress_on) as progress:
                from ..coding.streaming import StreamCompressor

                sc = StreamCompressor(compressor.model, compressor.params, inp.size, progress)
                while chunk := inp.file.read(_CHUNK):  # one segment in memory at a time
                    digest.update(chunk)
                    nbytes += len(chunk)
                    sc.write(chunk)
                size = sc.finish(out.file)
            seconds = time.monotonic() - t0
            if remove and dest is not None and src != STDIO:
                with out.read_back() as f, Progress(nbytes, f"{shown} (verifying)", enabled=progress_on) as progress:
                    back = hashlib.sha256()
                    _decode_stream(coders, f, back.update, progress)
                if back.digest() != digest.digest():
                    raise LmzipError(f"verification failed: {dest} does not decompress to the input; input kept")
            out.commit()
        if remove and dest is not None and src != STDIO:
            os.unlink(src)
        if verbosity >= 2:
            where = "(stdout)" if dest is None else dest
            _say_error(shown, f"{_ratio_text(nbytes, size)}, {_speed_text(nbytes, seconds)} -> {where}")

    _for_each(ctx, names, one)


def _decode_stream(coders: _Coders, f, write: Callable[[bytes], Any], progress=None,
                   span: tuple[int, int | None] | None = None, parsed=None) -> tuple[int, int]:
    """Decode the .lmz file ``f`` segment by segment into ``write``; return (compressed bytes, bytes
    written). ``span`` (start, end or None): only those original bytes, decoding only the segments
    that cover them (the file must be seekable). ``parsed``: its (header, payload start), when
    already read (``Input.header``)."""
    from ..coding.streaming import SegmentReader, iter_decode

    dec = coders.decompressor()
    if span is not None:
        reader = SegmentReader(f, dec.model_for, dec.batch)
        start, end = span
        end = reader.size if end is None else min(end, reader.size)
        done = 0
        for i0 in range(start, max(start, end), _CHUNK * 16):
            piece = reader.read(i0, min(end, i0 + _CHUNK * 16))
            write(piece)
            done += len(piece)
        return f.seek(0, 2), done
    if parsed is not None:
        header, start_at = parsed
        f.seek(start_at)
    else:
        header, start_at = container.peek(f)
    done = 0
    for data in iter_decode(header, container.iter_payloads_from(f, header), dec.model_for(header), dec.batch, progress):
        write(data)
        done += len(data)
    return start_at + header.payload_total, done


def _progress_total(inp: "_Input") -> int | None:
    return inp.header[0].original_size if inp.header is not None else None


def _run_decompress(ctx, inputs, *, output, to_stdout, remove, force, verbosity, coders: _Coders,
                    span: tuple[int, int | None] | None = None, recursive: bool = False) -> NoReturn:
    names, stdout, output = _plan(inputs, output, to_stdout, remove, force, False, verbosity, recursive)
    if span is not None:
        if not stdout and output is None:
            raise UsageError("--range writes part of a file: give -c or -o FILE")
        if remove:
            raise UsageError("--rm with --range would delete the input after decoding part of it")
    progress_on = None if verbosity >= 1 else False

    def dest_for(src: str) -> str | None:
        if stdout:
            return None
        if output is not None:
            return output
        base = os.path.basename(src)
        if not base.endswith(SUFFIX) or base == SUFFIX:
            raise UsageError(f"unknown suffix, expected {SUFFIX} -- ignored (use -o FILE or -c)")
        return src[: -len(SUFFIX)]

    if coders.cluster is not None:
        if span is not None:
            raise UsageError("--range decodes a few segments here: leave out --cluster")
        from .cluster_commands import run_decompress

        with coders.cluster_coder() as coder:
            run_decompress(ctx, coder, names, dest_for, force=force, remove=remove, verbosity=verbosity,
                           speed=_speed_text, expand=_expand_text)

    def one(src: str) -> None:
        shown = _display(src)
        dest = dest_for(src)
        if dest is not None:
            _check_dest(src, dest, force)
        with _Input(src, compressed=True, force=force) as inp, _Output(dest, force, inp.st) as out:
            t0 = time.monotonic()
            if span is not None and (inp.size is None):
                raise UsageError("--range needs a .lmz file it can seek in, not a pipe")
            with Progress(_progress_total(inp) if span is None else None, shown, enabled=progress_on) as progress:
                read, written = _decode_stream(coders, inp.file, out.write, progress, span,  # checksums inside
                                               inp.header)
            seconds = time.monotonic() - t0
            out.commit()
        if remove and dest is not None and src != STDIO:
            os.unlink(src)
        if verbosity >= 2:
            where = "(stdout)" if dest is None else dest
            _say_error(shown, f"{_expand_text(read, written)}, {_speed_text(written, seconds)} -> {where}")

    _for_each(ctx, names, one)


def _run_test(ctx, inputs, *, verbosity, coders: _Coders, force: bool = False) -> NoReturn:
    names = list(inputs) or [STDIO]
    if names == [STDIO] and not force and _isatty(_stdin()):
        raise UsageError("no input files (give FILE.lmz..., or - for standard input)")
    progress_on = None if verbosity >= 1 else False
    if coders.cluster is not None:
        from .cluster_commands import run_decompress

        with coders.cluster_coder() as coder:
            run_decompress(ctx, coder, names, lambda src: None, force=force, remove=False, verbosity=verbosity,
                           speed=_speed_text, expand=_expand_text, test=True)

    def one(src: str) -> None:
        shown = _display(src)
        with _Input(src, compressed=True, force=force) as inp:
            t0 = time.monotonic()
            with Progress(_progress_total(inp), shown, enabled=progress_on) as progress:
                read, written = _decode_stream(coders, inp.file, lambda data: None, progress, parsed=inp.header)
            seconds = time.monotonic() - t0
        if verbosity >= 2:
            click.echo(f"{shown}: OK ({_expand_text(read, written)}, {_speed_text(written, seconds)})")
        elif verbosity >= 1:
            click.echo(f"{shown}: OK")

    _for_each(ctx, names, one)


# --------------------------------------------------------------------------- info


def _adaptation_text(raw: bytes) -> str:
    if not raw:
        return "off (the model alone)"
    from ..predict.adapt import AdaptParams

    try:
        a = AdaptParams.from_bytes(raw)
    except ValueError:
        return f"unknown parameters ({raw.hex()})"
    return (f"{a.describe()} (bias lr {a.bias_lr}, bigram lr {a.bigram_lr}, temperature lr {a.temp_lr}, "
            f"n-gram order {a.ngram_order}, match {'on' if a.match else 'off'}, mixer lr {a.mix_lr}; "
            f"predictor version {a.version})")


def _info_text(shown: str, header: container.Header, version: int, size: int, verbose: bool) -> list[str]:
    segs = header.segments
    lines = [f"{shown}:"]

    def row(key: str, value: str) -> None:
        lines.append(f"  {key:<17}{value}")

    row("format", f".lmz version {version}")
    if header.model_ref:  # named by reference: the registry knows the rest
        from ..model import zoo

        try:
            model = f"{zoo.entry_for_ref(header.model_ref).id}  (registered, sha256 {header.model_ref.hex()}...)"
        except LmzipError:
            model = f"a registered model unknown here (sha256 {header.model_ref.hex()}...)"
        tokenizer = "the model's own"
    else:
        model = header.model_id or "-"
        if any(header.model_sha256):
            model += f"  (sha256 {header.model_sha256.hex()[:16]}...)"
        tokenizer = header.tokenizer_id or "-"
    row("model", model)
    row("tokenizer", tokenizer)
    row("coder", f"range coder, {header.total_bits}-bit frequencies, top-k {header.top_k}")
    if header.context_policy == container.POLICY_SLIDING:
        row("context", f"sliding windows of {header.window_tokens} tokens, overlap {header.overlap_tokens}")
    else:
        row("context", f"independent windows of {header.window_tokens} tokens")
    row("adaptation", _adaptation_text(header.predictor))
    crlf = sum(1 for s in segs if s.transforms & container.TRANSFORM_CRLF)
    if crlf:
        row("transforms", f"CRLF -> LF in {crlf} segment{'s' if crlf != 1 else ''}")
    row("original size", f"{header.original_size} bytes ({human_bytes(header.original_size)})")
    row("compressed size", f"{size} bytes ({human_bytes(size)})")
    if header.original_size:
        row("ratio", f"{100 * size / header.original_size:.2f}%  ({header.original_size / size:.2f}:1)")
        row("bits per byte", f"{8 * size / header.original_size:.3f}")
    else:
        row("ratio", "-")
        row("bits per byte", "-")
    counts = {m: 0 for m in _METHOD_NAMES}
    for s in segs:
        counts[s.method] = counts.get(s.method, 0) + 1
    tokens = sum(s.token_count for s in segs)
    row("segments", f"{len(segs)}: {counts[container.METHOD_LM]} LM, {counts[container.METHOD_ZSTD]} zstd, "
                    f"{counts[container.METHOD_XZ]} xz, {counts[container.METHOD_STORED]} stored")
    row("tokens", str(tokens))
    if verbose:
        row("sha256", header.original_sha256.hex() if header.original_sha256 else "- (segment CRC-32s only)")
        lines.append(f"  {'#':>5}  {'method':<6}  {'original':>10}  {'payload':>10}  {'tokens':>8}  {'bits/byte':>9}  crc32")
        for i, s in enumerate(segs):
            bpb = f"{8 * s.payload_length / s.original_length:.3f}" if s.original_length else "-"
            lines.append(f"  {i:>5}  {_METHOD_NAMES.get(s.method, str(s.method)):<6}  {s.original_length:>10}  "
                         f"{s.payload_length:>10}  {s.token_count:>8}  {bpb:>9}  {s.crc32:08x}")
    return lines


def _run_info(ctx, inputs, *, verbosity) -> NoReturn:
    names = list(inputs) or [STDIO]
    if STDIO in names and _isatty(_stdin()):
        raise UsageError("compressed data not read from a terminal (give FILE.lmz...)")
    first = [True]

    def one(src: str) -> None:
        shown = _display(src)
        if src == STDIO:
            raw = _stdin().read()
            size = len(raw)
            header, start = container.peek(raw)
        else:
            with open(src, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                header, start = container.peek(f)
        version = header.format_version
        expected = start + header.payload_total
        if verbosity >= 1:
            if not first[0]:
                click.echo()
            first[0] = False
            click.echo("\n".join(_info_text(shown, header, version, size, verbosity >= 2)))
        if size < expected:
            raise TruncatedError(f"truncated: {size} bytes, the header announces {expected}")
        if size > expected:
            raise TrailingDataError(f"{size - expected} bytes of trailing data after the last payload")

    _for_each(ctx, names, one)


# --------------------------------------------------------------------------- commands


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from .. import native

    click.echo(f"lmzip {__version__} (.lmz format {container.FORMAT_VERSION})")
    click.echo(f"runtime: {native.describe()}")  # which runtime CPU work uses, and its SIMD level
    ctx.exit()


@click.group(cls=LmzipGroup, epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-V", "--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and the runtime in use (LMZIP_RUNTIME=reference forces the torch reference).")
@click.option("-q", "--quiet", count=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", count=True, help="Print more (a summary line per file).")
@click.pass_context
def main(ctx: click.Context, quiet: int, verbose: int) -> None:
    """Lossless compression with an exact integer Transformer language model.

    \b
      lmzip FILE...             compress each FILE into FILE.lmz (= lmzip compress)
      lmzip -d FILE.lmz...      restore FILE (= lmzip decompress)
      lmzip info FILE.lmz...    describe .lmz files (no model needed)
      lmzip test FILE.lmz...    decode and verify, write nothing
      lmzip models list         models of the registry, installed or not
      lmzip bench PATH|CORPUS   lmzip beside gzip, bzip2, xz, zstd, brotli, PPMd
      lmzip explain FILE        where the bits go, token by token (--html for a page)

    Inputs are kept unless --rm; existing files are overwritten only with -f; '-' is
    standard input/output. Run 'lmzip COMMAND --help' for a command's options.
    """
    ctx.ensure_object(dict)["verbosity"] = verbose - quiet


@main.command(epilog="With -d/-t/-l this is decompress/test/info (their options apply: --batch).")
@click.argument("files", nargs=-1, metavar="[FILE]...")
@click.option("-d", "--decompress", is_flag=True, help="Decompress instead (like lmzip decompress).")
@click.option("-t", "--test", "test_", is_flag=True, help="Test instead (like lmzip test).")
@click.option("-l", "--list", "list_", is_flag=True, help="Describe .lmz files instead (like lmzip info).")
@_io_opts
@_verbose_opts
@_compress_opts
@_model_opts
@_batch_opt
@_cluster_opts
@click.pass_context
def compress(ctx, files, decompress, test_, list_, to_stdout, output, remove, force, recursive, quiet, verbose, model,
             level, window, overlap, segment_size, streams, top_k, adapt, transforms, device, batch, cluster, workers,
             worker_cpus):
    """Compress each FILE into FILE.lmz ('-' or none: standard input to standard output)."""
    verbosity = _verbosity(ctx, verbose, quiet)
    params = {k: v for k, v in dict(window=window, overlap=overlap, segment_size=segment_size, streams=streams, top_k=top_k,
                                    adapt=adapt, transforms=transforms).items()
              if v is not None}
    modes = [flag for flag, on in (("-d", decompress), ("-t", test_), ("-l", list_)) if on]
    if len(modes) > 1:
        raise UsageError(f"{' and '.join(modes)} are mutually exclusive")
    if level is not None:
        if model is not None:
            raise UsageError(f"-{level} and --model are mutually exclusive (a level names its model)")
        if modes:
            raise UsageError(f"-{level} only applies to compression, not with {modes[0]}")
        from ..model import zoo

        model = zoo.level_model_id(level)
    if modes and params:
        opts = ", ".join("--" + k.replace("_", "-") for k in params)
        raise UsageError(f"{opts} only apply to compression, not with {modes[0]}")
    if list_:
        _run_info(ctx, files, verbosity=verbosity)
    coders = _Coders(model, device, batch, params, _cluster(cluster, workers, worker_cpus, device))
    if test_:
        _run_test(ctx, files, verbosity=verbosity, coders=coders, force=force)
    run = _run_decompress if decompress else _run_compress
    run(ctx, files, output=output, to_stdout=to_stdout, remove=remove, force=force, verbosity=verbosity, coders=coders,
        recursive=recursive)


@main.command()
@click.argument("files", nargs=-1, metavar="[FILE.lmz]...")
@_io_opts
@_verbose_opts
@click.option("--model", metavar="ID|DIR", help="Model to decode with. [default: the one named in each file]")
@_model_opts
@_batch_opt
@_cluster_opts
@click.option("--range", "span", type=_Span(), metavar="START:END",
              help="Only original bytes START..END-1 (either may be left out; K/M/G suffixes), decoding only "
                   "the segments that cover them. Needs -c or -o.")
@click.pass_context
def decompress(ctx, files, to_stdout, output, remove, force, recursive, quiet, verbose, model, device, batch, cluster,
               workers, worker_cpus, span):
    """Restore FILE from each FILE.lmz ('-' or none: standard input to standard output)."""
    verbosity = _verbosity(ctx, verbose, quiet)
    _run_decompress(ctx, files, output=output, to_stdout=to_stdout, remove=remove, force=force,
                    verbosity=verbosity, span=span, recursive=recursive,
                    coders=_Coders(model, device, batch, cluster=_cluster(cluster, workers, worker_cpus, device)))


@main.command()
@click.argument("files", nargs=-1, metavar="[FILE.lmz]...")
@_verbose_opts
@click.option("--model", metavar="ID|DIR", help="Model to decode with. [default: the one named in each file]")
@_model_opts
@_batch_opt
@_cluster_opts
@click.pass_context
def test(ctx, files, quiet, verbose, model, device, batch, cluster, workers, worker_cpus):
    """Decode each FILE.lmz and verify its checksums; write nothing, print OK per file."""
    _run_test(ctx, files, verbosity=_verbosity(ctx, verbose, quiet),
              coders=_Coders(model, device, batch, cluster=_cluster(cluster, workers, worker_cpus, device)))


@main.command()
@click.argument("files", nargs=-1, metavar="[FILE.lmz]...")
@_verbose_opts
@click.pass_context
def info(ctx, files, quiet, verbose):
    """Describe .lmz files from their headers (fast, no model needed); -v lists every segment."""
    _run_info(ctx, files, verbosity=_verbosity(ctx, verbose, quiet))


@main.group(invoke_without_command=True)
@click.pass_context
def models(ctx):
    """The model zoo (installed under $LMZIP_HOME). Without a command: list."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(models_list)


@models.command("list")
@_verbose_opts
@click.pass_context
def models_list(ctx, quiet=0, verbose=0):
    """Registry models: id, installed?, size, sha256 prefix, description (-v: paths)."""
    from ..model import zoo

    verbosity = _verbosity(ctx, verbose, quiet)
    try:
        rows = zoo.list_models()
    except _EXPECTED as exc:
        ctx.exit(_report(exc, None))
    table = [("ID", "INSTALLED", "SIZE", "SHA256", "DESCRIPTION")]
    for r in rows:
        table.append((r["id"], "yes" if r["installed"] else "no", human_bytes(r["size"]) if r["size"] is not None else "-",
                      (r["sha256"] or "")[:12] or "-", r["description"]))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])
    if verbosity >= 2:
        click.echo(f"\nmodels directory: {zoo.home() / 'models'}")
        for r in rows:
            if r["path"]:
                click.echo(f"{r['id']}: {r['path']}")
    default = zoo.default_model_id()
    if verbosity >= 1:
        from .. import native

        click.echo(f"\ndefault model: {default}")
        levels: dict[str, list[int]] = {}
        for lv in range(1, 10):
            levels.setdefault(zoo.level_model_id(lv), []).append(lv)
        click.echo("levels: " + ", ".join((f"-{v[0]}" if len(v) == 1 else f"-{v[0]}..-{v[-1]}") + f" {m}"
                                          for m, v in levels.items()))
        click.echo(f"runtime: {native.describe()}")


@models.command("pull")
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option("--force", is_flag=True, help="Download and convert again even if installed.")
@_verbose_opts
@click.pass_context
def models_pull(ctx, ids, force, quiet, verbose):
    """Install registry models (download, convert, verify); already installed ones are kept."""
    from ..model import zoo

    verbosity = _verbosity(ctx, verbose, quiet)

    def say(msg: str) -> None:
        if verbosity >= 1:
            _say_error(None, msg)

    def one(model_id: str) -> None:
        zoo.entry(model_id)  # UnknownModelError before anything else
        was = zoo.is_installed(model_id)
        path = zoo.pull(model_id, force=force, say=say)
        if was and not force:
            say(f"{model_id} is already installed in {path} (--force reinstalls)")

    _for_each(ctx, list(ids), one)


__all__ = ["main", "EXIT_CODES"]


if __name__ == "__main__":  # pragma: no cover
    main()
