"""Exception hierarchy: every error lmzip raises on purpose derives from LmzipError.

The CLI turns these into one-line messages and distinct exit codes (see ``exit_code``);
anything else escaping is a bug and is allowed to show a traceback.
"""

from __future__ import annotations

from typing import Any, Callable

EXIT_OK = 0
EXIT_ERROR = 1  # LmzipError.exit_code
EXIT_FORMAT = 2  # FormatError / TokenizerError
EXIT_MODEL = 3  # ModelError
EXIT_USAGE = 4  # UsageError, and click's own command-line errors
EXIT_OS = 5  # OSError: missing file, permission denied, disk full, broken pipe
EXIT_INTERRUPT = 130  # KeyboardInterrupt (128 + SIGINT); SIGTERM/SIGHUP give 128 + their number


class LmzipError(Exception):
    """Base class of all lmzip errors."""

    exit_code = EXIT_ERROR


class FormatError(LmzipError):
    """The data is not a valid .lmz stream (bad magic, truncation, trailing bytes, corrupt fields)."""

    exit_code = EXIT_FORMAT


class BadMagicError(FormatError):
    """The data does not start with the .lmz magic bytes."""


class UnsupportedVersionError(FormatError):
    """The .lmz format version is newer (or older) than this lmzip understands."""


class TruncatedError(FormatError):
    """The .lmz data ends before the structure it announces."""


class TrailingDataError(FormatError):
    """Bytes follow the end of the .lmz data."""


class ChecksumError(FormatError):
    """The decoded data does not match the checksum recorded when it was compressed."""


class ModelError(LmzipError):
    """A model could not be found, fetched, verified or loaded."""

    exit_code = EXIT_MODEL


class ModelMismatchError(ModelError):
    """The model available here is not the one the file was compressed with."""


class UnknownModelError(ModelError):
    """No model of that id is known to the registry."""


class TokenizerError(LmzipError):
    """A token sequence could not be turned back into bytes (corrupt or foreign data)."""

    exit_code = EXIT_FORMAT


class UsageError(LmzipError):
    """The caller asked for something inconsistent (bad option, existing output without -f, ...)."""

    exit_code = EXIT_USAGE


def run_standalone(run: Callable[[], Any], interrupted: Callable[[Any], int], standalone_mode: bool) -> int:
    """Run a click entry point (called with standalone_mode=False) and map what it raises to
    lmzip's exit codes: click's usage errors 4, its other errors their own code, an abort
    ``interrupted(exc)``. Shared by the ``lmzip`` group and the standalone ``bench`` command."""
    import sys

    import click  # the CLI's dependency; the library itself does not need it

    try:
        code = run()
        code = code if isinstance(code, int) else EXIT_OK
    except click.UsageError as exc:
        exc.show()
        code = EXIT_USAGE
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except click.Abort as exc:
        code = interrupted(exc)
    if standalone_mode:
        sys.exit(code)
    return code
