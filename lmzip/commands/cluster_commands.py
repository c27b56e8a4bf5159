"""``lmzip compress|decompress|test --cluster ADDRESS``: the local commands' behaviour, with the
segments of all inputs coded by a Ray cluster (``cluster.py``).

The job is one pipeline across every input (many small files keep every worker busy, not one
file at a time), but each input still gets what the local command gives it: its output written
to a temporary file and renamed when complete, errors one line per input with the first exit
code kept, ``--rm`` only after the output decodes back to the input (checked by a second pass
on the cluster), one progress line for the whole job.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any, Callable, NoReturn

import click

from .cmdline import (EXPECTED, STDIO, Fatal, Input, Output, Signalled, check_dest, display, report,
                      say_error)
from ..errors import EXIT_INTERRUPT, EXIT_OK, LmzipError
from .progress import Progress


class Job:
    """Exit-code bookkeeping and interrupt handling shared by the cluster commands."""

    def __init__(self, ctx: click.Context) -> None:
        self.ctx, self.first = ctx, EXIT_OK

    def failed(self, exc: BaseException, name: str | None) -> None:
        code = report(exc, name)
        self.first = self.first or code

    def run(self, work: Callable[[], None]) -> NoReturn:
        try:
            work()
        except KeyboardInterrupt as exc:
            say_error(None, "interrupted")
            self.ctx.exit(128 + exc.signum if isinstance(exc, Signalled) else EXIT_INTERRUPT)
        except Fatal as fatal:
            self.failed(fatal.cause, None)
        except EXPECTED as exc:  # the cluster itself, the model, the options: the whole job stops
            self.failed(exc, None)
        self.ctx.exit(self.first)


def _stat(src: str) -> os.stat_result | None:
    return None if src == STDIO else os.stat(src)


def _total(names: list[str], size_of: Callable[[str], int | None]) -> int | None:
    sizes = [size_of(n) for n in names]
    return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]


def _file_size(name: str) -> int | None:
    try:
        return None if name == STDIO else os.path.getsize(name)
    except OSError:
        return 0


def run_compress(ctx, coder, names: list[str], dest_for: Callable[[str], str | None], *, force: bool,
                 remove: bool, verbosity: int, speed: Callable[[int, float], str],
                 ratio: Callable[[int, int], str]) -> NoReturn:
    """Compress every input on the cluster; ``dest_for(src)`` names its output (None: stdout) or
    raises the input's usage error."""
    job = Job(ctx)
    progress_on = None if verbosity >= 1 else False
    label = display(names[0]) if len(names) == 1 else f"{len(names)} files"
    done: list[tuple[str, str, bytes]] = []  # (input, output, sha256 of the input) to verify for --rm
    totals = [0, 0]  # input and output bytes

    def source(src: str):
        def open_():
            dest = dest_for(src)
            if dest is not None:
                check_dest(src, dest, force)
            return Input(src, compressed=False)

        return src, open_

    def work() -> None:
        t0 = time.monotonic()
        with Progress(_total(names, _file_size), label, enabled=progress_on) as progress:
            for src, result in coder.compress_sources((source(n) for n in names), progress):
                shown = display(src)
                if isinstance(result, BaseException):
                    job.failed(result, shown)
                    continue
                dest = dest_for(src)
                try:
                    with Output(dest, force, _stat(src)) as out:
                        result.write_to(out.file)
                        out.commit()
                except EXPECTED as exc:
                    job.failed(exc, shown)
                    continue
                if dest is not None and src != STDIO:
                    done.append((src, dest, result.sha256))
                totals[0] += result.read
                totals[1] += result.size
                if verbosity >= 2:
                    say_error(shown, f"{ratio(result.read, result.size)} -> {dest or '(stdout)'}")
        if verbosity >= 2:
            say_error(None, f"{len(names)} input{'s' if len(names) != 1 else ''}: {ratio(*totals)}, "
                            f"{speed(totals[0], time.monotonic() - t0)} on {coder.workers} workers"
                            f"{f' ({coder.lost_workers} lost and replaced)' if coder.lost_workers else ''}")
        if remove and done:
            _verify_and_remove(job, coder, done, progress_on)

    job.run(work)


def _verify_and_remove(job: Job, coder, done: list[tuple[str, str, bytes]], progress_on) -> None:
    """Decode every new output on the cluster; remove an input only if its output gives it back."""
    want = {dest: (src, sha) for src, dest, sha in done}
    digests: dict[str, Any] = {}
    sources = [(dest, lambda dest=dest: Input(dest, compressed=True)) for _, dest, _ in done]
    with Progress(sum(_file_size(s) or 0 for s, _, _ in done), "verifying", enabled=progress_on) as progress:
        for dest, kind, value in coder.decompress_sources(sources, progress):
            src, sha = want[dest]
            if kind == "data":
                digests.setdefault(dest, hashlib.sha256()).update(value)
            elif kind == "error":
                job.failed(LmzipError(f"verification failed: {dest} does not decompress ({value}); input kept"),
                           display(src))
            elif digests.pop(dest, hashlib.sha256()).digest() == sha:
                os.unlink(src)
            else:
                job.failed(LmzipError(f"verification failed: {dest} does not decompress to the input; input kept"),
                           display(src))


def run_decompress(ctx, coder, names: list[str], dest_for: Callable[[str], str | None], *, force: bool,
                   remove: bool, verbosity: int, speed: Callable[[int, float], str],
                   expand: Callable[[int, int], str], test: bool = False) -> NoReturn:
    """Decompress (or, with ``test``, only verify) every input on the cluster."""
    job = Job(ctx)
    progress_on = None if verbosity >= 1 else False
    label = display(names[0]) if len(names) == 1 else f"{len(names)} files"
    totals = [0, 0]  # compressed and decoded bytes

    def source(src: str):
        def open_():
            dest = None if test else dest_for(src)
            if dest is not None:
                check_dest(src, dest, force)
            return Input(src, compressed=True, force=force)

        return src, open_

    def original_size(name: str) -> int | None:
        if name == STDIO:
            return None
        try:
            from ..coding import container

            with open(name, "rb") as f:
                return container.peek_header(f).original_size
        except (OSError, LmzipError):
            return 0

    def work() -> None:
        t0 = time.monotonic()
        out: Output | None = None
        written = 0
        try:
            with Progress(_total(names, original_size), label, enabled=progress_on) as progress:
                for src, kind, value in coder.decompress_sources((source(n) for n in names), progress):
                    shown = display(src)
                    if out is None and kind != "error" and not test:
                        out = Output(dest_for(src), force, _stat(src)).__enter__()
                    if kind == "data":
                        written += len(value)
                        if out is not None:
                            out.write(value)
                        continue
                    csize = _file_size(src) or 0
                    try:
                        if kind == "error":
                            raise value
                        if out is not None:
                            out.commit()
                        if remove and not test and src != STDIO:
                            os.unlink(src)
                        if test and verbosity >= 1:
                            click.echo(f"{shown}: OK")
                        elif verbosity >= 2:
                            say_error(shown, f"{expand(csize, written)}"
                                             f" -> {(out.dest if out else None) or '(stdout)'}")
                        totals[0] += csize
                        totals[1] += written
                    except EXPECTED as exc:
                        job.failed(exc, shown)
                    finally:
                        if out is not None:
                            out.__exit__(None, None, None)
                        out, written = None, 0
        finally:
            if out is not None:
                out.__exit__(None, None, None)
        if verbosity >= 2:
            say_error(None, f"{len(names)} input{'s' if len(names) != 1 else ''}: {expand(*totals)}, "
                            f"{speed(totals[1], time.monotonic() - t0)} on {coder.workers} workers"
                            f"{f' ({coder.lost_workers} lost and replaced)' if coder.lost_workers else ''}")

    job.run(work)
