"""What candidate student shapes cost on this CPU's native runtime (random weights, real vocabularies).

    python benchmarks/student_shapes.py                     # the default ladder of shapes
    python benchmarks/student_shapes.py --shape 4x256x768:8192@4/2 --steps 10 --json out.json

For each shape (layers x dim x ffn : vocab @ heads / kv heads; heads default to dim / 64) it
writes a random exact model (``convert.random_llama``, int8 as exported) and measures with
``benchmarks/native_speed.py``'s timers: the full-sequence forward the encoder runs (a window in
parts of 1024, head included), decoding steps at batch 1 and 16 (context 512), and the adaptive
predictor plus coder per token over that vocabulary (the teacher's tokenizer cut to the vocabulary
by ``lmzip.train.vocab``'s ``teacher-prefix``, where the teacher is installed). KB/s figures assume
the bytes per token of the vocabulary (measured on a sample of README/docs text).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import native_speed as ns  # noqa: E402

from lmzip.model import zoo  # noqa: E402
from lmzip.model.convert import exact_config, exact_tensors, random_llama  # noqa: E402
from lmzip.model.model_spec import save_exact  # noqa: E402
from lmzip.native.model import load_native  # noqa: E402

# The teacher, then lmzip/train/configs' students (xs, s, m, t), then neighbours worth a look.
DEFAULT = ["30x576x1536:49152@9/3", "2x192x512:4096@3/1", "4x256x768:8192@4/2", "6x384x1024:8192@6/2",
           "4x256x768:49152@4/2", "3x256x768:4096@4/1", "6x384x1024:16384@6/2"]


def parse(spec: str) -> dict:
    """LxDxF:V[@H/Hk] (heads default to dim / 64 and half as many key/value heads, or one)."""
    spec, _, heads = spec.partition("@")
    body, _, vocab = spec.partition(":")
    L, d, F = (int(x) for x in body.split("x"))
    H = max(1, d // 64)
    Hk = H // 2 if H % 2 == 0 else 1
    if heads:
        H, Hk = (int(x) for x in heads.split("/"))
    return dict(n_layers=L, dim=d, ffn_dim=F, vocab_size=int(vocab or 49152), n_heads=H, n_kv_heads=Hk)


def tokenizer_for(vocab: int):
    try:
        from lmzip.model.tokenizer import load_tokenizer
        from lmzip.train.config import VocabSpec
        from lmzip.train.vocab import make_vocab

        _, d = zoo.resolve("smollm2-135m", auto_pull=False)
        teacher = load_tokenizer(d / zoo.TOKENIZER_DIR)
        return teacher if vocab == teacher.vocab_size else make_vocab(VocabSpec("teacher-prefix", vocab), teacher).tokenizer
    except Exception as exc:  # no teacher installed: no predictor figures
        print(f"(no tokenizer for vocabulary {vocab}: {exc})", file=sys.stderr)
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", action="append", help="LxDxF:V (default: a ladder)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--window", type=int, default=2048)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    sample = b"".join((ROOT / p).read_bytes() for p in ("README.md", "docs/ARCHITECTURE.md"))
    out = []
    for spec in a.shape or DEFAULT:
        s = parse(spec)
        cfg, w = random_llama(0, max_context=4096, **s)
        tok = tokenizer_for(s["vocab_size"])
        bpt = len(sample) / len(tok.encode(sample)) if tok is not None else 3.6
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / zoo.WEIGHTS
            save_exact(path, exact_config(cfg, 4096), exact_tensors(cfg, w))
            del w
            model = load_native(path)
            lm = zoo.LoadedModel("probe", "", model, tok, Path(tmp))
            if tok is None:
                lm.tokenizer = type("T", (), {"encode": staticmethod(lambda b: np.frombuffer(b, np.uint8) % s["vocab_size"])})()
            ns.rows.clear()
            steps = ns.bench_steps(lm, "native", [1, 16], [512], a.steps, 0)
            fwd = ns.bench_forward(lm, "native", a.window, 1024)
            pred = ns.bench_predictor(lm, "native", 300) if tok is not None else None
        params = cfg.n_layers * cfg.dim * ((cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim + cfg.n_heads * cfg.head_dim
                                           + 3 * cfg.ffn_dim) + 2 * cfg.vocab_size * cfg.dim
        row = {"shape": spec, **s, "file_mb": round(params / 1e6, 1), "bytes_per_token": round(bpt, 2),
               "forward_tokens_per_s": round(fwd), "step1_ms": round(steps[(1, 512)] * 1e3, 2),
               "step16_tokens_per_s": round(16 / steps[(16, 512)]),
               "predictor_us": round(pred * 1e6, 1) if pred else None}
        enc = 1 / (1 / fwd + (pred or 0))
        dec = 1 / (steps[(16, 512)] / 16 + (pred or 0))
        row["compress_kb_s_est"] = round(enc * bpt / 1e3, 1)
        row["decompress_kb_s_est_batch16"] = round(dec * bpt / 1e3, 1)
        print(json.dumps(row), flush=True)
        out.append(row)
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
