"""Training text: ``python -m lmzip.train.data`` builds the packed data file and its manifest.

    python -m lmzip.train.data                       # every kind, default quotas, the teacher's tokenizer
    python -m lmzip.train.data --max-mb 20 --kind man --kind python-stdlib
    python -m lmzip.train.data --tokenizer bytes --dir SOME/DIR --licence MIT --out x.lmzt.xz

The file (``train-kit/data/corpus.lmzt.xz`` by default, an ignored folder) is the xz compression of

    b"LMZTRAIN" | u32 version (1) | u32 n | n bytes of JSON header | u64 offsets[n_docs + 1] | ids

with the documents' token ids (``uint16`` where the vocabulary allows, else ``uint32``, little-endian)
one after another and ``offsets`` in tokens. Token ids, not text: they are smaller under xz than
the text they spell and need no tokenizing on the GPU host, and ``tokenizer.decode`` gives the
exact bytes back (every lmzip tokenizer is lossless). The header names the tokenizer
(``tokenizer_id``) and each document's source path (the held-out split is by a hash of it).

The manifest (``models/training-data.json``) records the data file's sha256, size and tokens, the
exclusion rules, per kind and per package the files, bytes and licences; the per-file list (path,
kind, package, licence, bytes, sha256) is ``models/training-data-files.tsv`` beside it, and every
refused file is listed with its reason. Sources and filters: ``sources.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import os
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"LMZTRAIN"
VERSION = 1
DEFAULT_OUT = "train-kit/data/corpus.lmzt.xz"
DEFAULT_MANIFEST = "models/training-data.json"


# -- the packed file -------------------------------------------------------------------------------

@dataclass
class Corpus:
    header: dict
    offsets: np.ndarray  # int64 [n_docs + 1]
    ids: np.ndarray  # uint16/uint32 [n_tokens]

    @property
    def n_docs(self) -> int:
        return len(self.offsets) - 1

    def doc(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    @property
    def paths(self) -> list[str]:
        return self.header["doc_paths"]


def pack(header: dict, docs: list[np.ndarray], vocab_size: int) -> bytes:
    dtype = np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")
    offsets = np.zeros(len(docs) + 1, dtype="<u8")
    offsets[1:] = np.cumsum([len(d) for d in docs])
    header = dict(header, id_dtype=dtype.name, n_docs=len(docs), n_tokens=int(offsets[-1]), vocab_size=vocab_size)
    hj = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    body = io.BytesIO()
    body.write(MAGIC + struct.pack("<II", VERSION, len(hj)) + hj + offsets.tobytes())
    for d in docs:
        body.write(np.asarray(d).astype(dtype).tobytes())
    return body.getvalue()


def write_corpus(path: str | Path, header: dict, docs: list[np.ndarray], vocab_size: int, preset: int = 9) -> dict:
    """Write a packed, xz-compressed data file atomically; return its header."""
    raw = pack(header, docs, vocab_size)
    blob = lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=preset | lzma.PRESET_EXTREME)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)
    return unpack(raw).header


def unpack(raw: bytes) -> Corpus:
    if raw[:8] != MAGIC:
        raise ValueError("not an lmzip training data file")
    version, n = struct.unpack_from("<II", raw, 8)
    if version != VERSION:
        raise ValueError(f"training data version {version}; this lmzip reads {VERSION}")
    header = json.loads(raw[16 : 16 + n])
    pos = 16 + n
    nd = header["n_docs"]
    offsets = np.frombuffer(raw, dtype="<u8", count=nd + 1, offset=pos).astype(np.int64)
    pos += 8 * (nd + 1)
    ids = np.frombuffer(raw, dtype=np.dtype(header["id_dtype"]).newbyteorder("<"), count=header["n_tokens"], offset=pos)
    return Corpus(header, offsets, ids)


def read_corpus(path: str | Path) -> Corpus:
    with open(path, "rb") as f:
        blob = f.read()
    return unpack(lzma.decompress(blob) if blob[:6] == b"\xfd7zXZ\x00" else blob)


def is_holdout(path: str, permille: int) -> bool:
    return int(hashlib.sha256(path.encode()).hexdigest()[:8], 16) % 1000 < permille


def streams(corpus: Corpus, holdout_permille: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, holdout) token streams, int32: each document preceded by -1 (fed as BOS, never a target)."""
    parts: dict[bool, list[np.ndarray]] = {False: [], True: []}
    sep = np.full(1, -1, dtype=np.int32)
    held = [is_holdout(p, holdout_permille) for p in corpus.paths]
    if holdout_permille and not any(held) and corpus.n_docs > 1:  # a small corpus: hold out one document anyway
        held[min(range(corpus.n_docs), key=lambda i: hashlib.sha256(corpus.paths[i].encode()).hexdigest())] = True
    for i, h in enumerate(held):
        parts[h] += [sep, corpus.doc(i).astype(np.int32)]
    cat = {k: np.concatenate(v) if v else np.zeros(0, dtype=np.int32) for k, v in parts.items()}
    return cat[False], cat[True]


# -- building --------------------------------------------------------------------------------------

def _sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def resolve_tokenizer(spec: str):
    """'teacher' (the installed teacher's tokenizer), 'bytes', a tokenizer directory or a .gguf file."""
    from ..model.tokenizer import load_tokenizer

    if spec == "teacher":
        from ..model import zoo

        _, d = zoo.resolve("smollm2-135m")
        return load_tokenizer(d / zoo.TOKENIZER_DIR)
    p = Path(spec)
    if (p / "tokenizer").is_dir():  # a model directory
        p = p / "tokenizer"
    return load_tokenizer(str(p) if p.exists() else spec)


def collect(kinds: list[str], quotas_mb: dict[str, float], per_package_mb: dict[str, float], max_bytes: int,
            excluder, dirs: list[tuple[str, str]], say=print) -> tuple[list[tuple], list[tuple]]:
    """Pick files: ([(candidate, bytes)], [(path, kind, package, reason)] refused)."""
    from . import sources as S

    kept: list[tuple] = []
    refused: list[tuple] = []
    seen: set[str] = set()
    total = 0
    lists = [(k, S.KINDS[k]) for k in kinds] + [("dir", (lambda d=d, lic=lic: S.directory(d, lic))) for d, lic in dirs]
    for kind, lister in lists:
        t0 = time.time()
        cands = sorted(lister(), key=lambda c: S.order_key(c.path))
        quota = int(quotas_mb.get(kind, 1e9) * 1e6)
        cap = int(per_package_mb.get(kind, 1e9) * 1e6)
        got, by_pkg, n = 0, {}, 0
        for c in cands:
            if got >= quota or total >= max_bytes:
                break
            if not c.licence:
                refused.append((c.path, kind, c.package, "no licence found"))
                continue
            if by_pkg.get(c.package, 0) >= cap:
                continue
            text = S.read_text(c.path)
            if text is None:
                continue
            digest = _sha256(text)
            if digest in seen:
                continue
            why = excluder.why(c.path, text) if excluder else None
            if why:
                refused.append((c.path, kind, c.package, why))
                continue
            seen.add(digest)
            kept.append((c, text))
            got += len(text)
            total += len(text)
            by_pkg[c.package] = by_pkg.get(c.package, 0) + len(text)
            n += 1
        say(f"  {kind}: {n} files, {got / 1e6:.1f} MB of {len(cands)} candidates ({time.time() - t0:.0f} s)")
    return kept, refused


def build(args) -> dict:
    from . import sources as S

    t0 = time.time()
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    tok = resolve_tokenizer(args.tokenizer)
    repo = Path(__file__).resolve().parents[2]
    corpora = Path(args.corpora) if args.corpora else Path(os.environ.get("LMZIP_CORPORA", repo.parent / "shared" / "corpora"))
    refs = S.reference_files(corpora, repo)
    if not refs and not args.allow_no_reference:
        raise SystemExit(f"no benchmark files found to exclude (looked in {corpora} and benchmarks/data); "
                         "give --corpora DIR, or --allow-no-reference")
    excluder = S.Excluder(refs, S.licence_texts())
    say(f"excluding {len(refs)} benchmark files ({excluder.shingles.size} sampled 8-grams) and "
        f"{len(excluder.soft)} licence texts; tokenizer {tok.tokenizer_id}")
    kinds = args.kind or (list(S.KINDS) if not args.dir else [])
    quotas = dict(S.QUOTAS_MB)
    for q in args.quota or []:
        k, _, v = q.partition("=")
        quotas[k] = float(v)
    dirs = [(d, args.licence or "") for d in args.dir or []]
    kept, refused = collect(kinds, quotas, S.PER_PACKAGE_MB, int(args.max_mb * 1e6), excluder, dirs, say)
    if not kept:
        raise SystemExit("no training text found")
    say(f"tokenizing {sum(len(t) for _, t in kept) / 1e6:.1f} MB ...")
    docs, rows = [], []
    t1 = time.time()
    for c, text in kept:
        ids = np.asarray(tok.encode(text), dtype=np.int64)
        docs.append(ids)
        rows.append((c.path, c.kind, c.package, c.licence, len(text), _sha256(text), len(ids)))
    say(f"  {sum(len(d) for d in docs)} tokens ({time.time() - t1:.0f} s); compressing ...")
    header = {"tokenizer_id": tok.tokenizer_id, "doc_paths": [r[0] for r in rows], "builder": "lmzip.train.data"}
    out = Path(args.out)
    write_corpus(out, header, docs, tok.vocab_size, preset=args.preset)
    blob_sha = hashlib.sha256(out.read_bytes()).hexdigest()
    manifest = _manifest(args, rows, refused, refs, out, blob_sha, tok, time.time() - t0)
    if args.manifest:
        _write_manifest(Path(args.manifest), manifest, rows, refused)
    say(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {manifest['tokens']} tokens, "
        f"{manifest['text_bytes'] / 1e6:.1f} MB of text) in {time.time() - t0:.0f} s")
    return manifest


def _manifest(args, rows, refused, refs, out: Path, blob_sha: str, tok, seconds: float) -> dict:
    from . import sources as S

    excluder_soft = [str(p) for p in S.licence_texts()]
    kinds: dict[str, dict] = {}
    packages: dict[tuple, dict] = {}
    for path, kind, pkg, lic, nbytes, sha, ntok in rows:
        k = kinds.setdefault(kind, {"files": 0, "bytes": 0, "tokens": 0, "licences": {}})
        k["files"] += 1
        k["bytes"] += nbytes
        k["tokens"] += ntok
        k["licences"][lic] = k["licences"].get(lic, 0) + nbytes
        p = packages.setdefault((kind, pkg), {"kind": kind, "package": pkg, "licence": lic, "files": 0, "bytes": 0})
        p["files"] += 1
        p["bytes"] += nbytes
    reasons: dict[str, int] = {}
    for r in refused:
        key = (r[3].split(" (")[0] if r[3].startswith("names") else r[3].split(" with")[0] if r[3].startswith("shares")
               else r[3].split(":")[0])
        reasons[key] = reasons.get(key, 0) + 1
    return {
        "format": 1,
        "data_file": str(out),
        "data_sha256": blob_sha,
        "data_bytes": out.stat().st_size,
        "text_bytes": sum(r[4] for r in rows),
        "tokens": sum(r[6] for r in rows),
        "documents": len(rows),
        "tokenizer_id": tok.tokenizer_id,
        "command": "python -m lmzip.train.data " + " ".join(args.argv),
        "built_on": {"python": sys.version.split()[0], "platform": sys.platform, "seconds": round(seconds)},
        "exclusions": {
            "rules": ["files named like a Canterbury/Calgary file or benchmarks/data file, and every xargs page",
                      "files naming a corpus work or its author: " + ", ".join(S._TITLES),
                      f"files sharing >= 2 (and >= 1%) of their content-sampled word {S.SHINGLE}-grams (1 in {S.SAMPLE}) "
                      "with a reference file", "files that are mostly licence text (>= 20% of those 8-grams in "
                      "/usr/share/common-licenses, which benchmarks/short_records.py measures; never a source)", "files whose licence cannot be determined", "private keys, binary, "
                      "minified or non-UTF-8 files, exact duplicates", "the Canterbury/Calgary corpora and benchmarks/data "
                      "themselves (never a source)"],
            "reference_files": [str(p) for p in refs],
            "licence_texts": excluder_soft,
            "refused_counts": reasons,
            "refused_for_content": [{"path": r[0], "reason": r[3]} for r in refused if r[3] != "no licence found"],
        },
        "kinds": kinds,
        "packages": sorted(packages.values(), key=lambda p: (p["kind"], p["package"])),
        "files": "training-data-files.tsv",
    }


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_manifest(path: Path, manifest: dict, rows, refused) -> None:
    _atomic_write(path, json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    lines = ["path\tkind\tpackage\tlicence\tbytes\tsha256\ttokens"]
    lines += ["\t".join(str(x).replace("\t", " ") for x in r) for r in sorted(rows)]
    lines += [f"# refused\t{r[1]}\t{r[2]}\t{r[3]}\t{r[0]}" for r in sorted(refused, key=lambda r: r[0])
              if r[3] != "no licence found"]
    _atomic_write(path.with_name(manifest["files"]), "\n".join(lines) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from . import sources as S

    ap = argparse.ArgumentParser(prog="python -m lmzip.train.data", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"packed data file (default {DEFAULT_OUT})")
    ap.add_argument("--manifest", default=DEFAULT_MANIFEST, help="manifest JSON ('' for none); the per-file TSV goes beside it")
    ap.add_argument("--tokenizer", default="teacher", help="'teacher', 'bytes', a tokenizer or model directory, or a .gguf")
    ap.add_argument("--kind", action="append", choices=sorted(S.KINDS), help="source kinds (default: all)")
    ap.add_argument("--quota", action="append", metavar="KIND=MB", help="MB of text from one kind")
    ap.add_argument("--max-mb", type=float, default=110.0, help="MB of text in all (default 110)")
    ap.add_argument("--dir", action="append", help="also every text file under this directory (kind 'dir')")
    ap.add_argument("--licence", help="the licence of the --dir files")
    ap.add_argument("--corpora", help="the Canterbury/Calgary corpora to exclude (default $LMZIP_CORPORA or ../shared/corpora)")
    ap.add_argument("--allow-no-reference", action="store_true", help="build even where no benchmark files are found to exclude")
    ap.add_argument("--preset", type=int, default=9, help="xz preset (0-9, extreme)")
    ap.add_argument("--list", action="store_true", help="list the kinds and their quotas, then stop")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.dir and not args.licence:
        ap.error("--dir needs --licence")
    return args


def main(argv: list[str] | None = None) -> int:
    from . import sources as S

    args = parse_args(argv)
    if args.list:
        for k in S.KINDS:
            print(f"{k:16} quota {S.QUOTAS_MB.get(k, 0):5.1f} MB, per package {S.PER_PACKAGE_MB.get(k, '-')} MB")
        return 0
    build(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
