"""The students' training kit: distil small exact models from the teacher.

    python -m lmzip.train.data                              # training text -> train-kit/data/corpus.lmzt.xz
    python -m lmzip.train student-s                         # one student (a config name or file)
    python -m lmzip.train student-s student-m student-t     # several, sharing the teacher's forward pass
    python -m lmzip.train tiny --set data.path=X --resume   # continue from the run directory's checkpoint
    lmzip compress --model train-kit/runs/student-s/model FILE

What happens (``trainer.py``): the teacher (a float torch forward of SmolLM2-135M: its GGUF, or the
exact model dequantised; only the exported student must follow the exact numerics) reads each
batch of windows of the packed training text, and every student takes one AdamW step on
``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy`` against the teacher's whole
next-token distribution (``distill.temperature``/``alpha``). Optionally, text sampled from the teacher
at the start (``data.generate``: continuations of real prompts, and some from BOS alone) makes up a
share of each batch. The log (``log.jsonl`` in the run directory) records per step the loss, the
training bits/byte and tokens/s, and at each evaluation the held-out bits/byte of the student and
of the teacher; checkpoints (``checkpoint.pt``) are written atomically, and ``--resume`` continues
bit-identically (batches depend only on the seed and the step). At the end (the step count, the
time budget, or SIGINT/SIGTERM) each student is exported (``export.py``) into ``<run>/model``: int8
rows by ``convert.exact_tensors`` with the config in the file (FORMAT.md §7.5), its tokenizer, and
``training.json`` (its config, data, steps and held-out bits/byte in float, after int8 quantisation,
at other weight widths, and on the exact runtime). ``zoo.load``, ``lmzip compress --model DIR`` and
the API take that directory as they take any model directory.

The student (``model.py``) is the Llama the exact runtime implements (RMSNorm, grouped-query
attention with RoPE on ``(j, j + D/2)`` pairs, SwiGLU, final norm, head tied or not), so the export
is a plain quantisation: no layer is approximated. Shapes must pass ``model_spec.check_bounds``
(checked when the config is read).

Vocabularies (``vocab.py``, the ``vocab`` section). ``teacher``: the student shares the teacher's
tokenizer and learns its full distribution at every position (the simple, exact distillation).
``teacher-prefix`` (size N): the teacher's BPE cut to its first N ids. With SmolLM2's merge-ordered
vocabulary every teacher token is then a concatenation of student tokens, so student ids come from
the teacher's without re-tokenizing, and at every student position that starts a teacher token the
teacher's row, summed over teacher tokens by their first student token, is the exact distribution
of the next student token; positions inside a teacher token learn from the label alone. A small
vocabulary matters: with 49,152 entries the output layer is most of a small model's work and
file (docs/BENCHMARKS.md, benchmarks/TRAIN_KIT.md).

A vocabulary of the student's own (a BPE or unigram model trained on the student's data, with
lmzip's lossless byte escapes) is a config kind still to add. Distilling into it needs the
teacher's probabilities of the student's tokens, which no teacher row gives directly: for each
student token, the probability that the text continues with its bytes, summed over every teacher
tokenization of those bytes (a walk over the teacher's vocabulary trie per position, running the
teacher on every prefix that ends inside one of its tokens), or an approximation (the teacher's
canonical tokenization of each candidate only; or distilling only at byte positions where both
tokenizations have a boundary, as ``teacher-prefix`` does exactly, and using labels elsewhere).
The student's tokenizer must stay lossless for every byte string and be recorded in the export
(``tokenizer/``), as the teacher-prefix one is.

Other modules: ``config.py`` (the config file: every key, checked), ``data.py`` (the packed data
file and its builder), ``sources.py`` (where text comes from, licences, and what is kept out:
the Canterbury/Calgary corpora, the works in them, ``benchmarks/data``), ``teacher.py``,
``configs/`` (``tiny`` for tests; ``student-xs``, ``-s``, ``-m``, ``-t`` for the GPU job of
``benchmarks/train_students.sh``).
"""
