"""Peak memory of the CLI against input size: streaming keeps it bounded by a segment.

    python benchmarks/stream_memory.py [--sizes 20,200] [--model smollm2-135m]

Builds inputs of each size (MiB) from binary material the sniffer sends to the fallbacks
(random bytes, an executable and zero runs, interleaved) plus a little text, compresses each
through `lmzip compress`, from a file and from standard input, decompresses it, checks the round
trip, and prints wall time and peak RSS (GNU time) per run. Peak RSS should not grow with the
input size beyond the buffers' fixed bounds (the 16 MB read-ahead and binary runs, 64 MB of decoded
bytes held back per batch); before streaming, the CLI held the whole input and the whole output.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


def build(path: Path, size: int) -> None:
    rng = random.Random(size)
    exe = Path(shutil.which("ls") or sys.executable).read_bytes()
    text = (ROOT / "README.md").read_bytes()
    with open(path, "wb") as f:
        written = 0
        while written < size:
            kind = rng.random()
            if kind < 0.4:
                block = rng.randbytes(MIB)
            elif kind < 0.7:
                block = (exe * (MIB // len(exe) + 1))[:MIB]
            elif kind < 0.99:
                block = bytes(MIB)
            else:
                block = text[: 16 << 10]  # a little text the model codes
            block = block[: size - written]
            f.write(block)
            written += len(block)


def run(cmd: list[str], stdin=None, stdout=None) -> tuple[float, int]:
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], stdin=stdin, stdout=stdout or subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=False, check=False)
    seconds = time.perf_counter() - t0
    err = p.stderr.decode(errors="replace")
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {err[-500:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1))
    return seconds, rss // 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20,200", help="input sizes in MiB, comma-separated")
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    lmzip = [sys.executable, "-m", "lmzip", "-q"]
    model = ["--model", args.model] if args.model else []
    print(f"{'MiB':>5} {'how':<6} {'compress s':>10} {'RSS MiB':>8} {'decompress s':>12} {'RSS MiB':>8} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for mib in (int(x) for x in args.sizes.split(",")):
            src = Path(tmp) / f"in-{mib}"
            build(src, mib * MIB)
            digest = hashlib.sha256(src.read_bytes()).hexdigest() if mib <= 512 else None
            for how in ("file", "stdin"):
                lmz = Path(tmp) / f"out-{mib}-{how}.lmz"
                if how == "file":
                    sc, sr = run([*lmzip, "compress", *model, "-f", "-o", str(lmz), str(src)])
                else:
                    with open(src, "rb") as i, open(lmz, "wb") as o:
                        sc, sr = run([*lmzip, "compress", *model, "-f", "-c", "-"], stdin=i, stdout=o)
                back = Path(tmp) / "back"
                dc, dr = run([*lmzip, "decompress", "-f", "-o", str(back), str(lmz)])
                if digest and hashlib.sha256(back.read_bytes()).hexdigest() != digest:
                    raise SystemExit("round trip failed")
                ratio = lmz.stat().st_size / (mib * MIB)
                print(f"{mib:>5} {how:<6} {sc:>10.1f} {sr:>8} {dc:>12.1f} {dr:>8} {ratio:>7.3f}", flush=True)
                os.unlink(back)
                os.unlink(lmz)
            os.unlink(src)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
