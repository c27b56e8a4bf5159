"""Where training text comes from on this machine, what licence each file is under, and what is kept out.

Each *kind* of source lists candidate files with the package that installed them and its
licence; ``data.py`` reads them in a deterministic pseudo-random order (by the sha256 of the
path) until the kind's quota is reached. Every file kept or refused is recorded in the manifest.

Kinds (roots on a Debian/Ubuntu machine with a CPython install):

=================  ===========================================================================
``man``            English manual pages (roff source), ``/usr/share/man/man*/``
``info``           Texinfo manuals, ``/usr/share/info/``
``doc``            READMEs, NEWS, change logs, HTML/Markdown docs in ``/usr/share/doc/<package>/``
``vim-help``       Vim's help files, ``/usr/share/vim/vim*/doc/``
``perl``           Perl modules and their POD documentation
``c-headers``      C and C++ headers, ``/usr/include/``
``python-stdlib``  the running CPython's standard library sources (PSF-2.0)
``python-packages``Python sources and docs of installed distributions with a stated open licence
``dir``            every text file under a directory given on the command line (``--dir``)
=================  ===========================================================================

Licences: Debian files take their package's ``/usr/share/doc/<package>/copyright`` (the
``License:`` fields of the machine-readable format, else the licences its text names); Python
distributions their ``License-Expression``/``License``/classifiers. A file whose licence cannot
be found is refused. So are: anything under a benchmark corpus' name (the Canterbury and Calgary
file names, ``xargs`` among them), anything naming one of the corpora's books or their authors,
any file sharing word 8-grams with a corpus file or ``benchmarks/data`` (``Excluder``), any file
that is mostly one of the licence texts of ``/usr/share/common-licenses`` (``benchmarks/short_records.py``
measures sentences of those, so they are never a source either), private keys, and files that
are not text.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import os
import re
import sys
import sysconfig
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Candidate:
    path: str  # where it is on this machine
    kind: str
    package: str
    licence: str  # "" when unknown (refused)


# -- licences ------------------------------------------------------------------------------------

_LICENCE_WORDS = [  # (regex over a copyright text, short name): used where no License: field is given
    (r"GNU LESSER GENERAL PUBLIC LICENSE|GNU Lesser General Public License|LGPL", "LGPL"),
    (r"GNU LIBRARY GENERAL PUBLIC LICENSE", "LGPL"),
    (r"GNU GENERAL PUBLIC LICENSE|GNU General Public License|\bGPL\b", "GPL"),
    (r"GNU Free Documentation License|\bGFDL\b", "GFDL"),
    (r"Apache License|Apache-2\.0", "Apache-2.0"),
    (r"\bBSD\b|Redistribution and use in source and binary forms", "BSD"),
    (r"Permission is hereby granted, free of charge|\bMIT\b|\bExpat\b", "MIT"),
    (r"Mozilla Public License|\bMPL\b", "MPL"),
    (r"Artistic License|\bArtistic\b", "Artistic"),
    (r"public domain|Public Domain", "public-domain"),
    (r"Permission to use, copy, modify, and(/or)? distribute", "ISC-like"),
    (r"zlib License|\bZlib\b", "Zlib"),
    (r"Python Software Foundation|\bPSF\b", "PSF"),
    (r"\bVim\b.*(license|License)|VIM LICENSE", "Vim"),
]


@lru_cache(maxsize=None)
def debian_licence(package: str) -> str:
    """Short licence names of a Debian package, from its copyright file ("" if none is found)."""
    base = package.split(":")[0]
    path = Path("/usr/share/doc") / base / "copyright"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    names = []
    for m in re.finditer(r"^License:[ \t]*(\S[^\n]*)$", text, re.M):
        name = m.group(1).strip()
        if name and len(name) < 80 and name not in names:
            names.append(name)
    if not names:
        flat = " ".join(text.split())
        for rx, name in _LICENCE_WORDS:
            if re.search(rx, flat) and name not in names:
                names.append(name)
    return " and ".join(names[:6]) + (" and others" if len(names) > 6 else "")


_OPEN = re.compile(r"MIT|BSD|Apache|PSF|Python|ISC|MPL|Mozilla|LGPL|GPL|Unlicense|Zlib|CC0|Public Domain|"
                   r"public domain|HPND|0BSD|BSL|Artistic|CNRI|Expat|EPL|Eclipse", re.I)


def python_licence(dist: importlib.metadata.Distribution) -> str:
    m = dist.metadata
    expr = (m.get("License-Expression") or "").strip()
    if expr and len(expr) < 100 and "\n" not in expr:
        return expr
    classifiers = [c.split("::")[-1].strip() for c in (m.get_all("Classifier") or []) if c.startswith("License ::")]
    classifiers = [c for c in classifiers if c not in ("OSI Approved",)]
    lic = (m.get("License") or "").strip()
    if lic and len(lic) < 60 and "\n" not in lic and lic.upper() != "UNKNOWN":
        return lic
    if classifiers:
        return " / ".join(classifiers)
    return ""


def is_open(licence: str) -> bool:
    return bool(licence) and bool(_OPEN.search(licence))


# -- Debian: which package owns a path -------------------------------------------------------------

@lru_cache(maxsize=1)
def dpkg_owners() -> dict[str, str]:
    owners: dict[str, str] = {}
    info = Path("/var/lib/dpkg/info")
    if not info.is_dir():
        return owners
    for lst in sorted(info.glob("*.list")):
        pkg = lst.stem.split(":")[0]
        try:
            for line in lst.read_text(encoding="utf-8", errors="replace").splitlines():
                owners.setdefault(line, pkg)
        except OSError:
            continue
    return owners


def _debian(path: Path, kind: str) -> Candidate:
    owner = dpkg_owners().get(str(path), "")
    if not owner:  # a file under a linked directory: try the resolved path
        owner = dpkg_owners().get(str(path.resolve()), "")
    return Candidate(str(path), kind, owner or "(no package)", debian_licence(owner) if owner else "")


def _files(root: Path, patterns: tuple[str, ...]) -> Iterator[Path]:
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_symlink() or not p.is_file():
                continue
            if any(re.fullmatch(pat, name) for pat in patterns):
                yield p


# -- the kinds ------------------------------------------------------------------------------------

def man_pages() -> Iterator[Candidate]:
    root = Path("/usr/share/man")
    if not root.is_dir():
        return
    for sec in sorted(root.glob("man[1-9]*")):
        for p in _files(sec, (r".+\.[0-9][a-z0-9]*(\.gz)?",)):
            yield _debian(p, "man")


def info_manuals() -> Iterator[Candidate]:
    for p in _files(Path("/usr/share/info"), (r".+\.info(-[0-9]+)?(\.gz)?",)):
        yield _debian(p, "info")


_DOC_NAMES = (r"(README|NEWS|CHANGES|HISTORY|TODO|FAQ|AUTHORS|THANKS|BUGS|NOTES|USAGE)[^/]*",
              r"changelog(\.Debian)?(\.gz)?", r".+\.(txt|md|rst|html|htm|org|texi)(\.gz)?", r"copyright")


def doc_files() -> Iterator[Candidate]:
    for p in _files(Path("/usr/share/doc"), _DOC_NAMES):
        pkg = p.relative_to("/usr/share/doc").parts[0]
        c = _debian(p, "doc")
        if c.package == "(no package)":  # files that maintainer scripts create: the directory names the package
            c = Candidate(c.path, "doc", pkg, debian_licence(pkg))
        yield c


def vim_help() -> Iterator[Candidate]:
    for d in sorted(Path("/usr/share/vim").glob("vim[0-9]*")):
        for p in _files(d / "doc", (r".+\.txt",)):
            yield _debian(p, "vim-help")


def perl_modules() -> Iterator[Candidate]:
    roots = [Path("/usr/share/perl"), Path("/usr/share/perl5")] + sorted(Path("/usr/lib/x86_64-linux-gnu").glob("perl*"))
    for r in roots:
        for p in _files(r, (r".+\.(pm|pod|pl)",)):
            yield _debian(p, "perl")


def c_headers() -> Iterator[Candidate]:
    for p in _files(Path("/usr/include"), (r".+\.(h|hpp|hh|hxx|inc|def)",)):
        yield _debian(p, "c-headers")


def python_stdlib() -> Iterator[Candidate]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    site = {Path(p).resolve() for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])}
    version = f"python{sys.version_info.major}.{sys.version_info.minor} (standard library)"
    for dirpath, dirnames, filenames in os.walk(stdlib):
        dirnames[:] = sorted(d for d in dirnames if (Path(dirpath) / d).resolve() not in site
                             and d not in ("site-packages", "dist-packages", "__pycache__") and not d.startswith("config-"))
        for name in sorted(filenames):
            if name.endswith((".py", ".txt", ".rst")):
                p = Path(dirpath) / name
                if not p.is_symlink():
                    yield Candidate(str(p), "python-stdlib", version, "PSF-2.0")


_PY_DOCS = re.compile(r".+\.(py|pyi|md|rst|txt)$")
_SKIP_DISTS = {"lmzip"}  # the project itself


def python_packages() -> Iterator[Candidate]:
    seen: set[str] = set()
    paths = [sysconfig.get_paths()["purelib"], "/usr/lib/python3/dist-packages"]
    for dist in sorted(importlib.metadata.distributions(path=paths), key=lambda d: (d.metadata.get("Name") or "").lower()):
        name = (dist.metadata.get("Name") or "").strip()
        if not name or name.lower() in seen or name.lower() in _SKIP_DISTS:
            continue
        seen.add(name.lower())
        lic = python_licence(dist)
        for f in sorted(dist.files or [], key=str):
            s = str(f)
            if not _PY_DOCS.match(s) or "/tests/" in s and s.endswith(".txt") or ".dist-info/" in s:
                continue
            yield Candidate(str(dist.locate_file(f)), "python-packages", f"{name} {dist.version} (PyPI)",
                            lic if is_open(lic) else "")  # a missing file is skipped when read


def directory(root: str, licence: str) -> Iterator[Candidate]:
    for p in _files(Path(root), (r".+",)):
        yield Candidate(str(p), "dir", Path(root).name, licence)


KINDS = {
    "man": man_pages, "info": info_manuals, "doc": doc_files, "vim-help": vim_help, "perl": perl_modules,
    "c-headers": c_headers, "python-stdlib": python_stdlib, "python-packages": python_packages,
}

# Default quotas (MB of text) per kind, and the most one package may give a kind.
QUOTAS_MB = {"man": 22, "info": 6, "doc": 14, "vim-help": 6, "perl": 10, "c-headers": 12, "python-stdlib": 14,
             "python-packages": 24}
PER_PACKAGE_MB = {"man": 3, "doc": 0.3, "c-headers": 1.5, "python-packages": 1.5, "perl": 3}


# -- reading ------------------------------------------------------------------------------------

MAX_FILE_BYTES = 2 << 20


def read_text(path: str) -> bytes | None:
    """A file's bytes (gunzipped), or None where it is not worth training on: not text, huge, minified."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw) if len(raw) <= MAX_FILE_BYTES else None
            if raw is None:
                return None
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile):
        return None
    raw = raw.replace(b"\x00\x08[index\x00\x08]", b"")  # Texinfo's index markers
    if not raw or len(raw) > MAX_FILE_BYTES or b"\x00" in raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", text):
        return None
    lines = text.count("\n") + 1
    if len(text) / lines > 300 or max((len(s) for s in text.split("\n")), default=0) > 4000:
        return None  # minified, base64 or data tables, not text
    printable = sum(1 for c in text[:20000] if c.isprintable() or c in "\n\t\r\f")
    if printable < 0.98 * min(len(text), 20000):
        return None
    return raw


# -- keeping the benchmarks out --------------------------------------------------------------------

# The corpora's file names: a file of exactly such a name is refused, and so is every manual page
# of xargs (canterbury/xargs.1 is an early edition of GNU xargs' page) ...
CORPUS_NAMES = {"alice29.txt", "asyoulik.txt", "cp.html", "fields.c", "grammar.lsp", "kennedy.xls", "lcet10.txt",
                "plrabn12.txt", "ptt5", "sum", "xargs.1", "bib", "book1", "book2", "geo", "news", "obj1", "obj2",
                "paper1", "paper2", "paper3", "paper4", "paper5", "paper6", "pic", "progc", "progl", "progp", "trans",
                "dpkg.log", "packages.json"}
# ... and the works in them, named anywhere in a file's text (title case or capitals).
_TITLES = ["Alice's Adventures", "Adventures in Wonderland", "Alice in Wonderland", "Lewis Carroll",
           "Paradise Lost", "As You Like It", "Far from the Madding Crowd", "Madding Crowd", "Thomas Hardy",
           "Principles of Computer Speech", "LOC Workshop on Electronic Texts", "Bathsheba Everdene", "Gabriel Oak"]
TITLES = re.compile("|".join(r"\s+".join(map(re.escape, t.split())) for t in _TITLES + [t.upper() for t in _TITLES]))

SHINGLE = 8  # words
SAMPLE = 8  # keep shingles whose hash is 0 mod SAMPLE (the same ones in every text: content-defined)


def _shingles(text: bytes) -> np.ndarray:
    """Content-sampled hashes of the word 8-grams of a text (uint64)."""
    words = text.lower().split()
    if len(words) < SHINGLE:
        return np.zeros(0, dtype=np.uint64)
    h = np.fromiter((zlib.crc32(w) for w in words), dtype=np.uint64, count=len(words))
    acc = np.zeros(len(words) - SHINGLE + 1, dtype=np.uint64)
    mult = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for j in range(SHINGLE):
            acc = acc * mult + h[j : j + len(acc)]
        acc ^= acc >> np.uint64(29)
        acc *= np.uint64(0xBF58476D1CE4E5B9)
        acc ^= acc >> np.uint64(32)
    return np.unique(acc[acc % np.uint64(SAMPLE) == 0])


class Excluder:
    """Refuses benchmark text: names, titles and 8-gram overlap with the reference files.

    ``reference`` files (the corpora, ``benchmarks/data``) refuse a file sharing 2 sampled 8-grams
    and 1% of its own; ``soft`` files (the licence texts ``benchmarks/short_records.py`` cuts its
    sentences from) refuse a file that is mostly one of them (``soft_share`` of its 8-grams), so a
    source file's licence notice does not cost the file."""

    def __init__(self, reference_files: list[Path], soft_files: list[Path] = (), min_hits: int = 2,
                 min_share: float = 0.01, soft_share: float = 0.2):
        self.reference = [str(p) for p in reference_files]
        self.soft = [str(p) for p in soft_files]
        self.shingles = self._set(reference_files)
        self.soft_shingles = self._set(soft_files)
        self.min_hits, self.min_share, self.soft_share = min_hits, min_share, soft_share

    @staticmethod
    def _set(files) -> np.ndarray:
        parts = [_shingles(p.read_bytes()) for p in files if p.is_file()]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)

    def why(self, path: str, text: bytes) -> str | None:
        """A reason to refuse this file, or None."""
        name = Path(path).name
        name = name[:-3] if name.endswith(".gz") else name
        if name in CORPUS_NAMES or name.lower().startswith("xargs"):
            return "named like a benchmark corpus file"
        m = TITLES.search(text.decode("utf-8", "replace"))
        if m:
            return f"names a benchmark work ({m.group(0)!r})"
        if self.shingles.size or self.soft_shingles.size:
            s = _shingles(text)
            if s.size and self.shingles.size:
                hits = int(np.isin(s, self.shingles, assume_unique=True).sum())
                if hits >= self.min_hits and hits >= self.min_share * s.size:
                    return f"shares {hits} of {s.size} sampled word 8-grams with the benchmark files"
            if s.size and self.soft_shingles.size:
                hits = int(np.isin(s, self.soft_shingles, assume_unique=True).sum())
                if hits >= self.min_hits and hits >= self.soft_share * s.size:
                    return f"is mostly licence text: shares {hits} of {s.size} sampled word 8-grams with /usr/share/common-licenses"
        return None


def reference_files(corpora: Path | None, repo: Path) -> list[Path]:
    """The benchmark files that training text must not overlap: the corpora and benchmarks/data."""
    out: list[Path] = []
    if corpora and corpora.is_dir():
        out += sorted(p for p in corpora.rglob("*") if p.is_file() and p.suffix != ".md")
    data = repo / "benchmarks" / "data"
    if data.is_dir():
        out += sorted(p for p in data.rglob("*") if p.is_file())
    return out


def licence_texts() -> list[Path]:
    """/usr/share/common-licenses: benchmarks/short_records.py measures sentences of these."""
    root = Path("/usr/share/common-licenses")
    return sorted(p for p in root.iterdir() if p.is_file() and not p.is_symlink()) if root.is_dir() else []


def order_key(path: str) -> str:
    """A deterministic pseudo-random order within a kind (so quotas sample every package)."""
    return hashlib.sha256(path.encode()).hexdigest()
