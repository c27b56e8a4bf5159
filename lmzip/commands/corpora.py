"""Benchmark corpora (Canterbury, Calgary): find a local copy and check it against the manifest.

lmzip ships no corpus text, only ``corpora/manifest.json`` (installed as ``lmzip._corpora``):
each file's corpus, name, size, sha256, kind (text/binary), description and origin. The
user names a directory holding ``canterbury/`` and ``calgary/`` (``--corpus DIR`` or the
environment variable ``LMZIP_CORPORA``), and every file used is checked against the manifest.

    from lmzip.commands import corpora
    for entry, path in corpora.locate("canterbury", "/data/corpora", kind="text"):
        ...  # path's bytes have entry.size and entry.sha256
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import LmzipError
from ..resources import shipped_dir

ENV_VAR = "LMZIP_CORPORA"
KINDS = ("text", "binary")


class CorpusError(LmzipError):
    """A corpus file differs from the manifest (size or sha256), or a corpus name is unknown."""

    exit_code = 1


class CorpusMissingError(CorpusError):
    """No corpus directory was named, or a corpus file is not in it (exit code as for OSError)."""

    exit_code = 5


@dataclass(frozen=True)
class CorpusFile:
    """One manifest row."""

    corpus: str
    name: str
    size: int
    sha256: str
    kind: str  # "text" or "binary"
    description: str = ""
    origin: str = ""

    @property
    def relpath(self) -> str:
        """Its path inside a corpora directory, e.g. ``canterbury/alice29.txt``."""
        return f"{self.corpus}/{self.name}"


@lru_cache(maxsize=1)
def manifest() -> dict:
    """The manifest as parsed JSON (``format``, ``corpora``: per-corpus facts, ``files``: rows)."""
    path = shipped_dir("lmzip._corpora", "corpora") / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorpusMissingError(f"the corpora manifest is not installed ({path})") from None


def corpus_names() -> list[str]:
    """``['canterbury', 'calgary']``: the corpora the manifest knows, in manifest order."""
    return list(manifest()["corpora"])


def entries(corpus: str | None = None, kind: str | None = None) -> list[CorpusFile]:
    """Manifest rows, optionally of one corpus and/or one kind, in manifest order."""
    if corpus is not None and corpus not in manifest()["corpora"]:
        raise CorpusError(f"unknown corpus {corpus!r} (known: {', '.join(corpus_names())})")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    rows = [CorpusFile(**f) for f in manifest()["files"]]
    return [r for r in rows if (corpus is None or r.corpus == corpus) and (kind is None or r.kind == kind)]


def by_sha256(digest: str) -> CorpusFile | None:
    """The first manifest row whose contents have this sha256 (None if none)."""
    for r in entries():
        if r.sha256 == digest:
            return r
    return None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def corpus_dir(directory: str | os.PathLike | None = None) -> Path:
    """The corpora directory: ``directory`` if given, else ``$LMZIP_CORPORA``."""
    if directory is None:
        directory = os.environ.get(ENV_VAR) or None
    if directory is None:
        raise CorpusMissingError(f"no corpus directory: name one with --corpus DIR or {ENV_VAR} "
                                 "(it holds canterbury/ and calgary/; lmzip ships none of the files)")
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise CorpusMissingError(f"corpus directory {path} does not exist or is not a directory")
    return path


def verify(entry: CorpusFile, directory: str | os.PathLike) -> Path:
    """Check that ``directory/<corpus>/<name>`` is the manifest's file; return its path.

    Raises CorpusMissingError if it is absent, CorpusError if its size or sha256 differs.
    """
    path = Path(directory) / entry.corpus / entry.name
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CorpusMissingError(f"{path}: missing (expected {entry.relpath} of the {entry.corpus} corpus, "
                                 f"{entry.size} bytes)") from None
    except OSError as exc:
        raise CorpusMissingError(f"{path}: {exc.strerror or exc}") from None
    if not path.is_file():
        raise CorpusMissingError(f"{path}: not a regular file")
    if size != entry.size:
        raise CorpusError(f"{path}: {size} bytes, the manifest says {entry.size}: not the {entry.corpus} corpus's {entry.name}")
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise CorpusMissingError(f"{path}: {exc.strerror or exc}") from None
    if digest != entry.sha256:
        raise CorpusError(f"{path}: sha256 {digest[:16]}... differs from the manifest's {entry.sha256[:16]}...: "
                          f"not the {entry.corpus} corpus's {entry.name} (damaged or a different edition)")
    return path


def locate(corpus: str | None = None, directory: str | os.PathLike | None = None, *, kind: str | None = None,
           check: bool = True) -> list[tuple[CorpusFile, Path]]:
    """The files of ``corpus`` (None: every corpus) in ``directory`` (None: ``$LMZIP_CORPORA``),
    each checked against the manifest unless ``check`` is False; ``kind`` selects text or binary."""
    root = corpus_dir(directory)
    out = []
    for e in entries(corpus, kind):
        out.append((e, verify(e, root) if check else root / e.corpus / e.name))
    return out


def verify_all(directory: str | os.PathLike | None = None) -> list[CorpusFile]:
    """Check every manifest file in the directory; raise on the first problem, return the rows."""
    return [e for e, _ in locate(None, directory)]


# Bytes that do not occur in text: C0 controls other than tab, newlines, form feed,
# vertical tab, backspace and escape (terminal transcripts have those), and DEL.
_BINARY_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\f\v\b\x1b") + b"\x7f"
_HIGH_BYTES = bytes(range(0x80, 0x100))


def guess_kind(data: bytes) -> str:
    """'text' or 'binary' for bytes that are not a manifest file: a manifest file's own kind if
    the sha256 matches, else a heuristic (few control bytes; few high bytes unless valid UTF-8)."""
    known = by_sha256(hashlib.sha256(data).hexdigest())
    if known is not None:
        return known.kind
    if not data:
        return "text"
    sample = data[: 1 << 20]
    controls = len(sample) - len(sample.translate(None, _BINARY_BYTES))
    if controls > 0.10 * len(sample):
        return "binary"
    high = len(sample) - len(sample.translate(None, _HIGH_BYTES))
    if high > 0.05 * len(sample):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return "binary"
    return "text"


__all__ = ["CorpusError", "CorpusFile", "CorpusMissingError", "ENV_VAR", "by_sha256", "corpus_dir", "corpus_names",
           "entries", "guess_kind", "locate", "manifest", "sha256_file", "verify", "verify_all"]
