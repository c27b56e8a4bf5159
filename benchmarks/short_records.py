"""Short records compressed one by one: where a language model beats every dictionary coder.

    python benchmarks/short_records.py [--per-kind 30]

Records of 50-500 bytes, each compressed alone (as a message queue, a log shipper or a key-value
store would): log lines (benchmarks/data/dpkg.log, two lines a record), JSON events (one package
of benchmarks/data/packages.json per record, compact) and sentences (the licence texts of
/usr/share/common-licenses on this machine). Against gzip -9, xz -9e, zstd -19, and zstd -19 with a dictionary trained
(`zstd --train`, python-zstandard's train_dictionary, 4 KB) on the other records of the same kind,
which a real deployment would have to ship beside the data. Every lmzip record is decoded and
checked. Prints mean bytes per record (headers included) and the total as bits per byte.
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import sys
import time
from pathlib import Path

import zstandard

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lmzip  # noqa: E402
from lmzip.model import zoo  # noqa: E402

DATA = ROOT / "benchmarks" / "data"
LICENSES = Path("/usr/share/common-licenses")


def kinds() -> dict[str, list[bytes]]:
    lines = (DATA / "dpkg.log").read_bytes().splitlines(keepends=True)
    logs = [b"".join(lines[i : i + 2]) for i in range(0, len(lines) - 1, 2)]
    events = [json.dumps(p, separators=(",", ":")).encode() + b"\n" for p in json.loads((DATA / "packages.json").read_text())]
    text = " ".join(" ".join(p.read_text(errors="replace").split()) for p in sorted(LICENSES.iterdir()) if p.is_file())
    sentences = [(s.strip() + ".").encode() for s in text.split(". ")]
    out = {}
    for name, recs in (("log lines", logs), ("JSON events", events), ("sentences", sentences)):
        out[name] = [r for r in recs if 50 <= len(r) <= 500]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-kind", type=int, default=30, help="records measured per kind (the rest train the dictionary)")
    args = ap.parse_args()
    lm = zoo.load(None)
    comp = lmzip.Compressor(lm)
    codecs = {
        "gzip -9": lambda r: gzip.compress(r, 9, mtime=0),
        "xz -9e": lambda r: lzma.compress(r, preset=9 | lzma.PRESET_EXTREME),
        "zstd -19": lambda r: zstandard.ZstdCompressor(level=19).compress(r),
    }
    print(f"model {lm.id}; mean bytes per record (the whole file or frame), bits/byte of all records")
    header = f"{'kind':<12} {'n':>3} {'mean size':>9} " + " ".join(f"{c:>16}" for c in ["lmzip", *codecs, "zstd -19 + dict"])
    print(header)
    for name, recs in kinds().items():
        step = max(1, len(recs) // args.per_kind)
        test = recs[::step][: args.per_kind]
        train = [r for r in recs if r not in test]
        sizes: dict[str, int] = {k: 0 for k in ["lmzip", *codecs, "zstd -19 + dict"]}
        t_c = t_d = 0.0
        for r in test:
            t0 = time.perf_counter()
            blob = comp.compress(r)
            t1 = time.perf_counter()
            assert lmzip.decompress(blob, lm) == r
            t_c, t_d = t_c + t1 - t0, t_d + time.perf_counter() - t1
            sizes["lmzip"] += len(blob)
            for c, fn in codecs.items():
                sizes[c] += len(fn(r))
        try:
            d = zstandard.train_dictionary(4096, train)
            zc = zstandard.ZstdCompressor(level=19, dict_data=d)
            sizes["zstd -19 + dict"] = sum(len(zc.compress(r)) for r in test)
        except zstandard.ZstdError as exc:  # too few samples to train on
            print(f"  ({name}: no dictionary: {exc})")
            sizes["zstd -19 + dict"] = 0
        total = sum(map(len, test))
        cells = " ".join(f"{v / len(test):>7.1f} ({8 * v / total:>4.2f})" if v else f"{'n/a':>16}" for v in sizes.values())
        print(f"{name:<12} {len(test):>3} {total / len(test):>9.1f} {cells}", flush=True)
        print(f"{'':<12} lmzip per record: compress {1000 * t_c / len(test):.0f} ms, decompress {1000 * t_d / len(test):.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
