"""Regenerate the committed .lmz test vectors (only when the format or numerics change on purpose).

    python tests/make_vectors.py            # tiny-model vectors
    python tests/make_vectors.py --teacher  # also the teacher vector (slow: the 135M model on CPU)
    python tests/make_vectors.py --shipped  # also a vector per model shipped inside lmzip (shipped-<id>)

The device-* vectors were coded on a GPU by benchmarks/device_check.py (--out; now benchmarks/gpu_check.py); they are
kept as they are, so the CPU keeps proving it decodes what CUDA encoded.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import lmzip
from lmzip.model import zoo
from lmzip.predict.adapt import AdaptParams

VECTORS = Path(__file__).parent / "vectors"
TEXT = (VECTORS / "teacher-small.orig")

PLAIN = dict(adapt=False, transforms=False)  # format version 1: the model alone
ONE_MIXER = {"version": 1}
TWO_MIXERS = {"version": 2}  # predictor parameters version 2, the default until version 3
ADAPT_TEXT = (b"The decoder learns what the encoder learned, token for token.\r\n" * 10
              + b"line\nwith bare LF\n" * 6 + random.Random(5).randbytes(64))
TINY = {
    "tiny-text": (b"Exact models make arithmetic coding portable: a file coded here decodes there.\r\n" * 12,
                  dict(window=64, overlap=16, segment_size=400, top_k=16, fallback=False, **PLAIN)),
    "tiny-bytes": (bytes(range(256)) * 2, dict(window=100, overlap=0, segment_size=0, top_k=64, fallback=False, **PLAIN)),
    "tiny-mixed": (b"text first, " * 20 + random.Random(3).randbytes(600),
                   dict(window=32, overlap=8, segment_size=240, top_k=0, **PLAIN)),
    "tiny-empty": (b"", dict(window=64, overlap=16, segment_size=0, top_k=64, **PLAIN)),
    # format version 2: adaptive predictor, CRLF transform on the segments where it applies
    # (predictor parameters version 1: one mixer, as first written)
    "tiny-adapt": (ADAPT_TEXT, dict(window=48, overlap=16, segment_size=300, top_k=16, fallback=False, adapt=ONE_MIXER)),
    # predictor parameters version 2: the second, token-class mixer
    "tiny-adapt2": (ADAPT_TEXT, dict(window=48, overlap=16, segment_size=300, top_k=16, fallback=False, adapt=TWO_MIXERS)),
    # predictor parameters version 3 (lmzip's default): exp3, the bounded normalisation
    "tiny-adapt3": (ADAPT_TEXT, dict(window=48, overlap=16, segment_size=300, top_k=16, fallback=False)),
    # format version 3: the compact header with the model named in full (a model directory) ...
    "tiny-compact": (ADAPT_TEXT, dict(window=48, overlap=16, segment_size=300, top_k=16, fallback=False,
                                      format_version=3, adapt=TWO_MIXERS)),
    # ... and the fallbacks: text where stored bytes or xz win, binary that the sniffer keeps from the model
    "tiny-xz": (b"and text at the start.\n" * 8 + bytes(range(256)) * 3 + random.Random(9).randbytes(300),
                dict(window=48, overlap=16, segment_size=300, top_k=16, format_version=3, adapt=TWO_MIXERS)),
}
# Vectors written before format version 3 carry no format_version: they are in the legacy layout
# (version 1 or 2, whichever their features need), and so is what re-encodes them.
LEGACY = 2
TEACHER = {
    "teacher-small": dict(window=2048, overlap=512, segment_size=0, top_k=64, **PLAIN),
    "teacher-adapt": dict(window=2048, overlap=512, segment_size=0, top_k=64, adapt=ONE_MIXER),
    "teacher-adapt2": dict(window=2048, overlap=512, segment_size=0, top_k=64, adapt=TWO_MIXERS),
    # format version 3 with lmzip's defaults of its time: the teacher named by reference, settings by preset 1
    "teacher-compact": dict(format_version=3, adapt=TWO_MIXERS),
    # predictor parameters version 3 (lmzip's defaults now: preset 3)
    "teacher-adapt3": dict(format_version=3),
}


SHIPPED_TEXT = (b"A small model shipped inside lmzip codes this text; a later lmzip must decode it to the byte.\n"
                b"Its sha256 names it in the header, so a changed model would have to be a new registry entry.\n") * 3


def compressor(model, params: dict) -> lmzip.Compressor:
    """The Compressor a manifest entry describes (``adapt`` may be a dict of AdaptParams fields)."""
    params = {k: v for k, v in params.items() if k != "made_on"}
    params.setdefault("format_version", LEGACY)
    if isinstance(params.get("adapt"), dict):
        params["adapt"] = AdaptParams(**params["adapt"])
    return lmzip.Compressor(model, **params)


def main() -> None:
    manifest = {}
    tiny = zoo.load(VECTORS / "tiny-model")
    for name, (data, params) in TINY.items():
        (VECTORS / f"{name}.orig").write_bytes(data)
        (VECTORS / f"{name}.lmz").write_bytes(compressor(tiny, params).compress(data))
        manifest[name] = params
    old = json.loads((VECTORS / "manifest.json").read_text()) if (VECTORS / "manifest.json").exists() else {}
    manifest.update({k: v for k, v in old.items() if k.startswith("device-")})
    if "--teacher" in sys.argv:
        teacher = zoo.load("smollm2-135m")
        for name, params in TEACHER.items():  # all code the same text
            (VECTORS / f"{name}.lmz").write_bytes(compressor(teacher, params).compress(TEXT.read_bytes()))
            manifest[name] = params
    else:
        manifest.update({k: v for k, v in old.items() if k.startswith("teacher-")})
    if "--shipped" in sys.argv:
        for e in zoo.registry():  # lmzip's defaults of the time, the model named by reference
            if e.source.get("kind") == "shipped":
                name, params = f"shipped-{e.id}", dict(format_version=3)
                (VECTORS / f"{name}.lmz").write_bytes(compressor(zoo.load(e.id), params).compress(SHIPPED_TEXT))
                manifest[name] = params
    else:
        manifest.update({k: v for k, v in old.items() if k.startswith("shipped-")})
    (VECTORS / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
