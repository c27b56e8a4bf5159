"""The ``lmzip`` command line: file handling, exit codes, messages, progress display.

Every run uses the tiny random model (``--model DIR``) with small windows, so the whole
file takes seconds; the teacher model is never loaded here.
"""

from __future__ import annotations

import io
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import lmzip
from lmzip import api
from lmzip.commands import cli
from lmzip.coding import container
from lmzip.model import zoo
from lmzip.commands.cli import main
from lmzip.commands.progress import Progress, human_bytes, human_duration

SMALL = ["--window", "64", "--overlap", "16"]
TEXT = b"The quick brown fox jumps over the lazy dog.\n" * 20 + "naïve café ✓\r\n".encode() * 5


def run(*args, input: bytes | None = None):
    """Invoke the CLI in-process; exceptions that escape (bugs) fail the test with their traceback."""
    return CliRunner().invoke(main, [os.fspath(a) for a in args], input=input, catch_exceptions=False)


def one_error_line(result, code: int) -> str:
    """The run failed with ``code`` and said so in exactly one 'lmzip: ...' line, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lmzip: ")
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return str(tiny_model_dir)


@pytest.fixture(scope="module")
def lm_bytes(model):
    """Bytes the tiny model codes better than zstd (so the file has an LM segment and needs the model)."""
    loaded = zoo.load(model)
    candidates = []
    try:  # the model's own greedy continuation: as predictable as it gets for this model
        import torch

        m = loaded.model
        cache = m.new_cache(1, 128)
        tok, out = loaded.tokenizer.bos_id, []
        for _ in range(100):
            tok = int(torch.argmax(m.step(cache, torch.tensor([[tok]]))[0, 0]))
            out.append(tok)
        candidates.append(bytes(out))
    except Exception:  # internal API changed: fall back to fixed strings
        pass
    candidates += [b"+" * 120, b"tiny text, tiny text!", b"abcabcabd" * 40]
    for data in candidates:
        blob = lmzip.Compressor(loaded, window=64, overlap=16).compress(data)
        if any(s.method == container.METHOD_LM for s in container.peek_header(blob).segments):
            return data
    pytest.fail("no candidate input gives an LM segment with the tiny model")


# --------------------------------------------------------------------------- round trips


def test_compress_decompress_files_round_trip(tmp_path, model):
    files = {"a.txt": TEXT, "b.bin": bytes(range(256)) * 3, "empty": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = [tmp_path / n for n in files]
    r = run("compress", "--model", model, *SMALL, *paths)
    assert r.exit_code == 0, r.output
    assert r.stdout == "" and r.stderr == ""  # silent by default, like gzip
    for name, data in files.items():
        assert (tmp_path / name).read_bytes() == data  # inputs are kept by default
        assert (tmp_path / f"{name}.lmz").read_bytes()[:5] == container.MAGIC_V3
        (tmp_path / name).rename(tmp_path / f"{name}.orig")
    r = run("decompress", "--model", model, *[f"{p}.lmz" for p in paths])
    assert r.exit_code == 0, r.output
    for name, data in files.items():
        assert (tmp_path / name).read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_recursive_directories(tmp_path, model):
    tree = {"a.txt": TEXT, "sub/b.txt": b"second file\n" * 30, "sub/deeper/c.log": b"", "sub/old.lmz": b"x"}
    for name, data in tree.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    r = run("compress", "-q", "--model", model, *SMALL, tmp_path / "sub")
    assert r.exit_code == 5 and "directory" in r.stderr  # without -r: refused, as gzip does
    r = run("compress", "-q", "-r", "--model", model, *SMALL, tmp_path)
    assert r.exit_code == 0, r.output
    made = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.lmz"))
    assert made == ["a.txt.lmz", "sub/b.txt.lmz", "sub/deeper/c.log.lmz", "sub/old.lmz"]  # .lmz left alone
    for name in ("a.txt", "sub/b.txt", "sub/deeper/c.log"):
        (tmp_path / name).unlink()
    r = run("decompress", "-q", "-r", "--model", model, tmp_path / "sub")
    assert r.exit_code == 2  # sub/old.lmz is not a .lmz file; the others still decode
    for name in ("sub/b.txt", "sub/deeper/c.log"):
        assert (tmp_path / name).read_bytes() == tree[name]
    (tmp_path / "empty").mkdir()
    r = run("compress", "-q", "-r", tmp_path / "empty")
    assert r.exit_code == 4 and "no files" in r.stderr


def test_decompress_and_test_parse_the_header_once(tmp_path, model, monkeypatch):
    src = tmp_path / "a.txt"
    src.write_bytes(TEXT)
    assert run("compress", "--model", model, *SMALL, src).exit_code == 0
    src.unlink()
    calls = []
    real = container.peek
    monkeypatch.setattr(container, "peek", lambda source: calls.append(1) or real(source))
    for args in (["decompress", "--model", model, f"{src}.lmz"], ["test", "--model", model, f"{src}.lmz"]):
        calls.clear()
        r = run(*args)
        assert r.exit_code == 0, r.output
        assert len(calls) == 1, args  # at opening (Input), not again for progress or decoding
    assert src.read_bytes() == TEXT


@settings(max_examples=25)
@given(data=st.binary(max_size=400))
def test_any_bytes_round_trip_through_stdin_and_stdout(model, data):
    r = run("--model", model, *SMALL, "-", input=data)  # bare form, '-' = stdin -> stdout
    assert r.exit_code == 0, r.output
    blob = r.stdout_bytes
    assert blob[:5] == container.MAGIC_V3
    r = run("-d", "--model", model, input=blob)  # no file: stdin -> stdout
    assert r.exit_code == 0, r.output
    assert r.stdout_bytes == data


def test_empty_file(tmp_path, model):
    (tmp_path / "e").write_bytes(b"")
    assert run("--model", model, tmp_path / "e").exit_code == 0
    r = run("info", tmp_path / "e.lmz")
    assert "original size    0 bytes" in r.stdout
    r = run("-dc", "--model", model, tmp_path / "e.lmz")
    assert r.exit_code == 0 and r.stdout_bytes == b""


def test_stdout_and_output_options(tmp_path, model):
    src = tmp_path / "t.txt"
    src.write_bytes(TEXT)
    r = run("compress", "-c", "--model", model, *SMALL, src)
    assert r.exit_code == 0
    assert not (tmp_path / "t.txt.lmz").exists()
    assert lmzip.decompress(r.stdout_bytes, model) == TEXT
    r = run("compress", "-o", tmp_path / "other.lmz", "--model", model, *SMALL, src)
    assert r.exit_code == 0 and not (tmp_path / "t.txt.lmz").exists()
    r = run("decompress", "-o", tmp_path / "back", "--model", model, tmp_path / "other.lmz")
    assert r.exit_code == 0 and (tmp_path / "back").read_bytes() == TEXT
    r = run("decompress", "-o", "-", "--model", model, tmp_path / "other.lmz")
    assert r.stdout_bytes == TEXT
    # -o names one output: refused with several inputs, and together with -c
    assert one_error_line(run("-o", tmp_path / "x", src, src), 4)
    assert one_error_line(run("-c", "-o", tmp_path / "x", src), 4)
    # several .lmz files concatenated on stdout could not be decompressed: refused
    assert one_error_line(run("-c", "--model", model, src, src), 4)


def test_bare_forms_and_group_options(tmp_path, model):
    src = tmp_path / "bare.txt"
    src.write_bytes(TEXT)
    r = run("-v", "--model", model, *SMALL, src)  # lmzip -v FILE
    assert r.exit_code == 0
    assert r.stderr.startswith(f"lmzip: {src}: {len(TEXT)} -> ") and "bits/byte" in r.stderr and "/s" in r.stderr
    src.unlink()
    r = run("-d", "--model", model, f"{src}.lmz")  # lmzip -d FILE.lmz
    assert r.exit_code == 0 and src.read_bytes() == TEXT
    r = run("-t", "--model", model, f"{src}.lmz")  # zstd's -t
    assert r.exit_code == 0 and r.stdout == f"{src}.lmz: OK\n"
    r = run("-v", "compress", "-f", "--model", model, *SMALL, src)  # group -v before the command
    assert r.exit_code == 0 and "bits/byte" in r.stderr
    r = run("-q", "test", "--model", model, f"{src}.lmz")
    assert r.exit_code == 0 and r.output == ""
    # compression options make no sense when decompressing
    assert one_error_line(run("-d", "--window", "64", f"{src}.lmz"), 4)


def test_version_and_help():
    r = run("--version")
    first, runtime = r.stdout.strip().splitlines()
    assert r.exit_code == 0 and first == f"lmzip {lmzip.__version__} (.lmz format {container.FORMAT_VERSION})"
    from lmzip import native

    assert runtime == f"runtime: {native.describe()}" and runtime.split()[1] in ("native", "reference")
    r = run("--help")
    assert r.exit_code == 0
    assert "Exit codes:" in r.stdout and "130" in r.stdout
    for cmd in ("compress", "decompress", "info", "test", "models"):
        assert cmd in r.stdout
        assert run(cmd, "--help").exit_code == 0
    # the defaults the help text states are the codec's
    from lmzip.coding.codec import CodecParams

    text = " ".join(run("compress", "--help").stdout.split())
    for opt, value in (("--window", CodecParams.window), ("--overlap", CodecParams.overlap),
                       ("--segment-size", CodecParams.segment_bytes), ("--top-k", CodecParams.top_k)):
        assert re.search(rf"{opt} \S+ [^[]*\[default: {value}\]", text), opt


# --------------------------------------------------------------------------- file safety


def test_existing_output_is_not_overwritten_without_force(tmp_path, model):
    src, dest = tmp_path / "f.txt", tmp_path / "f.txt.lmz"
    src.write_bytes(TEXT)
    dest.write_bytes(b"precious")
    line = one_error_line(run("--model", model, *SMALL, src), 4)
    assert "already exists" in line and "-f" in line
    assert dest.read_bytes() == b"precious"
    r = run("-f", "--model", model, *SMALL, src)
    assert r.exit_code == 0 and lmzip.decompress(dest.read_bytes(), model) == TEXT
    # the same for decompression
    line = one_error_line(run("-d", "--model", model, dest), 4)
    assert src.read_bytes() == TEXT
    assert run("-d", "-f", "--model", model, dest).exit_code == 0
    # and output == input is refused even with -f
    assert one_error_line(run("-f", "-o", src, "--model", model, src), 4)
    assert src.read_bytes() == TEXT


def test_rm_removes_input_only_after_verified_success(tmp_path, model, monkeypatch):
    src = tmp_path / "r.txt"
    src.write_bytes(TEXT)
    (tmp_path / "r.txt.lmz").write_bytes(b"existing")
    one_error_line(run("--rm", "--model", model, *SMALL, src), 4)  # output exists: input stays
    assert src.exists()
    (tmp_path / "r.txt.lmz").unlink()
    assert run("--rm", "--model", model, *SMALL, src).exit_code == 0
    assert not src.exists()
    assert run("-d", "--rm", "--model", model, tmp_path / "r.txt.lmz").exit_code == 0
    assert src.read_bytes() == TEXT and not (tmp_path / "r.txt.lmz").exists()
    # -k after --rm wins (the last of the pair counts)
    assert run("--rm", "-k", "--model", model, *SMALL, src).exit_code == 0
    assert src.exists()
    (tmp_path / "r.txt.lmz").unlink()
    # a verification that finds a difference keeps the input and writes nothing
    from lmzip.coding import streaming

    real = streaming.iter_decode
    monkeypatch.setattr(streaming, "iter_decode", lambda *a, **k: [*real(*a, **k), b"!"])
    line = one_error_line(run("--rm", "--model", model, *SMALL, src), 1)
    assert "verification failed" in line
    assert src.read_bytes() == TEXT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.txt"]


def test_mode_and_mtime_are_preserved(tmp_path, model):
    src = tmp_path / "m.txt"
    src.write_bytes(TEXT)
    os.chmod(src, 0o640)
    os.utime(src, ns=(1_000_000_000_000_000_000, 1_234_567_890_000_000_000))
    assert run("--model", model, *SMALL, src).exit_code == 0
    out = (tmp_path / "m.txt.lmz").stat()
    assert stat.S_IMODE(out.st_mode) == 0o640 and out.st_mtime_ns == 1_234_567_890_000_000_000
    src.unlink()
    assert run("-d", "--model", model, tmp_path / "m.txt.lmz").exit_code == 0
    back = src.stat()
    assert stat.S_IMODE(back.st_mode) == 0o640 and back.st_mtime_ns == 1_234_567_890_000_000_000


def test_interrupted_compression_leaves_no_partial_output(tmp_path, model, monkeypatch):
    src = tmp_path / "i.txt"
    src.write_bytes(TEXT)

    from lmzip.coding import streaming

    def interrupted(self, data):
        self.progress(len(data) // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(streaming.StreamCompressor, "write", interrupted)
    line = one_error_line(run("--model", model, *SMALL, src), 130)
    assert "interrupted" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.txt"]
    # with -f over an existing output: the old output survives the interruption
    (tmp_path / "i.txt.lmz").write_bytes(b"old")
    one_error_line(run("-f", "--rm", "--model", model, *SMALL, src), 130)
    assert (tmp_path / "i.txt.lmz").read_bytes() == b"old" and src.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.txt", "i.txt.lmz"]


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
def test_sigterm_removes_the_temporary_output(tmp_path, model, monkeypatch):
    src = tmp_path / "s.txt"
    src.write_bytes(TEXT)

    from lmzip.coding import streaming

    def terminated(self, data):
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the temp file exists now
        os.kill(os.getpid(), signal.SIGTERM)  # the CLI's handler turns it into an exception here
        raise AssertionError("SIGTERM was not handled")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(streaming.StreamCompressor, "write", terminated)
    one_error_line(run("--model", model, *SMALL, src), 128 + signal.SIGTERM)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.txt"]
    assert signal.getsignal(signal.SIGTERM) == before  # handlers are restored


def test_failed_write_leaves_no_partial_output(tmp_path, model, monkeypatch):
    src = tmp_path / "w.txt"
    src.write_bytes(TEXT)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli.os, "fsync", disk_full)
    line = one_error_line(run("--model", model, *SMALL, src), 5)
    assert line == f"lmzip: {src}: No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.txt"]
    # an output directory that does not exist is named as such (not the temporary file)
    line = one_error_line(run("-o", tmp_path / "nodir" / "w.lmz", src), 5)
    assert line == f"lmzip: {src}: {tmp_path / 'nodir' / 'w.lmz'}: No such file or directory"


# --------------------------------------------------------------------------- errors and exit codes


def test_corrupt_files_exit_2_with_one_line(tmp_path, model):
    src = tmp_path / "c.txt"
    src.write_bytes(TEXT)
    assert run("--model", model, *SMALL, src).exit_code == 0
    blob = (tmp_path / "c.txt.lmz").read_bytes()
    bad = bytearray(blob)
    bad[-5] ^= 0x40  # inside the last payload
    cases = {"flipped.lmz": bytes(bad), "truncated.lmz": blob[:-3], "trailing.lmz": blob + b"x",
             "notlmz.lmz": b"hello, not an lmz file", "empty.lmz": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        for cmd in ("decompress", "test"):
            line = one_error_line(run(cmd, "--model", model, tmp_path / name), 2)
            assert line.startswith(f"lmzip: {tmp_path / name}: ")
        assert not (tmp_path / name[:-4]).exists()
    assert run("info", tmp_path / "flipped.lmz").exit_code == 0  # info reads the header only
    for name in ("truncated.lmz", "trailing.lmz", "notlmz.lmz"):
        assert run("info", tmp_path / name).exit_code == 2


def test_missing_file_exit_5_and_others_still_processed(tmp_path, model):
    good = tmp_path / "good.txt"
    good.write_bytes(TEXT)
    r = run("--model", model, *SMALL, tmp_path / "missing.txt", good)
    assert r.exit_code == 5
    assert r.stderr == f"lmzip: {tmp_path / 'missing.txt'}: No such file or directory\n"
    assert (tmp_path / "good.txt.lmz").exists()
    one_error_line(run("-d", tmp_path / "missing.lmz"), 5)
    one_error_line(run("info", tmp_path / "missing.lmz"), 5)
    one_error_line(run("--model", model, tmp_path), 5)  # a directory


def test_unknown_model_exit_3(tmp_path):
    src = tmp_path / "u.txt"
    src.write_bytes(TEXT)
    line = one_error_line(run("--model", "no-such-model", src, src), 3)  # reported once, not per file
    assert "unknown model" in line
    assert not (tmp_path / "u.txt.lmz").exists()


def test_usage_errors_exit_4(tmp_path, model):
    src = tmp_path / "plain.txt"
    src.write_bytes(TEXT)
    assert run("--model", model, *SMALL, src).exit_code == 0
    line = one_error_line(run("-d", "--model", model, src), 4)  # no .lmz suffix
    assert ".lmz" in line
    (tmp_path / "plain.txt.lmz").rename(tmp_path / "renamed.bin")
    r = run("-d", "-o", tmp_path / "restored", "--model", model, tmp_path / "renamed.bin")  # fine with -o
    assert r.exit_code == 0 and (tmp_path / "restored").read_bytes() == TEXT
    assert run("--model", model, "--window", "100000", src, "-c").exit_code == 4  # beyond the model's context
    assert run("--device", "nonsense", "--model", model, src, "-c").exit_code == 4
    # click's own command-line errors also exit 4 (2 means damaged data)
    r = run("compress", "--no-such-option", src)
    assert r.exit_code == 4 and "Traceback" not in r.output
    assert run("compress", "--window", "zero", src).exit_code == 4
    assert run("--rm", "-d", "-t", src).exit_code == 4


def test_directory_model_needed_to_decompress(tmp_path, model, lm_bytes):
    src = tmp_path / "d.txt"
    src.write_bytes(lm_bytes)
    assert run("--model", model, *SMALL, src).exit_code == 0
    src.unlink()
    line = one_error_line(run("-d", tmp_path / "d.txt.lmz"), 3)
    assert "model directory" in line and "--model" in line
    assert not src.exists()
    assert run("-d", "--model", model, tmp_path / "d.txt.lmz").exit_code == 0
    assert src.read_bytes() == lm_bytes
    # another model is refused, not silently misused
    from lmzip.testing import write_tiny_model

    other = write_tiny_model(tmp_path / "other-model", seed=99)
    line = one_error_line(run("test", "--model", other, tmp_path / "d.txt.lmz"), 3)
    assert "sha256" in line


def test_model_loaded_once_for_many_files(tmp_path, model, monkeypatch):
    made = []
    real_init = api.Compressor.__init__

    def counting_init(self, *a, **k):
        made.append(1)
        real_init(self, *a, **k)

    monkeypatch.setattr(api.Compressor, "__init__", counting_init)
    names = []
    for i in range(4):
        (tmp_path / f"{i}.txt").write_bytes(TEXT[: 50 * (i + 1)])
        names.append(tmp_path / f"{i}.txt")
    assert run("--model", model, *SMALL, *names).exit_code == 0
    assert len(made) == 1


# --------------------------------------------------------------------------- info, test, models


def test_info_and_test_output(tmp_path, model, lm_bytes):
    (tmp_path / "x.txt").write_bytes(lm_bytes + TEXT)
    assert run("--model", model, *SMALL, "--segment-size", "100", tmp_path / "x.txt").exit_code == 0
    lmz = tmp_path / "x.txt.lmz"
    header = container.peek_header(lmz.read_bytes())
    size = lmz.stat().st_size
    r = run("info", lmz)
    assert r.exit_code == 0
    out = r.stdout
    assert out.startswith(f"{lmz}:\n")
    for text in (f".lmz version {header.version}", "adaptation       bias+ngram2-6+match", f"model            {header.model_id}", header.model_sha256.hex()[:16],
                 f"tokenizer        {header.tokenizer_id}", "top-k 64", "24-bit", "sliding windows of 64 tokens, overlap 16",
                 f"original size    {len(lm_bytes) + len(TEXT)} bytes", f"compressed size  {size} bytes",
                 f"bits per byte    {8 * size / (len(lm_bytes) + len(TEXT)):.3f}", f"segments         {len(header.segments)}:",
                 f"tokens           {sum(s.token_count for s in header.segments)}"):
        assert text in out, text
    n_lm = sum(s.method == container.METHOD_LM for s in header.segments)
    assert f": {n_lm} LM," in out and n_lm >= 1
    assert "method" not in out  # the segment table is for -v
    r = run("info", "-v", lmz, lmz)
    assert r.stdout.count("  method  ") == 2 and r.stdout.count(" LM ") >= 2 * n_lm
    assert len([ln for ln in r.stdout.splitlines() if ln.strip()[:1].isdigit()]) == 2 * len(header.segments)
    r = run("test", "--model", model, lmz)
    assert r.exit_code == 0 and r.stdout == f"{lmz}: OK\n"
    r = run("test", "-v", "--model", model, lmz)
    assert r.stdout.startswith(f"{lmz}: OK (") and "bits/byte" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt", "x.txt.lmz"]  # test writes nothing


def test_models_list_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("LMZIP_HOME", str(tmp_path / "home"))

    def no_network(*a, **k):
        raise AssertionError("models list must not download anything")

    monkeypatch.setattr(zoo, "_fetch_wheel", no_network)
    monkeypatch.setattr(zoo.subprocess, "run", no_network)
    r = run("models", "list")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "INSTALLED", "SIZE", "SHA256", "DESCRIPTION"]
    for e in zoo.registry():
        row = next(ln for ln in lines if ln.startswith(e.id + " "))
        shipped = e.source.get("kind") == "shipped"  # inside the package: installed with it
        assert row.split()[1] == ("yes" if shipped else "no") and e.sha256[:12] in row
    assert f"default model: {zoo.default_model_id()}" in r.stdout
    assert run("models").stdout == r.stdout  # 'models' alone lists
    assert not (tmp_path / "home" / "models").exists() or not any((tmp_path / "home" / "models").iterdir())
    line = one_error_line(run("models", "pull", "no-such-model"), 3)
    assert "unknown model" in line


def test_levels_choose_the_model(tmp_path, model, monkeypatch):
    """-1 ... -9: each level is the model the registry's table lists at or above it."""
    reg = dict(zoo._registry())
    monkeypatch.setattr(zoo, "_registry", lambda: {**reg, "levels": {"3": model, "9": "no-such-model"}})
    assert [zoo.level_model_id(lv) for lv in (1, 3, 4, 9)] == [model, model, "no-such-model", "no-such-model"]
    monkeypatch.setattr(zoo, "_registry", lambda: {k: v for k, v in reg.items() if k != "levels"})
    assert zoo.level_model_id(1) == reg["default"]
    monkeypatch.setattr(zoo, "_registry", lambda: {**reg, "levels": {"3": model, "9": "no-such-model"}})
    src = tmp_path / "a.txt"
    src.write_bytes(TEXT)
    for flag in ("-1", "--fast", "-2", "-3"):
        r = run("-q", "compress", flag, *SMALL, "-c", src)
        assert r.exit_code == 0, r.output
        assert run("-q", "decompress", "--model", model, "-c", "-", input=r.stdout_bytes).stdout_bytes == TEXT
    assert "unknown model 'no-such-model'" in one_error_line(run("compress", "-9", "-c", src), 3)
    assert "unknown model" in one_error_line(run("compress", "--best", "-c", src), 3)
    assert "mutually exclusive" in one_error_line(run("compress", "-1", "--model", model, "-c", src), 4)
    assert "only applies to compression" in one_error_line(run("compress", "-d", "-1", src), 4)
    r = run("-v", "models", "list")
    assert r.exit_code == 0 and "levels: -1..-3 " + model + ", -4..-9 no-such-model" in r.stdout


# --------------------------------------------------------------------------- real processes


def _lmzip(*args, input: bytes | None = None, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, LMZIP_HOME=str(Path(cwd or ".") / "lmzhome"))
    return subprocess.run([sys.executable, "-c", "from lmzip.commands.cli import main; main()", *map(os.fspath, args)],
                          input=input, capture_output=True, cwd=cwd, env=env, timeout=300)


def test_real_process_pipes_and_exit_codes(tmp_path, model):
    p = _lmzip("--model", model, *SMALL, input=TEXT, cwd=tmp_path)  # no file: stdin -> stdout
    assert p.returncode == 0, p.stderr
    assert p.stdout[:5] == container.MAGIC_V3 and p.stderr == b""
    q = _lmzip("-dc", "--model", model, "-", input=p.stdout, cwd=tmp_path)
    assert q.returncode == 0 and q.stdout == TEXT
    (tmp_path / "bad.lmz").write_bytes(p.stdout[:-1])
    r = _lmzip("test", "--model", model, "bad.lmz", "missing.lmz", cwd=tmp_path)
    assert r.returncode == 2  # the first error's code; the second file is still tried
    err = r.stderr.decode().splitlines()
    assert len(err) == 2 and err[0].startswith("lmzip: bad.lmz: truncated") and err[1].startswith("lmzip: missing.lmz: ")
    assert b"Traceback" not in r.stderr


# --------------------------------------------------------------------------- progress display


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_progress_waits_draws_in_place_and_clears():
    clock, out = _Clock(), _Tty()
    p = Progress(4096, "file.txt", stream=out, clock=clock, ticker=False)
    p(1024)
    clock.t += 0.5
    p(0)
    assert out.getvalue() == ""  # nothing during the first second
    clock.t += 1.5
    p(1024)
    line = out.getvalue()
    assert line.startswith("\rfile.txt: 2.0 KiB / 4.0 KiB ( 50%)") and "1.0 KiB/s" in line and "ETA 0:02" in line
    clock.t += 0.1
    p(10)
    assert out.getvalue() == line  # throttled
    p.close()
    assert out.getvalue().endswith("\r" + " " * (len(line) - 1) + "\r")
    p.close()  # idempotent


def test_progress_silent_when_not_a_terminal_or_disabled():
    for stream, enabled in ((io.StringIO(), None), (_Tty(), False)):
        clock = _Clock()
        with Progress(10, "x", stream=stream, clock=clock, ticker=False) if enabled is None else \
                Progress(10, "x", stream=stream, clock=clock, enabled=False) as p:
            clock.t += 5
            p(5)
        assert stream.getvalue() == ""


def test_progress_ticker_thread_redraws_and_stops():
    out = _Tty()
    with Progress(100, "t", stream=out, delay=0.0, interval=0.01) as p:
        import time

        deadline = time.monotonic() + 5
        while "elapsed" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "elapsed" in out.getvalue() and out.getvalue().endswith("\r")
    assert p._thread is not None and not p._thread.is_alive()


def test_human_units():
    assert human_bytes(0) == "0 B" and human_bytes(1536) == "1.5 KiB" and human_bytes(3 << 30) == "3.0 GiB"
    assert human_duration(75.2) == "1:15" and human_duration(3725) == "1:02:05" and human_duration(float("inf")) == "--:--"


def test_adaptation_switch(tmp_path, model, lm_bytes):
    src = tmp_path / "x.bin"
    src.write_bytes(lm_bytes)
    for flags, legacy, adaptation in (([], 2, "bias+ngram2-6+match"), (["--no-adapt"], 1, "off (the model alone)"),
                                      (["--no-adapt", "--no-transforms"], 1, "off (the model alone)")):
        out = tmp_path / f"out{len(flags)}.lmz"
        r = run("compress", "--model", model, *SMALL, *flags, "-o", out, src)
        assert r.exit_code == 0, r.output
        header = container.peek_header(out.read_bytes())
        assert any(s.method == container.METHOD_LM for s in header.segments)
        assert header.version == container.FORMAT_VERSION and header.legacy_version == legacy
        assert f"adaptation       {adaptation}" in run("info", out).stdout
        assert run("decompress", "--model", model, "-c", out).stdout_bytes == lm_bytes
    r = run("-d", "--no-adapt", tmp_path / "out0.lmz")
    assert r.exit_code == 4 and "only apply to compression" in r.stderr


def test_streams_cut_the_input_for_a_gpu(tmp_path, model):
    """--streams N: N segments of about 16 KB or more (a GPU decodes them at once), decoded back;
    with --segment-size, one clear error."""
    data = (TEXT * 400)[:5 * (16 << 10) + 999]
    (tmp_path / "x.txt").write_bytes(data)
    assert run("--model", model, *SMALL, "--no-adapt", "--streams", "4", tmp_path / "x.txt").exit_code == 0
    lmz = tmp_path / "x.txt.lmz"
    segs = container.peek_header(lmz.read_bytes()).segments
    assert len(segs) in (4, 5) and min(s.original_length for s in segs[:4]) >= 16 << 10  # (cuts after a newline)
    assert run("-d", "-c", "--model", model, lmz).stdout_bytes == data
    (tmp_path / "x.txt.lmz").unlink()
    segs = container.peek_header(_compress_to_bytes(tmp_path / "x.txt", model, "--streams", "50")).segments
    # not 50: equal parts of about 16 KB at least (6, and a tail where a cut waits for a newline)
    assert len(segs) in (6, 7) and min(s.original_length for s in segs[:6]) >= 12 << 10
    line = one_error_line(run("--model", model, "--streams", "2", "--segment-size", "1000", tmp_path / "x.txt"), 4)
    assert "mutually exclusive" in line


def _compress_to_bytes(path, model, *opts) -> bytes:
    r = run("--model", model, *SMALL, "--no-adapt", *opts, "-c", path)
    assert r.exit_code == 0, r.output
    return r.stdout_bytes
