"""What smaller segments cost in ratio (issue 17: a GPU decodes one segment per slot, so throughput wants
many segments; each starts cold). Compresses one file at lmzip's default segments and at ``--streams N``
for each N given, and prints segments, segment size, bits/byte and the cost against the default.

    python benchmarks/segment_cost.py [--model ID] [--streams 12,48] FILE
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--model", default=None, help="registry id or model directory (default: the default model)")
    ap.add_argument("--streams", default="12,48", help="comma-separated numbers of segments to try")
    a = ap.parse_args(argv)
    import lmzip
    from lmzip.coding import container

    data = a.file.read_bytes()
    base = None
    print(f"{a.file.name}: {len(data)} bytes, model {a.model or 'default'}")
    print(f"{'setting':<14} {'segments':>8} {'bytes/seg':>10} {'bits/byte':>10} {'vs default':>10} {'compress s':>10}")
    for streams in [0] + [int(s) for s in a.streams.split(",") if s]:
        c = lmzip.Compressor(a.model, streams=streams)
        t = time.perf_counter()
        blob = c.compress(data)
        dt = time.perf_counter() - t
        segs = container.peek_header(blob).segments
        bpb = 8 * len(blob) / len(data)
        base = base or bpb
        name = "default" if not streams else f"--streams {streams}"
        print(f"{name:<14} {len(segs):>8} {len(data) // len(segs):>10} {bpb:>10.4f} {100 * (bpb / base - 1):>+9.2f}% {dt:>10.1f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
