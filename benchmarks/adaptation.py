"""What learning the file is worth: ideal code length of each file under the model alone and
under each adaptive component, from one pass of the model.

    python benchmarks/adaptation.py FILE... [--model ID] [--json OUT.json] [--cache DIR]
        [--window N --overlap N] [--device cuda] [--jobs N]

Each file is one segment (the codec's windows unless given, CRLF -> LF where it applies). The
model's logits are computed once per window slice and fed to one predictor per variant, so
the variants are compared on exactly the same predictions. Figures are ideal code lengths
(sum of -log2 p over the tokens) in bits per original byte; the coder adds ~0.1%
and the container a header (see docs/BENCHMARKS.md for whole-file CLI figures).

The model pass is most of the time (~150-200 tokens/s on a 2-core CPU); ``--cache DIR``
keeps each file's head inputs (the exact residual rows, float64 integers, ~4.6 KB per
token), so the predictor can be re-measured without it. Entries are keyed by the coded
bytes, the model's sha256 and the window schedule. ``--jobs N`` makes the model pass once
(into the cache) and then runs the variants in N processes at once; the exact model makes
the figures the same on every device, so ``--device cuda`` only changes the time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lmzip.coding import transforms
from lmzip.model import zoo
from lmzip.predict.adapt import AdaptParams
from lmzip.coding.codec import CodecParams, coded_rows, new_predictor, to_numpy

OFF = dict(bias_lr=0, bigram_lr=0, temp_lr=0, ngram_order=0, match=False)
VARIANTS = {
    "bias": AdaptParams(**dict(OFF, bias_lr=AdaptParams.bias_lr, bigram_lr=AdaptParams.bigram_lr)),
    "n-grams": AdaptParams(**dict(OFF, ngram_order=AdaptParams.ngram_order)),
    "match": AdaptParams(**dict(OFF, match=True)),
    "all, one mixer": AdaptParams(version=1),
    "all (default)": AdaptParams(),
}


def hidden_slices(lm, ids, p: CodecParams, cache: Path | None, key: bytes):
    """(a, b, head inputs of ids[a:b]) in coding order, from the cache when it holds them."""
    if cache is None:
        for a, b, h, _ in coded_rows(lm, ids, p, kind="hidden"):
            yield a, b, h
        return
    name = hashlib.sha256(key + f"{lm.sha256}/{p.window}/{p.overlap}".encode()).hexdigest()[:24]
    path = cache / f"{name}.npy"
    if not path.exists():
        rows = np.zeros((len(ids), lm.model.cfg.dim), dtype=np.float64)
        for a, b, h, _ in coded_rows(lm, ids, p, kind="hidden"):
            rows[a:b] = to_numpy(h)
            yield a, b, h
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path.with_suffix(".tmp.npy"), rows)
        path.with_suffix(".tmp.npy").replace(path)
        return
    rows = np.load(path, mmap_mode="r")
    for a in range(0, len(ids), 256):
        b = min(len(ids), a + 256)
        h = np.array(rows[a:b])
        if getattr(lm.model, "runtime", "reference") == "reference":  # the torch model wants a tensor on its device
            import torch

            h = torch.from_numpy(h).to(lm.model.device)
        yield a, b, h


def schedule(lm, window: int | None = None, overlap: int | None = None) -> CodecParams:
    """The codec's window schedule (its defaults, capped by the model's context), one segment, no adaptation."""
    window, overlap = CodecParams.schedule(lm.model.cfg.max_context, window, overlap)
    p = CodecParams(window=window, overlap=overlap, adapt=None)
    p.validate(lm.model.cfg.max_context)
    return p


def measure(lm, data: bytes, cache: Path | None = None, variants=tuple(VARIANTS), p: CodecParams | None = None) -> dict:
    p = p or schedule(lm)
    coded = transforms.forward(data, transforms.choose(data))
    ids = lm.tokenizer.encode(coded)
    preds = {k: new_predictor(lm, v) for k, v in VARIANTS.items() if k in variants}
    bits = dict.fromkeys(["model alone", *preds], 0.0)
    spent = dict.fromkeys(preds, 0.0)
    t0 = time.perf_counter()
    for a, b, h in hidden_slices(lm, ids, p, cache, coded):
        z = lm.model.head_logits(h)
        f0 = to_numpy(lm.model.logit_frequencies(z))
        z = to_numpy(z)
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
    return {"bytes": len(data), "tokens": len(ids), "window": p.window, "overlap": p.overlap, "bits_per_byte": {k: v / n for k, v in bits.items()},
            "predictor_ms_per_token": {k: 1e3 * v / max(1, len(ids)) for k, v in spent.items()},
            "seconds": total}


def measure_parallel(args, path: str, variants: list[str], p: CodecParams, lm) -> dict:
    """``measure`` with the model pass made once, then each variant in its own process."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / "cache"
        r = measure(lm, Path(path).read_bytes(), cache, variants=(), p=p)
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // args.jobs)))
        common = ["--cache", str(cache), "--window", str(p.window), "--overlap", str(p.overlap), "--device", args.device]
        common += ["--model", args.model] if args.model else []
        pending, running = list(variants), []
        while pending or running:
            while pending and len(running) < args.jobs:
                v = pending.pop(0)
                out = Path(tmp) / f"variant{variants.index(v)}.json"
                cmd = [sys.executable, __file__, path, *common, "--variant", v, "--json", str(out)]
                running.append((v, out, subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)))
            v, out, proc = running.pop(0)
            if proc.wait() != 0:
                raise SystemExit(f"variant {v!r} failed on {path} (exit {proc.returncode})")
            child = json.loads(out.read_text())[path]
            r["bits_per_byte"][v] = child["bits_per_byte"][v]
            r["predictor_ms_per_token"][v] = child["predictor_ms_per_token"][v]
    r["seconds"] = time.perf_counter() - t0
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--model", default=None)
    ap.add_argument("--json")
    ap.add_argument("--cache", type=Path, help="directory keeping each file's model pass for re-runs")
    ap.add_argument("--variant", action="append", choices=list(VARIANTS), help="only these variants (repeatable)")
    ap.add_argument("--model-only", action="store_true", help="no variants: the model alone")
    ap.add_argument("--window", type=int, help="tokens the model sees at most (default: the codec's)")
    ap.add_argument("--overlap", type=int, help="tokens re-read at each new window (default: the codec's)")
    ap.add_argument("--device", default="cpu", help="where the model runs (the figures do not depend on it)")
    ap.add_argument("--jobs", type=int, default=1, help="variants measured in this many processes at once")
    args = ap.parse_args()
    variants = [] if args.model_only else args.variant or list(VARIANTS)
    lm = zoo.load(args.model, device=args.device)
    p = schedule(lm, args.window, args.overlap)
    rows = {}
    cols = ["model alone", *variants]
    print(f"model {lm.id}, windows {p.window} overlap {p.overlap}; bits per byte (ideal code length), "
          "change against the model alone\n")
    print("| file | bytes | " + " | ".join(cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    for path in args.files:
        if args.jobs > 1 and len(variants) > 1:
            r = rows[path] = measure_parallel(args, path, variants, p, lm)
        else:
            r = rows[path] = measure(lm, Path(path).read_bytes(), args.cache, variants, p)
        base = r["bits_per_byte"]["model alone"]
        cells = [f"{base:.4f}"] + [f"{r['bits_per_byte'][c]:.4f} ({100 * (r['bits_per_byte'][c] / base - 1):+.1f}%)" for c in variants]
        print(f"| {Path(path).name} | {r['bytes']} | " + " | ".join(cells) + " |", flush=True)
        print(f"  ({r['tokens']} tokens, {r['seconds']:.0f} s; predictor ms/token: "
              + ", ".join(f"{k} {v:.2f}" for k, v in r["predictor_ms_per_token"].items()) + ")", file=sys.stderr)
        if args.json:  # after every file: a long run that is stopped keeps what it measured
            Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
