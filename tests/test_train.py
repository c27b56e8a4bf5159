"""The students' training kit (lmzip/train) end to end on the CPU with tiny models: data file,
distillation, checkpoint and resume, export, and the export compressing through lmzip's API."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lmzip.train import config as C  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["lmzip/model/tokenizer.py", "lmzip/coding/codec.py", "lmzip/predict/adapt.py", "lmzip/model/zoo.py", "lmzip/coding/container.py",
           "docs/ARCHITECTURE.md", "README.md"]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """Tiny models on shared cores: more threads only wait for each other (torch and native)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("LMZIP_THREADS", "1")
    yield
    torch.set_num_threads(old)


def _text_dir(root: Path, chunk: int = 12000) -> Path:
    """~20 documents of this repository's own text (Apache-2.0), a training source like any other."""
    d = root / "text"
    d.mkdir()
    n = 0
    for rel in SOURCES:
        data = (REPO / rel).read_bytes()
        for i in range(0, len(data), chunk):
            (d / f"{Path(rel).stem}-{i // chunk}.txt").write_bytes(data[i : i + chunk])
            n += 1
    return d


def _build(tmp: Path, tokenizer: str, extra: list[str] = ()) -> Path:
    from lmzip.train import data

    out = tmp / "corpus.lmzt.xz"
    data.main(["--tokenizer", tokenizer, "--dir", str(_text_dir(tmp)), "--licence", "Apache-2.0", "--out", str(out),
               "--manifest", str(tmp / "manifest.json"), "-q", *extra])
    return out


@pytest.fixture(scope="module")
def byte_data(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("bytes"), "bytes")


def _tiny(out: Path, data: Path, *overrides: str) -> C.Config:
    cfg = C.load(C.builtin("tiny"), [f"data.path={data}", *overrides])
    cfg.out = str(out)
    return cfg


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


# -- the float model --------------------------------------------------------------------------

@pytest.mark.parametrize("untied", [False, True])
def test_float_student_is_the_reference_shape(untied):
    """The trainable Llama computes float_model.FloatLlama's logits, over whole windows and step by step."""
    from lmzip.model.convert import random_llama
    from lmzip.model.float_model import FloatLlama
    from lmzip.train.model import Llama

    cfg, w = random_llama(3, vocab_size=256, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=48, max_context=64)
    if untied:
        w["output.weight"] = np.random.default_rng(1).standard_normal((256, 32)).astype(np.float32) * 0.3
    m = Llama.from_gguf_weights(cfg, w)
    assert m.tied is not untied
    ids = torch.randint(0, 256, (2, 40))
    ref = FloatLlama(cfg, w).logits(ids)
    with torch.no_grad():
        got = m(ids)
        assert torch.allclose(got, ref, atol=1e-4, rtol=1e-4)
        caches = m.new_caches(2, 40, torch.float32, torch.device("cpu"))
        first = m.hidden(ids[:, :25], caches, 0)
        steps = [m.hidden(ids[:, t : t + 1], caches, t) for t in range(25, 40)]
        h = torch.cat([first] + steps, 1)
        assert torch.allclose(h @ m.output_weight.T, ref, atol=1e-4, rtol=1e-4)
    back = m.to_gguf_weights()
    assert set(back) == set(w) and all(np.array_equal(back[k], w[k]) for k in w)


# -- configs ----------------------------------------------------------------------------------

def test_config_checks(tmp_path):
    raw = C.read_raw(C.builtin("tiny"))
    with pytest.raises(C.ConfigError, match="unknown key"):
        C.from_dict(dict(raw, trian={}))
    with pytest.raises(C.ConfigError, match="student.dim"):
        C.from_dict(C.apply_overrides(raw, ["student.dim=0"]))
    with pytest.raises(C.ConfigError, match="inconsistent attention shape"):
        C.from_dict(C.apply_overrides(raw, ["student.n_heads=3"]))
    with pytest.raises(C.ConfigError, match="seq_len"):
        C.from_dict(C.apply_overrides(raw, ["train.seq_len=4096"]))
    toml = tmp_path / "s.toml"
    toml.write_text('[student]\nn_layers = 2\ndim = 64\nn_heads = 2\nn_kv_heads = 1\nffn_dim = 96\n[train]\nsteps = 3\n')
    cfg = C.load(toml, ["optim.lr=0.01"])
    assert cfg.name == "s" and cfg.student.dim == 64 and cfg.train.steps == 3 and cfg.optim.lr == 0.01
    for name in ("student-xs", "student-s", "student-m", "student-t"):
        C.load(C.builtin(name))  # the GPU configs are valid
    cpu = C.load(C.builtin("student-xs-cpu"))  # the CPU recipe: student-xs's shape on labels alone
    assert cpu.student == C.load(C.builtin("student-xs")).student and cpu.distill.alpha == 0


# -- training text ----------------------------------------------------------------------------

def test_data_file_and_exclusions(tmp_path):
    from lmzip.train import data, sources

    d = _text_dir(tmp_path)
    (d / "xargs.1").write_text(".TH XARGS 1\n.SH NAME\nxargs \\- build and execute command lines\n")
    (d / "poem.txt").write_text("Of Man's first disobedience, and the fruit -- so begins Paradise Lost.\n")
    (d / "log.txt").write_bytes((REPO / "benchmarks" / "data" / "dpkg.log").read_bytes()[:6000])
    out = tmp_path / "c.lmzt.xz"
    m = data.build(data.parse_args(["--tokenizer", "bytes", "--dir", str(d), "--licence", "Apache-2.0", "--out", str(out),
                          "--manifest", str(tmp_path / "m.json"), "-q"]))
    refused = {Path(r["path"]).name: r["reason"] for r in m["exclusions"]["refused_for_content"]}
    assert set(refused) == {"xargs.1", "poem.txt", "log.txt"}, refused
    assert "Paradise Lost" in refused["poem.txt"] and "8-grams" in refused["log.txt"]
    corpus = data.read_corpus(out)
    assert corpus.n_docs == m["documents"] and corpus.header["tokenizer_id"] == m["tokenizer_id"]
    text = {Path(p).name: bytes(corpus.doc(i).astype(np.uint8)) for i, p in enumerate(corpus.paths)}
    assert text["README-0.txt"] == (d / "README-0.txt").read_bytes()
    rows = (tmp_path / "training-data-files.tsv").read_text().splitlines()
    assert len([r for r in rows if not r.startswith(("#", "path\t"))]) == corpus.n_docs
    train, held = data.streams(corpus, 200)
    assert (train < 0).sum() + (held < 0).sum() == corpus.n_docs and (held < 0).sum() >= 1
    assert sources.read_text(str(d / "README-0.txt")) is not None and sources.read_text(str(out)) is None


# -- training, checkpoints, export -------------------------------------------------------------

def test_tiny_student_trains_exports_and_compresses(tmp_path, byte_data):
    import lmzip
    from lmzip.model import zoo
    from lmzip.train import cli
    from lmzip.train.export import exact_bits_per_byte

    run = tmp_path / "run"
    assert cli.main([str(C.builtin("tiny")), "--set", f"data.path={byte_data}", "--set", "export.report_bits=[4]",
                     "--out", str(run)]) == 0
    log = _log(run)
    evals = [r for r in log if r["event"] == "eval"]
    train = [r for r in log if r["event"] == "train"]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == 30
    assert evals[-1]["holdout_bpb"] < evals[0]["holdout_bpb"] - 0.5  # it learns
    assert train[-1]["loss"] < train[0]["loss"]
    assert all(r["tokens_per_s"] > 0 and r["train_bpb"] > 0 for r in train)
    card = json.loads((run / "model" / "training.json").read_text())
    assert card["steps"] == 30 and abs(card["holdout_bpb_quantized"] - card["holdout_bpb_float"]) < 0.05
    assert card["holdout_bpb_bits"]["4"] > card["holdout_bpb_quantized"] - 0.01
    assert (run / "generated.npy").is_file()  # teacher samples, kept for --resume

    lm = zoo.load(run / "model")
    assert lm.model.cfg.n_layers == 1 and lm.model.cfg.max_context == 128
    text = (REPO / "lmzip" / "errors.py").read_bytes()[:2500]
    blob = lmzip.Compressor(run / "model", fallback=False).compress(text)
    assert lmzip.decompress(blob, model=run / "model") == text
    # the export's exact figure is lmzip's own cost of coding that text
    from lmzip.coding.codec import CodecParams, lm_cost_bits

    bits, _ = lm_cost_bits(lm, text, CodecParams(window=128, overlap=32, adapt=None))
    assert exact_bits_per_byte(run / "model", text)["bits_per_byte"] == pytest.approx(bits / len(text), rel=1e-12)


def test_checkpoint_resume_is_the_same_run(tmp_path, byte_data):
    from lmzip.train.trainer import run

    quiet = dict(say=lambda *a: None)
    run([_tiny(tmp_path / "a", byte_data)], **quiet)
    assert run([_tiny(tmp_path / "b", byte_data)], stop_at=12, **quiet)[0]["stopped"]
    assert not (tmp_path / "b" / "model").exists()
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 12
    run([_tiny(tmp_path / "b", byte_data)], resume=True, **quiet)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 30
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert filecmp.cmp(tmp_path / "a" / "model" / "model.safetensors", tmp_path / "b" / "model" / "model.safetensors",
                       shallow=False)
    train = lambda p: [(r["step"], r["loss"]) for r in _log(p) if r["event"] == "train"]  # noqa: E731
    assert train(tmp_path / "a") == train(tmp_path / "b")
    with pytest.raises(C.ConfigError, match="student section differs"):
        run([_tiny(tmp_path / "b", byte_data, "student.ffn_dim=32")], resume=True, **quiet)


def test_labels_only_runs_no_teacher_forward(tmp_path, byte_data, monkeypatch):
    """alpha 0 (the CPU recipe): cross-entropy on the labels alone, the teacher never run per batch."""
    from lmzip.train import trainer

    def no_forward(self, x):
        raise AssertionError("the teacher ran a forward in a labels-only run")

    monkeypatch.setattr(trainer.Run, "teacher_logits", no_forward)
    out = tmp_path / "labels"
    res = trainer.run([_tiny(out, byte_data, "distill.alpha=0", "data.generate.sequences=0")], say=lambda *a: None)
    assert res[0]["name"] == "tiny"
    evals = [r for r in _log(out) if r["event"] == "eval"]
    train = [r for r in _log(out) if r["event"] == "train"]
    assert evals[-1]["holdout_bpb"] < evals[0]["holdout_bpb"] - 0.5
    assert all(r["teacher_holdout_bpb"] is None and r["holdout_bytes"] > 0 for r in evals)
    assert all(r["kl"] == 0 for r in train)
    card = json.loads((out / "model" / "training.json").read_text())
    assert card["teacher_holdout_bpb"] is None and card["holdout_bpb_quantized"] > 0


def test_expand_batch_spells_teacher_tokens():
    """Student windows from teacher windows: each teacher token replaced by its student spelling,
    document marks kept, and the teacher row that predicts each teacher token's first student token."""
    from lmzip.testing import tiny_bpe
    from lmzip.train.vocab import expand_batch, make_vocab

    tok = tiny_bpe((REPO / "README.md").read_bytes(), 300)
    v = make_vocab(C.VocabSpec("teacher-prefix", 350), tok)
    seg, seg_len = torch.from_numpy(v.seg), torch.from_numpy(v.seg_len)
    rng = np.random.default_rng(0)
    for _ in range(50):
        T1 = int(rng.integers(2, 30))
        x = rng.integers(0, tok.vocab_size, size=(3, T1))
        x[rng.random(x.shape) < 0.1] = -1
        y, trow, bnd = expand_batch(v, torch.from_numpy(x), seg, seg_len, T1 - 1, 0)
        for b in range(3):
            want = [(u, j - 1, k == 0 and j >= 1 and t >= 0) for j, t in enumerate(x[b])
                    for k, u in enumerate([-1] if t < 0 else [int(u) for u in v.seg[t] if u >= 0])][:T1]
            assert y[b].tolist() == [w[0] for w in want]
            assert bnd[b].tolist() == [w[2] for w in want[1:]]
            assert [r for r, m in zip(trow[b].tolist(), bnd[b].tolist()) if m] == [w[1] for w in want[1:] if w[2]]


def test_teacher_prefix_student_in_lockstep(tmp_path):
    """A BPE teacher; two students trained on the same batches: the teacher's vocabulary and its
    first ids (the teacher's tokens spelled in the student's, distilled at teacher-token starts)."""
    import lmzip
    from lmzip.model import zoo
    from lmzip.testing import tiny_bpe, write_tiny_bpe_model
    from lmzip.train.trainer import run
    from lmzip.train.vocab import check_refinement, make_vocab

    text = b"".join((REPO / p).read_bytes() for p in SOURCES[:3])
    tok = tiny_bpe(text, 300)
    teacher = write_tiny_bpe_model(tmp_path / "teacher", tok, seed=5, dim=32, n_layers=1, n_heads=2, n_kv_heads=1,
                                   ffn_dim=48, max_context=256)
    data = _build(tmp_path, str(teacher))
    vocab = make_vocab(C.VocabSpec("teacher-prefix", 400), tok)
    docs = [text[i : i + 4000] for i in range(0, 40000, 4000)] + [bytes(range(256)) * 2]
    assert check_refinement(vocab, tok, docs) == (len(docs), len(docs))

    common = [f"data.path={data}", "teacher.kind=exact", f"teacher.path={teacher}", "train.steps=8",
              "train.eval_every=100", "export.exact_eval_bytes=600", "data.generate.sequences=0"]
    same = _tiny(tmp_path / "same", data, *common)
    same.name = "same"
    prefix = _tiny(tmp_path / "prefix", data, *common, "vocab.kind=teacher-prefix", "vocab.size=400")
    prefix.name = "prefix"
    cards = run([same, prefix], say=lambda *a: None)
    assert [c["config"]["vocab"]["kind"] for c in cards] == ["teacher", "teacher-prefix"]
    kl = [r["kl"] for r in _log(tmp_path / "prefix") if r["event"] == "train"]
    assert kl and all(k > 0 for k in kl)  # the projected teacher rows are used
    for c, V in zip(cards, (tok.vocab_size, 400)):
        lm = zoo.load(Path(c["config"]["out"]) / "model")
        assert lm.model.cfg.vocab_size == V == lm.tokenizer.vocab_size
        assert c["exact"]["bits_per_byte"] > 0
    sample = b"tokens \x04 and bytes \xff\xfe: " + text[:800]
    out = tmp_path / "prefix" / "model"
    assert lmzip.decompress(lmzip.Compressor(out, fallback=False).compress(sample), model=out) == sample
