"""``lmzip bench`` and the corpora loader: codec registry, tables, JSON, plot, round-trip errors, hashes."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

import pytest
from click.testing import CliRunner

from lmzip.commands import bench, corpora

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SAMPLES = [
    b"",
    b"a",
    b"The quick brown fox jumps over the lazy dog.\n" * 50,
    bytes(range(256)) * 8,
    os.urandom(5000),
    b"\x00" * 10000,
]


def _runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2 mixes stderr into output unless told
    except TypeError:
        return CliRunner()


def _invoke(*args: str):
    return _runner().invoke(bench.bench_command, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def two_files(tmp_path):
    d = tmp_path / "inputs"
    (d / "sub").mkdir(parents=True)
    (d / "b_notes.txt").write_bytes(b"lmzip bench measures every compressor on every file.\n" * 6)
    (d / "sub" / "a_table.bin").write_bytes(bytes((i * 37) % 251 for i in range(300)))
    (d / ".hidden").write_bytes(b"never measured")
    return d


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", list(bench.CODECS))
def test_every_classic_codec_round_trips(name):
    codec = bench.CODECS[name]
    assert codec.name == name and codec.settings
    for data in SAMPLES:
        blob = codec.compress(data)
        assert isinstance(blob, bytes)
        assert codec.decompress(blob) == data
    text = SAMPLES[2]
    assert len(codec.compress(text)) < len(text) // 4  # they do compress


def test_measure_reports_sizes_times_and_errors():
    size, t_c, t_d = bench.measure(bench.CODECS["gzip"], SAMPLES[2], min_time=0)
    assert 0 < size < len(SAMPLES[2]) and t_c > 0 and t_d > 0
    wrong = bench.Codec("wrong", lambda d: d, lambda b: b + b"!")
    assert "round trip failed" in bench.measure(wrong, b"abc", min_time=0)

    def boom(_):
        raise RuntimeError("no luck")

    assert bench.measure(bench.Codec("boom", lambda d: d, boom), b"abc", min_time=0) == \
        "decompress failed: RuntimeError: no luck"


def test_select_codecs():
    everything = bench.select_codecs([])
    assert everything[0] == bench.LMZIP and set(everything[1:]) == set(bench.CODECS)
    assert bench.select_codecs(["xz", "gzip"]) == ["gzip", "xz"]
    assert bench.select_codecs(["zstd"]) == ["zstd-19", "zstd-22"]
    assert bench.select_codecs(["gzip"], lmzip_implied=True) == [bench.LMZIP, "gzip"]
    with pytest.raises(bench.UsageError, match="unknown codec"):
        bench.select_codecs(["nope"])


# --------------------------------------------------------------------------- the command


def test_bench_tiny_model_tables_json_plot(tmp_path, two_files, tiny_model_dir):
    pytest.importorskip("matplotlib")
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    res = _invoke(two_files, "--model", tiny_model_dir, "--window", "64", "--overlap", "16", "--min-time", "0",
                  "--json", out_json, "--plot", out_png)
    assert res.exit_code == 0, res.output + res.stderr
    out = res.stdout
    names = [f"lmzip:{tiny_model_dir.name}", *bench.CODECS]
    sizes = {318, 300}
    # A Markdown table per file (walked in sorted order, hidden files skipped), then the summary.
    labels = [os.path.join(str(two_files), "b_notes.txt"), os.path.join(str(two_files), "sub", "a_table.bin")]
    positions = [out.index(f"### {label}\n") for label in labels]
    assert positions == sorted(positions)
    assert ".hidden" not in out
    assert "| compressor | original bytes | compressed bytes | bits/byte | ratio | compress MB/s | decompress MB/s " \
           "| round trip |" in out
    summary = out[out.index("### Summary: 2 files, 618 bytes"):]
    for name in names:
        assert re.search(rf"^\| {re.escape(name)} \| 2 \| 618 \| [\d,]+ \| \d+\.\d{{3}} \| ", summary, re.M), name
    assert out.count("| ok |") == 3 * len(names)  # two files and the summary
    assert "FAILED" not in out

    doc = json.loads(out_json.read_text())
    assert doc["ok"] is True
    assert {"cpu", "logical_cores", "python", "versions"} <= doc["machine"].keys()
    assert doc["machine"]["versions"]["torch"] and doc["machine"]["python"]
    assert [c["name"] for c in doc["codecs"]] == names
    rows = doc["rows"]
    assert len(rows) == 2 * len(names)
    for r in rows:
        assert r["roundtrip"] is True and r["error"] is None
        assert r["original_bytes"] in sizes and r["compressed_bytes"] > 0
        assert r["bits_per_byte"] == pytest.approx(8 * r["compressed_bytes"] / r["original_bytes"])
        assert r["compress_mb_s"] > 0 and r["decompress_mb_s"] > 0
    assert {r["kind"] for r in rows} == {"text", "binary"}
    total = {t["codec"]: t for t in doc["summary"]}
    assert total["gzip"]["original_bytes"] == sum(sizes) and total["gzip"]["files"] == 2

    png = out_png.read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000


def test_broken_codec_is_an_error_not_a_number(tmp_path, two_files, monkeypatch):
    monkeypatch.setitem(bench.CODECS, "broken", bench.Codec("broken", lambda d: d, lambda b: b[:-1] + b"?"))
    out_json = tmp_path / "bench.json"
    res = _invoke(two_files, "--codec", "broken", "--codec", "gzip", "--min-time", "0", "--json", out_json)
    assert res.exit_code == 1
    assert "broken: round trip failed" in res.stderr
    assert "rows did not round-trip: broken" in res.stderr
    assert re.search(r"^\| broken \| 318 \| — \| — \| — \| — \| — \| \*\*FAILED\*\*: round trip failed", res.stdout, re.M)
    assert re.search(r"^\| gzip \| 2 \| 618 \| [\d,]+ \| .* \| ok \|$", res.stdout, re.M)
    rows = json.loads(out_json.read_text())["rows"]
    bad = [r for r in rows if r["codec"] == "broken"]
    assert len(bad) == 2 and all(r["roundtrip"] is False and r["bits_per_byte"] is None and r["compressed_bytes"] is None
                                 and "round trip failed" in r["error"] for r in bad)
    assert all(r["roundtrip"] for r in rows if r["codec"] == "gzip")


def test_bench_usage_errors(tmp_path, two_files, monkeypatch):
    res = _invoke(two_files, "--codec", "nope")
    assert res.exit_code == 4 and "unknown codec 'nope'" in res.stderr
    res = _invoke(tmp_path / "missing.txt", "--codec", "gzip")
    # (with a corpus directory configured, as in CI, the line also says it is no corpus)
    assert res.exit_code == 5 and re.search(r"missing\.txt: [Nn]o such file or directory", res.stderr), res.stderr
    res = _invoke(two_files, "--codec", "gzip", "--window", "64")
    assert res.exit_code == 4 and "--window/--overlap only apply to lmzip" in res.stderr
    res = _invoke(two_files, "--no-such-option")
    assert res.exit_code == 4
    res = _invoke()
    assert res.exit_code == 4 and "give at least one PATH" in res.stderr
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    res = _invoke(two_files, "--codec", "gzip", "--plot", tmp_path / "x.png")
    assert res.exit_code == 4
    assert res.stderr.strip() == "lmzip: bench: --plot needs matplotlib, which is not installed (pip install 'lmzip[bench]')"
    assert not (tmp_path / "x.png").exists() and res.stdout == ""  # refused before measuring anything


def _one_error_line(res, code: int, *parts: str) -> str:
    """The run failed with ``code`` and said so in one stderr line (no traceback) holding ``parts``."""
    assert res.exit_code == code, (res.exit_code, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmzip: bench: "), res.stderr
    assert "Traceback" not in res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit)
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_bench_missing_path_and_unknown_corpus(tmp_path, two_files, monkeypatch):
    monkeypatch.delenv(corpora.ENV_VAR, raising=False)
    out_json = tmp_path / "out.json"
    res = _invoke(two_files, tmp_path / "missing.txt", "--codec", "gzip", "--json", out_json)
    _one_error_line(res, 5, "missing.txt: No such file or directory")
    assert res.stdout == "" and not out_json.exists() and _leftovers(tmp_path) == []
    # A corpus path naming no file of the corpus, and an unknown corpus name with a corpus directory.
    res = _invoke("calgary/book9", "--codec", "gzip")
    _one_error_line(res, 5, "calgary/book9: no such file or directory, nor a file of the calgary corpus", "book1")
    res = _invoke("--corpus", tmp_path, "enwik9", "--codec", "gzip")
    _one_error_line(res, 5, "enwik9: no such file or directory, nor a corpus (known: canterbury, calgary)")
    res = _invoke("--corpus", tmp_path / "nowhere", "calgary", "--codec", "gzip")
    _one_error_line(res, 5, "calgary is a corpus name: corpus directory", "does not exist")


def test_bench_unwritable_outputs_fail_before_measuring(tmp_path, two_files):
    a_file = two_files / "b_notes.txt"
    before = a_file.read_bytes()
    cases = [
        (["--json", tmp_path / "no-dir" / "out.json"], 5, "no-dir/out.json: No such file or directory"),
        (["--json", a_file / "out.json"], 5, "b_notes.txt/out.json: Not a directory"),
        (["--json", tmp_path], 5, f"{tmp_path}: Is a directory"),
        (["--plot", tmp_path, "--json", tmp_path / "ok.json"], 5, f"{tmp_path}: Is a directory"),
        (["--json", a_file], 4, "input and output are the same file"),
        (["--json", tmp_path / "same", "--plot", tmp_path / "." / "same"], 4, "--json and --plot name the same file"),
    ]
    for extra, code, part in cases:
        if "--plot" in extra:
            pytest.importorskip("matplotlib")
        res = _invoke(two_files, "--codec", "gzip", "--min-time", "0", *extra)
        _one_error_line(res, code, part)
        assert res.stdout == "", extra  # refused before anything was measured
    assert a_file.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs"]  # no output, no temporary file
    assert _leftovers(two_files) == []


def test_bench_bad_model_is_one_line_and_leaves_outputs_alone(tmp_path, two_files):
    """A model file with an F64 scale (FORMAT.md §7.5.2: scales are F32) is refused, exit 3."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    from lmzip.native.weights import open_safetensors
    from lmzip.testing import write_tiny_model
    from lmzip.model.zoo import WEIGHTS

    model = write_tiny_model(tmp_path / "bad-model", seed=5)
    meta, _ = open_safetensors(model / WEIGHTS)
    tensors = dict(load_file(str(model / WEIGHTS)))
    tensors["embed.scale"] = tensors["embed.scale"].astype(np.float64)
    save_file(tensors, str(model / WEIGHTS), metadata=meta)
    out_json = tmp_path / "out.json"
    out_json.write_text("the previous report\n")
    res = _invoke(two_files, "--model", model, "--min-time", "0", "--json", out_json)
    _one_error_line(res, 3, "'embed.scale' is F64 [256]; the format requires F32 [256]")
    assert res.stdout == ""
    assert out_json.read_text() == "the previous report\n" and _leftovers(tmp_path) == []
    res = _invoke(two_files, "--model", tmp_path / "no-such-model", "--min-time", "0")
    _one_error_line(res, 3, "no-such-model")


@pytest.mark.parametrize("signum, code", [(None, 130), (15, 143)])
def test_bench_interrupted_leaves_no_partial_output(tmp_path, two_files, monkeypatch, signum, code):
    from lmzip.commands import cmdline

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt() if signum is None else cmdline.Signalled(signum)

    monkeypatch.setattr(bench, "run_file", interrupt)
    out_json = tmp_path / "out.json"
    out_json.write_text("the previous report\n")
    res = _invoke(two_files, "--codec", "gzip", "--min-time", "0", "--json", out_json)
    _one_error_line(res, code, "interrupted")
    assert out_json.read_text() == "the previous report\n" and _leftovers(tmp_path) == []


def test_bench_json_replaces_an_old_report_atomically(tmp_path, two_files, monkeypatch):
    out_json = tmp_path / "out.json"
    out_json.write_text("the previous report\n")
    seen = []
    real = bench.run_file

    def spy(*args, **kwargs):  # while measuring: the old report is intact, the new one a temporary file
        seen.append((out_json.read_text(), _leftovers(tmp_path)))
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "run_file", spy)
    res = _invoke(two_files, "--codec", "gzip", "--min-time", "0", "--json", out_json, "-q")
    assert res.exit_code == 0, res.stderr
    assert all(text == "the previous report\n" and len(tmp) == 1 and tmp[0].startswith(".out.json.")
               for text, tmp in seen) and len(seen) == 2
    assert json.loads(out_json.read_text())["ok"] is True and _leftovers(tmp_path) == []
    assert oct(out_json.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_bench_closed_stdout_is_one_line(two_files):
    """``lmzip bench ... | head`` with the reader gone: exit 5, one line, no traceback or second complaint."""
    import subprocess

    proc = subprocess.Popen([sys.executable, "-m", "lmzip", "bench", str(two_files), "--codec", "gzip", "--min-time",
                             "0", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 5, err
    assert err.strip() == "lmzip: bench: Broken pipe", err


def test_bench_corpus_text_only(corpora_dir, monkeypatch):
    monkeypatch.delenv(corpora.ENV_VAR, raising=False)
    res = _invoke("--corpus", corpora_dir, "canterbury", "--text-only", "--codec", "gzip", "--min-time", "0",
                  "--json", "-", "-q")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)  # --json -: JSON alone on stdout
    want = [e.relpath for e in corpora.entries("canterbury", "text")]
    assert [r["file"] for r in doc["rows"]] == want
    assert all(r["kind"] == "text" and r["corpus"] == "canterbury" for r in doc["rows"])
    assert doc["options"]["skipped"] == ["canterbury/kennedy.xls", "canterbury/ptt5", "canterbury/sum"]
    # LMZIP_CORPORA works like --corpus, and one corpus file can be named.
    monkeypatch.setenv(corpora.ENV_VAR, str(corpora_dir))
    res = _invoke("calgary/paper5", "--codec", "gzip", "--min-time", "0")
    assert res.exit_code == 0, res.stderr
    assert "### calgary/paper5\n\n11,954 bytes, text" in res.stdout


def test_bench_corpus_without_directory(monkeypatch, tmp_path):
    monkeypatch.delenv(corpora.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    res = _invoke("canterbury", "--codec", "gzip")
    assert res.exit_code == 5 and "canterbury is a corpus name: no corpus directory" in res.stderr


# --------------------------------------------------------------------------- corpora


def test_manifest_matches_sources_and_copy(corpora_dir):
    rows = corpora.entries()
    assert len(rows) == 29 and corpora.corpus_names() == ["canterbury", "calgary"]
    assert len(corpora.entries("canterbury")) == 11 and len(corpora.entries("calgary")) == 18
    assert {r.kind for r in rows} == {"text", "binary"}
    assert all(r.origin.startswith("pfalcon/canterbury-corpus@") and r.description for r in rows)
    sources = corpora_dir / "SOURCES.md"
    if sources.is_file():  # the facts come from there
        table = {f"{c}/{n}": (int(s), h) for c, n, s, h in
                 re.findall(r"^\| `(\w+)/([^`]+)` \| (\d+) \| `([0-9a-f]{64})` \|", sources.read_text(), re.M)}
        assert table == {r.relpath: (r.size, r.sha256) for r in rows}
    assert [e.relpath for e in corpora.verify_all(corpora_dir)] == [r.relpath for r in rows]


def test_loader_rejects_a_changed_byte_and_missing_files(corpora_dir, tmp_path):
    entry = next(e for e in corpora.entries("canterbury") if e.name == "grammar.lsp")
    copy = tmp_path / "canterbury"
    copy.mkdir()
    data = bytearray((corpora_dir / "canterbury" / "grammar.lsp").read_bytes())
    (copy / "grammar.lsp").write_bytes(data)
    assert corpora.verify(entry, tmp_path) == copy / "grammar.lsp"
    data[1000] ^= 0x20
    (copy / "grammar.lsp").write_bytes(data)
    with pytest.raises(corpora.CorpusError, match=r"grammar.lsp: sha256 .* differs from the manifest"):
        corpora.verify(entry, tmp_path)
    (copy / "grammar.lsp").write_bytes(data[:-1])
    with pytest.raises(corpora.CorpusError, match="3720 bytes, the manifest says 3721"):
        corpora.verify(entry, tmp_path)
    with pytest.raises(corpora.CorpusMissingError, match="alice29.txt: missing"):
        corpora.locate("canterbury", tmp_path)
    with pytest.raises(corpora.CorpusError, match="unknown corpus"):
        corpora.entries("enwik9")
    # Through the command: a changed corpus file stops the run before anything is measured.
    (copy / "grammar.lsp").write_bytes(data)
    res = _invoke("--corpus", tmp_path, "canterbury/grammar.lsp", "--codec", "gzip")
    assert res.exit_code == 1 and "differs from the manifest" in res.stderr and res.stdout == ""


def test_guess_kind_agrees_with_the_manifest(corpora_dir, monkeypatch):
    monkeypatch.setattr(corpora, "by_sha256", lambda digest: None)  # the heuristic alone
    for entry, path in corpora.locate(None, corpora_dir, check=False):
        assert corpora.guess_kind(path.read_bytes()) == entry.kind, entry.relpath


def test_manifest_is_package_data():
    from importlib.resources import files

    try:
        shipped = files("lmzip._corpora") / "manifest.json"
    except ModuleNotFoundError:  # an editable install made before lmzip._corpora existed
        pytest.skip("lmzip._corpora is not importable in this installation")
    assert json.loads(shipped.read_text())["files"] == corpora.manifest()["files"]


def test_copy_of_corpus_dir_via_env(corpora_dir, tmp_path, monkeypatch):
    dest = tmp_path / "calgary"
    dest.mkdir()
    shutil.copy(corpora_dir / "calgary" / "paper4", dest / "paper4")
    monkeypatch.setenv(corpora.ENV_VAR, str(tmp_path))
    [(entry, path)] = [(e, p) for e, p in corpora.locate("calgary", check=False) if e.name == "paper4"]
    assert corpora.verify(entry, corpora.corpus_dir()) == path


def test_registered_under_the_lmzip_group(two_files, monkeypatch):
    from lmzip.commands import cli

    monkeypatch.setitem(cli.main.commands, "bench", bench.bench_command)  # as cli.py registers it
    runner = _runner()
    res = runner.invoke(cli.main, ["bench", str(two_files), "--codec", "gzip", "--min-time", "0"])
    assert res.exit_code == 0 and "### Summary: 2 files" in res.stdout
    res = runner.invoke(cli.main, ["bench", str(two_files), "--codec", "nope"])
    assert res.exit_code == 4 and "lmzip: bench: unknown codec 'nope'" in res.stderr
    res = runner.invoke(cli.main, ["bench", "--no-such-option"])
    assert res.exit_code == 4
