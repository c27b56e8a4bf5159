"""Model-file strictness (FORMAT.md §7.5.2): every ``*.q`` tensor is I8 and every ``*.scale`` F32, of
the shapes the config implies, and both runtimes refuse anything else with a one-line ModelError
naming the tensor, before using any weight (so no file can mean different integers to the two)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from lmzip import native
from lmzip.model.convert import exact_config, exact_tensors, random_llama
from lmzip.errors import ModelError
from lmzip.model.model_spec import (
    MAX_CONTEXT,
    NUMERICS_VERSION,
    ExactConfig,
    check_tensors,
    tensor_specs,
)
from lmzip.native.weights import open_safetensors
from lmzip.testing import load_with_runtime, write_tiny_model
from lmzip.model.zoo import WEIGHTS


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


RUNTIMES = [
    pytest.param("native", marks=pytest.mark.skipif(not native.available(), reason="native runtime not built")),
    pytest.param("reference", marks=pytest.mark.skipif(not _torch_available(), reason="torch is not installed")),
]


def _rewrite(directory: Path, change) -> Path:
    """Rewrite the model file of ``directory`` with ``change(tensors, config)`` applied (in place)."""
    path = directory / WEIGHTS
    meta, _ = open_safetensors(path)
    tensors = dict(load_file(str(path)))
    config = json.loads(meta["lmzip_config"])
    change(tensors, config)
    save_file(tensors, str(path), metadata={"lmzip_config": json.dumps(config, sort_keys=True, indent=1)})
    return directory


def _retype(name: str, dtype):
    def change(tensors, config):
        tensors[name] = tensors[name].astype(dtype)
    return change


def _reshape(name: str, rows_delta: int = 0, transpose: bool = False):
    def change(tensors, config):
        t = tensors[name]
        if transpose:
            t = np.ascontiguousarray(t.T)
        if rows_delta:
            t = np.concatenate([t, t[:rows_delta]])
        tensors[name] = t
    return change


def _drop(name: str):
    def change(tensors, config):
        del tensors[name]
    return change


BAD = {
    "f64-scale": ("embed.scale", _retype("embed.scale", np.float64)),
    "f16-scale": ("layers.1.w2.scale", _retype("layers.1.w2.scale", np.float16)),
    "i16-embed": ("embed.q", _retype("embed.q", np.int16)),
    "i32-weights": ("layers.0.wo.q", _retype("layers.0.wo.q", np.int32)),
    "u8-head": ("head.q", _retype("head.q", np.uint8)),
    "f32-weights": ("layers.0.w13.q", _retype("layers.0.w13.q", np.float32)),
    "i8-scale": ("head.scale", _retype("head.scale", np.int8)),
    "extra-row": ("layers.0.wqkv.q", _reshape("layers.0.wqkv.q", rows_delta=1)),
    "extra-scale": ("layers.1.wo.scale", _reshape("layers.1.wo.scale", rows_delta=1)),
    "transposed": ("layers.1.w2.q", _reshape("layers.1.w2.q", transpose=True)),
    "missing": ("layers.1.w13.scale", _drop("layers.1.w13.scale")),
}


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("case", sorted(BAD))
def test_both_runtimes_refuse_a_tensor_of_the_wrong_dtype_or_shape(tmp_path, runtime, case):
    name, change = BAD[case]
    directory = _rewrite(write_tiny_model(tmp_path / f"bad-{case}", seed=3), change)
    with pytest.raises(ModelError) as err:
        load_with_runtime(directory, runtime)
    message = str(err.value)
    assert name in message and "\n" not in message, message


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_message_names_dtype_and_shape(tmp_path, runtime):
    directory = _rewrite(write_tiny_model(tmp_path / "f64", seed=3), _retype("embed.scale", np.float64))
    with pytest.raises(ModelError, match=r"'embed\.scale' is F64 \[256\]; the format requires F32 \[256\]"):
        load_with_runtime(directory, runtime)


def test_check_tensors_accepts_what_convert_writes_and_ignores_extras():
    cfg, w = random_llama(1, dim=48, n_layers=1, n_heads=3, n_kv_heads=1, ffn_dim=40, vocab_size=70)
    ec, t = exact_config(cfg, 64), exact_tensors(cfg, w)
    check_tensors(ec, t)
    check_tensors(ec, {**t, "something.else": np.zeros(3, np.float64)})
    specs = tensor_specs(ec)
    assert set(specs) == set(t)
    assert specs["layers.0.wqkv.q"] == ("I8", ((3 + 2) * 16, 48)) and specs["layers.0.wqkv.scale"] == ("F32", (80,))
    assert specs["layers.0.w13.q"] == ("I8", (80, 48)) and specs["layers.0.w2.q"] == ("I8", (48, 40))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_in_memory_weights_are_checked_too(runtime):
    """The constructors check, not only the file loaders (convert and tests build models in memory)."""
    cfg, w = random_llama(2)
    ec, t = exact_config(cfg, 64), exact_tensors(cfg, w)
    bad = {**t, "embed.scale": t["embed.scale"].astype(np.float64)}
    if runtime == "native":
        from lmzip.native.model import NativeModel as Model
    else:
        from lmzip.model.exact_model import ExactModel as Model
    with pytest.raises(ModelError, match="embed.scale"):
        Model(ec, bad)
    if runtime == "reference":
        import torch

        with pytest.raises(ModelError, match="embed.q"):
            Model(ec, {**t, "embed.q": torch.from_numpy(t["embed.q"].astype(np.int16))})


def _save_raw(path: Path, extra: dict[str, tuple[str, tuple[int, ...], bytes]]) -> None:
    """Rewrite a model file with raw tensors added or replaced (dtypes numpy cannot write, e.g. BF16)."""
    meta, arrays = open_safetensors(path)
    entries = {name: (dtype, a.shape, a.tobytes()) for name, a in arrays.items()
               for dtype in [{np.dtype(np.int8): "I8", np.dtype(np.float32): "F32"}[a.dtype]]}
    entries.update(extra)
    header, data, at = {"__metadata__": meta}, bytearray(), 0
    for name, (dtype, shape, raw) in entries.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + len(raw)]}
        data += raw
        at += len(raw)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    del arrays
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + bytes(data))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bf16_where_a_weight_should_be_is_refused_elsewhere_ignored(tmp_path, runtime):
    """Both runtimes look only at the tensors the format names, whatever dtype the others have."""
    bf16 = np.zeros(256, np.uint16).tobytes()
    good = write_tiny_model(tmp_path / "extra", seed=3)
    _save_raw(good / WEIGHTS, {"notes.bf16": ("BF16", (256,), bf16), "notes.f8": ("F8_E4M3", (2, 3), bytes(6))})
    assert load_with_runtime(good, runtime).model.cfg.vocab_size == 256
    bad = write_tiny_model(tmp_path / "bf16-scale", seed=3)
    _save_raw(bad / WEIGHTS, {"embed.scale": ("BF16", (256,), bf16)})
    with pytest.raises(ModelError, match=r"'embed\.scale' is BF16 \[256\]; the format requires F32"):
        load_with_runtime(bad, runtime)


BAD_CONFIGS = {
    "string-dim": ({"dim": "32"}, "dim must be an integer"),
    "float-vocab": ({"vocab_size": 256.0}, "vocab_size must be an integer"),
    "zero-heads": ({"n_heads": 0}, "n_heads must be an integer >= 1"),
    "negative-layers": ({"n_layers": -1}, "n_layers must be an integer >= 0"),
    "bool-kv-heads": ({"n_kv_heads": True}, "n_kv_heads must be an integer"),
    "zero-context": ({"max_context": 0}, "max_context must be an integer >= 1"),
    "long-context": ({"max_context": 8192}, "exceeds the bounds"),
    "numerics-2": ({"numerics": 2}, "numerics version 2"),
    "zero-theta": ({"rope_theta": 0}, "rope_theta must be a finite number > 0"),
    "null-eps": ({"norm_eps": None}, "norm_eps must be a finite number > 0"),
    "no-dim": ({"dim": ...}, "model config lacks dim"),
    "huge-layers": ({"n_layers": 10**12}, "model file lacks tensors: layers.2.wqkv.q"),
    "not-an-object": ([1, 2], "model config is a JSON list"),
}


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_both_runtimes_refuse_a_bad_config(tmp_path, runtime, case):
    change, part = BAD_CONFIGS[case]
    path = write_tiny_model(tmp_path / case, seed=3) / WEIGHTS
    meta, _ = open_safetensors(path)
    config = json.loads(meta["lmzip_config"])
    if isinstance(change, dict):
        for key, value in change.items():
            if value is ...:
                del config[key]
            else:
                config[key] = value
    else:
        config = change
    save_file(dict(load_file(str(path))), str(path), metadata={"lmzip_config": json.dumps(config)})
    with pytest.raises(ModelError) as err:
        load_with_runtime(path.parent, runtime)
    assert part in str(err.value) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_config_without_numerics_or_max_context_reads_as_1_and_4096(tmp_path, runtime):
    """Old files lack these keys; FORMAT.md §7.5.2 gives their defaults."""
    def change(tensors, config):
        del config["numerics"], config["max_context"]

    directory = _rewrite(write_tiny_model(tmp_path / "old-config", seed=3), change)
    cfg = load_with_runtime(directory, runtime).model.cfg
    assert (cfg.numerics, cfg.max_context) == (NUMERICS_VERSION, MAX_CONTEXT) == (1, 4096)
    assert ExactConfig.from_dict({k: v for k, v in cfg.__dict__.items() if k not in ("numerics", "max_context")}) == cfg
