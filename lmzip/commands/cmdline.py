"""The command layer every lmzip command shares: errors as one stderr line and an exit code, the
loop over inputs, inputs opened for streaming, outputs written to a temporary file and moved
into place (or held back from standard output), and the byte-size and range option types.

``cli.py`` (compress, decompress, test, info), the ``explain`` package (``explain/command.py``)
and ``bench.py`` use it, so safe output and error mapping exist once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import stat
import sys
import tempfile
from typing import Any, Callable, NoReturn

import click

from ..coding import container
from ..errors import EXIT_ERROR, EXIT_INTERRUPT, EXIT_OK, EXIT_OS, LmzipError, UsageError

SUFFIX = ".lmz"
STDIO = "-"


class Signalled(KeyboardInterrupt):
    """SIGTERM/SIGHUP, raised in the main thread like Ctrl-C so that temporary files are removed."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def on_signal(signum, frame) -> NoReturn:
    raise Signalled(signum)


@contextlib.contextmanager
def signals_as_interrupts():
    """While the block runs, SIGTERM and SIGHUP raise ``Signalled`` (so temporary outputs are
    removed as on Ctrl-C); the previous handlers come back after it."""
    saved = {}
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            try:
                saved[name] = signal.signal(getattr(signal, name), on_signal)
            except (ValueError, OSError):  # not the main thread, or not allowed
                pass
    try:
        yield
    finally:
        for name, handler in saved.items():
            try:
                signal.signal(getattr(signal, name), handler)
            except (ValueError, OSError, TypeError):
                pass


class Fatal(Exception):
    """An error that dooms every remaining file (the model or the options): stop the loop."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


def one_line(text: str) -> str:
    return " ".join(text.split()) or "error"


def describe(exc: BaseException, name: str | None = None) -> tuple[int, str]:
    """(exit code, one-line cause) of an error we expect from users' situations."""
    if isinstance(exc, LmzipError):
        return exc.exit_code, one_line(str(exc) or type(exc).__name__)
    if isinstance(exc, OSError):
        cause = exc.strerror or str(exc) or type(exc).__name__
        if exc.filename is not None and os.fsdecode(exc.filename) != name:
            cause = f"{os.fsdecode(exc.filename)}: {cause}"
        return EXIT_OS, one_line(cause)
    if isinstance(exc, MemoryError):
        return EXIT_ERROR, "out of memory"
    raise exc  # a bug: let the traceback show


def say_error(name: str | None, cause: str) -> None:
    click.echo(f"lmzip: {name}: {cause}" if name else f"lmzip: {cause}", err=True)


def report(exc: BaseException, name: str | None) -> int:
    code, cause = describe(exc, name)
    say_error(name, cause)
    return code


EXPECTED = (LmzipError, OSError, MemoryError)


def for_each(ctx: click.Context, names: list[str], work: Callable[[str], None]) -> NoReturn:
    """Run ``work`` on each input; report errors one line each, go on, exit with the first code."""
    first = EXIT_OK
    for name in names:
        shown = display(name)
        try:
            work(name)
        except KeyboardInterrupt as exc:
            say_error(shown, "interrupted")
            ctx.exit(128 + exc.signum if isinstance(exc, Signalled) else EXIT_INTERRUPT)
        except Fatal as fatal:
            code = report(fatal.cause, None)
            first = first or code
            break
        except EXPECTED as exc:
            code = report(exc, shown)
            first = first or code
    ctx.exit(first)


def display(name: str) -> str:
    return "(stdin)" if name == STDIO else name


class Size(click.ParamType):
    """A byte count: ``65536``, ``64K``, ``1.5M``, ``2GiB`` (binary multiples)."""

    name = "BYTES"
    _MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([kmgt]?)(?:i?b)?\s*", str(value), re.IGNORECASE)
        if not m:
            self.fail(f"{value!r} is not a size (e.g. 65536, 64K, 1M)", param, ctx)
        return int(float(m.group(1)) * self._MULT[m.group(2).lower()])


class Span(click.ParamType):
    """``START:END`` in original bytes, END exclusive; either side may be empty (``:4K``, ``1M:``)."""

    name = "START:END"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        a, sep, b = str(value).partition(":")
        if not sep:
            self.fail(f"{value!r} is not START:END (e.g. 0:4096, 1M:, :64K)", param, ctx)
        size = Size()
        start = size.convert(a, param, ctx) if a.strip() else 0
        end = size.convert(b, param, ctx) if b.strip() else None
        if end is not None and end < start:
            self.fail(f"the range {value!r} ends before it starts", param, ctx)
        return start, end


def stdin() -> Any:
    return getattr(sys.stdin, "buffer", sys.stdin)


def stdout() -> Any:
    return getattr(sys.stdout, "buffer", sys.stdout)


def isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Input:
    """One input opened for streaming: ``file`` and its stat (None for stdin). A compressed input
    is checked for the .lmz magic and header first, so a wrong file fails at once."""

    def __init__(self, name: str, *, compressed: bool, force: bool = False) -> None:
        self.name, self.compressed, self.force = name, compressed, force
        self.file: Any = None
        self.st: os.stat_result | None = None
        #: A compressed regular file's (header, payload start), parsed once at opening.
        self.header: tuple[container.Header, int] | None = None

    def __enter__(self) -> "Input":
        if self.name == STDIO:
            self.file = stdin()
            if self.compressed and not self.force and isatty(self.file):
                raise UsageError("compressed data not read from a terminal (use -f to force)")
            return self
        f = open(self.name, "rb")
        try:
            st = os.fstat(f.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), self.name)
            if self.compressed and stat.S_ISREG(st.st_mode):
                self.header = container.peek(f)
                f.seek(0)
        except BaseException:
            f.close()
            raise
        self.file, self.st = f, st
        return self

    @property
    def size(self) -> int | None:
        """Bytes to read, when known (a regular file)."""
        return self.st.st_size if self.st is not None and stat.S_ISREG(self.st.st_mode) else None

    def __exit__(self, *exc) -> None:
        if self.name != STDIO and self.file is not None:
            self.file.close()


CHUNK = 1 << 20
#: Decoded bytes held back from standard output until the end: smaller outputs appear only when
#: complete (a damaged file writes nothing); larger ones stream, so memory stays bounded.
STDOUT_HOLD = 64 << 20


class StdoutSink:
    def __init__(self) -> None:
        self.held: bytearray | None = bytearray()

    def write(self, data) -> None:
        if self.held is not None:
            self.held += data
            if len(self.held) <= STDOUT_HOLD:
                return
            data, self.held = bytes(self.held), None
        self._emit(data)

    def _emit(self, data) -> None:
        out = stdout()
        try:
            out.write(data)
        except BrokenPipeError:
            silence_stdout()
            raise

    def commit(self) -> None:
        if self.held is not None:
            self._emit(bytes(self.held))
            self.held = None
        try:
            stdout().flush()
        except BrokenPipeError:
            silence_stdout()
            raise


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class Output:
    """Where one result goes: standard output, or a temporary file beside the destination
    that ``commit()`` moves into place. Leaving the ``with`` block without ``commit()``
    (error, KeyboardInterrupt) removes the temporary file; the destination is untouched."""

    def __init__(self, dest: str | None, force: bool, like: os.stat_result | None):
        self.dest, self.force, self.like = dest, force, like
        self.tmp: str | None = None
        self.file: Any = None

    def __enter__(self) -> "Output":
        if self.dest is None:
            self.file = StdoutSink()
            return self
        # Created before the long work: an unwritable directory fails fast.
        directory = os.path.dirname(os.path.abspath(self.dest))
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self.dest)}.", suffix=".tmp", dir=directory)
        except OSError as exc:  # name the output, not the temporary file
            raise type(exc)(exc.errno, exc.strerror, self.dest) from None
        self.file = os.fdopen(fd, "wb")
        return self

    def write(self, data) -> None:
        self.file.write(data)

    def _close_file(self) -> None:
        if self.tmp is not None and not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()

    def read_back(self):
        """The finished temporary file, opened for reading (to verify it)."""
        self._close_file()
        assert self.tmp is not None
        return open(self.tmp, "rb")

    def commit(self) -> None:
        if self.dest is None:
            self.file.commit()
            return
        self._close_file()
        assert self.tmp is not None
        self._copy_metadata(self.tmp)
        try:
            place(self.tmp, self.dest, self.force)
        except OSError as exc:  # name the output, not the temporary file
            if exc.errno is None:
                raise
            raise type(exc)(exc.errno, exc.strerror, self.dest) from None
        self.tmp = None

    def _copy_metadata(self, path: str) -> None:
        """Mode bits, owner and times of the input, like gzip (best effort)."""
        st = self.like
        try:
            if st is None:
                os.chmod(path, 0o666 & ~umask())
                return
            if hasattr(os, "chown"):
                try:
                    os.chown(path, st.st_uid, st.st_gid)
                except OSError:
                    pass
            os.chmod(path, stat.S_IMODE(st.st_mode))
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        except OSError:
            pass

    def __exit__(self, *exc) -> None:
        if self.tmp is not None and not self.file.closed:
            try:
                self.file.close()
            except OSError:
                pass
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None


def silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def place(tmp: str, dest: str, force: bool) -> None:
    """Move the finished temporary file to ``dest``; without ``force`` never replace a file
    (a hard link fails atomically if ``dest`` appeared meanwhile)."""
    if force:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise UsageError(f"{dest} already exists; use -f to overwrite") from None
    except OSError:  # no hard links here (some filesystems): check, then rename
        if os.path.lexists(dest):
            raise UsageError(f"{dest} already exists; use -f to overwrite") from None
        os.replace(tmp, dest)
        return
    os.unlink(tmp)


def check_dest(src: str, dest: str, force: bool) -> None:
    """Refuse before any work: an existing output without -f, a directory, the input itself."""
    if not os.path.lexists(dest):
        return
    if os.path.isdir(dest):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), dest)
    if src != STDIO:
        try:
            if os.path.samefile(src, dest):
                raise UsageError(f"input and output are the same file ({dest})")
        except FileNotFoundError:
            pass
    if not force:
        raise UsageError(f"{dest} already exists; use -f to overwrite")
