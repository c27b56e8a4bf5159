"""The GPU check: exactness on a device, the device's throughput, and CUDA-made vectors, in one JSON report.

    python benchmarks/gpu_check.py --device cuda --out $OUT                # on a lent GPU, with the teacher
    python benchmarks/gpu_check.py --device cpu --tiny --budget-s 12       # the kit's rehearsal (tests/test_gpu_check.py)

On a lent GPU this runs inside ``benchmarks/gpu_kit.sh`` (benchmarks/GPU_KIT.md says how the teacher and the
missing wheels get there). Everything runs on the torch reference runtime (``LMZIP_RUNTIME=reference``); "the
CPU" below is that runtime on the host's CPU with its float64 products (``_Linear._int_mm = False``), which
computes the same integers as the int8 path by construction, so a difference is a finding.

Phases, in order of priority; each is skipped when too little of ``--budget-s`` is left for it, and the budget
is also a hard stop (SIGALRM): what runs then is cut, the rest skipped, the report still written.

  vectors     (a) every committed vector (tests/vectors/manifest.json) re-encodes on the device to its
                  committed bytes: tiny-* with the tiny model; teacher-* and device-* with the teacher
  tables      (b) the lookup tables built afresh (luts.py) hash to FORMAT.md §7.5's SHA-256s, the cached
                  ones equal them, and the model's copies on the device equal them
  rows        (c) frequency rows and integer logits bit-identical between the device and the CPU; on the
                  device, full-sequence vs KV-cache steps, batch 1 vs batch N (full and stepped); the
                  committed CPU digests (tiny-model.sha256, teacher-digest.json)
  made        (e) a few files coded on the device (and on the CPU: the same bytes), into
                  OUT/device_vectors.tar for a CPU session to commit (gpu_kit_prepare.py import-vectors)
  decode1     tiny-compact and teacher-compact (format 3, lmzip's default settings) decode on the device
  throughput  (d) lmzip.Compressor / Decompressor(batch=N) over a batch of text segments: bytes/s, tokens/s,
                  ms per decoded token at batch 1, peak GPU memory, GPU utilisation, bits/byte
  decode2     the other committed vectors and the made ones decode on the device

A CPU rehearsal of the teacher's paths: ``--device cpu --dev-float64`` (minutes on 2 cores).

The report (``OUT/gpu_report.json``) is rewritten after every result. Exit status 1 if a check failed
(skipped work is no failure; ``summary`` and ``phases`` say what was skipped and why).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import signal
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # runs from a checkout, installed or not
import make_vectors  # noqa: E402  (the Compressor behind each committed vector)

VECTORS = ROOT / "tests" / "vectors"
KIT = ROOT / ".gpu_kit"
SCHEMA = 1
TEACHER = "smollm2-135m"
T_START = time.perf_counter()  # the budget counts from here (imports included)

# FORMAT.md §7.5: SHA-256 of each table's entries as int64 little-endian (RoPE: COS then SIN).
PINNED_TABLES = {
    "EXP_A": ("exp", (10, 20), "b8b370c042b28de603b2046d38ddbff7c3abe6989fce39059eb4b1f6f4feef0b"),
    "EXP_O": ("exp", (10, 30), "bf1fd0395927d155607c926251c7f5450d5c0078dd999736bd63b7211e2e69ba"),
    "SIG": ("sigmoid", (10, 24, 16), "e21615a0c6022ca4a9e44ca1e17179205cb9064c55de3e66a9755794c6821580"),
    "COS_SIN_64_1e5_4096": ("rope", (64, 100000.0, 4096, 16), "e7c10fc7103c901b50ac7f4e2a86330450ad06828d4ea1f4ecd390a921c50a7f"),
}

# Files coded on the device for CI to decode on the CPU (name suffix -> source, slice, manifest params).
# Small (CI codes each again with the teacher on a CPU), and each covers a path the older device-* do not.
MADE = {
    "plain": ("docs/FORMAT.md", (0, 1000), dict(window=2048, overlap=512, adapt=False, transforms=False, format_version=3)),
    "multi": ("lmzip/coding/coder.py", (0, 1400), dict(segment_size=480, top_k=16, fallback=False, format_version=3)),
    "window": ("README.md", (0, 1100), dict(window=96, overlap=32, fallback=False)),
    "crlf": ("benchmarks/data/dpkg.log", (0, 900), dict(format_version=3)),
}


class BudgetExceeded(BaseException):
    """Raised by the alarm at the end of --budget-s (BaseException: lmzip's ``except Exception`` lets it by)."""


# -- the report ----------------------------------------------------------------------------


class Report:
    def __init__(self, out: Path, budget_s: float):
        self.out = out
        self.path = out / "gpu_report.json"
        self.t0 = T_START
        self.budget_s = budget_s
        self.stopped = False  # the budget ran out: skip everything after
        self.data: dict = {
            "schema": SCHEMA, "done": False, "meta": {}, "phases": {}, "checks": [], "skipped": [],
            "vectors": {}, "tables": {}, "rows": {}, "static": {}, "made": {}, "decode": {}, "throughput": {"runs": [], "batch1": []},
            "summary": {},
        }
        out.mkdir(parents=True, exist_ok=True)
        self.save()

    # time
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def fits(self, need: float) -> bool:
        return not self.stopped and self.left() >= need

    # results
    def save(self) -> None:
        d = self.data
        fails = [c["name"] for c in d["checks"] if not c["ok"]]
        d["summary"] = {"checks": len(d["checks"]), "passed": len(d["checks"]) - len(fails), "failed": len(fails),
                        "failed_checks": fails, "skipped": len(d["skipped"]), "elapsed_s": round(self.elapsed(), 2)}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(d, indent=1, default=str) + "\n")
        os.replace(tmp, self.path)  # a reader (or a kill) never sees half a report

    def check(self, phase: str, name: str, ok: bool, detail: str = "") -> bool:
        ok = bool(ok)
        self.data["checks"].append({"phase": phase, "name": name, "ok": ok, "detail": detail})
        say(f"{'ok  ' if ok else 'FAIL'} {name}{'  ' + detail if detail else ''}")
        self.save()
        return ok

    def skip(self, phase: str, what: str, why: str) -> None:
        self.data["skipped"].append({"phase": phase, "what": what, "why": why})
        say(f"skip {what}: {why}")
        self.save()

    def section(self, key: str) -> dict:
        return self.data[key]

    @property
    def failures(self) -> int:
        return sum(not c["ok"] for c in self.data["checks"])


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sha(a) -> str:
    return hashlib.sha256(a).hexdigest()


def rows_digest(rows, dtype="<i4") -> str:
    return sha(np.ascontiguousarray(to_np(rows)).astype(dtype).tobytes())


def to_np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


# -- context: models, devices ----------------------------------------------------------------


class Ctx:
    def __init__(self, args, rep: Report):
        import torch

        from lmzip.model import zoo

        self.args, self.rep, self.torch, self.zoo = args, rep, torch, zoo
        self.device = args.device
        self.cuda = args.device.startswith("cuda")
        self.names = ["tiny"] if args.tiny else ["tiny", "teacher"]
        self._dev: dict = {}
        self._cpu: dict = {}
        self.step_s: dict[str, float] = {}  # seconds per decoding step (batch 1), measured in rows
        self.decode_rate: dict[str, float] = {}  # seconds per token of whole decodes, the slowest so far
        self.step_slope: dict[str, float] = {}  # a step's extra time per further stream, relative (rows phase)
        self.mismatches: dict[str, bytes] = {}  # re-encodings that differ from the committed vector
        self.peak_mem = 0  # the largest torch.cuda.max_memory_allocated() seen before a reset

    def reset_peak(self) -> None:
        if self.cuda:
            self.peak_mem = max(self.peak_mem, self.torch.cuda.max_memory_allocated())
            self.torch.cuda.reset_peak_memory_stats()

    def spec(self, which: str):
        return VECTORS / "tiny-model" if which == "tiny" else TEACHER

    def dev(self, which: str):
        """The model on the device (zoo.load: the reference runtime, LMZIP_RUNTIME=reference)."""
        if which not in self._dev:
            t = time.perf_counter()
            self._dev[which] = self.zoo.load(self.spec(which), device=self.device)
            if self.args.dev_float64:
                float64_products(self._dev[which].model)
            sync(self.device)
            say(f"loaded {which} on {self.device} in {time.perf_counter() - t:.1f} s")
        return self._dev[which]

    def cpu(self, which: str):
        """The same model on the CPU, a separate instance with float64 products (the int8 path's integers)."""
        if which not in self._cpu:
            from lmzip.model.exact_model import load_exact

            lm = self.dev(which)
            t = time.perf_counter()
            model = float64_products(load_exact(lm.path / self.zoo.WEIGHTS, "cpu"))
            # extra (the token classes the predictor needs) is the tokenizer's: shared, computed once
            self._cpu[which] = self.zoo.LoadedModel(lm.id, lm.sha256, model, lm.tokenizer, lm.path, lm.extra)
            say(f"loaded {which} on cpu (float64 products) in {time.perf_counter() - t:.1f} s")
        return self._cpu[which]

    def step_estimate(self, which: str) -> float:
        """Seconds per decoding step: measured in the rows phase, else a guess (an H100 took ~67 ms)."""
        return self.step_s.get(which, (0.08 if self.cuda else 0.4) if which == "teacher" else 0.01)


def float64_products(model):
    """Make every linear layer take exact_model's float64 matmul of the same integers (exact by construction;
    on a CPU much faster than torch._int_mm)."""
    for lin in [model.head] + [w for layer in model.layers for w in layer.values()]:
        lin._int_mm = False
    return model


def meta(ctx: Ctx) -> dict:
    torch = ctx.torch
    from lmzip import native

    m = {"argv": sys.argv[1:], "device": ctx.device, "python": platform.python_version(), "numpy": np.__version__,
         "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "host": platform.node(),
         "machine": platform.machine(), "cpu_count": os.cpu_count(), "runtime": ctx.zoo.runtime_for(ctx.device),
         "native_available": native.available(), "budget_s": ctx.rep.budget_s,
         "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "lmzip_home": str(ctx.zoo.home())}
    if ctx.cuda:
        p = torch.cuda.get_device_properties(torch.device(ctx.device))
        m.update(device_name=torch.cuda.get_device_name(torch.device(ctx.device)), cuda=torch.version.cuda,
                 capability=f"{p.major}.{p.minor}", multiprocessors=p.multi_processor_count,
                 gpu_memory_bytes=p.total_memory, int_mm=hasattr(torch, "_int_mm"))
        try:
            q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=15)
            m["nvidia_smi"] = q.stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            m["nvidia_smi"] = f"unavailable: {exc}"
    else:
        name = platform.processor()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        m["device_name"] = name or "cpu"
    kit = KIT / "meta" / "kit.json"
    if kit.is_file():
        m["kit"] = json.loads(kit.read_text())
    return m


# -- (a) vectors -----------------------------------------------------------------------------


def manifest() -> dict:
    return json.loads((VECTORS / "manifest.json").read_text())


def vector_names(ctx: Ctx) -> list[tuple[str, str]]:
    """(name, model) of every committed vector this run can code."""
    out = []
    for name in manifest():
        which = "tiny" if name.startswith("tiny-") else "teacher" if name.startswith(("teacher-", "device-")) else None
        if which in ctx.names:
            out.append((name, which))
    return out


def vector_original(name: str) -> bytes:
    # The teacher-* vectors all code teacher-small.orig (tests/make_vectors.py).
    return (VECTORS / f"{'teacher-small' if name.startswith('teacher-') else name}.orig").read_bytes()


def phase_vectors(ctx: Ctx) -> None:
    rep, man = ctx.rep, manifest()
    sec = rep.section("vectors")
    for name, which in vector_names(ctx):
        if not rep.fits(2.0 if which == "tiny" else 6.0):
            rep.skip("vectors", f"re-encode {name}", f"{rep.left():.0f} s of the budget left")
            continue
        lm = ctx.dev(which)
        blob, original = (VECTORS / f"{name}.lmz").read_bytes(), vector_original(name)
        t = time.perf_counter()
        again = make_vectors.compressor(lm, man[name]).compress(original)
        sync(ctx.device)
        dt = time.perf_counter() - t
        sec[name] = {"model": which, "bytes": len(original), "lmz_bytes": len(blob), "reencode_ok": again == blob,
                     "reencode_s": round(dt, 3), "made_on": man[name].get("made_on", "cpu")}
        if again != blob:  # kept for a look on the CPU: OUT/mismatches.tar (OUT brings back 8 files at most)
            sec[name]["reencoded_sha256"] = sha(again)
            ctx.mismatches[f"{name}.{ctx.device.replace(':', '')}.lmz"] = again
            write_tar(rep.out / "mismatches.tar", ctx.mismatches)
        rep.check("vectors", f"vector {name}: re-encoded on {ctx.device} to the committed bytes", again == blob,
                  f"{len(blob)} B, {dt:.2f} s")


# -- (b) tables ------------------------------------------------------------------------------


def table_sha(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.asarray(a).astype("<i8").tobytes())
    return h.hexdigest()


def phase_tables(ctx: Ctx) -> None:
    from lmzip.model import luts

    rep, sec = ctx.rep, ctx.rep.section("tables")
    build = {"exp": luts._exp_table, "sigmoid": luts._sigmoid_table, "rope": luts._rope_tables}
    cached = {"exp": luts.exp_table, "sigmoid": luts.sigmoid_table, "rope": luts.rope_tables}
    for label, (kind, params, pinned) in PINNED_TABLES.items():
        t = time.perf_counter()
        fresh = build[kind](*params)
        fresh = fresh if kind == "rope" else (fresh,)
        got = table_sha(*fresh)
        dt = time.perf_counter() - t
        from_cache = table_sha(*(cached[kind](*params) if kind == "rope" else (cached[kind](*params),)))
        sec[label] = {"params": list(params), "sha256": got, "pinned": pinned, "cached_sha256": from_cache,
                      "build_s": round(dt, 3)}
        rep.check("tables", f"table {label}: built here hashes to FORMAT.md §7.5's SHA-256", got == pinned, got[:16])
        rep.check("tables", f"table {label}: the cached copy equals the built one", from_cache == got)
    # The copies each model holds on the device (moved there as float64/int64 tensors) are the same integers.
    from lmzip.model.model_spec import (
        ATTN_EXP_BITS,
        EXP_STEP_BITS,
        OUT_EXP_BITS,
        ROPE_BITS,
        SIG_BITS,
        SIG_RANGE,
        SIG_STEP_BITS,
    )

    for which in ctx.names:
        if not rep.fits(5.0 if which == "tiny" else 20.0):
            rep.skip("tables", f"device copies of {which}'s tables", f"{rep.left():.0f} s left")
            continue
        m = ctx.dev(which).model
        cfg = m.cfg
        cos, sin = luts.rope_tables(cfg.head_dim, float(cfg.rope_theta), cfg.max_context, ROPE_BITS)
        want = {"attn_exp": luts.exp_table(EXP_STEP_BITS, ATTN_EXP_BITS), "out_exp": luts.exp_table(EXP_STEP_BITS, OUT_EXP_BITS),
                "sigmoid": luts.sigmoid_table(SIG_STEP_BITS, SIG_BITS, SIG_RANGE), "rope_cos": cos, "rope_sin": sin}
        for attr, ref in want.items():
            held = to_np(getattr(m, attr))
            ok = held.shape == ref.shape and np.array_equal(held.astype(np.int64), ref) and bool(
                np.all(held == np.round(held)))
            sec[f"{which}.{attr}@{ctx.device}"] = {"sha256": table_sha(held.astype(np.int64)), "ok": ok}
            rep.check("tables", f"{which}: {attr} on {ctx.device} equals luts' table", ok, str(ref.shape))


# -- (c) rows --------------------------------------------------------------------------------


def rows_inputs(ctx: Ctx, which: str) -> list[tuple[str, np.ndarray, bool]]:
    """(label, ids, compare with the CPU) for one model."""
    lm = ctx.dev(which)
    cap = lm.model.cfg.max_context
    texts = b"".join((VECTORS / n).read_bytes() for n in ("teacher-small.orig", "device-readme.orig", "device-code.orig"))
    if which == "tiny":
        toks = np.frombuffer((VECTORS / "tiny-model.tokens").read_bytes(), dtype="<u2").astype(np.int64)
        other = np.asarray(lm.tokenizer.encode(texts), dtype=np.int64)[: min(cap, 120)]
        return [("tiny-model.tokens", toks, True), ("texts[:120]", other, True)]
    ids = np.asarray(lm.tokenizer.encode(texts), dtype=np.int64)
    code = np.asarray(lm.tokenizer.encode((VECTORS / "device-code.orig").read_bytes()), dtype=np.int64)
    n_cpu = ctx.args.cpu_tokens
    return [(f"texts[:{n_cpu}]", ids[:n_cpu], True), ("digest-600", ids[:600], False),
            (f"device-code[:{n_cpu // 2}]", code[: n_cpu // 2], True)]


def forward(model, ids: np.ndarray, batch_others: list[np.ndarray] | None = None, slot: int = 0):
    """(frequencies, logits) of the rows for ids, computed in one full-sequence forward (numpy)."""
    seqs = [ids] if batch_others is None else batch_others[:slot] + [ids] + batch_others[slot:]
    cache = model.new_cache(len(seqs), len(ids))
    h = model.hidden(cache, np.stack(seqs))
    return to_np(model.head_frequencies(h[slot])), to_np(model.head_logits(h[slot]))


def stepped(model, ids: np.ndarray, chunks: list[int], batch: int = 1, slot: int = 0, others=None):
    """Rows for ids through the KV cache: prefill in uneven chunks, then one token at a time.
    With batch > 1, every stream steps in lockstep (the decoder's situation); returns stream ``slot``'s rows."""
    seqs = [ids] * batch if others is None else others[:slot] + [ids] + others[slot:]
    x = np.stack(seqs)
    cache = model.new_cache(len(seqs), len(ids))
    out, pos, times = [], 0, []
    for n in chunks:
        n = min(n, len(ids) - pos)
        if n <= 0:
            break
        t = time.perf_counter()
        out.append(to_np(model.step(cache, x[:, pos:pos + n])[slot]))
        if n == 1:
            times.append(time.perf_counter() - t)
        pos += n
    if pos < len(ids):
        out.append(to_np(model.step(cache, x[:, pos:])[slot]))
    return np.concatenate(out), times


def phase_rows(ctx: Ctx) -> None:
    rep, sec = ctx.rep, ctx.rep.section("rows")
    dev = ctx.device
    for which in ctx.names:
        if not rep.fits(4.0 if which == "tiny" else 40.0):
            rep.skip("rows", f"rows of {which}", f"{rep.left():.0f} s left")
            continue
        model = ctx.dev(which).model
        inputs = rows_inputs(ctx, which)
        committed = {"tiny-model.tokens": ((VECTORS / "tiny-model.sha256").read_text().split()[0], "tiny-model.sha256"),
                     "digest-600": (json.loads((VECTORS / "teacher-digest.json").read_text())["full"], "teacher-digest.json")}
        for label, ids, with_cpu in inputs:
            if not rep.fits(3.0 if which == "tiny" else 25.0):
                rep.skip("rows", f"rows of {which} on {label}", f"{rep.left():.0f} s left")
                continue
            key = f"{which}.{label}"
            T = len(ids)
            t = time.perf_counter()
            full_f, full_z = forward(model, ids)
            sync(dev)
            entry = {"tokens": T, "full_sha256": rows_digest(full_f), "logits_sha256": rows_digest(full_z, "<i8"),
                     "full_s": round(time.perf_counter() - t, 3)}
            sec[key] = entry
            if label in committed:  # the committed CPU digest, computed on the device
                want, source = committed[label]
                entry["committed_sha256"] = want
                rep.check("rows", f"{key}: rows on {dev} hash to the committed {source}", entry["full_sha256"] == want,
                          entry["full_sha256"][:16])
            # device vs CPU first: the cross-device result matters most
            if with_cpu and rep.fits(3.0 if which == "tiny" else 20.0):
                t = time.perf_counter()
                cf, cz = forward(ctx.cpu(which).model, ids)
                entry["cpu_s"] = round(time.perf_counter() - t, 3)
                entry["cpu_full_sha256"] = rows_digest(cf)
                rep.check("rows", f"{key}: rows on {dev} equal the CPU's (frequencies)", np.array_equal(cf, full_f),
                          entry["full_sha256"][:16])
                rep.check("rows", f"{key}: integer logits on {dev} equal the CPU's", np.array_equal(cz, full_z))
            # full-sequence vs KV-cache steps (uneven prefill, then single steps)
            singles = 24
            cut = [max(1, T // 8), max(1, T // 3)]
            st, times = stepped(model, ids, cut + [1] * singles)
            if times:
                entry["step_ms_batch1"] = round(1e3 * float(np.median(times)), 2)
                ctx.step_s[which] = float(np.median(times))
            rep.check("rows", f"{key}: KV-cache steps equal the full forward on {dev}", np.array_equal(st, full_f),
                      f"{T} tokens, step {entry.get('step_ms_batch1', '?')} ms")
            # batch 1 vs batch N, full and stepped, the stream of interest in the middle
            N = ctx.args.rows_batch
            rng = np.random.default_rng(T)
            others = [rng.integers(0, model.cfg.vocab_size, T) for _ in range(N - 1)]
            bf, bz = forward(model, ids, others, slot=N // 2)
            rep.check("rows", f"{key}: batch of {N} (full forward) equals batch 1 on {dev}",
                      np.array_equal(bf, full_f) and np.array_equal(bz, full_z))
            if rep.fits(3.0 if which == "tiny" else 15.0):
                bs, btimes = stepped(model, ids, cut + [1] * (singles // 2), others=others, slot=N // 2)
                if btimes:
                    entry[f"step_ms_batch{N}"] = round(1e3 * float(np.median(btimes)), 2)
                    if which in ctx.step_s and N > 1:  # how much each further stream adds to a step
                        ctx.step_slope[which] = max(0.02, (float(np.median(btimes)) / ctx.step_s[which] - 1) / (N - 1))
                rep.check("rows", f"{key}: batch of {N} (KV-cache steps) equals batch 1 on {dev}", np.array_equal(bs, full_f))
            rep.save()


# -- (d2) the fixed-shape step (lmzip/model/static_step.py) and its CUDA graph -----------------


def phase_static(ctx: Ctx) -> None:
    """StaticStep against the model's own step on the device, then (CUDA) one step captured in a
    graph and replayed: the same logits, and milliseconds per step at batch 1 and batch N."""
    from lmzip.model.static_step import StaticStep

    rep, sec = ctx.rep, ctx.rep.section("static")
    torch = ctx.torch
    for which in ctx.names:
        if not rep.fits(3.0 if which == "tiny" else 30.0):
            rep.skip("static", f"static step of {which}", f"{rep.left():.0f} s left")
            continue
        model = ctx.dev(which).model
        V = model.cfg.vocab_size
        for B in (1, ctx.args.static_batch):
            cap = min(model.cfg.max_context, ctx.args.static_capacity)
            key = f"{which}.batch{B}"
            rng = np.random.default_rng(B)
            toks = rng.integers(0, V, (12, B))
            s = StaticStep(model, B, cap)
            ref = model.new_cache(B, cap)
            same = True
            for t in range(len(toks)):
                got = to_np(s.step(torch.from_numpy(toks[t]).to(model.device)))
                want = to_np(model._head_logits(model.hidden(ref, torch.from_numpy(toks[t][:, None]))[:, 0]))
                same &= np.array_equal(got, want)
            rep.check("static", f"{key}: the fixed-shape step's logits equal the model's step on {ctx.device}", same,
                      f"capacity {cap}, {len(toks)} steps")
            entry = sec.setdefault(key, {"capacity": cap})
            if not ctx.cuda:
                entry["graph"] = "skipped: CUDA graphs need a CUDA device"
                continue
            eager = []
            for t in range(6):
                sync(ctx.device)
                t0 = time.perf_counter()
                s.step(torch.from_numpy(toks[t % len(toks)]).to(model.device))
                sync(ctx.device)
                eager.append(time.perf_counter() - t0)
            g = StaticStep(model, B, cap)
            g.capture()
            times, same = [], True
            ref2 = StaticStep(model, B, cap)
            for t in range(len(toks)):
                sync(ctx.device)
                t0 = time.perf_counter()
                out = g.step(torch.from_numpy(toks[t]).to(model.device))
                sync(ctx.device)
                times.append(time.perf_counter() - t0)
                same &= bool(torch.equal(out, ref2.step(torch.from_numpy(toks[t]).to(model.device))))
            entry.update(eager_ms=round(1e3 * float(np.median(eager)), 3), graph_ms=round(1e3 * float(np.median(times[2:])), 3),
                         graph_tokens_per_s=round(B / float(np.median(times[2:])), 1))
            rep.check("static", f"{key}: graph replays give the eager step's logits", same,
                      f"graph {entry['graph_ms']} ms against eager {entry['eager_ms']} ms a step")
            del s, g, ref2, ref
            ctx.reset_peak()
        rep.save()


# -- (e) made vectors ------------------------------------------------------------------------


def made_name(ctx: Ctx, key: str) -> str:
    # device-*: tests/test_roundtrip.py decodes them on the CPU with the teacher (so made_on must say cuda).
    if ctx.args.tiny:
        return f"tinydev-{key}"  # a rehearsal: no test picks these up
    return f"device-{'cuda' if ctx.cuda else ctx.device}-{key}"


def made_params(ctx: Ctx, which: str, params: dict) -> dict:
    p = dict(params)
    cap = ctx.dev(which).model.cfg.max_context
    if "window" in p and p["window"] > cap:  # the tiny model's context is 256
        p["window"], p["overlap"] = min(p["window"], 64), min(p["overlap"], 16)
    if which == "tiny" and "segment_size" in p:  # a quarter of the bytes (see phase_made)
        p["segment_size"] //= 4
    return p


def phase_made(ctx: Ctx) -> None:
    rep, sec = ctx.rep, ctx.rep.section("made")
    which = ctx.names[-1]
    lm = ctx.dev(which)
    made_on = f"{ctx.device}: {rep.data['meta'].get('device_name')}, torch {ctx.torch.__version__} (benchmarks/gpu_check.py)"
    entries: dict[str, dict] = {}
    files: dict[str, bytes] = {}
    for key, (src, (a, b), params) in MADE.items():
        if not rep.fits(2.0 if which == "tiny" else 15.0):
            rep.skip("made", f"made vector {key}", f"{rep.left():.0f} s left")
            continue
        name = made_name(ctx, key)
        if which == "tiny":  # a token per byte: a quarter of the bytes keeps the rehearsal short
            b = a + (b - a) // 4
        data = (ROOT / src).read_bytes()[a:b]
        if key == "crlf":
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        p = made_params(ctx, which, params)
        t = time.perf_counter()
        blob = make_vectors.compressor(lm, p).compress(data)
        sync(ctx.device)
        dt = time.perf_counter() - t
        info = {"model": which, "source": f"{src}[{a}:{b}]", "bytes": len(data), "lmz_bytes": len(blob),
                "sha256": sha(blob), "encode_s": round(dt, 3), "params": p}
        sec[name] = info
        say(f"made {name}: {len(data)} B -> {len(blob)} B in {dt:.2f} s")
        if rep.fits(3.0 if which == "tiny" else 20.0):
            t = time.perf_counter()
            cpu_blob = make_vectors.compressor(ctx.cpu(which), p).compress(data)
            info["cpu_encode_s"] = round(time.perf_counter() - t, 3)
            info["cpu_same_bytes"] = cpu_blob == blob
            rep.check("made", f"made {name}: the CPU codes the same bytes as {ctx.device}", cpu_blob == blob,
                      f"{len(blob)} B")
            if cpu_blob != blob:  # not a vector to commit: both codings go to OUT/mismatches.tar instead
                ctx.mismatches.update({f"{name}.{ctx.device.replace(':', '')}.lmz": blob, f"{name}.cpu.lmz": cpu_blob,
                                       f"{name}.orig": data})
                write_tar(rep.out / "mismatches.tar", ctx.mismatches)
                continue
        else:
            rep.skip("made", f"CPU coding of {name}", f"{rep.left():.0f} s left")
        entries[name] = {**p, "made_on": made_on}
        files[f"{name}.lmz"], files[f"{name}.orig"] = blob, data
        write_made(rep.out, entries, files)


def write_made(out: Path, entries: dict, files: dict) -> None:
    """OUT/device_vectors.tar: NAME.lmz, NAME.orig and manifest-fragment.json (manifest entries)."""
    members = dict(files)
    members["manifest-fragment.json"] = (json.dumps(entries, indent=1, sort_keys=True) + "\n").encode()
    write_tar(out / "device_vectors.tar", members)


def write_tar(path: Path, members: dict[str, bytes]) -> None:
    """A plain tar of name -> bytes, replaced atomically (rewritten whole as members are added)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(members[name]), 0, 0o644
            tar.addfile(info, io.BytesIO(members[name]))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


# -- decoding on the device ------------------------------------------------------------------


def lm_tokens(blob: bytes) -> int:
    from lmzip.coding import container

    header = container.peek_header(blob)
    return sum(s.token_count for s in header.segments if s.method == container.METHOD_LM)


def decode_one(ctx: Ctx, phase: str, name: str, which: str, blob: bytes, original: bytes) -> None:
    import lmzip

    rep = ctx.rep
    tokens = lm_tokens(blob)
    # Seconds per token: the slowest decode so far (x1.3), else 1.5 steps' worth (drafts make steps fewer
    # than tokens, the predictor adds its own time).
    rate = 1.3 * ctx.decode_rate[which] if which in ctx.decode_rate else 1.5 * ctx.step_estimate(which)
    need = 0.2 + tokens * rate
    if not rep.fits(need):
        rep.skip(phase, f"decode {name} on {ctx.device}", f"~{need:.0f} s for {tokens} tokens, {rep.left():.0f} s left")
        return
    t = time.perf_counter()
    try:
        back = lmzip.Decompressor(ctx.dev(which), device=ctx.device).decompress(blob)
    except Exception as exc:  # noqa: BLE001 - a failed decode is a finding, not the end of the run
        back = exc
    sync(ctx.device)
    dt = time.perf_counter() - t
    ok = back == original
    if tokens >= 32:
        ctx.decode_rate[which] = max(ctx.decode_rate.get(which, 0.0), dt / tokens)
    ctx.rep.section("decode")[name] = {"model": which, "tokens": tokens, "seconds": round(dt, 3), "ok": ok,
                                       "ms_per_token": round(1e3 * dt / max(1, tokens), 2)}
    rep.check(phase, f"decode {name} on {ctx.device}", ok, f"{tokens} tokens, {dt:.1f} s" if ok else repr(back)[:200])


FIRST_DECODES = ("tiny-compact", "teacher-compact")  # format 3 with lmzip's default settings


def phase_decode1(ctx: Ctx) -> None:
    for name, which in vector_names(ctx):
        if name in FIRST_DECODES:
            decode_one(ctx, "decode1", name, which, (VECTORS / f"{name}.lmz").read_bytes(), vector_original(name))


def phase_decode2(ctx: Ctx) -> None:
    done = set(ctx.rep.section("decode"))
    for name, which in vector_names(ctx):
        if name not in done:
            decode_one(ctx, "decode2", name, which, (VECTORS / f"{name}.lmz").read_bytes(), vector_original(name))
    tar = ctx.rep.out / "device_vectors.tar"
    if tar.is_file():
        with tarfile.open(tar) as t:
            got = {m.name: t.extractfile(m).read() for m in t.getmembers()}
        for name in json.loads(got["manifest-fragment.json"]):
            decode_one(ctx, "decode2", name, ctx.names[-1], got[f"{name}.lmz"], got[f"{name}.orig"])


# -- (d) throughput --------------------------------------------------------------------------


class GpuSampler:
    """GPU utilisation (%) every ``period`` seconds while a measurement runs (NVML via torch, else nvidia-smi)."""

    def __init__(self, ctx: Ctx, period: float = 0.25):
        self.ctx, self.period, self.samples, self.how = ctx, period, [], None
        self._stop = threading.Event()
        self._thread = None

    def _sample(self):
        if self.how in (None, "nvml"):
            try:
                v = float(self.ctx.torch.cuda.utilization(self.ctx.torch.device(self.ctx.device)))
                self.how = "nvml"
                return v
            except Exception:  # noqa: BLE001 - no pynvml: try nvidia-smi
                self.how = "smi" if self.how is None else "none"
        if self.how == "smi":
            try:
                q = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                   capture_output=True, text=True, timeout=5)
                return float(q.stdout.split()[0])
            except Exception:  # noqa: BLE001
                self.how = "none"
        return None

    def _run(self):
        while not self._stop.wait(self.period):
            v = self._sample()
            if v is None and self.how == "none":
                return
            if v is not None:
                self.samples.append(v)

    def __enter__(self):
        if self.ctx.cuda:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=6)

    def summary(self) -> dict:
        if not self.ctx.cuda:
            return {}
        s = self.samples
        return {"gpu_util_mean_pct": round(float(np.mean(s)), 1) if s else None,
                "gpu_util_max_pct": max(s) if s else None, "gpu_util_samples": len(s), "gpu_util_source": self.how}


def text_sources(ctx: Ctx) -> tuple[list[bytes], list[str]]:
    """Varied real text: what the kit carried (.gpu_kit/text: the corpora and the pool of text_pool.py), then
    the checkout's own text files."""
    paths, pools = [], []
    for d in ctx.args.text or ([KIT / "text"] if (KIT / "text").is_dir() else []):
        for p in sorted(Path(d).rglob("*")):
            if p.name == "pool.json":
                pools.append(p.parent)
            elif p.is_file() and not p.name.endswith(".txt.xz"):
                paths.append(p)
    for pattern in ("README.md", "docs/*.md", "benchmarks/data/*", "lmzip/*.py", "lmzip/**/*.py", "tests/*.py", "benchmarks/*.py"):
        paths += sorted(ROOT.glob(pattern))
    out, names, seen = [], [], set()
    for p in paths:
        if p.resolve() in seen or not p.is_file():
            continue
        seen.add(p.resolve())
        data = p.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if b"\0" in data or len(data) < 512:
            continue
        out.append(data)
        names.append(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p))
    import text_pool

    for folder in pools:  # last: each kind is one long source, the others run out first
        for name, data in text_pool.read(folder):
            out.append(data)
            names.append(name)
    return out, names


def build_text(sources: list[bytes], n_pieces: int, piece: int) -> bytes:
    """n_pieces pieces of ``piece`` bytes, taken from the sources in turn (each segment its own kind of text)."""
    pieces, offs, i = [], [0] * len(sources), 0
    while len(pieces) < n_pieces and any(o < len(s) for o, s in zip(offs, sources)):
        k = i % len(sources)
        i += 1
        if offs[k] < len(sources[k]):
            pieces.append(sources[k][offs[k]: offs[k] + piece])
            offs[k] += piece
    return b"".join(pieces)


@contextlib.contextmanager
def env(name: str, value: str):
    """The environment variable ``name`` set to ``value`` for a while (lmzip reads it at each call)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def measure(ctx: Ctx, which: str, data: bytes, segment_bytes: int, adapt: bool, batch: int, tag: str,
            decompress: bool = True, compare_lockstep: bool = False, compare_sequential: bool = False) -> dict:
    import lmzip
    from lmzip.coding import batch_encode, codec, container

    torch, dev = ctx.torch, ctx.device
    lm = ctx.dev(which)
    row = {"tag": tag, "model": which, "adapt": adapt, "segment_bytes": segment_bytes, "bytes": len(data),
           "device": dev, "device_name": ctx.rep.data["meta"].get("device_name")}
    def timed_compress() -> tuple[bytes, float]:
        sync(dev)
        t = time.perf_counter()
        blob = lmzip.Compressor(lm, device=dev, segment_size=segment_bytes, adapt=adapt, fallback=False).compress(data)
        sync(dev)
        return blob, time.perf_counter() - t

    ctx.reset_peak()
    batch_encode.STATS.clear()
    with GpuSampler(ctx) as gs:
        blob, ct = timed_compress()
    if batch_encode.STATS:  # where the batched encoder's time went (seconds, per thread)
        row["compress_time_split_s"] = {k: round(v, 3) for k, v in batch_encode.STATS.items()}
    header = container.peek_header(blob)
    lm_segs = [s for s in header.segments if s.method == container.METHOD_LM]
    tokens = sum(s.token_count for s in lm_segs)
    row["encode_batch"] = min(batch_encode.batch_for(lm), max(1, len(lm_segs)))  # segments a forward
    row.update(segments=len(header.segments), lm_segments=len(lm_segs), tokens=tokens, lmz_bytes=len(blob),
               bits_per_byte=round(8 * len(blob) / max(1, len(data)), 4), window=header.window_tokens,
               compress_s=round(ct, 3), compress_bytes_per_s=round(len(data) / ct, 1),
               compress_tokens_per_s=round(tokens / ct, 1), **{f"compress_{k}": v for k, v in gs.summary().items()})
    if ctx.cuda:
        row["compress_peak_gpu_mem_bytes"] = torch.cuda.max_memory_allocated()
    if compare_sequential and row["encode_batch"] > 1 and ctx.rep.fits(ct * row["encode_batch"] + 5):
        # The same file one segment at a time, side by side (the batched forwards' speed-up).
        with env("LMZIP_ENCODE_BATCH", "1"):
            blob1, ct1 = timed_compress()
        row.update(sequential_compress_s=round(ct1, 3), batched_compress_speedup=round(ct1 / max(ct, 1e-9), 2))
        ctx.rep.check("throughput", f"throughput {tag}: one segment at a time writes the same bytes", blob1 == blob)
    if decompress:
        # codec caps a decoding batch at CACHE_TOKEN_SLOTS // window streams (CPU memory); the GPU has room for N.
        slots = codec.CACHE_TOKEN_SLOTS
        if ctx.cuda:
            codec.CACHE_TOKEN_SLOTS = max(slots, batch * header.window_tokens)
        from lmzip.coding import device_decode

        if device_decode.wanted(lm):  # fixed-shape slots (a CUDA graph a step), segments flowing through them
            capacity = min(header.window_tokens, max([s.token_count for s in lm_segs] + [1]))
            row["decoder"] = "slots"
            row["decode_batch"] = device_decode.slot_count(lm, batch, capacity, len(lm_segs)) if lm_segs else 0
        else:
            row["decoder"] = "lockstep"
            row["decode_batch"] = max(1, min(batch, len(lm_segs), codec.CACHE_TOKEN_SLOTS // max(1, header.window_tokens)))
        row["host_coding"] = "native" if codec.coding_native(lm) else "python"
        def timed_decompress() -> tuple[bytes, float]:
            sync(dev)
            t = time.perf_counter()
            back = lmzip.Decompressor(lm, device=dev, batch=batch).decompress(blob)
            sync(dev)
            return back, time.perf_counter() - t

        ctx.reset_peak()
        device_decode.STATS.clear()
        try:
            with GpuSampler(ctx) as gs:
                back, dt = timed_decompress()
        finally:
            codec.CACHE_TOKEN_SLOTS = slots
        if device_decode.STATS:  # where the slots' time went (seconds; steps counted)
            row["decompress_time_split_s"] = {k: round(v, 3) for k, v in device_decode.STATS.items()}
        row.update(roundtrip_ok=back == data, decompress_s=round(dt, 3), decompress_bytes_per_s=round(len(data) / dt, 1),
                   decompress_tokens_per_s=round(tokens / dt, 1),
                   ms_per_token_per_stream=round(1e3 * dt / max(1, tokens) * row["decode_batch"], 2),
                   **{f"decompress_{k}": v for k, v in gs.summary().items()})
        if ctx.cuda:
            row["decompress_peak_gpu_mem_bytes"] = torch.cuda.max_memory_allocated()
        ctx.rep.check("throughput", f"throughput {tag}: round trip on {dev}", row["roundtrip_ok"],
                      f"{len(data)} B in {row['segments']} segments")
        if compare_lockstep and row["decoder"] == "slots" and ctx.rep.fits(3 * dt * max(1, row["decode_batch"]) + 5):
            # The same file through the lockstep decoder, side by side (the slots' speed-up).
            with env("LMZIP_DECODE", "lockstep"):
                back2, dt2 = timed_decompress()
            row.update(lockstep_decompress_s=round(dt2, 3), slots_speedup=round(dt2 / max(dt, 1e-9), 2))
            ctx.rep.check("throughput", f"throughput {tag}: the lockstep decoder gives the same bytes", back2 == data)
    say("speed " + " ".join(f"{k}={v}" for k, v in row.items() if k not in ("device", "device_name")))
    return row


def projected(b1: dict, last: dict, adapt: bool, nbytes: int, size: int, N: int, slope: float = 0.15) -> float:
    """Seconds a throughput run should take: the last run of its kind scaled by bytes, else the batch-1 runs'
    per-token costs (a decoding step over N streams: the model's step, ``slope`` more per further stream
    (measured in the rows phase), plus the host's predictor for every stream)."""
    if adapt in last:
        return last[adapt][1] * nbytes / last[adapt][0] * 1.15
    plain = b1.get(False)
    if plain is None:
        return float("inf")
    bpt = plain["bytes"] / max(1, plain["tokens"])

    def per_token(row, key):
        return row[key] / max(1, row["tokens"])

    dec = per_token(plain, "decompress_s")
    comp = per_token(plain, "compress_s")
    extra = 0.0
    if adapt:
        ad = b1.get(True)
        extra = max(0.0, per_token(ad, "decompress_s") - dec) if ad else 1.5 * dec
        comp = per_token(ad, "compress_s") if ad else 2.5 * comp
    seg_tokens = size / bpt
    return N * seg_tokens * comp + seg_tokens * (dec * (1 + slope * (N - 1)) + extra * N)


def phase_throughput(ctx: Ctx) -> None:
    rep, a = ctx.rep, ctx.args
    sec = rep.section("throughput")
    which = ctx.names[-1]
    sources, names = text_sources(ctx)
    sec["text_sources"] = {"files": len(names), "bytes": sum(map(len, sources)), "names": names[:60]}
    rate_guess = 3.6 if which == "teacher" else 1.0  # bytes per token
    step = ctx.step_estimate(which)

    # One segment alone (a small file): ms per decoded token at batch 1.
    b1: dict[bool, dict] = {}
    for adapt in (False, True):
        data = build_text(sources, 1, a.batch1_bytes)
        need = 1 + 1.5 * (len(data) / rate_guess) * step * (2.5 if adapt else 1)
        if not rep.fits(need):
            rep.skip("throughput", f"batch-1 decode (adapt={adapt})", f"~{need:.0f} s, {rep.left():.0f} s left")
            continue
        row = measure(ctx, which, data, 0, adapt, 1, f"batch1 adapt={adapt}", compare_lockstep=True)
        row["ms_per_decoded_token"] = round(1e3 * row["decompress_s"] / max(1, row["tokens"]), 2)
        sec["batch1"].append(row)
        b1[adapt] = row
        rep.save()

    # A batch of N segments, segments growing 4x while the projection fits the budget.
    N, size = a.tp_segments, a.tp_segment_bytes
    last: dict[bool, tuple[int, float]] = {}  # adapt -> (bytes, seconds) of its last run
    kinds = [False, True]
    largest = None
    while kinds and size <= a.tp_max_segment_bytes and not rep.stopped:
        data = build_text(sources, N, size)
        if len(data) < N * size * 3 // 4:
            rep.skip("throughput", f"runs of {N} x {size} B and more", f"only {len(data)} B of text for them")
            break
        for adapt in list(kinds):
            need = projected(b1, last, adapt, len(data), size, N, ctx.step_slope.get(which, 0.15))
            if not rep.fits(need * 1.2 + 0.5):
                rep.skip("throughput", f"runs of {N} x {size} B and more, adapt={adapt}",
                         f"~{need:.0f} s projected, {rep.left():.0f} s left")
                kinds.remove(adapt)
                continue
            t = time.perf_counter()
            row = measure(ctx, which, data, size, adapt, N, f"{N}x{size}B adapt={adapt}",
                          compare_sequential=adapt not in last)
            row["projected_s"] = round(need, 2)
            last[adapt] = (len(data), time.perf_counter() - t)
            sec["runs"].append(row)
            if not adapt:
                largest = (data, row)
            rep.save()
        size *= 4
    # The setting: >= 32 MB of varied text (64 KB pieces of every kind in turn), the adaptive
    # predictor, both ways: first in segments of 64 KB (--streams 512: a slot for each), then with lmzip's
    # default segments (1 MB: 32 slots), or that compression only, each when its projection fits.
    want = int(a.large_mb * (1 << 20))
    big = build_text(sources, -(-want // (64 << 10)), 64 << 10)
    if len(big) < want:
        rep.skip("throughput", f"the {a.large_mb} MB runs", f"only {len(big) / (1 << 20):.1f} MB of text (the kit's pool is missing?)")
        big = b""
    sec["large"] = []
    for streams, decode in ((512, True), (0, True), (0, False)):
        if not big or rep.stopped or (not decode and any(r["segment_bytes"] == 0 for r in sec["large"])):
            break
        size = -(-len(big) // streams) if streams else 1 << 20
        n = max(1, len(big) // size)
        need = projected(b1, last, True, len(big), size, n, ctx.step_slope.get(which, 0.15))
        if not decode and True in last:
            need = last[True][1] * len(big) / last[True][0] * 0.5  # compression alone: about half a round trip
        what = f"{a.large_mb} MB {'--streams 512' if streams else 'defaults'}{'' if decode else ' (compress only)'}"
        sec.setdefault("large_projected_s", {})[what] = round(need, 1)
        if rep.fits(need * 1.2 + 0.5):
            sec["large"].append(measure(ctx, which, big, size if streams else 0, True, max(64, n), what, decompress=decode))
            rep.save()
        else:
            rep.skip("throughput", f"the run {what} ({len(big)} B, adaptive)", f"~{need:.0f} s projected, {rep.left():.0f} s left")
    # The ratio cost of those segments: the same text with lmzip's defaults (compression only).
    if largest is not None:
        data, row = largest
        adapted = [r for r in sec["runs"] if r["adapt"] and r["bytes"] == row["bytes"]]
        need = adapted[0]["compress_s"] if adapted else 2.5 * row["compress_s"]
        if rep.fits(need * 1.5 + 0.5):
            sec["default_settings"] = measure(ctx, which, data, 0, True, N, "defaults (compress only)", decompress=False)
            rep.save()
        else:
            rep.skip("throughput", "bits/byte with the defaults", f"~{need:.0f} s, {rep.left():.0f} s left")


# -- driver ------------------------------------------------------------------------------------


PHASES = [  # name, function, the least time (s) worth starting it with (tiny, teacher)
    ("vectors", phase_vectors, (2, 15)),
    ("tables", phase_tables, (2, 5)),
    ("rows", phase_rows, (2, 30)),
    ("static", phase_static, (2, 40)),
    ("made", phase_made, (2, 15)),
    ("decode1", phase_decode1, (1, 10)),
    ("throughput", phase_throughput, (2, 20)),
    ("decode2", phase_decode2, (1, 10)),
]


def run_phase(ctx: Ctx, name: str, fn, need: float) -> None:
    rep = ctx.rep
    ph = rep.data["phases"]
    if rep.stopped or rep.left() < need:
        why = "the budget ran out earlier" if rep.stopped else f"{rep.left():.0f} s left, needs ~{need:.0f} s"
        ph[name] = {"status": "skipped", "why": why}
        rep.skip(name, f"phase {name}", why)
        return
    say(f"== {name} ({rep.left():.0f} s of the budget left)")
    ph[name] = {"status": "running"}
    rep.save()
    t = time.perf_counter()
    try:
        fn(ctx)
        status = "done"
    except BudgetExceeded:
        status = "cut"
        rep.stopped = True
        say(f"budget of {rep.budget_s:.0f} s reached during {name}: the rest is skipped")
    except Exception as exc:  # noqa: BLE001 - one phase failing must not lose the others
        status = "error"
        rep.check(name, f"phase {name} ran without an error", False,
                  f"{type(exc).__name__}: {exc}"[:300] + " | " + traceback.format_exc(limit=4)[-900:])
    ph[name] = {"status": status, "seconds": round(time.perf_counter() - t, 2)}
    rep.save()


def print_summary(rep: Report) -> None:
    d = rep.data
    s = d["summary"]
    print("\n==== gpu_check summary ====", flush=True)
    print(f"device {d['meta'].get('device')} ({d['meta'].get('device_name')}), {s['elapsed_s']} s of {rep.budget_s:.0f}")
    for name, ph in d["phases"].items():
        print(f"  {name:<11} {ph['status']:<8} {ph.get('seconds', '')} {ph.get('why', '')}")
    print(f"checks: {s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped")
    for c in s["failed_checks"][:20]:
        print(f"  FAIL {c}")
    tp = d["throughput"]
    for r in tp["batch1"] + tp["runs"] + tp.get("large", []):
        dec = (f"dec {r['decompress_bytes_per_s']:>9} B/s {r['decompress_tokens_per_s']:>8} tok/s"
               if "decompress_s" in r else "")
        print(f"  {r['tag']:<28} {r['bytes']:>8} B  {r['bits_per_byte']:.3f} bpb  comp {r['compress_bytes_per_s']:>9} B/s "
              f"{r['compress_tokens_per_s']:>8} tok/s  {dec}  {r.get('ms_per_decoded_token', '')} "
              f"{r.get('decoder', '')}x{r.get('decode_batch', '')} {r.get('host_coding', '')}"
              + (f" (slots: {r['slots_speedup']}x the lockstep speed)" if "slots_speedup" in r else "")
              + (f" (compress batch {r['encode_batch']}: {r['batched_compress_speedup']}x one segment at a time)"
                 if "batched_compress_speedup" in r else ""))
    print(f"report: {rep.path}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    ap.add_argument("--tiny", action="store_true", help="the committed tiny model only (no teacher): the CPU rehearsal")
    ap.add_argument("--out", type=Path, default=None, help="report folder (default: $OUT, else ./gpu_check_out)")
    ap.add_argument("--budget-s", type=float, default=270.0, help="hard time budget; what does not fit is skipped")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 with --tiny on cpu)")
    ap.add_argument("--phases", default=",".join(p[0] for p in PHASES), help="comma-separated subset to run")
    ap.add_argument("--cpu-tokens", type=int, default=160, help="teacher tokens compared with the CPU per input")
    ap.add_argument("--rows-batch", type=int, default=5, help="N of the batch-1-vs-batch-N row checks")
    ap.add_argument("--static-batch", type=int, default=64, help="N of the fixed-shape step's batch-N case")
    ap.add_argument("--static-capacity", type=int, default=1024, help="the fixed-shape step's cache capacity")
    ap.add_argument("--tp-segments", type=int, default=None, help="segments per throughput run (default 32 cuda, 4 cpu)")
    ap.add_argument("--tp-segment-bytes", type=int, default=None, help="first throughput run's bytes per segment")
    ap.add_argument("--tp-max-segment-bytes", type=int, default=256 << 10)
    ap.add_argument("--batch1-bytes", type=int, default=None, help="size of the batch-1 decoding run")
    ap.add_argument("--large-mb", type=float, default=32, help="MB of varied text of the issue's large run")
    ap.add_argument("--text", action="append", type=Path, help="folder of text for the throughput runs (repeatable)")
    ap.add_argument("--dev-float64", action="store_true",
                    help="the device's model takes float64 products too (a CPU rehearsal of the teacher's paths)")
    a = ap.parse_args(argv)
    os.environ["LMZIP_RUNTIME"] = "reference"  # read at each model load: the torch reference on every device

    import torch

    if a.device is None:
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = a.device.startswith("cuda")
    a.tp_segments = a.tp_segments or (32 if cuda else 4)
    a.tp_segment_bytes = a.tp_segment_bytes or (64 if a.tiny else 256)
    a.batch1_bytes = a.batch1_bytes or (64 if a.tiny else 400)
    if a.threads is None and a.tiny and not cuda:
        a.threads = 1  # tiny matrices on 2 shared cores: one thread is ~5x faster than two
    if a.threads:
        torch.set_num_threads(a.threads)
    out = a.out or Path(os.environ.get("OUT") or "gpu_check_out")
    rep = Report(out, a.budget_s)

    def alarm(signum, frame):
        raise BudgetExceeded()

    signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, a.budget_s))
    ctx = None
    try:
        ctx = Ctx(a, rep)
        rep.data["meta"] = meta(ctx)
        rep.save()
        m = rep.data["meta"]
        say(f"gpu_check on {a.device} ({m['device_name']}), torch {m['torch']}, runtime {m['runtime']}, "
            f"budget {a.budget_s:.0f} s, out {out}")
        wanted = set(a.phases.split(","))
        for name, fn, need in PHASES:
            if name in wanted:
                run_phase(ctx, name, fn, need[0] if a.tiny else need[1])
    except BudgetExceeded:
        rep.stopped = True
        say("budget reached outside a phase")
    except Exception as exc:  # noqa: BLE001 - the report must still be written
        rep.check("setup", "set-up ran without an error", False, f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=4)[-900:]}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    try:  # which product path the device's models took (exact_model falls back to float64 if int8 fails)
        for which, lm in (ctx._dev if ctx else {}).items():
            lins = [lm.model.head] + [w for layer in lm.model.layers for w in layer.values()]
            rep.data["meta"][f"{which}_int8_products"] = f"{sum(bool(x._int_mm) for x in lins)} of {len(lins)} layers"
        if ctx and ctx.cuda:
            rep.data["meta"]["peak_gpu_mem_bytes"] = max(ctx.peak_mem, ctx.torch.cuda.max_memory_allocated())
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        rep.data["meta"]["int8_products"] = f"unknown: {exc}"
    rep.data["done"] = True
    rep.save()
    print_summary(rep)
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
