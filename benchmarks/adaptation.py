"""What learning the file is worth: ideal code length of each file under the model alone and
under each adaptive component, from one pass of the model.

    python benchmarks/adaptation.py FILE... [--model ID] [--json OUT.json]

Each file is one segment (windows 2048, overlap 512, CRLF -> LF where it applies). The
model's logits are computed once per window slice and fed to one predictor per variant, so
the variants are compared on exactly the same predictions. Figures are ideal code lengths
(sum of -log2 p over the tokens) in bits per original byte; the coder adds ~0.1%
and the container a header (see docs/BENCHMARKS.md for whole-file CLI figures).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from lmzip import transforms, zoo
from lmzip.adapt import AdaptParams, AdaptivePredictor
from lmzip.codec import CodecParams, coded_rows

OFF = dict(bias_lr=0, bigram_lr=0, temp_lr=0, ngram_order=0, match=False)
VARIANTS = {
    "bias": AdaptParams(**dict(OFF, bias_lr=AdaptParams.bias_lr, bigram_lr=AdaptParams.bigram_lr)),
    "n-grams": AdaptParams(**dict(OFF, ngram_order=AdaptParams.ngram_order)),
    "match": AdaptParams(**dict(OFF, match=True)),
    "all (default)": AdaptParams(),
}


def measure(lm, data: bytes) -> dict:
    window = min(CodecParams.window, lm.model.cfg.max_context)
    p = CodecParams(window=window, overlap=min(CodecParams.overlap, window // 4), adapt=None)
    coded = transforms.forward(data, transforms.choose(data))
    ids = lm.tokenizer.encode(coded)
    exp = lm.model.out_exp.cpu().numpy()
    preds = {k: AdaptivePredictor(v, exp, lm.model.cfg.vocab_size) for k, v in VARIANTS.items()}
    bits = dict.fromkeys(["model alone", *VARIANTS], 0.0)
    spent = dict.fromkeys(VARIANTS, 0.0)
    t0 = time.perf_counter()
    for a, b, z, _ in coded_rows(lm, ids, p, logits=True):
        f0 = lm.model.logit_frequencies(z).cpu().numpy()
        z = z.cpu().numpy()
        y = np.asarray(ids[a:b])
        bits["model alone"] += float((24 - np.log2(f0[np.arange(b - a), y])).sum())
        for name, pred in preds.items():
            t = time.perf_counter()
            for i in range(b - a):
                f = pred.predict(z[i])
                pred.update(int(y[i]))
                bits[name] += 24 - float(np.log2(f[y[i]]))
            spent[name] += time.perf_counter() - t
    total = time.perf_counter() - t0
    n = max(1, len(data))
    return {"bytes": len(data), "tokens": len(ids), "bits_per_byte": {k: v / n for k, v in bits.items()},
            "predictor_ms_per_token": {k: 1e3 * v / max(1, len(ids)) for k, v in spent.items()},
            "seconds": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--model", default=None)
    ap.add_argument("--json")
    args = ap.parse_args()
    lm = zoo.load(args.model)
    rows = {}
    cols = ["model alone", *VARIANTS]
    print(f"model {lm.id}; bits per byte (ideal code length), change against the model alone\n")
    print("| file | bytes | " + " | ".join(cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    for path in args.files:
        r = rows[path] = measure(lm, Path(path).read_bytes())
        base = r["bits_per_byte"]["model alone"]
        cells = [f"{base:.4f}"] + [f"{r['bits_per_byte'][c]:.4f} ({100 * (r['bits_per_byte'][c] / base - 1):+.1f}%)" for c in VARIANTS]
        print(f"| {Path(path).name} | {r['bytes']} | " + " | ".join(cells) + " |", flush=True)
        print(f"  ({r['tokens']} tokens, {r['seconds']:.0f} s; predictor ms/token: "
              + ", ".join(f"{k} {v:.2f}" for k, v in r["predictor_ms_per_token"].items()) + ")", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
