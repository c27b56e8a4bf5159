"""benchmarks/gpu_check.py, the script a lent GPU runs (benchmarks/GPU_KIT.md), rehearsed on the CPU with the
committed tiny model: it must run end to end, stay inside its budget, and report every committed tiny vector
re-encoded to its bytes. (In a subprocess: the script forces LMZIP_RUNTIME=reference and one torch thread.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 12


def test_tiny_rehearsal_reports_everything(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OUT", None)
    t = time.perf_counter()
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--tiny",
                          "--budget-s", str(BUDGET_S), "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=BUDGET_S + 60)
    wall = time.perf_counter() - t
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / "gpu_report.json").read_text())

    assert {"schema", "done", "meta", "phases", "checks", "skipped", "vectors", "tables", "rows", "static", "made",
            "decode", "throughput", "summary"} <= set(report)
    assert report["done"] and report["summary"]["failed"] == 0
    assert report["meta"]["device"] == "cpu" and report["meta"]["runtime"] == "reference"
    assert report["summary"]["elapsed_s"] <= BUDGET_S + 2 and wall <= BUDGET_S + 20
    # Each phase ran or was skipped for the budget; none broke.
    assert [*report["phases"]] == ["vectors", "tables", "rows", "static", "made", "decode1", "throughput", "decode2"]
    assert all(p["status"] in ("done", "skipped", "cut") for p in report["phases"].values()), report["phases"]

    # (a) every committed tiny vector, re-encoded on the device to the committed bytes
    assert report["phases"]["vectors"]["status"] == "done"
    manifest = json.loads((ROOT / "tests" / "vectors" / "manifest.json").read_text())
    tiny = {n for n in manifest if n.startswith("tiny-")}
    assert set(report["vectors"]) == tiny
    assert all(v["reencode_ok"] for v in report["vectors"].values())
    checks = {c["name"]: c["ok"] for c in report["checks"]}
    assert all(checks[f"vector {n}: re-encoded on cpu to the committed bytes"] for n in tiny)

    # (b), (c), (e) when the budget reached them (it does on an idle machine). A phase that ran
    # may still have skipped some of its parts for the budget (on a loaded machine): those parts
    # are listed in "skipped", and a phase counts as reached only when it lists none.
    def reached(phase):
        return report["phases"][phase]["status"] == "done" and not any(s["phase"] == phase for s in report["skipped"])

    if report["phases"]["tables"]["status"] == "done":
        assert all(t["sha256"] == t["pinned"] for t in report["tables"].values() if "pinned" in t)
    if reached("rows"):
        row = report["rows"]["tiny.tiny-model.tokens"]
        assert row["full_sha256"] == row["committed_sha256"] == row["cpu_full_sha256"]
    if reached("static"):  # the fixed-shape step: same logits; no graphs on a CPU
        assert checks["tiny.batch1: the fixed-shape step's logits equal the model's step on cpu"]
        assert checks["tiny.batch64: the fixed-shape step's logits equal the model's step on cpu"]
        assert report["static"]["tiny.batch1"]["graph"].startswith("skipped")
    if reached("made"):
        with tarfile.open(out / "device_vectors.tar") as tar:
            names = set(tar.getnames())
        fragment = set(report["made"])
        assert fragment and all(n.startswith("tinydev-") for n in fragment)
        assert names == {"manifest-fragment.json"} | {f"{n}{e}" for n in fragment for e in (".lmz", ".orig")}
    # (d) rows carry the figures the issue asks for
    for r in report["throughput"]["batch1"] + report["throughput"]["runs"]:
        assert r["roundtrip_ok"] and r["compress_bytes_per_s"] > 0 and r["decompress_tokens_per_s"] > 0
        assert {"bits_per_byte", "tokens", "segments", "decode_batch", "encode_batch", "device_name"} <= set(r)
    assert "gpu_check summary" in res.stdout


def test_the_text_pool_names_its_files_and_checks_itself(tmp_path):
    """benchmarks/text_pool.py: this machine's varied text for the large run, each kind one xz file
    beside a manifest of every file's package, licence and sha256; a changed byte is refused."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import text_pool

    meta = text_pool.build(tmp_path, 0.4, say=lambda msg: None)
    if not meta["kinds"]:
        pytest.skip("no system text on this machine")
    kinds = text_pool.read(tmp_path)
    assert [name for name, _ in kinds] == [f"pool/{k}" for k in sorted(meta["kinds"])]
    assert sum(len(t) for _, t in kinds) == sum(f["bytes"] for f in meta["files"]) > 100_000
    assert all(f["licence"] and f["package"] for f in meta["files"])
    assert json.loads((tmp_path / "pool.json").read_text())["files"] == meta["files"]
    import lzma

    victim = tmp_path / f"{sorted(meta['kinds'])[0]}.txt.xz"
    raw = bytearray(lzma.decompress(victim.read_bytes()))
    raw[len(raw) // 2] ^= 1
    victim.write_bytes(lzma.compress(bytes(raw)))
    with pytest.raises(ValueError, match="sha256"):
        text_pool.read(tmp_path)
