"""Student vocabularies, and how the teacher's distribution is carried over to each.

``teacher``
    The student uses the teacher's tokenizer; the distillation target at every position is the
    teacher's whole next-token distribution.

``teacher-prefix`` (size N)
    The teacher's byte-level BPE cut to its first N ids: its special tokens, its byte tokens and
    its first N - (special + byte) merges (SmolLM2's ids are merge-ordered: merge r makes id
    252 + r). Because BPE applies merges lowest rank first, running the cut merge list is the first
    part of running the whole one, so **every teacher token is a concatenation of student tokens**
    and the student's tokenization of any text is the teacher's with each teacher token ``t``
    replaced by its fixed spelling ``seg(t)`` in student tokens (checked on real text by
    ``check_refinement``; the pre-tokenizer and the byte escapes are shared). Hence:

    * student ids come from the teacher's ids without re-tokenizing (``expand``);
    * at a student position that starts a teacher token (most of them: ~80% with N = 8192), the
      exact distribution of the next student token under the teacher is the teacher's row
      summed over the teacher tokens by their first student token:
      ``q(s) = sum_{t : seg(t)[0] = s} p(t)`` (``first``: one ``index_add`` per row);
    * inside a teacher token the teacher's next-token row alone does not give the student's
      target (it would need the teacher's distribution conditioned on the token's first part,
      i.e. the row of the *next* teacher position for every candidate), so those positions learn
      from the next-token label only.

A student vocabulary of its own (a BPE trained on the student's data, or a unigram model) has no
such relation to the teacher's tokens. Distilling into it would need the teacher's distribution
over *bytes*: for each student token, the probability that the text continues with its bytes,
marginalised over every teacher tokenization of them (a trie walk over the teacher vocabulary
per position, with the teacher run on every prefix that ends inside a teacher token), or an
approximation of it (scoring only the teacher's canonical tokenization of each candidate
continuation, or aligning at byte positions where both tokenizations have a boundary and
distilling only there). Any of these must keep the student's tokenizer lossless for every byte
string (the escape scheme of ``lmzip.model.tokenizer``). ``teacher-prefix`` gets a small vocabulary
without any of that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class StudentVocab:
    kind: str
    tokenizer: object  # lmzip.model.tokenizer.Tokenizer the exported model ships
    vocab_size: int
    byte_len: np.ndarray  # [V] bytes each student token spells (specials: 0)
    seg: np.ndarray | None = None  # [V_teacher, L] student ids of each teacher token, -1 padded
    seg_len: np.ndarray | None = None  # [V_teacher]

    @property
    def first(self) -> np.ndarray | None:
        return None if self.seg is None else self.seg[:, 0]


def token_byte_lengths(tok) -> np.ndarray:
    return np.array([len(tok.token_bytes(i)) for i in range(tok.vocab_size)], dtype=np.int64)


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """GPT-2's BPE of one pre-token (lowest-ranked pair first, every occurrence left to right)."""
    word = list(symbols)
    while len(word) > 1:
        best, rank = None, None
        for pair in zip(word, word[1:]):
            r = ranks.get(pair)
            if r is not None and (rank is None or r < rank):
                best, rank = pair, r
        if best is None:
            break
        out, i = [], 0
        while i < len(word):
            if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                out.append(word[i] + word[i + 1])
                i += 2
            else:
                out.append(word[i])
                i += 1
        word = out
    return word


def make_vocab(spec, teacher_tok) -> StudentVocab:
    """The student vocabulary of a ``config.VocabSpec`` for this teacher tokenizer."""
    if spec.kind == "teacher":
        return StudentVocab("teacher", teacher_tok, teacher_tok.vocab_size, token_byte_lengths(teacher_tok))
    from ..model.tokenizer import BPETokenizer

    if not isinstance(teacher_tok, BPETokenizer):
        raise ValueError("vocab 'teacher-prefix' needs a BPE teacher tokenizer")
    V_T, merges = teacher_tok.vocab_size, teacher_tok.merges
    base = V_T - len(merges)
    N = int(spec.size)
    if not base <= N <= V_T:
        raise ValueError(f"vocab.size must be {base}..{V_T} for this teacher (its {base} non-merge tokens first)")
    tokens = teacher_tok.tokens
    index = {t: i for i, t in enumerate(tokens)}
    for r, (a, b) in enumerate(merges):
        if index.get(a + b) != base + r:
            raise ValueError(f"teacher vocabulary is not merge-ordered (merge {r} {a!r}+{b!r} makes id "
                             f"{index.get(a + b)}, not {base + r}): 'teacher-prefix' does not apply")
    student = BPETokenizer(tokens[:N], merges[: N - base], teacher_tok.token_types[:N], pre=teacher_tok.pre,
                           escape_id=teacher_tok.escape_id, bos_id=teacher_tok.bos_id)
    ranks = {tuple(m): r for r, m in enumerate(merges[: N - base])}
    segs: list[list[int]] = []
    for t in range(V_T):
        if t < N or t in teacher_tok.special_ids:
            segs.append([t])
        else:
            segs.append([index[s] for s in _bpe(list(tokens[t]), ranks)])
    L = max(len(s) for s in segs)
    seg = np.full((V_T, L), -1, dtype=np.int64)
    for t, s in enumerate(segs):
        seg[t, : len(s)] = s
    seg_len = np.array([len(s) for s in segs], dtype=np.int64)
    if seg.max() >= N:
        raise ValueError("internal error: a student spelling uses an id beyond the cut vocabulary")
    return StudentVocab("teacher-prefix", student, N, token_byte_lengths(student), seg, seg_len)


def expand_np(vocab: StudentVocab, ids: np.ndarray) -> np.ndarray:
    """Teacher ids (1-D) -> student ids: each teacher token replaced by its student spelling."""
    ids = np.asarray(ids, dtype=np.int64)
    if vocab.seg is None:
        return ids
    rows = vocab.seg[ids]
    return rows[rows >= 0]


def check_refinement(vocab: StudentVocab, teacher_tok, texts: list[bytes]) -> tuple[int, int]:
    """(documents whose student tokenization equals the expanded teacher one, documents checked)."""
    ok = 0
    for text in texts:
        direct = np.asarray(vocab.tokenizer.encode(text), dtype=np.int64)
        ok += int(np.array_equal(direct, expand_np(vocab, teacher_tok.encode(text))))
    return ok, len(texts)


def expand_batch(vocab: StudentVocab, x, seg_t, seg_len_t, out_len: int, bos: int):
    """Teacher windows x [B, T+1] (long; -1 marks a document start, fed as BOS) -> student windows.

    Returns (y [B, out_len + 1], trow [B, out_len], boundary [B, out_len]): y the student ids (-1 at
    document starts), and for student row r (which predicts y[:, r + 1]) the teacher row that predicts
    the teacher token y[:, r + 1] begins, where ``boundary`` is true (the student target is the first
    student token of a teacher token, teacher row = that token's index - 1 >= 0)."""
    import torch

    B, T1 = x.shape
    sep = x < 0
    xs = torch.where(sep, torch.full_like(x, bos), x)
    lens = torch.where(sep, torch.ones_like(x), seg_len_t[xs])  # [B, T1]
    toks = torch.where(sep[..., None], torch.full_like(seg_t[xs], -1), seg_t[xs])  # [B, T1, L]
    if bool((lens.sum(1) < out_len + 1).any()):
        raise ValueError("teacher window too short for the student window")
    L = toks.shape[-1]
    start = torch.cumsum(lens, 1) - lens  # [B, T1] where each teacher token's spelling starts
    k = torch.arange(L, device=x.device)
    dest = start[..., None] + k  # [B, T1, L]
    valid = (k < lens[..., None]) & (dest < out_len + 1)
    if sep.any():  # a separator occupies its one slot (token -1)
        valid = valid & ((k == 0) | ~sep[..., None])
    y = torch.full((B, out_len + 1), -2, dtype=torch.long, device=x.device)
    trow = torch.zeros((B, out_len + 1), dtype=torch.long, device=x.device)
    bnd = torch.zeros((B, out_len + 1), dtype=torch.bool, device=x.device)
    bi = torch.arange(B, device=x.device)[:, None, None].expand_as(dest)
    ji = torch.arange(T1, device=x.device)[None, :, None].expand_as(dest)
    y[bi[valid], dest[valid]] = toks[valid]
    trow[bi[valid], dest[valid]] = ji[valid] - 1
    first = (k == 0) & (ji >= 1)
    bnd[bi[valid], dest[valid]] = (first & ~sep[..., None])[valid]
    return y, trow[:, 1:], bnd[:, 1:]
