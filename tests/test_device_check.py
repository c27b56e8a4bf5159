"""benchmarks/device_check.py: the script a lent GPU runs must work before it gets there.

On a CPU it checks the same invariants (vectors re-encode to the same bytes, the teacher's
tables hash to the committed digest); on CUDA it found the divide-by-a-number rounding that
broke decoding across devices (see test_exact_model)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import device_check  # noqa: E402


def test_tiny_run_passes_and_reports(tmp_path):
    out = tmp_path / "report.json"
    assert device_check.main(["--device", "cpu", "--tiny-only", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["failures"] == 0 and len(report["checks"]) >= 12
    assert all(c["ok"] for c in report["checks"].values())


@pytest.mark.teacher
def test_teacher_tables_match_the_committed_digest(teacher):
    """The digest every device is compared with: the CPU reference's, three ways of evaluating,
    one result; the runtime CPU work uses (native where built) must reproduce it."""
    ref = json.loads(device_check.REFERENCE.read_text())
    got = device_check.teacher_digests("cpu")
    assert got["full"] == got["batch3_stream1"] == got["steps"] == ref["full"]
