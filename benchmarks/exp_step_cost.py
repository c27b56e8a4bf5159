"""What a coarser output exp table would cost in bits/byte (a lever for a future numerics version).

    python benchmarks/exp_step_cost.py [FILE:TOKENS ...]

The adaptive predictor turns logits into frequencies through exp[min(max - zb, last)], a table of
22,005 int32 entries at steps of 2**-10 nat (88 KB: more than a Zen 3 core's 32 KB L1, and its
gather is the largest single cost of the native predictor). A table at steps of 2**-9 ... 2**-7
nat would hold 11,003 ... 2,751 entries (44 ... 11 KB). Its values are t[s * (d // s)] of today's
table, so this script runs the native predictor with such step-wise tables on the teacher's
logits and prints the ideal code length (sum of -log2 p) per byte for each step, against 2**-10.
Then tables cut at D nats (every entry from D on is 0, the floor's frequency 1 takes over), with
the share of the vocabulary that still gets a non-zero weight (d < D, from the model's logits):
what a predictor that looks up only those entries would gather.
Defaults: the first 4000 tokens of alice29.txt and 3000 of progc and cp.html ($LMZIP_CORPORA or
../shared/corpora).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lmzip.coding.codec import to_numpy  # noqa: E402
from lmzip.model import zoo  # noqa: E402
from lmzip.native.coding import NativePredictor  # noqa: E402
from lmzip.predict.adapt import AdaptParams, token_classes  # noqa: E402

CORPORA = Path(os.environ.get("LMZIP_CORPORA", ROOT.parent / "shared" / "corpora"))
DEFAULTS = [f"{CORPORA}/canterbury/alice29.txt:4000", f"{CORPORA}/calgary/progc:3000", f"{CORPORA}/canterbury/cp.html:3000"]


def stepped_table(base: np.ndarray, step: int) -> np.ndarray:
    t = base[(np.arange(len(base)) // step) * step].copy()
    t[-1] = 0  # the saturated end stays 0
    return t


def code_length(p: NativePredictor, z: np.ndarray, ids: np.ndarray) -> float:
    """Ideal bits of ids under the predictor, learning as the coder would."""
    bits = 0.0
    for i, y in enumerate(ids.tolist()):
        bits -= float(np.log2(p.predict(z[i])[y] / 2**24))
        p.update(y)
    return bits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="*", default=DEFAULTS, help="FILE:TOKENS (the first TOKENS tokens of FILE)")
    ap.add_argument("--model", default="smollm2-135m")
    a = ap.parse_args(argv)
    lm = zoo.load(a.model)
    m, tok = lm.model, lm.tokenizer
    V = m.cfg.vocab_size
    base = np.asarray(m.out_exp, dtype=np.int64)
    classes = token_classes(tok.token_bytes, V)
    for spec in a.inputs:
        path, _, n = spec.rpartition(":")
        ids = np.asarray(tok.encode(Path(path).read_bytes()), dtype=np.int64)[: int(n)]
        nbytes = len(tok.decode(ids))
        cache = m.new_cache(1, len(ids))
        x = np.concatenate([[tok.bos_id], ids[:-1]])
        z = np.concatenate([to_numpy(m.head_logits(m.hidden(cache, x[None, c:c + 512])[0])) for c in range(0, len(x), 512)])
        res = {}
        for step in (1, 2, 4, 8):
            res[step] = code_length(NativePredictor(AdaptParams(version=2), stepped_table(base, step), V, classes), z, ids) / nbytes
        cells = [f"2**-{10 - step.bit_length() + 1} nat ({(len(base) - 1) // step + 1} entries): {b:.4f} ({100 * (b / res[1] - 1):+.3f}%)"
                 for step, b in res.items()]
        print(f"{Path(path).name} ({len(ids)} tokens, {nbytes} bytes)  " + "  ".join(cells), flush=True)
        d = z.max(1, keepdims=True) - z
        cut = []
        for nats in (16, 14, 12):
            t = base.copy()
            t[nats * 1024:] = 0
            bits = code_length(NativePredictor(AdaptParams(version=2), t, V, classes), z, ids)
            cut.append(f"cut at {nats} nats: {bits / nbytes:.4f} ({100 * (bits / nbytes / res[1] - 1):+.3f}%, "
                       f"{float((d < nats * 1024).mean()):.0%} of entries below)")
        print(f"{Path(path).name}  " + "  ".join(cut), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
