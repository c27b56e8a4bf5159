"""Peak memory of streaming text through the model, against the input's size.

    python benchmarks/text_memory.py [--sizes 1,4] [--model tiny|ID]

``stream_memory.py`` measures the fallbacks' path on hundreds of MB; this one the model's: text
inputs of each size (MiB; paragraphs of this repository's documentation, shuffled so that no two
segments are alike) compressed with the model forced on every segment (``fallback=False``: a
random-weight tiny model would otherwise lose to zstd and leave the model's decoding path
untested) through ``LmzCompressor`` in 1 MB chunks, then decoded through ``lmzip.open`` in 1 MB
reads. Each run is a process of its own; its peak RSS (``ru_maxrss``) should not grow with the
input: the model, one segment's tokens, windows and predictor, and the spool's 8 MB.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


def make_text(path: Path, size: int, seed: int) -> None:
    paragraphs = [p for src in sorted(ROOT.glob("docs/*.md")) for p in src.read_text().split("\n\n") if len(p) > 40]
    rng = random.Random(seed)
    with open(path, "wb") as f:
        done = 0
        while done < size:
            chunk = ("\n\n".join(rng.sample(paragraphs, 20)) + "\n\n").encode()[: size - done]
            f.write(chunk)
            done += len(chunk)


def child(mode: str, model: str, src: str, dst: str) -> None:
    import lmzip

    t0 = time.monotonic()
    if mode == "compress":
        c = lmzip.LmzCompressor(lmzip.Compressor(model, fallback=False))
        with open(src, "rb") as f, open(dst, "wb") as out:
            while chunk := f.read(MIB):
                out.write(c.compress(chunk))
            out.write(c.flush())
    else:
        with lmzip.open(src, model=model) as f, open(dst, "wb") as out:
            while chunk := f.read(MIB):
                out.write(chunk)
    print(json.dumps({"seconds": time.monotonic() - t0,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run(mode: str, model: str, src: Path, dst: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, model, str(src), str(dst)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,4", help="input sizes in MiB, comma-separated")
    ap.add_argument("--model", default="tiny", help="tiny (random weights) or a registry id/directory")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lmzip-textmem-"))
    model = a.model
    if model == "tiny":
        from lmzip.testing import write_tiny_model

        model = str(write_tiny_model(work / "tiny"))
    print(f"model {a.model}; the model on every segment; peak RSS of each run in its own process")
    print(f"{'size':>8} {'compress':>10} {'peak RSS':>9} {'decompress':>11} {'peak RSS':>9}  round trip")
    for mib in (float(s) for s in a.sizes.split(",")):
        src, lmz, back = work / "in.txt", work / "in.txt.lmz", work / "back.txt"
        make_text(src, int(mib * MIB), seed=int(mib * 10))
        c = run("compress", model, src, lmz)
        d = run("decompress", model, lmz, back)
        same = src.read_bytes() == back.read_bytes()
        print(f"{mib:6.1f} MiB {c['seconds']:9.1f}s {c['peak_rss_mb']:7.0f} MB {d['seconds']:10.1f}s "
              f"{d['peak_rss_mb']:7.0f} MB  {'ok' if same else 'FAILED'}  ({lmz.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
