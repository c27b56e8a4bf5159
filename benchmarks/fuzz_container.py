"""Fuzz everything a .lmz file controls: raw byte edits and field edits with valid checksums.

    python benchmarks/fuzz_container.py [--inputs 100000] [--seed 1]

Seeds: files of the tiny test model in format 3 and 2, adaptive and not, with model, xz, zstd
and stored segments. Each input is one seed mutated either in its bytes (flips, insertions,
deletions, truncation, splices) or in its parsed fields (any header or segment field, predictor
bytes, payload edits) and then re-serialised, which recomputes every checksum and the seal.
Every input must decode to the original or raise an LmzipError within TIME_LIMIT: a traceback of
any other exception, a hang or a wrong output is counted and printed. tests/test_fuzz_fields.py
runs a bounded version of the field edits in CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lmzip  # noqa: E402
from lmzip.coding import container  # noqa: E402
from lmzip.errors import LmzipError  # noqa: E402
from lmzip.testing import load_with_runtime, write_tiny_model  # noqa: E402

TIME_LIMIT = 10.0
DATA = (b"fields under attack: counts, lengths and parameters.\r\n" * 6 + bytes(range(256)) * 2
        + b"and plain text at the end\n" * 4)
FIELDS = ["original_size", "total_bits", "top_k", "window_tokens", "overlap_tokens", "context_policy", "flags"]
SEG_FIELDS = ["method", "transforms", "original_length", "payload_length", "token_count", "crc32"]
VALUES = [0, 1, 2, 3, 4, 15, 16, 17, 24, 48, 255, 256, 4096, 2**16 - 1, 2**31, 2**32 - 1, 3_000_000, 2**40]


def seeds(tiny) -> list[tuple[bytes, int]]:
    out = []
    for version in (3, 2):
        for opts in (dict(fallback=False), dict(fallback=False, adapt=False), dict()):
            blob = lmzip.Compressor(tiny, window=48, overlap=16, segment_size=160, format_version=version,
                                    **opts).compress(DATA)
            out.append((blob, version))
    return out


def mutate_bytes(rng: random.Random, blob: bytes) -> bytes:
    b = bytearray(blob)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        i = rng.randrange(len(b) + 1)
        if op < 0.45 and b:
            b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op < 0.6:
            b[i:i] = bytes([rng.randrange(256)]) * rng.randint(1, 3)
        elif op < 0.75 and b:
            del b[i : i + rng.randint(1, 4)]
        elif op < 0.85:
            del b[i:]
        elif b:
            b[min(i, len(b) - 1)] = rng.choice([0, 0xFF, 0x7F, 0x80])
    return bytes(b)


def mutate_fields(rng: random.Random, blob: bytes, version: int) -> bytes | None:
    header, payloads = container.read_container(blob)
    segs = [dataclasses.replace(s) for s in header.segments]
    pays = [bytes(p) for p in payloads]
    fields = {}
    for _ in range(rng.randint(1, 3)):
        what = rng.random()
        if what < 0.35 and segs:
            k = rng.randrange(len(segs))
            name = rng.choice(SEG_FIELDS)
            segs[k] = dataclasses.replace(segs[k], **{name: rng.choice(VALUES)})
        elif what < 0.6:
            fields[rng.choice(FIELDS)] = rng.choice(VALUES)
        elif what < 0.7:
            fields["predictor"] = rng.randbytes(rng.choice([0, 1, 10, 11, 12]))
        elif pays:
            k = rng.randrange(len(pays))
            pays[k] = mutate_bytes(rng, pays[k])
            segs[k] = dataclasses.replace(segs[k], payload_length=len(pays[k]))
    try:
        return container.write_container(dataclasses.replace(header, segments=segs, **fields), pays, version)
    except (ValueError, LmzipError):
        return None  # values the writer cannot hold


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runtime", default="native", choices=["native", "reference"])
    args = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tiny = load_with_runtime(write_tiny_model(Path(tmp) / "tiny-model", seed=7), args.runtime)
        base = seeds(tiny)
        rng = random.Random(args.seed)
        counts = {"original": 0, "refused": 0, "unwritable": 0}
        bad = 0
        slowest = 0.0
        t_start = time.monotonic()
        for n in range(args.inputs):
            blob, version = rng.choice(base)
            cand = mutate_bytes(rng, blob) if rng.random() < 0.5 else mutate_fields(rng, blob, version)
            if cand is None:
                counts["unwritable"] += 1
                continue
            t0 = time.monotonic()
            try:
                out = lmzip.decompress(cand, tiny)
            except LmzipError:
                counts["refused"] += 1
                out = None
            except Exception as exc:  # noqa: BLE001 - exactly what the fuzzer looks for
                bad += 1
                print(f"input {n}: {type(exc).__name__}: {exc} ({cand.hex()[:120]}...)", flush=True)
                continue
            dt = time.monotonic() - t0
            slowest = max(slowest, dt)
            if dt > TIME_LIMIT:
                bad += 1
                print(f"input {n}: took {dt:.1f} s", flush=True)
            if out is not None:
                if out != DATA:
                    bad += 1
                    print(f"input {n}: decoded to different bytes", flush=True)
                else:
                    counts["original"] += 1
            if (n + 1) % 10000 == 0:
                print(f"{n + 1} inputs, {time.monotonic() - t_start:.0f} s: {counts}, failures {bad}", flush=True)
        print(f"done: {args.inputs} inputs in {time.monotonic() - t_start:.0f} s; {counts}; slowest {slowest:.2f} s; "
              f"failures {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
