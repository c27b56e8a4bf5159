"""Data the model cannot predict: lmzip against xz -9e and zstd -19, side by side in one run.

    python benchmarks/binary_inputs.py                 # Canterbury's binaries, an executable, random bytes
    python benchmarks/binary_inputs.py FILE...

For each input: sizes and seconds of lmzip (default model and settings, round trip checked),
`xz -9e` and `zstd -19` (the command-line tools), and lmzip's size against the better of the two
(the target: at most 1.001). Segments that do not look like text never reach the model
(lmzip/coding/sniff.py); runs of them are coded whole by the smallest of stored, zstd and xz.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lmzip  # noqa: E402
from lmzip.model import zoo  # noqa: E402

CORPORA = Path(os.environ.get("LMZIP_CORPORA", ROOT.parent / "shared" / "corpora"))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def tool(cmd: list[str], path: Path) -> tuple[int, float]:
    out, s = timed(lambda: subprocess.run([*cmd, str(path)], capture_output=True, check=True).stdout)
    return len(out), s


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(a) for a in argv]
        if not paths:
            paths = [CORPORA / "canterbury" / n for n in ("kennedy.xls", "ptt5", "sum")]
            paths.append(Path(shutil.which("ls") or sys.executable).resolve())  # an executable
            rnd = Path(tmp) / "random-1MiB"
            rnd.write_bytes(os.urandom(1 << 20))
            paths.append(rnd)
        lm = zoo.load(None)
        comp = lmzip.Compressor(lm)
        print(f"model {lm.id}; sizes in bytes, times in seconds (this machine, one run)")
        print(f"{'file':<16} {'size':>9} {'lmzip':>9} {'s':>6} {'dec s':>6} {'xz -9e':>9} {'s':>6} {'zstd -19':>9} {'s':>6} {'lmzip/best':>10}")
        worst = 0.0
        for path in paths:
            data = path.read_bytes()
            blob, sc = timed(lambda: comp.compress(data))
            back, sd = timed(lambda: lmzip.decompress(blob, lm))
            assert back == data, path
            xz, sx = tool(["xz", "-9e", "-c"], path)
            zs, sz = tool(["zstd", "-19", "-q", "-c"], path)
            rel = len(blob) / min(xz, zs)
            worst = max(worst, rel)
            print(f"{path.name[:16]:<16} {len(data):>9} {len(blob):>9} {sc:>6.2f} {sd:>6.2f} {xz:>9} {sx:>6.2f} {zs:>9} {sz:>6.2f} {rel:>10.4f}",
                  flush=True)
        print(f"worst lmzip/best: {worst:.4f} (target <= 1.001)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
