"""Predictor numerics version 3 against version 2: coded size and speed, side by side in one run.

    python benchmarks/predictor_versions.py [FILE[:TOKENS] ...]

Version 3 (adapt.py) computes the biased teacher's exp (exp3) instead of gathering it from the
model's 88 KB table, drops the teacher's remainder and normalises the mixture with a bound on its
sum, so the native predictor reads the vocabulary in three passes instead of seven. This script
runs the teacher over each file (chunks of 512 tokens, a fresh context every 4096), hands every chunk's
logits to a native predictor and coder of each version, and prints the coded bytes, bits/byte,
their difference, and the predictor+coder time per token of each (the same logits, alternating
versions chunk by chunk, so machine noise hits both). Defaults: alice29.txt, and the first 6000
tokens of paper1, progc and cp.html ($LMZIP_CORPORA or ../shared/corpora).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lmzip.coding import codec  # noqa: E402
from lmzip.coding.codec import to_numpy  # noqa: E402
from lmzip.model import zoo  # noqa: E402
from lmzip.predict.adapt import AdaptParams  # noqa: E402

CORPORA = Path(os.environ.get("LMZIP_CORPORA", ROOT.parent / "shared" / "corpora"))
DEFAULTS = [f"{CORPORA}/canterbury/alice29.txt", f"{CORPORA}/calgary/paper1:6000", f"{CORPORA}/calgary/progc:6000",
            f"{CORPORA}/canterbury/cp.html:6000"]
CHUNK = 512


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="*", default=DEFAULTS, help="FILE or FILE:TOKENS (the first TOKENS tokens)")
    ap.add_argument("--model", default="smollm2-135m")
    a = ap.parse_args(argv)
    lm = zoo.load(a.model)
    m, tok = lm.model, lm.tokenizer
    versions = {2: AdaptParams(version=2), 3: AdaptParams()}
    total = {v: [0, 0.0] for v in versions}
    for spec in a.inputs:
        path, sep, n = spec.rpartition(":")
        if not sep or not n.isdigit():
            path, n = spec, ""
        ids = np.asarray(tok.encode(Path(path).read_bytes()), dtype=np.int64)
        if n:
            ids = ids[: int(n)]
        nbytes = len(tok.decode(ids))
        preds = {v: codec.new_predictor(lm, p) for v, p in versions.items()}
        encs = {v: codec.new_encoder(lm, 24, 64) for v in versions}
        secs = {v: 0.0 for v in versions}
        win = m.cfg.max_context
        x = np.concatenate([[tok.bos_id], ids[:-1]])
        for i, c in enumerate(range(0, len(x), CHUNK)):
            if c % win == 0:  # a fresh context every max_context tokens (the predictor learns on)
                cache = m.new_cache(1, min(win, len(x) - c))
            z = np.ascontiguousarray(to_numpy(m.head_logits(m.hidden(cache, x[None, c : c + CHUNK])[0])), dtype=np.int64)
            order = list(versions) if i % 2 == 0 else list(versions)[::-1]
            for v in order:
                t0 = time.perf_counter()
                preds[v].encode_logits(encs[v], z, ids[c : c + CHUNK])
                secs[v] += time.perf_counter() - t0
        size = {v: len(e.finish()) for v, e in encs.items()}
        cells = []
        for v in versions:
            total[v][0] += size[v]
            total[v][1] += secs[v]
            cells.append(f"v{v}: {size[v]} B {8 * size[v] / nbytes:.4f} bits/byte {1e6 * secs[v] / len(ids):.1f} us/token")
        print(f"{Path(path).name} ({len(ids)} tokens, {nbytes} bytes)  " + "  ".join(cells) +
              f"  size v3/v2 {size[3] / size[2] - 1:+.3%}  time v2/v3 {secs[2] / secs[3]:.2f}x", flush=True)
    print(f"all: size v3/v2 {total[3][0] / total[2][0] - 1:+.3%}  predictor+coder time v2/v3 {total[2][1] / total[3][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
