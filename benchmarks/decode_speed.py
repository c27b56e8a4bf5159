"""Decoding speed with and without guessed tokens (lmzip/predict/draft.py), on the same .lmz.

    python benchmarks/decode_speed.py FILE... [--bytes N] [--model ID] [--device cpu] [--no-adapt]

Each file's first N bytes are compressed once (one segment); the blob is then decoded
twice, one token per model step and with guesses, and both outputs are checked against
the input. Prints a Markdown table: tokens, model steps, tokens per step, seconds and
bytes/s of each decoding, and the speed-up.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from lmzip.coding import codec, container
from lmzip.model import zoo
from lmzip.api import Compressor


class _Steps:
    """Counts the model's decoding steps (calls of ``hidden`` on the batch's own cache)."""

    def __init__(self, model):
        self._model, self.count = model, 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def hidden(self, cache, tokens):
        self.count += cache.capacity > tokens.shape[1] or cache.batch > 1
        return self._model.hidden(cache, tokens)


def timed_decode(lm, blob: bytes, guesses: int) -> tuple[bytes, float, int]:
    saved, codec.MAX_GUESSES = codec.MAX_GUESSES, guesses
    steps = _Steps(lm.model)
    try:
        t = time.perf_counter()
        out = codec.decompress(blob, dataclasses.replace(lm, model=steps))
        return out, time.perf_counter() - t, steps.count
    finally:
        codec.MAX_GUESSES = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--bytes", type=int, default=4000, help="decode the first N bytes of each file")
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-adapt", action="store_true", help="the model alone (no adaptive predictor)")
    args = ap.parse_args()
    lm = zoo.load(args.model, device=args.device)
    comp = Compressor(lm, device=args.device, segment_size=1 << 30, adapt=not args.no_adapt)
    print(f"model {lm.id}, {args.device}, {'model alone' if args.no_adapt else 'adaptive'}; "
          f"first {args.bytes} bytes of each file, one segment\n")
    print("| file | bytes | tokens | one token per step | with guesses: steps (tokens/step) | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for path in args.files:
        data = Path(path).read_bytes()[: args.bytes]
        blob = comp.compress(data)
        tokens = sum(s.token_count for s in container.read_container(blob)[0].segments)
        out1, t1, _ = timed_decode(lm, blob, 0)
        out2, t2, steps = timed_decode(lm, blob, codec.MAX_GUESSES)
        if out1 != data or out2 != data:
            raise SystemExit(f"{path}: round trip failed")
        print(f"| {Path(path).name} | {len(data)} | {tokens} | {t1:.1f} s ({len(data) / t1:.0f} B/s) | "
              f"{t2:.1f} s ({len(data) / t2:.0f} B/s), {steps} steps ({tokens / max(1, steps):.2f}) | "
              f"{t1 / t2:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
