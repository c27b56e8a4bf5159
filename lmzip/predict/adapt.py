"""The adaptive predictor: the teacher learns the file while it codes it, exactly.

A pretrained model knows the language but not *this* file. The predictor here sits between
the exact model's integer logits and the range coder and learns from every token coded
so far. The decoder sees the same tokens in the same order, so it learns the very same
thing, provided every state and update is integer arithmetic (numpy int64, floor division
and shifts only) and nothing depends on the machine. Components:

* **bias** (component "teacher"): the teacher's logits z (2**-10 nat units) get an online
  inverse temperature and an additive bias: one unigram bias over the whole vocabulary and
  one bias per (previous token, token) pair, stored sparsely per previous token. Both are
  trained by SGD on the log-loss of the biased distribution ``p``; the gradient
  ``[v == y] - p[v]`` is applied densely for the unigram and on the tokens with
  ``p >= 2**-BIGRAM_FLOOR_BITS`` (plus y) for the bigram, so the state stays small.
* **n-grams**, orders 2..K over token contexts (order 1 predicts worse than the teacher
  everywhere: measured): Witten-Bell estimates that back off to the biased teacher,
  ``P_k(v) = (c(v) + d * p(v)) / (n + d)`` (n: count of the context, d: distinct tokens
  seen after it).
* **match**: the longest earlier repeat of the last ``MATCH_MIN`` tokens predicts the token that
  followed it.
* **mixer**: a linear mixture of the components with weights learned online (gradient of
  the log-loss), one weight set per small context: highest n-gram order seen, match
  length bucket, teacher confidence bucket. With ``mixer2`` (parameter version 2, the
  default) a second weight set, selected by the classes of the last three tokens
  (newline, space+letter, digit, letter, other: ``token_classes``) and the match bucket,
  is learned beside it and the two normalised weight vectors are averaged: it learns, for
  instance, that after digits the n-grams' guesses are worth little (JSON sizes, versions).

The output is an integer frequency table (every entry >= 1, sum 2**24), like the plain
model's; ``last`` keeps each component's probability of the coded token for ``explain``.
State resets at every segment (each segment decodes on its own).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import numpy as np

TOTAL_BITS = 24
ONE = 1 << TOTAL_BITS
BIAS_FRAC = 14  # bias state in 2**-(10 + 14) nat; applied in the logits' 2**-10 nat units
BIAS_LIMIT = 12 << (10 + BIAS_FRAC)  # |bias| <= 12 nats
BETA_ONE = 1 << 12  # inverse temperature fixed point
BIGRAM_FLOOR_BITS = 9  # bigram bias trained on tokens with p >= 1/512 (and the coded one)
NGRAM_MIN = 2  # order-1 counts predict worse than the teacher everywhere (measured)
MATCH_MIN = 5  # tokens that must repeat before the match model predicts
MATCH_CAP = 64  # match lengths are counted up to here
MIX_ONE = 1 << 16  # mixer weight fixed point
MIX_MIN, MIX_MAX = 16, 1 << 22
MIX_INIT = MIX_ONE // 16  # new components start with little weight against the teacher

COMPONENTS = ("teacher", "order1", "order2", "order3", "order4", "order5", "order6", "match")
N_CLASSES = 5  # token classes for the second mixer's context (see token_classes)


def token_classes(token_bytes, vocab_size: int) -> np.ndarray:
    """Class of every token id from the bytes it spells (``token_bytes(id)``; ids it cannot
    spell are "other"): 0 contains a newline, 1 a space then an ASCII letter, 2 starts with an
    ASCII digit, 3 starts with an ASCII letter, 4 anything else. Part of the format (version 2)."""
    spelled = []
    for t in range(vocab_size):
        try:
            spelled.append(bytes(token_bytes(t)))
        except Exception:  # special or out-of-range ids of a smaller tokenizer: "other"
            spelled.append(b"")
    # Vectorized over the concatenated spellings (a loop of ifs took ~0.1 s of a small file's time).
    lens = np.fromiter(map(len, spelled), dtype=np.int64, count=vocab_size)
    starts = np.zeros(vocab_size, dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    joined = np.frombuffer(b"".join(spelled) + b"\0\0", dtype=np.uint8)
    first, second = joined[starts], joined[starts + 1]

    def is_letter(b: np.ndarray) -> np.ndarray:
        return ((b >= 65) & (b <= 90)) | ((b >= 97) & (b <= 122))

    newline = np.zeros(vocab_size, dtype=bool)
    nl = np.flatnonzero(joined[:-2] == 10)
    newline[np.searchsorted(starts, nl, side="right") - 1] = True
    out = np.full(vocab_size, 4, dtype=np.int64)
    has1, has2 = lens >= 1, lens >= 2
    out[has1 & is_letter(first)] = 3
    out[has1 & (first >= 48) & (first <= 57)] = 2
    out[has2 & (first == 32) & is_letter(second)] = 1
    out[newline] = 0
    return out


EXP3_CAP = 32767  # exp3's argument is clamped here (its value is 0 from 21294 on)


def exp3(d: np.ndarray) -> np.ndarray:
    """2**30 * e**(-d / 1024) for int64 d >= 0 (2**-10 nat units), computed (version 3).

    In 2**-16 bits d is t = (d * 94548) >> 10; 2**-t is 2**-(t >> 16) times a degree-4 polynomial
    in the 15-bit fraction, evaluated by Horner with floor shifts. Within 2**-13 of the
    exponential wherever that exceeds 2**16; 2**30 exactly at 0 only, never increasing, 0 from
    21294 on. Part of the format.
    """
    d = np.minimum(d, EXP3_CAP)
    t = (d * 94548) >> 10
    x = (t & 0xFFFF) >> 1
    p = -1745 + ((225 * x) >> 15)
    p = 7847 + ((p * x) >> 15)
    p = -22710 + ((p * x) >> 15)
    m = 32768 + ((p * x) >> 15)
    return (m << 15) >> np.minimum(t >> 16, 31)


@dataclass(frozen=True)
class AdaptParams:
    """The predictor's switches and learning rates; recorded in the .lmz header, byte for byte."""

    bias_lr: int = 4800  # unigram bias step, 2**-16 nat per unit gradient (0: off)
    bigram_lr: int = 9600  # bigram bias step (0: off)
    temp_lr: int = 0  # inverse-temperature step (0: off; measured: no gain on alice29)
    ngram_order: int = 6  # highest n-gram order (0: off; at most 6; order 1 is never used)
    match: bool = True
    mix_lr: int = 2000  # mixer step, 2**-16 per unit gradient
    version: int = 3  # what the predictor computes beyond these numbers (VERSIONS below)
    _STRUCT = struct.Struct("<BHHHBBH")  # version, bias_lr, bigram_lr, temp_lr, order, match, mix_lr
    # The version names everything else the predictor computes: the module's constants and
    # formulas. Changing any of them changes what old files decode to, so it needs a new version.
    # Version 1: one mixer; version 2: version 1 plus the second, token-class mixer; version 3:
    # version 2 with the biased teacher's weights from exp3 instead of the model's exp table, its
    # frequencies without a remainder, and the mixture normalised with a bound on its sum
    # instead of the sum (what lets the native predictor read the vocabulary twice instead of
    # seven times; measured: costs under 0.1% bits/byte).
    VERSIONS = (1, 2, 3)

    @property
    def mixer2(self) -> bool:
        """The second, token-class mixer (versions 2 and 3)."""
        return self.version >= 2

    @property
    def exp3(self) -> bool:
        """exp3, no teacher remainder, the bounded normalisation (version 3)."""
        return self.version >= 3

    def validate(self) -> None:
        if self.version not in self.VERSIONS:
            raise ValueError(f"predictor version must be one of {self.VERSIONS}")
        if not 0 <= self.ngram_order <= 6:
            raise ValueError("n-gram order must be 0..6")
        for name in ("bias_lr", "bigram_lr", "temp_lr", "mix_lr"):
            if not 0 <= getattr(self, name) <= 0xFFFF:
                raise ValueError(f"{name} must be 0..65535")

    def to_bytes(self) -> bytes:
        self.validate()
        return self._STRUCT.pack(self.version, self.bias_lr, self.bigram_lr, self.temp_lr,
                                 self.ngram_order, int(self.match), self.mix_lr)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "AdaptParams":
        if len(raw) != cls._STRUCT.size or raw[0] not in cls.VERSIONS:
            raise ValueError(f"unknown adaptive predictor parameters ({len(raw)} bytes, version {raw[:1].hex() or '-'})")
        version, bias_lr, bigram_lr, temp_lr, order, match, mix_lr = cls._STRUCT.unpack(raw)
        if match > 1:
            raise ValueError("bad match flag")
        p = cls(bias_lr, bigram_lr, temp_lr, order, bool(match), mix_lr, version)
        p.validate()
        return p

    def describe(self) -> str:
        parts = []
        if self.bias_lr or self.bigram_lr or self.temp_lr:
            parts.append("bias")
        if self.ngram_order >= NGRAM_MIN:
            parts.append(f"ngram{NGRAM_MIN}-{self.ngram_order}")
        if self.match:
            parts.append("match")
        if self.mixer2 and (self.ngram_order >= NGRAM_MIN or self.match):
            parts.append("2 mixers")
        return "+".join(parts) or "mixer only"


def normalize(e: np.ndarray) -> np.ndarray:
    """Weights e >= 0 (int64, some > 0, sum < 2**40) -> int64 frequencies >= 1 summing to 2**24.

    The same integer procedure as ``exact_model.normalize_frequencies``: 1 + floor(e * r / 2**32)
    with r = floor(spare * 2**32 / sum(e)), the remainder to the first largest weight.
    """
    spare = ONE - e.shape[0]
    r = (spare << 32) // int(e.sum())
    f = (e * r) >> 32
    f[int(e.argmax())] += spare - int(f.sum())
    f += 1
    return f


class AdaptivePredictor:
    """Online state of one segment. ``predict(z)`` then ``update(token)``, token after token."""

    def __init__(self, params: AdaptParams, exp_table: np.ndarray, vocab_size: int, classes: np.ndarray | None = None):
        """``classes``: ``token_classes`` of the vocabulary, needed by the second mixer."""
        params.validate()
        if params.mixer2:
            if classes is None or len(classes) != vocab_size:
                raise ValueError("the second mixer needs the token classes of the vocabulary")
            self.classes = np.asarray(classes, dtype=np.int64)
        self.p = params
        self.exp = np.ascontiguousarray(exp_table, dtype=np.int64)
        self.V = vocab_size
        self.unigram = np.zeros(vocab_size, dtype=np.int64)
        self._tmp = np.empty(vocab_size, dtype=np.int64)
        self.bigram: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.beta = BETA_ONE
        self.history: list[int] = []
        self.ngrams: list[dict[tuple, dict[int, int]]] = [{} for _ in range(params.ngram_order)]
        self.match_index: dict[tuple, int] = {}
        self.match_ptr, self.match_len = -1, 0
        n_comp = 2 + params.ngram_order
        self.weights: dict[int, np.ndarray] = {}
        self.weights2: dict[int, np.ndarray] = {}  # the second mixer's sets (mixer2)
        self._init_w = np.array([MIX_ONE] + [MIX_INIT] * (n_comp - 1), dtype=np.int64)
        self.last: dict[str, int] = {}  # component -> probability of the last coded token (2**-24 units)

    # -- prediction ---------------------------------------------------------------------

    def _biased(self, z: np.ndarray) -> np.ndarray:
        """Teacher logits -> unnormalised weights (<= 2**30) of the temperature- and bias-adjusted teacher."""
        zb = self._tmp
        np.copyto(zb, self.unigram)  # in place: this runs once per token over the whole vocabulary
        row = self.bigram.get(self.history[-1]) if self.history else None
        if row is not None:
            zb[row[0]] += row[1]
        zb >>= BIAS_FRAC
        zb += (z * self.beta) >> 12 if self.beta != BETA_ONE else z
        np.subtract(zb.max(), zb, out=zb)
        if self.p.exp3:
            return exp3(zb)
        np.minimum(zb, len(self.exp) - 1, out=zb)
        return self.exp[zb]

    def _contexts(self) -> list[tuple[int, tuple[np.ndarray, np.ndarray], int, int] | None]:
        """Per n-gram order: (order, (tokens, counts), n, d) of the current context, or None if unseen."""
        out = []
        h = self.history
        for k in range(1, self.p.ngram_order + 1):
            counts = self.ngrams[k - 1].get(tuple(h[-k:])) if len(h) >= k and k >= NGRAM_MIN else None
            if not counts:
                out.append(None)
                continue
            toks = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            cnts = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))
            out.append((k, (toks, cnts), int(cnts.sum()), len(counts)))
        return out

    def _mixer_context(self, top: int, ctxs: list) -> int:
        """Weight set: highest n-gram order seen, its count and determinism, match length, teacher confidence."""
        hi = max((c for c in ctxs if c is not None), default=None, key=lambda c: c[0])
        if hi is None:
            order = nb = det = 0
        else:
            order, n, d = hi[0], hi[2], hi[3]
            nb = 0 if n == 1 else (1 if n < 4 else 2)
            det = int(d == 1)
        mb = self._match_bucket()
        conf = 0 if top < ONE // 4 else (1 if top < (ONE * 3) // 4 else 2)
        return (((order * 3 + nb) * 2 + det) * 4 + mb) * 3 + conf

    def _match_bucket(self) -> int:
        m = self.match_len
        return 0 if self.match_ptr < 0 else (1 if m < 8 else 2 if m < 16 else 3)

    def _mixer2_context(self) -> int:
        """Second weight set: classes of the last three tokens, match length bucket."""
        h, mb = self.history, self._match_bucket()
        if len(h) < 3:
            return N_CLASSES**3 * 4 + mb
        c = self.classes
        return ((int(c[h[-1]]) * N_CLASSES + int(c[h[-2]])) * N_CLASSES + int(c[h[-3]])) * 4 + mb

    def predict(self, z: np.ndarray) -> np.ndarray:
        """Integer logits [V] of the teacher for the next token -> int64 frequencies [V] (>= 1, sum 2**24)."""
        z = np.asarray(z, dtype=np.int64)
        e_t = self._biased(z)
        v3 = self.p.exp3
        spare = ONE - self.V
        if v3:  # without the remainder: f sums to at most 2**24
            s_full = int(e_t.sum())
            arg_t = int(e_t.argmax())  # exp3 is 2**30 at 0 only: the biased logits' first maximum
            f = ((e_t * ((spare << 32) // s_full)) >> 32) + 1
        else:
            f = normalize(e_t)  # the biased teacher on its own: what its learner and the mixer score
        ctxs = self._contexts()
        predicted = int(self.history[self.match_ptr]) if self.p.match and self.match_ptr >= 0 else -1
        key = self._mixer_context(int(f.max()), ctxs)
        w = self.weights.get(key)
        if w is None:
            w = self.weights[key] = self._init_w.copy()
        key2 = self._mixer2_context() if self.p.mixer2 else -1
        w2 = None
        if key2 >= 0:
            w2 = self.weights2.get(key2)
            if w2 is None:
                w2 = self.weights2[key2] = self._init_w.copy()
        avail = [0] + [1 + i for i, c in enumerate(ctxs) if c is not None] + ([len(w) - 1] if predicted >= 0 else [])
        if len(avail) == 1:
            if v3:
                out = f.copy()
                out[arg_t] += spare + self.V - int(f.sum())
            else:
                out = f
        else:
            # Mixture sum_i w_i P_i with weights rescaled to sum 2**16 (with two mixers: the mean
            # of both rescaled sets) and the teacher's weights shifted to sum < 2**32: every
            # product stays below 2**49.
            wsum = sum(int(w[i]) for i in avail)
            wn = {i: (int(w[i]) << 16) // wsum for i in avail}
            if w2 is not None:
                wsum2 = sum(int(w2[i]) for i in avail)
                wn = {i: (wn[i] + ((int(w2[i]) << 16) // wsum2)) >> 1 for i in avail}
            if v3:  # the teacher's mass is sum(e_t) >> sh, a bound on the sum of the shifted weights
                sh = max(0, s_full.bit_length() - 32)
                e_t, s_t = e_t >> sh, s_full >> sh
            else:
                e_t = e_t >> max(0, int(e_t.sum()).bit_length() - 32)
                s_t = int(e_t.sum())
            dense = wn[0]
            for i, c in enumerate(ctxs):
                if c is not None:
                    dense += (wn[1 + i] * c[3]) // (c[2] + c[3])  # the counts' escape mass d / (n + d)
            e = e_t * dense
            base = e.copy() if v3 else None  # version 3: which tokens get adds; added: their total
            added = 0
            for i, c in enumerate(ctxs):
                if c is not None:
                    toks, cnts = c[1]
                    a = (wn[1 + i] * s_t) // (c[2] + c[3])
                    e[toks] += cnts * a
                    added += c[2] * a  # c[2] = sum(cnts)
            if predicted >= 0:
                e[predicted] += wn[len(w) - 1] * s_t
                added += wn[len(w) - 1] * s_t
            if v3:
                out = self._normalize3(e, base, s_t * dense + added, arg_t)
            else:
                e >>= max(0, int(e.sum()).bit_length() - 33)  # keeps normalize's ratio precise (>= 2**23)
                out = normalize(e)
        self._pending = (f, ctxs, predicted, key, key2, z)
        return out

    def _normalize3(self, e: np.ndarray, base: np.ndarray, esum: int, arg_t: int) -> np.ndarray:
        """Version 3's normalize of the mixture e (base: its dense part; esum: the bound on sum(e),
        the teacher's mass S times the dense weight plus every term added): shifted by esum's bit
        length, scaled by (spare << 32) // (esum >> sh2) (the floors sum to at most spare, without
        a pass for the exact sum), the remainder to the largest of the teacher's first maximum and
        the tokens with adds (no other entry is larger), smallest id among equals."""
        sh2 = max(0, esum.bit_length() - 33)
        r2 = ((ONE - self.V) << 32) // max(1, esum >> sh2)
        x = ((e >> sh2) * r2) >> 32
        cand = np.concatenate(([arg_t], np.flatnonzero(e != base)))
        best = int(cand[np.lexsort((cand, -x[cand]))[0]])
        out = x + 1
        out[best] += (ONE - self.V) - int(x.sum())
        return out

    # -- learning -----------------------------------------------------------------------

    def update(self, y: int) -> None:
        """Learn from the token just coded (the one ``predict`` was asked about)."""
        f, ctxs, predicted, key, key2, z = self._pending
        y = int(y)
        p_t = int(f[y])
        probs = [p_t]
        avail = [True]
        for c in ctxs:
            if c is None:
                probs.append(0)
                avail.append(False)
                continue
            _, (toks, cnts), n, d = c
            hit = np.flatnonzero(toks == y)
            cy = int(cnts[hit[0]]) if hit.size else 0
            probs.append(((cy << TOTAL_BITS) + d * p_t) // (n + d))
            avail.append(True)
        probs.append(ONE if predicted == y else 0)
        avail.append(predicted >= 0)
        self._learn_mixer(self.weights[key], probs, avail)
        if key2 >= 0:
            self._learn_mixer(self.weights2[key2], probs, avail)  # each set learns as if alone
        self.last = {"teacher": p_t}
        for i, c in enumerate(ctxs):
            if c is not None:
                self.last[COMPONENTS[1 + i]] = probs[1 + i]
        if predicted >= 0:
            self.last["match"] = probs[-1]
        self._learn_bias(f, z, y)
        self._learn_counts(y)

    def _learn_mixer(self, w: np.ndarray, probs: list[int], avail: list[bool]) -> None:
        if not self.p.mix_lr or sum(avail) < 2:
            return
        wsum = sum(int(w[i]) for i in range(len(w)) if avail[i])
        mixed = max(1, sum(int(w[i]) * probs[i] for i in range(len(w)) if avail[i]) // wsum)
        for i in range(len(w)):
            if avail[i]:
                # d log P / d w_i = (P_i - P) / (W P); the step is scaled by W (the weights' own
                # scale) and the ratio P_i / P capped at 16 so one surprise cannot swing the set.
                gain = min(probs[i], 16 * mixed) - mixed
                step = (self.p.mix_lr * gain * wsum) // (mixed << 16)
                w[i] = min(MIX_MAX, max(MIX_MIN, int(w[i]) + step))

    def _learn_bias(self, f: np.ndarray, z: np.ndarray, y: int) -> None:
        p = self.p
        if p.bias_lr:
            # state += lr * ([v == y] - f / 2**24) in 2**-24 nat units, lr in 2**-16 nat
            step = np.multiply(f, p.bias_lr, out=self._tmp)
            step >>= 16
            self.unigram -= step
            self.unigram[y] += p.bias_lr << 8
            if len(self.history) % 64 == 0:
                np.clip(self.unigram, -BIAS_LIMIT, BIAS_LIMIT, out=self.unigram)
        if p.bigram_lr and self.history:
            a = self.history[-1]
            sel = np.flatnonzero(f >= ONE >> BIGRAM_FLOOR_BITS)
            if not (sel == y).any():
                sel = np.sort(np.append(sel, y))
            delta = -((f[sel] * p.bigram_lr) >> 16)
            delta[np.searchsorted(sel, y)] += p.bigram_lr << 8
            keys, vals = self.bigram.get(a, (np.empty(0, np.int64), np.empty(0, np.int64)))
            pos = np.searchsorted(keys, sel)
            found = pos < keys.shape[0]
            found[found] = keys[pos[found]] == sel[found]
            if not found.all():
                keys = np.insert(keys, pos[~found], sel[~found])
                vals = np.insert(vals, pos[~found], 0)
                pos = np.searchsorted(keys, sel)
            vals[pos] = np.clip(vals[pos] + delta, -BIAS_LIMIT, BIAS_LIMIT)
            self.bigram[a] = (keys, vals)
        if p.temp_lr:
            # d log p_y / d beta = z_y - E_p[z] (logit units); beta in 2**-12
            g = (int(z[y]) << TOTAL_BITS) - int(np.dot(f, z))  # 2**-34 nat units
            step = (abs(g) * p.temp_lr) >> 38  # rounded toward zero: a floor would drift beta down
            self.beta = min(4 * BETA_ONE, max(BETA_ONE // 4, self.beta + (step if g >= 0 else -step)))

    def _learn_counts(self, y: int) -> None:
        h = self.history
        for k in range(1, self.p.ngram_order + 1):
            if len(h) >= k:
                counts = self.ngrams[k - 1].setdefault(tuple(h[-k:]), {})
                counts[y] = counts.get(y, 0) + 1
        if self.p.match:
            if self.match_ptr >= 0 and h[self.match_ptr] == y:
                self.match_ptr += 1
                self.match_len = min(MATCH_CAP, self.match_len + 1)
            else:
                self.match_ptr, self.match_len = -1, 0
        h.append(y)
        if self.p.match and len(h) >= MATCH_MIN:
            key = tuple(h[-MATCH_MIN:])
            if self.match_ptr < 0:
                prev = self.match_index.get(key)
                if prev is not None:
                    n = MATCH_MIN
                    while n < MATCH_CAP and prev - n - 1 >= 0 and h[prev - n - 1] == h[-n - 1]:
                        n += 1
                    self.match_ptr, self.match_len = prev, n
            self.match_index[key] = len(h)

    # -- inspection ---------------------------------------------------------------------

    def digest(self) -> str:
        """SHA-256 over the whole learned state (tests compare encoder and decoder with it)."""
        return state_digest(self.unigram, self.bigram, self.beta, self.match_ptr, self.match_len, self.weights,
                            self.weights2, self.ngrams, self.match_index, self.history)


def state_digest(unigram, bigram, beta, match_ptr, match_len, weights, weights2, ngrams, match_index, history) -> str:
    """SHA-256 over a predictor's whole learned state, in this module's shapes (the native
    predictor exports its state in the same shapes, so the two digests compare)."""
    d = hashlib.sha256()
    d.update(np.asarray(unigram, dtype=np.int64).tobytes())
    for a in sorted(bigram):
        keys, vals = bigram[a]
        d.update(struct.pack("<q", a) + np.asarray(keys, dtype=np.int64).tobytes() + np.asarray(vals, dtype=np.int64).tobytes())
    d.update(struct.pack("<qqq", beta, match_ptr, match_len))
    for k in sorted(weights):
        d.update(struct.pack("<q", k) + np.asarray(weights[k], dtype=np.int64).tobytes())
    for k in sorted(weights2):
        d.update(struct.pack("<q", -1 - k) + np.asarray(weights2[k], dtype=np.int64).tobytes())
    d.update(repr([sorted((c, sorted(v.items())) for c, v in t.items()) for t in ngrams]).encode())
    d.update(repr(sorted(match_index.items())).encode())
    d.update(np.asarray(history, dtype=np.int64).tobytes())
    return d.hexdigest()
