"""Training configs: one student per file (JSON or TOML), checked before anything runs.

A config has these sections (every key is optional except ``student``; unknown keys are an
error, so a typo cannot silently fall back to a default):

``name``, ``out``
    the run's name and its directory (checkpoint, log, export); ``out`` defaults to
    ``train-kit/runs/<name>``.
``student``
    the Llama shape the exact runtime implements: ``n_layers``, ``dim``, ``n_heads``,
    ``n_kv_heads``, ``ffn_dim``, ``max_context``, ``rope_theta``, ``norm_eps``, ``tied`` (output
    head tied to the embedding) and ``init`` (a model directory to start from, or null).
``vocab``
    ``{"kind": "teacher"}`` (the teacher's tokenizer) or ``{"kind": "teacher-prefix", "size": N}``
    (the teacher's BPE cut to its first N ids; see ``vocab.py``).
``teacher``
    ``{"kind": "exact", "path": DIR or registry id}`` (dequantised exact weights),
    ``{"kind": "gguf", "path": FILE, "sha256": HEX or null}`` (the float source file) or
    ``{"kind": "random", "seed": S, "shape": {...}}`` (``convert.random_llama``: tests). ``dtype``:
    the teacher's weights, "auto" or "float32" (then it computes under ``train.dtype``'s autocast
    with a float32 residual stream) or "bfloat16".
``data``
    ``path`` (a packed file from ``python -m lmzip.train.data``), ``holdout_permille`` (documents
    held out for bits/byte) and ``generate`` (text sampled from the teacher at the start:
    ``sequences``, each continuing ``prompt_tokens`` of real text, or for an ``unprompted`` share
    of them nothing but BOS, at ``temperature``, ``batch`` sequences at a time; it makes up a
    ``fraction`` of each training batch).
``train``
    the loop: ``steps``, ``batch_size`` (sequences), ``micro_batch`` (0: the whole batch at once),
    ``seq_len``, ``seed``, ``time_budget_s`` (0: none; else the loop stops, checkpoints and exports
    when it is spent, and the learning rate decays by time as well as by steps), ``log_every``,
    ``eval_every``, ``eval_tokens``, ``checkpoint_every`` (steps), ``checkpoint_seconds``,
    ``device`` ("auto", "cpu", "cuda"), ``dtype`` ("auto": bfloat16 autocast on CUDA, float32
    on the CPU), ``threads`` (CPU threads, 0: torch's default).
``optim``
    ``lr``, ``min_lr_ratio``, ``warmup_steps``, ``schedule`` ("cosine", "wsd": constant then a
    linear decay over the last ``decay_fraction``, "constant"), ``decay_fraction``,
    ``weight_decay``, ``grad_clip``, ``betas``, ``compile`` (torch.compile the student).
``distill``
    ``temperature`` and ``alpha``: loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE.
``export``
    ``weight_bits`` (8: the format's int8; 2..7 keep fewer levels in the same int8 tensors),
    ``max_context`` (null: the student's), ``exact_eval_bytes`` (held-out bytes coded by the exact
    runtime after export, 0: none), ``report_bits`` (other weight widths whose held-out cost is
    measured and recorded, no file written).

Several configs can train in one process (``python -m lmzip.train A.json B.json``): they then
share one teacher forward per batch, so their ``teacher``, ``data`` and ``train`` sections must
be equal; ``student``, ``vocab``, ``optim``, ``distill`` and ``export`` are each run's own.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config that cannot be run (the message names the key)."""


@dataclass
class StudentSpec:
    n_layers: int = 4
    dim: int = 256
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_dim: int = 768
    max_context: int = 1024
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tied: bool = True
    init: str | None = None


@dataclass
class VocabSpec:
    kind: str = "teacher"
    size: int | None = None


@dataclass
class TeacherSpec:
    kind: str = "exact"
    path: str | None = "smollm2-135m"
    sha256: str | None = None
    seed: int = 0
    shape: dict = field(default_factory=dict)
    dtype: str = "auto"


@dataclass
class GenerateSpec:
    sequences: int = 0
    prompt_tokens: int = 32
    temperature: float = 1.0
    batch: int = 256
    fraction: float = 0.25
    unprompted: float = 0.0


@dataclass
class DataSpec:
    path: str = "train-kit/data/corpus.lmzt.xz"
    holdout_permille: int = 10
    generate: GenerateSpec = field(default_factory=GenerateSpec)


@dataclass
class TrainSpec:
    steps: int = 1000
    batch_size: int = 32
    micro_batch: int = 0
    seq_len: int = 512
    seed: int = 0
    time_budget_s: float = 0.0
    log_every: int = 10
    eval_every: int = 200
    eval_tokens: int = 65536
    checkpoint_every: int = 500
    checkpoint_seconds: float = 300.0
    device: str = "auto"
    dtype: str = "auto"
    threads: int = 0


@dataclass
class OptimSpec:
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    schedule: str = "cosine"
    decay_fraction: float = 0.3
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    betas: list = field(default_factory=lambda: [0.9, 0.95])
    compile: bool = False


@dataclass
class DistillSpec:
    temperature: float = 1.0
    alpha: float = 0.9


@dataclass
class ExportSpec:
    weight_bits: int = 8
    max_context: int | None = None
    exact_eval_bytes: int = 0
    report_bits: list = field(default_factory=list)


@dataclass
class Config:
    name: str = "student"
    out: str | None = None
    student: StudentSpec = field(default_factory=StudentSpec)
    vocab: VocabSpec = field(default_factory=VocabSpec)
    teacher: TeacherSpec = field(default_factory=TeacherSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    distill: DistillSpec = field(default_factory=DistillSpec)
    export: ExportSpec = field(default_factory=ExportSpec)
    source: str = ""  # the file it was read from (not a key of the file)

    @property
    def out_dir(self) -> Path:
        return Path(self.out if self.out else f"train-kit/runs/{self.name}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        d["out"] = str(self.out_dir)
        return d

    def shared_key(self) -> str:
        """What several configs trained in one process must have in common."""
        d = self.to_dict()
        return json.dumps({k: d[k] for k in ("teacher", "data", "train")}, sort_keys=True)


# -- building from plain data ---------------------------------------------------------------

_NESTED = {"student": StudentSpec, "vocab": VocabSpec, "teacher": TeacherSpec, "data": DataSpec,
           "train": TrainSpec, "optim": OptimSpec, "distill": DistillSpec, "export": ExportSpec,
           "generate": GenerateSpec}


def _build(cls, d: Any, where: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{where or 'config'}: expected an object, got {type(d).__name__}")
    known = {f.name: f for f in fields(cls) if f.name != "source"}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})")
    kwargs = {}
    for k, v in d.items():
        sub = _NESTED.get(k)
        if sub is not None and k in known and isinstance(known[k].default_factory, type):  # a nested section
            kwargs[k] = _build(sub, v, f"{where}.{k}" if where else k)
        else:
            kwargs[k] = v
    return cls(**kwargs)


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _int(v, name: str, lo: int = 0) -> None:
    _need(isinstance(v, int) and not isinstance(v, bool) and v >= lo, f"{name} must be an integer >= {lo}, not {v!r}")


def _num(v, name: str, lo: float = 0.0, strict: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > lo if strict else v >= lo)
    _need(ok, f"{name} must be a number {'>' if strict else '>='} {lo}, not {v!r}")


def validate(cfg: Config) -> Config:
    """Raise ConfigError for a config that cannot run; return it otherwise."""
    from ..model.model_spec import ExactConfig, check_bounds
    from ..errors import ModelError

    _need(isinstance(cfg.name, str) and cfg.name and all(c.isalnum() or c in "-_." for c in cfg.name),
          f"name must be letters, digits, '-', '_' or '.', not {cfg.name!r}")
    s = cfg.student
    for k in ("n_layers", "dim", "n_heads", "n_kv_heads", "ffn_dim", "max_context"):
        _int(getattr(s, k), f"student.{k}", 0 if k == "n_layers" else 1)
    _num(s.rope_theta, "student.rope_theta", strict=True)
    _num(s.norm_eps, "student.norm_eps", strict=True)
    _need(isinstance(s.tied, bool), "student.tied must be true or false")
    _need(s.init is None or isinstance(s.init, str), "student.init must be a model directory or null")
    v = cfg.vocab
    _need(v.kind in ("teacher", "teacher-prefix"), f"vocab.kind must be 'teacher' or 'teacher-prefix', not {v.kind!r}")
    if v.kind == "teacher-prefix":
        _int(v.size, "vocab.size", 2)
    else:
        _need(v.size is None, "vocab.size applies only to vocab.kind 'teacher-prefix'")
    t = cfg.teacher
    _need(t.kind in ("exact", "gguf", "random"), f"teacher.kind must be 'exact', 'gguf' or 'random', not {t.kind!r}")
    _need(t.kind == "random" or isinstance(t.path, str), f"teacher.path is needed for teacher.kind {t.kind!r}")
    _need(t.dtype in ("auto", "float32", "bfloat16"), "teacher.dtype must be 'auto', 'float32' or 'bfloat16'")
    _need(isinstance(t.shape, dict), "teacher.shape must be an object")
    d = cfg.data
    _need(isinstance(d.path, str) and d.path, "data.path must be a file name")
    _int(d.holdout_permille, "data.holdout_permille")
    _need(d.holdout_permille < 1000, "data.holdout_permille must be < 1000")
    g = d.generate
    _int(g.sequences, "data.generate.sequences")
    _int(g.prompt_tokens, "data.generate.prompt_tokens", 1)
    _int(g.batch, "data.generate.batch", 1)
    _num(g.temperature, "data.generate.temperature", strict=True)
    for k in ("fraction", "unprompted"):
        _num(getattr(g, k), f"data.generate.{k}")
        _need(getattr(g, k) <= 1, f"data.generate.{k} must be <= 1")
    tr = cfg.train
    for k in ("steps", "batch_size", "seq_len", "log_every", "eval_every", "eval_tokens", "checkpoint_every"):
        _int(getattr(tr, k), f"train.{k}", 1)
    _int(tr.micro_batch, "train.micro_batch")
    _int(tr.seed, "train.seed")
    _int(tr.threads, "train.threads")
    _num(tr.time_budget_s, "train.time_budget_s")
    _num(tr.checkpoint_seconds, "train.checkpoint_seconds", strict=True)
    _need(tr.device in ("auto", "cpu", "cuda") or tr.device.startswith("cuda:"), "train.device must be auto, cpu or cuda")
    _need(tr.dtype in ("auto", "float32", "bfloat16"), "train.dtype must be 'auto', 'float32' or 'bfloat16'")
    _need(tr.micro_batch == 0 or tr.batch_size % tr.micro_batch == 0, "train.micro_batch must divide train.batch_size")
    _need(tr.seq_len <= s.max_context, f"train.seq_len {tr.seq_len} exceeds student.max_context {s.max_context}")
    _need(g.prompt_tokens < tr.seq_len, "data.generate.prompt_tokens must be shorter than train.seq_len")
    o = cfg.optim
    _num(o.lr, "optim.lr", strict=True)
    _num(o.min_lr_ratio, "optim.min_lr_ratio")
    _int(o.warmup_steps, "optim.warmup_steps")
    _need(o.schedule in ("cosine", "wsd", "constant"), "optim.schedule must be 'cosine', 'wsd' or 'constant'")
    _num(o.decay_fraction, "optim.decay_fraction")
    _need(o.decay_fraction <= 1, "optim.decay_fraction must be <= 1")
    _num(o.weight_decay, "optim.weight_decay")
    _num(o.grad_clip, "optim.grad_clip")
    _need(isinstance(o.betas, list) and len(o.betas) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in o.betas),
          "optim.betas must be two numbers in [0, 1)")
    _need(isinstance(o.compile, bool), "optim.compile must be true or false")
    ds = cfg.distill
    _num(ds.temperature, "distill.temperature", strict=True)
    _num(ds.alpha, "distill.alpha")
    _need(ds.alpha <= 1, "distill.alpha must be <= 1")
    e = cfg.export
    _int(e.weight_bits, "export.weight_bits", 2)
    _need(e.weight_bits <= 8, "export.weight_bits must be 2..8")
    _need(e.max_context is None or (isinstance(e.max_context, int) and 1 <= e.max_context), "export.max_context must be null or >= 1")
    _int(e.exact_eval_bytes, "export.exact_eval_bytes")
    _need(isinstance(e.report_bits, list) and all(isinstance(b, int) and 2 <= b <= 8 for b in e.report_bits),
          "export.report_bits must be a list of bit widths 2..8")
    # The exported model must be one both runtimes accept (FORMAT.md §7.5.2).
    vocab = v.size if v.kind == "teacher-prefix" else 1  # the teacher's size is checked once it is loaded
    try:
        check_bounds(ExactConfig(vocab_size=vocab, dim=s.dim, n_layers=s.n_layers, n_heads=s.n_heads,
                                 n_kv_heads=s.n_kv_heads, ffn_dim=s.ffn_dim, rope_theta=float(s.rope_theta),
                                 norm_eps=float(s.norm_eps), max_context=e.max_context or s.max_context))
    except ModelError as exc:
        raise ConfigError(f"student shape: {exc}") from None
    return cfg


# -- files and overrides -----------------------------------------------------------------------

def _parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """``section.key=value`` strings (value as JSON, else a string) applied to a raw config."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not KEY=VALUE")
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = _parse_value(value)
    return raw


def read_raw(path: str | Path) -> dict:
    p = Path(path)
    text = p.read_bytes()
    if p.suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ImportError:
                raise ConfigError("TOML configs need Python >= 3.11 (or the tomli package)") from None
        try:
            return tomllib.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"{p}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def from_dict(raw: dict, source: str = "") -> Config:
    cfg = _build(Config, raw, "")
    cfg.source = source
    return validate(cfg)


def load(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override (``section.key=value``) and check a config file."""
    raw = apply_overrides(read_raw(path), overrides or [])
    if "name" not in raw:
        raw["name"] = Path(path).stem
    return from_dict(raw, str(path))


def builtin(name: str) -> Path:
    """The path of a config shipped in ``lmzip/train/configs`` (``tiny``, ``student-s``, ...)."""
    return Path(__file__).resolve().parent / "configs" / f"{name}.json"
