"""The native runtime against the torch reference, measured side by side in one run.

    python benchmarks/native_speed.py                       # native only (the reference is slow)
    python benchmarks/native_speed.py --reference           # both, and their ratios
    python benchmarks/native_speed.py --files README.md tests/vectors/teacher-small.orig --reference
    python benchmarks/native_speed.py --simd avx512vnni,avx2   # the native runtime at two SIMD levels

Reports (all on this machine, teacher SmolLM2-135M):
  * the machine's memory read bandwidth (the ceiling of a batch-1 decoding step, which reads
    every weight and the whole KV cache once) and the fraction of it each step reaches;
  * the model ready to code: a fresh process importing lmzip and loading the teacher;
  * the int8 x int16 dot product's peak on this machine's cores (products per second);
  * decoding steps at the given batches and contexts (one new token per stream), ms and tokens/s,
    and on the native runtime the layers' matmuls (ms, products per second) and attention (ms);
  * the full-sequence forward as the encoder runs it (a 4096-token window in parts of 1024);
  * the adaptive predictor plus the coder, per token, on the teacher's real logits;
  * with --files: whole files through the CLI (compress, then decompress), seconds, bytes/s and
    peak RSS per direction, for each runtime; outputs are checked byte for byte.
A run is labelled native/LEVEL (LMZIP_SIMD) or reference. Every row is printed as it is measured;
--json keeps them all.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lmzip import native
from lmzip.model import zoo  # noqa: E402
from lmzip.coding.codec import to_numpy  # noqa: E402
from lmzip.testing import load_with_runtime  # noqa: E402

TEXT = ROOT / "tests" / "vectors" / "teacher-small.orig"
rows: list[dict] = []


def run_env(run: str) -> dict:
    """Environment of a child process on the given run (native/LEVEL or reference)."""
    kind, _, level = run.partition("/")
    env = dict(os.environ, LMZIP_RUNTIME=kind)
    if level:
        env["LMZIP_SIMD"] = level
    return env


def load_run(run: str):
    """The teacher on a run's runtime, its native kernels (model and predictor) at the run's level."""
    kind, _, level = run.partition("/")
    lm = load_with_runtime("smollm2-135m", kind)
    if level:
        n = native.SIMD_NAMES.index(level)
        lm.model.simd = n
        native._native.set_dense_level(n)
        if lm.model.simd != n:
            raise SystemExit(f"SIMD level {level} is not available (or fails its checks) here")
    return lm


def report(**row) -> None:
    rows.append(row)
    print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)


def text_tokens(lm, n: int) -> np.ndarray:
    data = b""
    for p in [TEXT, ROOT / "README.md", ROOT / "docs" / "ARCHITECTURE.md", ROOT / "docs" / "FORMAT.md"]:
        data += p.read_bytes()
    ids = np.asarray(lm.tokenizer.encode(data), dtype=np.int64)
    return np.resize(ids, n)  # repeats if the texts are shorter


def bench_steps(lm, runtime: str, batches: list[int], contexts: list[int], steps: int, bandwidth: float,
                repeats: int = 1) -> dict:
    m, out = lm.model, {}
    c = m.cfg
    # Bytes a step must read: every matrix once (int8; the embedding only one row per token).
    weights = c.n_layers * c.dim * ((c.n_heads + 2 * c.n_kv_heads) * c.head_dim + c.n_heads * c.head_dim + 3 * c.ffn_dim)
    weights += c.vocab_size * c.dim
    for ctx in contexts:
        toks = text_tokens(lm, ctx + steps + 1)
        one = m.new_cache(1, ctx)
        m.hidden(one, toks[None, :ctx])
        for B in batches:
            cache = m.new_cache(B, ctx + steps)
            for b in range(B):
                cache.copy_stream(b, one, 0)
            m.head_logits(m.hidden(cache, np.repeat(toks[None, ctx : ctx + 1], B, 0)))  # warm-up
            phases = getattr(getattr(m, "_m", None), "phase_seconds", None)  # the native runtime's split
            # The fastest of `repeats` timings of the same steps: on a shared machine the minimum
            # is the figure least moved by other work (the phases are those of that repeat).
            best = None
            for _ in range(repeats):
                cache.lengths[:] = ctx
                p0 = dict(phases()) if phases else {}
                t0 = time.perf_counter()
                for s in range(steps):
                    h = m.hidden(cache, np.repeat(toks[None, ctx + s : ctx + s + 1], B, 0))
                    to_numpy(m.head_logits(h))
                t = (time.perf_counter() - t0) / steps
                if best is None or t < best[0]:
                    best = (t, p0, dict(phases()) if phases else {})
            dt, ph0, ph1 = best
            kv = 2 * m.cfg.n_layers * m.cfg.n_kv_heads * m.cfg.head_dim * (ctx + steps / 2) * B
            kv_bytes = kv * (2 if runtime.startswith("native") else 8)  # int16 narrow parts (remainders: rare)
            row = dict(runtime=runtime, what="step", batch=B, context=ctx, ms=round(dt * 1e3, 2),
                       tokens_per_s=round(B / dt, 1))
            if B == 1 and bandwidth:
                row["bandwidth_fraction"] = round((weights + kv_bytes) / dt / bandwidth, 2)
            if ph0:  # the layers' matmuls: products per second, against the machine's int8 peak
                mm = sum(v - ph0[k] for k, v in ph1.items() if k in ("qkv", "wo", "w13", "w2")) / steps
                row["matmul_ms"] = round(mm * 1e3, 2)
                row["matmul_gmac_s"] = round(B * (weights - c.vocab_size * c.dim) / mm / 1e9, 1)
                row["attention_ms"] = round((ph1["attention"] - ph0["attention"]) / steps * 1e3, 2)
            report(**row)
            out[(B, ctx)] = dt
    return out


def bench_forward(lm, runtime: str, window: int, part: int) -> float:
    m = lm.model
    toks = text_tokens(lm, window)
    cache = m.new_cache(1, window)
    c0_cpu = time.process_time()
    t0 = time.perf_counter()
    for c0 in range(0, window, part):
        h = m.hidden(cache, toks[None, c0 : c0 + part])
        for r0 in range(0, part, 256):
            to_numpy(m.head_logits(h[0, r0 : r0 + 256]))
    dt = time.perf_counter() - t0
    busy = (time.process_time() - c0_cpu) / dt  # CPUs kept busy: the thread pool's share of the work shows here
    report(runtime=runtime, what="forward", window=window, part=part, s=round(dt, 2), tokens_per_s=round(window / dt, 1),
           cpus_busy=round(busy, 2))
    return window / dt


def bench_predictor(lm, runtime: str, n: int) -> float:
    from lmzip.coding import codec
    from lmzip.predict.adapt import AdaptParams

    m = lm.model
    toks = text_tokens(lm, n + 1)
    cache = m.new_cache(1, n)
    head = getattr(m, "head_logits32", m.head_logits)  # the rows the codec gives the predictor
    z = to_numpy(head(m.hidden(cache, toks[None, :n])[0]))
    ids = toks[1 : n + 1]
    pred = codec.new_predictor(lm, AdaptParams())
    enc = codec.new_encoder(lm, 24, 64)
    t0 = time.perf_counter()
    if runtime.startswith("native"):
        pred.encode_logits(enc, z, ids)
    else:
        for i in range(n):
            f = pred.predict(z[i])
            enc.encode(int(ids[i]), f)
            pred.update(int(ids[i]))
    dt = (time.perf_counter() - t0) / n
    report(runtime=runtime, what="predictor+coder", tokens=n, us_per_token=round(dt * 1e6, 1))
    return dt


def bench_load(runtime: str) -> float:
    code = ("import time; t = time.perf_counter(); from lmzip.model import zoo; lm = zoo.load('smollm2-135m'); "
            "print(time.perf_counter() - t, type(lm.model).__name__)")
    env = run_env(runtime)
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)  # the model cache warm
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    dt = float(r.stdout.split()[0])
    report(runtime=runtime, what="load", s=round(dt, 2))
    return dt


GNU_TIME = "/usr/bin/time"


def _timed(cmd: list[str], env: dict, stdout) -> tuple[float, int]:
    """Seconds and peak RSS (bytes) of one child process. The peak comes from GNU time where it
    is installed (a forked child's own ru_maxrss starts at its parent's high-water mark)."""
    with tempfile.NamedTemporaryFile("r") as rss:
        wrap = [GNU_TIME, "-f", "%M", "-o", rss.name] if os.path.exists(GNU_TIME) else []
        t0 = time.perf_counter()
        p = subprocess.run(wrap + cmd, env=env, stdout=stdout, stderr=subprocess.PIPE)
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr.decode(errors='replace').strip()}")
        text = rss.read().strip().splitlines()
        return dt, (int(text[-1]) * 1024 if wrap and text else -1)


def bench_file(path: Path, runtime: str) -> dict:
    env = run_env(runtime)
    lmzip_cmd = [sys.executable, "-m", "lmzip"]
    data = path.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        lmz, back = Path(tmp) / "f.lmz", Path(tmp) / "f.out"
        with open(lmz, "wb") as f:
            tc, rc = _timed(lmzip_cmd + ["compress", "-c", str(path)], env, f)
        with open(back, "wb") as f:
            td, rd = _timed(lmzip_cmd + ["decompress", "-c", str(lmz)], env, f)
        ok = back.read_bytes() == data
        out = dict(runtime=runtime, what="file", file=path.name, bytes=len(data), lmz_bytes=lmz.stat().st_size,
                   bits_per_byte=round(8 * lmz.stat().st_size / max(1, len(data)), 4),
                   compress_s=round(tc, 2), compress_bytes_per_s=round(len(data) / tc, 1), compress_peak_rss_mb=rc >> 20,
                   decompress_s=round(td, 2), decompress_bytes_per_s=round(len(data) / td, 1),
                   decompress_peak_rss_mb=rd >> 20, identical=ok, lmz_sha=__import__("hashlib").sha256(lmz.read_bytes()).hexdigest()[:16])
    report(**out)
    if not ok:
        raise SystemExit(f"{path}: decompressed bytes differ")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", action="store_true", help="also measure the torch reference (slow on CPUs without VNNI)")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--contexts", default="128,1280,2560")
    ap.add_argument("--steps", type=int, default=20, help="decoding steps timed per case")
    ap.add_argument("--repeats", type=int, default=1, help="timings of those steps per case; the fastest is reported")
    ap.add_argument("--window", type=int, default=4096, help="full-sequence forward: tokens (0: skip)")
    ap.add_argument("--predictor-tokens", type=int, default=400)
    ap.add_argument("--simd", default="", help="native SIMD levels to measure, comma-separated (default: the best here)")
    ap.add_argument("--files", type=Path, nargs="*", default=[])
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    levels = [x for x in a.simd.split(",") if x] or [native.SIMD_NAMES[native.simd_level()]]
    for lv in levels:
        if lv not in native.SIMD_NAMES:
            raise SystemExit(f"--simd: {lv!r} is not one of {', '.join(native.SIMD_NAMES)}")
    runtimes = [f"native/{lv}" for lv in levels] + (["reference"] if a.reference else [])
    bw = native._native.read_bandwidth(512, native.default_threads(), 5) if native.available() else 0.0
    peak = native._native.dot_peak(native.default_threads()) if native.available() else 0.0
    report(what="machine", cpu=platform.processor() or platform.machine(), cpus=os.cpu_count(),
           runtime=native.describe(), read_bandwidth_gb_s=round(bw / 1e9, 1), int8_peak_gmac_s=round(peak / 1e9, 1))
    results: dict = {}
    for rt in runtimes:
        lm = load_run(rt)
        results[rt] = {
            "load": bench_load(rt),
            "steps": bench_steps(lm, rt, [int(x) for x in a.batches.split(",")], [int(x) for x in a.contexts.split(",")],
                                 a.steps, bw, a.repeats),
            "forward": bench_forward(lm, rt, a.window, 1024) if a.window else None,
            "predictor": bench_predictor(lm, rt, a.predictor_tokens) if a.predictor_tokens else None,
        }
        del lm
    if native.available():
        native._native.set_dense_level(native.best_simd())
    for f in a.files:
        for rt in runtimes:
            results.setdefault(rt, {})[f"file:{f.name}"] = bench_file(f, rt)
    # Ratios: the first run (the best native level) against each other run, measured in this run.
    first = runtimes[0]
    for other in runtimes[1:]:
        n, r = results[first], results[other]
        name = f"{first}_over_{other}"
        for key, dt in n["steps"].items():
            report(what="ratio", case=f"step batch {key[0]} context {key[1]}", **{name: round(r["steps"][key] / dt, 2)})
        if n["forward"]:
            report(what="ratio", case="forward", **{name: round(n["forward"] / r["forward"], 2)})
        report(what="ratio", case="predictor+coder", **{name: round(r["predictor"] / n["predictor"], 2)})
        report(what="ratio", case="load", **{name: round(r["load"] / n["load"], 2)})
        for f in a.files:
            nf, rf = n[f"file:{f.name}"], r[f"file:{f.name}"]
            report(what="ratio", case=f"{f.name} compress", **{name: round(rf["compress_s"] / nf["compress_s"], 2)})
            report(what="ratio", case=f"{f.name} decompress", **{name: round(rf["decompress_s"] / nf["decompress_s"], 2)})
            report(what="check", case=f"{f.name} same .lmz on {first} and {other}", ok=nf["lmz_sha"] == rf["lmz_sha"])
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
