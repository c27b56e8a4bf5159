"""The training loop: teacher soft targets on the fly, several students in lockstep, checkpoints, resume, export.

One process trains every config it is given on the same batches: each batch of teacher-token
windows runs through the teacher once, and each student takes its step against those logits (in
its own vocabulary, see ``vocab.py``). Batches are a function of (seed, step) alone, so a resumed
run sees the batches an uninterrupted one would have seen, and on the CPU ends bit-identical.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import Config, ConfigError
from .model import Llama, llama_config
from .vocab import StudentVocab, expand_batch, make_vocab

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
GENERATED = "generated.npy"
LN2 = math.log(2)


def _say(msg: str) -> None:
    print(f"lmzip.train: {msg}", file=sys.stderr, flush=True)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def lr_at(o, step: int, steps: int, time_frac: float) -> float:
    """Warm-up by steps, then the schedule over progress = max(step / steps, time used / budget)."""
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    w = o.warmup_steps / steps
    p = min(1.0, max(step / steps, time_frac))
    lo = o.lr * o.min_lr_ratio
    if o.schedule == "constant":
        return o.lr
    if o.schedule == "wsd":
        start = 1.0 - o.decay_fraction
        return o.lr if p < start else lo + (o.lr - lo) * max(0.0, 1.0 - (p - start) / max(1e-9, o.decay_fraction))
    q = min(1.0, max(0.0, (p - w) / max(1e-9, 1 - w)))
    return lo + (o.lr - lo) * 0.5 * (1 + math.cos(math.pi * q))


@dataclass
class Student:
    cfg: Config
    vocab: StudentVocab
    module: Llama
    forward: object  # the module, or its torch.compile
    optim: torch.optim.Optimizer
    byte_len: torch.Tensor
    first: torch.Tensor | None
    seg: torch.Tensor | None
    seg_len: torch.Tensor | None
    last: dict = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return self.cfg.out_dir


class Run:
    """Everything the loop shares: device, teacher, data, generated text, students."""

    def __init__(self, configs: list[Config], say=_say):
        if not configs:
            raise ConfigError("no config given")
        keys = {c.shared_key() for c in configs}
        if len(keys) > 1:
            raise ConfigError("configs trained together must have equal teacher, data and train sections")
        names = [c.name for c in configs]
        if len(set(names)) != len(names) or len({str(c.out_dir.resolve()) for c in configs}) != len(configs):
            raise ConfigError("configs trained together need different names and out directories")
        self.configs, self.say = configs, say
        self._teacher_eval = None
        c0 = configs[0]
        # alpha 0 everywhere is training on labels alone: the teacher gives the tokenizer (and any
        # generated text) but runs no forward per batch, which on a CPU is most of a step's time.
        self.teacher_rows = any(c.distill.alpha > 0 for c in configs)
        self.tr = c0.train
        if self.tr.threads:
            torch.set_num_threads(self.tr.threads)
        dev = self.tr.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(dev)
        want = self.tr.dtype
        if want == "auto":
            want = "bfloat16" if self.device.type == "cuda" else "float32"
        self.amp = torch.bfloat16 if want == "bfloat16" else None
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    # -- setup --------------------------------------------------------------------------------

    def load_teacher(self):
        from .teacher import load_teacher

        t0 = time.time()
        spec = self.configs[0].teacher
        self.teacher = load_teacher(spec)
        # "auto": float32 weights (a float32 residual stream) with bfloat16 autocast on CUDA
        wdt = torch.bfloat16 if spec.dtype == "bfloat16" else torch.float32
        self.teacher_module = self.teacher.module.to(self.device, wdt).eval()
        for p in self.teacher_module.parameters():
            p.requires_grad_(False)
        self.tok = self.teacher.tokenizer
        self.bos = int(self.tok.bos_id)
        self.teacher_byte_len = torch.tensor([len(self.tok.token_bytes(i)) for i in range(self.tok.vocab_size)],
                                             dtype=torch.long, device=self.device)
        self.say(f"teacher: {self.teacher.description}, {self.teacher_module.param_count() / 1e6:.1f}M parameters "
                 f"({time.time() - t0:.1f} s)")

    def load_data(self):
        from .data import read_corpus, streams

        t0 = time.time()
        d = self.configs[0].data
        corpus = read_corpus(d.path)
        if corpus.header.get("tokenizer_id") != self.tok.tokenizer_id:
            raise ConfigError(f"{d.path} was tokenized with {corpus.header.get('tokenizer_id')}, the teacher uses "
                              f"{self.tok.tokenizer_id}: rebuild it with that tokenizer")
        self.data_header = {k: v for k, v in corpus.header.items() if k != "doc_paths"}
        self.train_stream, self.holdout_stream = streams(corpus, d.holdout_permille)
        T = self.tr.seq_len
        if len(self.train_stream) < T + 2:
            raise ConfigError(f"{d.path}: {len(self.train_stream)} training tokens, fewer than one window of {T + 1}")
        if len(self.holdout_stream) < 2:
            raise ConfigError(f"{d.path}: no held-out tokens (raise data.holdout_permille)")
        self.eval_windows = self._eval_windows()
        self.say(f"data: {corpus.n_docs} documents, {len(self.train_stream)} training and {len(self.holdout_stream)} "
                 f"held-out tokens ({time.time() - t0:.1f} s)")

    def _eval_windows(self) -> list[np.ndarray]:
        T, h = self.tr.seq_len, self.holdout_stream
        out, o, n = [], 0, 0
        while o < len(h) - 1 and n < self.tr.eval_tokens:
            w = h[o : o + T + 1]
            out.append(w)
            n += len(w) - 1
            o += T
        return out

    def generate(self):
        """Text sampled from the teacher (once; kept in the first run's directory for resuming)."""
        g = self.configs[0].data.generate
        self.generated, self.generation = None, None
        if not g.sequences or not g.fraction:
            return
        path = self.configs[0].out_dir / GENERATED
        if path.is_file():
            arr = np.load(path)
            if arr.shape == (g.sequences, self.tr.seq_len + 1):
                self.generated = arr
                self.say(f"generated text: {arr.shape[0]} sequences from {path}")
                return
        t0 = time.time()
        T1 = self.tr.seq_len + 1
        rng = np.random.default_rng([self.tr.seed, 7919])
        gen = torch.Generator(device=self.device).manual_seed(self.tr.seed)
        banned = sorted(getattr(self.tok, "special_ids", ()))
        n_free = int(round(g.unprompted * g.sequences))
        rows, sampled = [], 0
        for b0 in range(0, g.sequences, g.batch):
            n = min(g.batch, g.sequences - b0)
            free = max(0, min(n, n_free - b0))  # the first n_free sequences start from BOS alone
            for count, P in ((free, 1), (n - free, g.prompt_tokens)):
                if not count:
                    continue
                if P == 1:
                    prompts = np.full((count, 1), -1, dtype=np.int64)
                else:
                    offs = rng.integers(0, len(self.train_stream) - P, size=count)
                    prompts = np.stack([self.train_stream[o : o + P] for o in offs]).astype(np.int64)
                p = torch.from_numpy(prompts).to(self.device)
                out = self.teacher_module.sample(torch.where(p < 0, self.bos, p), T1 - P, g.temperature, gen, banned)
                out[:, :P] = p  # keep the -1 document marks of the prompts
                rows.append(out.cpu().numpy().astype(np.int32))
                sampled += count * (T1 - P)
        self.generated = np.concatenate(rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, self.generated)
        os.replace(tmp, path)
        dt = time.time() - t0
        self.say(f"sampled {sampled} tokens from the teacher ({len(self.generated)} sequences) in {dt:.1f} s "
                 f"({sampled / max(dt, 1e-9):.0f} tokens/s)")
        self.generation = {"sequences": len(self.generated), "sampled_tokens": sampled, "seconds": round(dt, 2)}

    def make_students(self):
        self.students = []
        for c in self.configs:
            vocab = make_vocab(c.vocab, self.tok)
            s = c.student
            lcfg = llama_config(vocab.vocab_size, s.dim, s.n_layers, s.n_heads, s.n_kv_heads, s.ffn_dim,
                                s.max_context, s.rope_theta, s.norm_eps)
            if s.init:
                from .export import dequantized_module

                m = dequantized_module(s.init)
                if m.cfg.vocab_size != lcfg.vocab_size or m.cfg.dim != lcfg.dim or m.cfg.n_layers != lcfg.n_layers:
                    raise ConfigError(f"student.init {s.init} has another shape than student")
                module = Llama(lcfg, tied=s.tied)
                src = m.state_dict()
                if s.tied and not m.tied:
                    src.pop("head.weight", None)
                module.load_state_dict(src, strict=False)
                if not s.tied and m.tied:
                    with torch.no_grad():
                        module.head.weight.copy_(m.embed.weight)
            else:
                module = Llama(lcfg, tied=s.tied).init_weights(c.train.seed + 1)
            module = module.to(self.device)
            decay = [p for n, p in module.named_parameters() if p.dim() >= 2]
            other = [p for n, p in module.named_parameters() if p.dim() < 2]
            o = c.optim
            kw = {"fused": True} if self.device.type == "cuda" else {}
            optim = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                                       {"params": other, "weight_decay": 0.0}], lr=o.lr, betas=tuple(o.betas), **kw)
            fwd = torch.compile(module) if o.compile else module
            dev = self.device
            st = Student(c, vocab, module, fwd, optim, torch.from_numpy(vocab.byte_len).to(dev),
                         None if vocab.first is None else torch.from_numpy(vocab.first).to(dev),
                         None if vocab.seg is None else torch.from_numpy(vocab.seg).to(dev),
                         None if vocab.seg_len is None else torch.from_numpy(vocab.seg_len).to(dev))
            self.students.append(st)
            self.say(f"student {c.name}: {s.n_layers} x {s.dim}, {s.n_heads}/{s.n_kv_heads} heads, ffn {s.ffn_dim}, "
                     f"vocab {vocab.kind} {vocab.vocab_size}, {module.param_count() / 1e6:.2f}M parameters")

    # -- batches ------------------------------------------------------------------------------

    def batch(self, step: int) -> torch.Tensor:
        """Windows [B, T+1] (long, -1 = document start) for a step: a function of (seed, step) alone."""
        B, T = self.tr.batch_size, self.tr.seq_len
        rng = np.random.default_rng([self.tr.seed, step])
        n_gen = 0
        if self.generated is not None:
            n_gen = int(round(self.configs[0].data.generate.fraction * B))
        offs = rng.integers(0, len(self.train_stream) - T - 1, size=B - n_gen)
        rows = [self.train_stream[o : o + T + 1] for o in offs]
        if n_gen:
            rows += list(self.generated[rng.integers(0, len(self.generated), size=n_gen)])
        return torch.from_numpy(np.stack(rows).astype(np.int64)).to(self.device)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None)

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        inp = torch.where(x[:, :-1] < 0, self.bos, x[:, :-1])
        with self._autocast():
            return self.teacher_module(inp)

    # -- losses -------------------------------------------------------------------------------

    def student_views(self, st: Student, x: torch.Tensor):
        """(inputs, targets, teacher row per position or None, boundary mask or None) in the student's ids."""
        if st.seg is None:
            return torch.where(x[:, :-1] < 0, self.bos, x[:, :-1]), x[:, 1:], None, None
        y, trow, bnd = expand_batch(st.vocab, x, st.seg, st.seg_len, x.shape[1] - 1, self.bos)
        return torch.where(y[:, :-1] < 0, self.bos, y[:, :-1]), y[:, 1:], trow, bnd

    def losses(self, st: Student, x: torch.Tensor, zt: torch.Tensor | None, train: bool, shared: dict | None = None):
        """Sums over the valid targets: (loss, ce_nats, kl, targets, bytes). ``shared`` memoises the
        teacher's probabilities for the students of one batch (same temperature, same rows)."""
        inp, tgt, trow, bnd = self.student_views(st, x)
        with self._autocast():
            zs = st.forward(inp) if train else st.module(inp)
        zs = zs.float()
        valid = tgt >= 0
        t = torch.where(valid, tgt, 0)
        logp = F.log_softmax(zs, -1)
        ce = -logp.gather(-1, t[..., None])[..., 0] * valid
        n = valid.sum()
        nbytes = (st.byte_len[t] * valid).sum()
        if zt is None:
            return ce.sum(), ce.sum(), torch.zeros((), device=zs.device), n, nbytes
        ds = st.cfg.distill
        tau = ds.temperature
        shared = {} if shared is None else shared
        if tau not in shared:
            shared[tau] = F.softmax(zt.float() / tau, -1)
        pt = shared[tau]
        if trow is not None:  # teacher-prefix: carry the teacher's rows over to the student's vocabulary
            key = (tau, "prefix", st.vocab.vocab_size)
            if key not in shared:
                B, T, _ = pt.shape
                q = torch.zeros(B, T, st.vocab.vocab_size, device=pt.device, dtype=pt.dtype)
                shared[key] = q.index_add_(2, st.first, pt)
            q = shared[key]
            pt = q.gather(1, trow.clamp(min=0)[..., None].expand(-1, -1, q.shape[-1]))
            kd_mask = valid & bnd
        else:
            kd_mask = valid
        logps = logp if tau == 1 else F.log_softmax(zs / tau, -1)
        kl = (torch.xlogy(pt, pt) - pt * logps).sum(-1) * kd_mask
        a = ds.alpha
        loss = (a * tau * tau * kl + (1 - a) * ce) * kd_mask + ce * (valid & ~kd_mask)
        return loss.sum(), ce.sum(), kl.sum(), n, nbytes

    # -- checkpoints ----------------------------------------------------------------------------

    def save(self, step: int, elapsed: float) -> None:
        for st in self.students:
            st.out.mkdir(parents=True, exist_ok=True)
            _atomic_save({"step": step, "elapsed": elapsed, "model": st.module.state_dict(),
                          "optim": st.optim.state_dict(), "config": st.cfg.to_dict()}, st.out / CHECKPOINT)
            self.log(st, {"event": "checkpoint", "step": step, "elapsed_s": round(elapsed, 3)})

    def restore(self) -> tuple[int, float]:
        states = []
        for st in self.students:
            p = st.out / CHECKPOINT
            if not p.is_file():
                raise ConfigError(f"--resume: no checkpoint at {p}")
            states.append(torch.load(p, map_location=self.device, weights_only=False))
        steps = {s["step"] for s in states}
        if len(steps) != 1:
            raise ConfigError(f"--resume: the students' checkpoints are at different steps {sorted(steps)}")
        for st, s in zip(self.students, states):
            saved = dict(s["config"])
            now = st.cfg.to_dict()
            for k in ("student", "vocab"):
                if saved.get(k) != now.get(k):
                    raise ConfigError(f"--resume: {st.cfg.name}'s {k} section differs from its checkpoint's")
            st.module.load_state_dict(s["model"])
            st.optim.load_state_dict(s["optim"])
            self._truncate_log(st, s["step"])
        return states[0]["step"], states[0]["elapsed"]

    def _truncate_log(self, st: Student, step: int) -> None:
        p = st.out / LOG
        if not p.is_file():
            return
        keep = []
        for line in p.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("step", 0) <= step:
                keep.append(line)
        _atomic_text(p, "".join(k + "\n" for k in keep))

    def log(self, st: Student, rec: dict) -> None:
        st.out.mkdir(parents=True, exist_ok=True)
        with open(st.out / LOG, "a") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")

    # -- evaluation ---------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, which: list | None = None) -> dict:
        """Held-out bits/byte of (student, module) pairs (default: every student as it is) and of the teacher."""
        which = which or [(st, st.module) for st in self.students]
        for _, m in which:
            m.eval()
        tot = [[0.0, 0] for _ in which]
        tt = [0.0, 0]
        by_len: dict[int, list[np.ndarray]] = {}
        for w in self.eval_windows:
            by_len.setdefault(len(w), []).append(w)
        eb = max(1, self.tr.micro_batch or self.tr.batch_size)
        for _, ws in sorted(by_len.items()):
            for b0 in range(0, len(ws), eb):
                x = torch.from_numpy(np.stack(ws[b0 : b0 + eb]).astype(np.int64)).to(self.device)
                if self._teacher_eval is None and self.teacher_rows:  # once: it does not change
                    zt = self.teacher_logits(x).float()
                    tgt = x[:, 1:]
                    valid = tgt >= 0
                    t = torch.where(valid, tgt, 0)
                    ce_t = -F.log_softmax(zt, -1).gather(-1, t[..., None])[..., 0] * valid
                    tt[0] += float(ce_t.sum())
                    tt[1] += int((self.teacher_byte_len[t] * valid).sum())
                    del zt, ce_t
                for i, (st, m) in enumerate(which):
                    view = Student(st.cfg, st.vocab, m, m, st.optim, st.byte_len, st.first, st.seg, st.seg_len)
                    _, ce, _, _, nb = self.losses(view, x, None, train=False)
                    tot[i][0] += float(ce)
                    tot[i][1] += int(nb)
        for st in self.students:
            st.module.train()
        if self._teacher_eval is None and self.teacher_rows:
            self._teacher_eval = (tt[0] / LN2 / max(1, tt[1]), tt[1])
        # labels alone: no teacher figure, and the bytes come from the students' targets
        teacher_bpb, nbytes = self._teacher_eval or (None, tot[0][1] if tot else 0)
        return {"bpb": [v[0] / LN2 / max(1, v[1]) for v in tot], "teacher_bpb": teacher_bpb, "bytes": nbytes}

    # -- the loop -----------------------------------------------------------------------------

    def train(self, resume: bool = False, stop_at: int | None = None) -> list[dict]:
        self.load_teacher()
        self.load_data()
        self.generate()
        self.make_students()
        tr = self.tr
        step, elapsed = (self.restore() if resume else (0, 0.0))
        if not resume:
            for st in self.students:
                st.out.mkdir(parents=True, exist_ok=True)
                if (st.out / LOG).exists():
                    (st.out / LOG).unlink()
        for st in self.students:
            self.log(st, {"event": "resume" if resume else "start", "step": step, "config": st.cfg.to_dict(),
                          "device": str(self.device), "torch": torch.__version__,
                          "gpu": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None,
                          "parameters": st.module.param_count(), "data": self.data_header,
                          "teacher": self.teacher.description, "generation": self.generation})
        if step == 0 and not resume:
            self._eval_and_log(0, elapsed)
        last_ckpt = time.time()
        self._stop = False
        restore = self._catch_signals()
        budget = tr.time_budget_s
        n_micro = tr.batch_size // tr.micro_batch if tr.micro_batch else 1
        done_reason = "steps"
        while step < tr.steps:
            if stop_at is not None and step >= stop_at:
                done_reason = "stop_at"
                break
            if budget and elapsed >= budget:
                done_reason = "time_budget"
                break
            if self._stop:
                done_reason = "signal"
                break
            t0 = time.time()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            x = self.batch(step)
            frac = elapsed / budget if budget else 0.0
            for st in self.students:
                lr = lr_at(st.cfg.optim, step, tr.steps, frac)
                for g in st.optim.param_groups:
                    g["lr"] = lr
                st.optim.zero_grad(set_to_none=True)
                st.last = {"loss": 0.0, "ce": 0.0, "kl": 0.0, "n": 0, "bytes": 0, "lr": lr}
            for xm in x.chunk(n_micro):
                zt = self.teacher_logits(xm) if self.teacher_rows else None
                shared: dict = {}
                for st in self.students:
                    loss, ce, kl, n, nb = self.losses(st, xm, zt, train=True, shared=shared)
                    (loss / max(1, int(n)) / n_micro).backward()
                    st.last["loss"] += float(loss.detach()) / max(1, int(n)) / n_micro
                    st.last["ce"] += float(ce.detach())
                    st.last["kl"] += float(kl.detach())
                    st.last["n"] += int(n)
                    st.last["bytes"] += int(nb)
                    del loss, ce, kl
                del zt, shared
            for st in self.students:
                o = st.cfg.optim
                if o.grad_clip:
                    st.last["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(st.module.parameters(), o.grad_clip))
                st.optim.step()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            dt = time.time() - t0
            elapsed += dt
            step += 1
            if step % tr.log_every == 0 or step == tr.steps:
                ntok = x.shape[0] * (x.shape[1] - 1)
                for st in self.students:
                    L = st.last
                    rec = {"event": "train", "step": step, "elapsed_s": round(elapsed, 3), "lr": L["lr"],
                           "loss": L["loss"], "ce": L["ce"] / max(1, L["n"]), "kl": L["kl"] / max(1, L["n"]),
                           "train_bpb": L["ce"] / LN2 / max(1, L["bytes"]), "tokens_per_s": ntok / max(dt, 1e-9),
                           "grad_norm": L.get("grad_norm")}
                    self.log(st, rec)
                self.say(f"step {step}/{tr.steps} " + " ".join(
                    f"{st.cfg.name}: loss {st.last['loss']:.3f} bpb {st.last['ce'] / LN2 / max(1, st.last['bytes']):.3f}"
                    for st in self.students) + f" ({ntok / max(dt, 1e-9):.0f} tokens/s)")
            if step % tr.eval_every == 0 and step < tr.steps:
                self._eval_and_log(step, elapsed)
            if step % tr.checkpoint_every == 0 or time.time() - last_ckpt >= tr.checkpoint_seconds:
                self.save(step, elapsed)
                last_ckpt = time.time()
        restore()
        self.save(step, elapsed)
        if done_reason == "stop_at":
            self.say(f"stopped at step {step} (checkpointed; continue with --resume)")
            return [{"name": st.cfg.name, "step": step, "stopped": True} for st in self.students]
        ev = self._eval_and_log(step, elapsed)
        return self.export_all(step, elapsed, ev, done_reason)

    def _catch_signals(self):
        """SIGINT/SIGTERM (e.g. timeout(1) before a lease ends): finish the step, checkpoint, export.
        A second signal interrupts at once. Returns the function that puts the old handlers back."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        old = {}

        def handler(signum, frame):
            if self._stop:
                raise KeyboardInterrupt
            self._stop = True
            self.say(f"signal {signum}: stopping after this step, then checkpoint and export")

        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        return lambda: [signal.signal(k, v) for k, v in old.items()]

    def _eval_and_log(self, step: int, elapsed: float) -> dict:
        t0 = time.time()
        ev = self.evaluate()
        for i, st in enumerate(self.students):
            self.log(st, {"event": "eval", "step": step, "elapsed_s": round(elapsed, 3), "holdout_bpb": ev["bpb"][i],
                          "teacher_holdout_bpb": ev["teacher_bpb"], "holdout_bytes": ev["bytes"],
                          "eval_seconds": round(time.time() - t0, 3)})
        self.say(f"eval at step {step}: " + " ".join(f"{st.cfg.name} {b:.4f}" for st, b in zip(self.students, ev["bpb"]))
                 + " bits/byte" + (f" (teacher {ev['teacher_bpb']:.4f})" if ev["teacher_bpb"] is not None else ""))
        return ev

    # -- export -------------------------------------------------------------------------------

    def _holdout_text(self, nbytes: int) -> bytes:
        """The first held-out documents' bytes (decoded from the teacher's ids: tokenizers are lossless)."""
        h = self.holdout_stream
        out, total = [], 0
        starts = list(np.flatnonzero(h < 0)) + [len(h)]
        for a, b in zip(starts, starts[1:]):
            text = self.tok.decode(h[a + 1 : b].astype(np.int64))
            out.append(text)
            total += len(text)
            if total >= nbytes:
                break
        return b"".join(out)[:nbytes]

    def export_all(self, step: int, elapsed: float, ev: dict, reason: str) -> list[dict]:
        from .export import dequantized_module, exact_bits_per_byte, export_model

        results = []
        for i, st in enumerate(self.students):
            c = st.cfg
            t0 = time.time()
            card = {"name": c.name, "config": c.to_dict(), "steps": step, "train_seconds": round(elapsed, 1),
                    "stopped_by": reason, "parameters": st.module.param_count(), "data": self.data_header,
                    "tokenizer_id": st.vocab.tokenizer.tokenizer_id,
                    "teacher": self.teacher.description, "holdout_bpb_float": ev["bpb"][i],
                    "teacher_holdout_bpb": ev["teacher_bpb"], "device": str(self.device),
                    "gpu": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None}
            d = export_model(st.module, st.vocab.tokenizer, c.out_dir / "model", c.export.max_context,
                             c.export.weight_bits, card)
            q = dequantized_module(d).to(self.device)
            card["holdout_bpb_quantized"] = self.evaluate([(st, q)])["bpb"][0]
            del q
            for b in c.export.report_bits:
                from .export import quantized_module

                qb = quantized_module(st.module, b).to(self.device)
                card.setdefault("holdout_bpb_bits", {})[str(b)] = self.evaluate([(st, qb)])["bpb"][0]
                del qb
            if c.export.exact_eval_bytes:
                text = self._holdout_text(c.export.exact_eval_bytes)
                dev = "cuda" if self.device.type == "cuda" else "cpu"
                card["exact"] = exact_bits_per_byte(d, text, device=dev)
            card["model_bytes"] = (d / "model.safetensors").stat().st_size
            card["export_seconds"] = round(time.time() - t0, 2)
            (d / "training.json").write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
            self.log(st, {"event": "export", "step": step, "model": str(d), **{k: card[k] for k in
                          ("holdout_bpb_float", "holdout_bpb_quantized", "holdout_bpb_bits", "model_bytes")
                          if k in card},
                          "exact": card.get("exact")})
            self.say(f"exported {c.name} to {d} ({card['model_bytes'] / 1e6:.1f} MB): held-out bits/byte float "
                     f"{card['holdout_bpb_float']:.4f}, int{c.export.weight_bits} {card['holdout_bpb_quantized']:.4f}"
                     + (f", exact {card['exact']['bits_per_byte']:.4f} on {card['exact']['bytes']} bytes" if "exact" in card else ""))
            results.append(card)
        return results


def run(configs: list[Config], resume: bool = False, stop_at: int | None = None, say=_say) -> list[dict]:
    """Train these configs together; return one summary per student (its card, or where it stopped)."""
    return Run(configs, say).train(resume=resume, stop_at=stop_at)
