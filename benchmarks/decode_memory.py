"""Peak memory of decoding a .lmz file, native runtime against the torch reference, side by side.

    python benchmarks/decode_memory.py FILE.lmz [--limit-s 240] [--runtimes native,reference]

Each runtime decodes FILE.lmz in a fresh `lmzip decompress -c` process (output discarded, or
compared with --original); the process's resident set is sampled from /proc every 0.2 s. Both
runtimes allocate a segment's whole KV cache when its decoding starts (the reference as float64
tensors, torch zero-fills them; the native runtime as int32 and writes every slot it uses), so a
run stopped by --limit-s after the first steps has already reached the cache's share of the peak;
the report says whether a run finished. Also printed: the KV cache each runtime holds for the
model's whole context, from its shape (what the two cache layouts cost, computed).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a live process in KB, (0, 0) once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    vals = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            k, v = line.split(":", 1)
            vals[k] = int(v.split()[0])
    return vals.get("VmRSS", 0), vals.get("VmHWM", 0)


def run(path: Path, runtime: str, limit_s: float, original: Path | None) -> dict:
    env = dict(os.environ, LMZIP_RUNTIME=runtime)
    out = subprocess.PIPE if original else subprocess.DEVNULL
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "lmzip", "decompress", "-c", str(path)], stdout=out,
                         stderr=subprocess.PIPE, env=env)
    peak = 0
    data = b""
    if original:  # read the output as it comes, or the pipe would stall the decoder
        import threading

        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: chunks.append(p.stdout.read()), daemon=True)
        reader.start()
    finished = False
    while True:
        _, hwm = rss_kb(p.pid)
        peak = max(peak, hwm)
        if p.poll() is not None:
            finished = True
            break
        if time.perf_counter() - t0 > limit_s:
            p.send_signal(signal.SIGTERM)
            p.wait()
            break
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    if original:
        reader.join()
        data = b"".join(chunks)
    err = p.stderr.read().decode(errors="replace").strip()
    row = {"runtime": runtime, "finished": finished, "s": round(wall, 1), "peak_rss_mb": round(peak / 1024, 1)}
    if finished and p.returncode != 0:
        row["error"] = err.splitlines()[-1] if err else f"exit {p.returncode}"
    if finished and original:
        row["identical"] = data == original.read_bytes()
    return row


def cache_figures(model: str) -> str:
    from lmzip.model import zoo

    lm = zoo.load(model)
    cfg = lm.model.cfg
    per_slot = 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim
    slots = cfg.max_context
    return (f"KV cache for {slots} positions: reference (float64) {per_slot * 8 * slots / 2**20:.0f} MB, "
            f"native (int32) {per_slot * 4 * slots / 2**20:.0f} MB ({per_slot * 8 // 1024} / {per_slot * 4 // 1024} KB a position)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--runtimes", default="native,reference")
    ap.add_argument("--limit-s", type=float, default=240.0, help="stop a run after this long (peak so far)")
    ap.add_argument("--original", type=Path, help="compare a finished run's output with this file")
    ap.add_argument("--model", default="smollm2-135m", help="the file's model, for the cache figures")
    a = ap.parse_args(argv)
    print(cache_figures(a.model), flush=True)
    for rt in a.runtimes.split(","):
        row = run(a.file, rt, a.limit_s, a.original)
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
