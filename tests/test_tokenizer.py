"""Tests of lmzip.model.tokenizer: lossless round trips for every byte string, and BPE fidelity."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmzip.errors import TokenizerError
from lmzip.model import tokenizer as tokenizer_module
from lmzip.model.tokenizer import (
    LMZIP_TOKENIZER_JSON,
    BPETokenizer,
    ByteTokenizer,
    Tokenizer,
    bytes_to_unicode,
    load_tokenizer,
)

# The 21 byte values without a single-byte token in SmolLM2's vocabulary.
SMOLLM2_MISSING = bytes([0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, *range(0xF5, 0x100)])

ENGLISH = (
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of having "
    "nothing to do: once or twice she had peeped into the book her sister was reading, but it had "
    "no pictures or conversations in it, 'and what is the use of a book,' thought Alice 'without "
    "pictures or conversations?'\n\nSo she was considering in her own mind (as well as she could, "
    "for the hot day made her feel very sleepy and stupid), whether the pleasure of making a "
    "daisy-chain would be worth the trouble of getting up and picking the daisies, when suddenly a "
    "White Rabbit with pink eyes ran close by her. It's 3:45pm on 2024-01-31; I'd pay $1,299.99!\n"
)

HYPO = settings(max_examples=200, deadline=None)


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bpe_tokenizer() -> BPETokenizer:
    """SmolLM2-135M's tokenizer as the zoo installs it (pulled on first use)."""
    from lmzip.model import zoo

    _, path = zoo.resolve("smollm2-135m")
    tok = load_tokenizer(path / zoo.TOKENIZER_DIR)
    assert isinstance(tok, BPETokenizer)
    return tok


@pytest.fixture(scope="session")
def byte_tokenizer() -> ByteTokenizer:
    return ByteTokenizer()


@pytest.fixture(scope="session", params=["bytes", "bpe"])
def tokenizer(request: pytest.FixtureRequest) -> Tokenizer:
    return request.getfixturevalue("byte_tokenizer" if request.param == "bytes" else "bpe_tokenizer")


def roundtrip(tok: Tokenizer, data: bytes) -> np.ndarray:
    ids = tok.encode(data)
    assert isinstance(ids, np.ndarray) and ids.dtype == np.int64 and ids.ndim == 1
    assert tok.decode(ids) == data
    assert tok.decode(ids.tolist()) == data
    if len(ids):
        assert 0 <= ids.min() and ids.max() < tok.vocab_size
    return ids


def check_escapes(tok: BPETokenizer, ids: np.ndarray) -> None:
    """Special tokens in the output are exactly the escapes, each followed by an identifier."""
    specials = np.flatnonzero(np.isin(ids, sorted(tok.special_ids)))
    assert np.all(ids[specials] == tok.escape_id)
    idents = {tok.encode(bytes([b]))[0] for b in tok.escape_identifier_bytes}
    for p in specials:
        assert p + 1 < len(ids) and int(ids[p + 1]) in idents


def plain_hf(tok: BPETokenizer):
    """A plain Hugging Face tokenizer with SmolLM2's configuration, built from the same vocab."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers

    hf = HFTokenizer(models.BPE(vocab={t: i for i, t in enumerate(tok.tokens)}, merges=tok.merges))
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    return hf


# --------------------------------------------------------------------------------------------
# Both tokenizers
# --------------------------------------------------------------------------------------------


def test_interface(tokenizer: Tokenizer) -> None:
    assert isinstance(tokenizer, Tokenizer)
    assert tokenizer.bos_id == 0
    assert re.fullmatch(r"[a-z0-9-]+-[0-9a-f]{16}", tokenizer.tokenizer_id)
    assert tokenizer.encode(b"").shape == (0,)
    assert tokenizer.decode([]) == b""
    assert tokenizer.decode(np.zeros(0, dtype=np.int64)) == b""


@HYPO
@given(data=st.binary(max_size=600))
def test_roundtrip_binary(tokenizer: Tokenizer, data: bytes) -> None:
    roundtrip(tokenizer, data)


def test_all_byte_values(tokenizer: Tokenizer) -> None:
    for b in range(256):
        roundtrip(tokenizer, bytes([b]))
        roundtrip(tokenizer, bytes([b]) * 5)
        roundtrip(tokenizer, b"ab" + bytes([b]) + b"cd")
    roundtrip(tokenizer, bytes(range(256)))
    roundtrip(tokenizer, bytes(range(255, -1, -1)) * 3)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff",
        b"\x80",
        b"\xc3",  # truncated 2-byte sequence
        b"abc\xe2\x82",  # truncated 3-byte sequence at the end
        b"\xe2\x82abc",
        b"\xf0\x9f\x98",  # truncated 4-byte sequence
        b"\xc0\xaf",  # overlong "/"
        b"\xed\xa0\x80",  # encoded surrogate U+D800
        b"\xed\xb2\x80",  # encoded U+DC80 (what surrogateescape uses internally)
        b"\xf4\x90\x80\x80",  # beyond U+10FFFF
        b"\xfe\xff\x00h\x00i",  # UTF-16 BOM + text
        "h\u00e9llo w\u00f6rld".encode("latin-1"),
        b"ok \xe2\x82\xac ok \xe2\x82 bad \xf0\x9f\x98\x80 ok",
    ],
)
def test_invalid_utf8(tokenizer: Tokenizer, data: bytes) -> None:
    roundtrip(tokenizer, data)


def test_crlf_and_whitespace(tokenizer: Tokenizer) -> None:
    for data in [b"line one\r\nline two\r\n\r\n", b"\r\r\n\n\t \x0b\x0c", b"   \n  \n", b"\r\n" * 100]:
        roundtrip(tokenizer, data)


def test_input_types(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode(b"hello world")
    assert np.array_equal(tokenizer.encode(bytearray(b"hello world")), ids)
    assert np.array_equal(tokenizer.encode(memoryview(b"hello world")), ids)
    assert tokenizer.decode(tuple(ids.tolist())) == b"hello world"
    assert tokenizer.decode(ids.astype(np.int32)) == b"hello world"
    assert tokenizer.decode(ids.astype(np.uint16)) == b"hello world"
    assert tokenizer.decode(iter(ids.tolist())) == b"hello world"


def test_decode_rejects_bad_ids(tokenizer: Tokenizer) -> None:
    for bad in ([tokenizer.vocab_size], [-1], [65, tokenizer.vocab_size + 7], [[65, 66]], [1.5]):
        with pytest.raises(TokenizerError):
            tokenizer.decode(bad)


def test_save_load(tokenizer: Tokenizer, tmp_path: Path) -> None:
    tokenizer.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert type(again) is type(tokenizer)
    assert again.tokenizer_id == tokenizer.tokenizer_id
    assert again == tokenizer
    assert (again.vocab_size, again.bos_id) == (tokenizer.vocab_size, tokenizer.bos_id)
    data = ENGLISH.encode() + bytes(range(256))
    assert np.array_equal(again.encode(data), tokenizer.encode(data))
    assert again.decode(tokenizer.encode(data)) == data
    assert load_tokenizer(tmp_path / LMZIP_TOKENIZER_JSON).tokenizer_id == tokenizer.tokenizer_id


def test_load_reuses_the_cached_state_and_rebuilds_a_damaged_one(bpe_tokenizer: BPETokenizer, tmp_path: Path,
                                                                monkeypatch) -> None:
    monkeypatch.setenv("LMZIP_HOME", str(tmp_path / "home"))
    bpe_tokenizer.save(tmp_path / "tok")
    first = load_tokenizer(tmp_path / "tok")  # built from the files, then cached
    (cached,) = (tmp_path / "home" / "tables").glob("tokenizer-*.marshal")
    data = ENGLISH.encode() + bytes(range(256))

    def no_build(*a, **k):
        raise AssertionError("rebuilt although the cache holds the state")

    with monkeypatch.context() as m:
        m.setattr(BPETokenizer, "_build", classmethod(no_build))
        again = load_tokenizer(tmp_path / "tok")
    assert again == first == bpe_tokenizer
    assert np.array_equal(again.encode(data), bpe_tokenizer.encode(data))
    assert again.decode(again.encode(data)) == data
    assert again.missing_bytes == bpe_tokenizer.missing_bytes
    with monkeypatch.context() as m:  # a state cached by other code (another source) is not read back
        m.setattr(tokenizer_module, "_module_source", lambda: b"another version of tokenizer.py")
        m.setattr(BPETokenizer, "_build", classmethod(no_build))
        with pytest.raises(AssertionError, match="rebuilt"):
            load_tokenizer(tmp_path / "tok")
    raw = bytearray(cached.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # damaged: the digest no longer matches, so the files are read again
    cached.write_bytes(bytes(raw))
    rebuilt = load_tokenizer(tmp_path / "tok")
    assert rebuilt == bpe_tokenizer and np.array_equal(rebuilt.encode(data), bpe_tokenizer.encode(data))
    assert cached.read_bytes() != bytes(raw)  # and the cache is whole again


def test_load_rejects_tampered_id(tokenizer: Tokenizer, tmp_path: Path) -> None:
    tokenizer.save(tmp_path)
    meta_path = tmp_path / LMZIP_TOKENIZER_JSON
    meta = json.loads(meta_path.read_text())
    meta["tokenizer_id"] = meta["tokenizer_id"][:-4] + "0000"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(TokenizerError):
        load_tokenizer(tmp_path)


# --------------------------------------------------------------------------------------------
# ByteTokenizer
# --------------------------------------------------------------------------------------------


def test_byte_tokenizer_identity(byte_tokenizer: ByteTokenizer) -> None:
    data = bytes(range(256))
    assert byte_tokenizer.encode(data).tolist() == list(range(256))
    assert byte_tokenizer.vocab_size == 256
    assert byte_tokenizer.tokenizer_id == ByteTokenizer().tokenizer_id == load_tokenizer("bytes").tokenizer_id
    # Pinned: a change here changes what .lmz headers record.
    assert byte_tokenizer.tokenizer_id == "bytes-0f19d5d7b2cde371"


def test_load_tokenizer_errors(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / LMZIP_TOKENIZER_JSON).write_text("{not json")
    with pytest.raises(TokenizerError):
        load_tokenizer(tmp_path)
    (tmp_path / LMZIP_TOKENIZER_JSON).write_text(json.dumps({"format": "lmzip-tokenizer", "version": 1, "kind": "?"}))
    with pytest.raises(TokenizerError):
        load_tokenizer(tmp_path)


# --------------------------------------------------------------------------------------------
# BPETokenizer
# --------------------------------------------------------------------------------------------


def test_bpe_vocabulary(bpe_tokenizer: BPETokenizer) -> None:
    tok = bpe_tokenizer
    assert tok.vocab_size == 49152
    assert tok.escape_id == 0 and tok.tokens[0] == "<|endoftext|>"
    assert tok.special_ids == frozenset(range(17))
    assert bytes(tok.missing_bytes) == SMOLLM2_MISSING
    # The documented bijection: i-th missing byte <-> single-byte token of 'A' + i.
    assert bytes(tok.escape_identifier_bytes) == b"ABCDEFGHIJKLMNOPQRSTU"
    # Pinned: a change here changes what .lmz headers record.
    assert tok.tokenizer_id == "bpe-smollm-82371cd2e508d7f7"


@HYPO
@given(
    pieces=st.lists(
        st.one_of(
            st.text(max_size=20),
            st.sampled_from([bytes([b]) for b in SMOLLM2_MISSING]),
            st.binary(max_size=4),
            st.sampled_from(["<|endoftext|>", "<|im_start|>", "0", "007", "\r\n", " \n\n", "\U00040000", "\U000c0000"]),
        ),
        max_size=30,
    )
)
def test_bpe_roundtrip_mixed(bpe_tokenizer: BPETokenizer, pieces: list) -> None:
    data = b"".join(p.encode("utf-8") if isinstance(p, str) else p for p in pieces)
    ids = roundtrip(bpe_tokenizer, data)
    check_escapes(bpe_tokenizer, ids)
    assert int((ids == bpe_tokenizer.escape_id).sum()) == sum(data.count(b) for b in SMOLLM2_MISSING)


@HYPO
@given(text=st.text(max_size=200))
def test_bpe_roundtrip_text(bpe_tokenizer: BPETokenizer, text: str) -> None:
    ids = roundtrip(bpe_tokenizer, text.encode("utf-8"))
    check_escapes(bpe_tokenizer, ids)


def test_bpe_missing_bytes_are_escaped(bpe_tokenizer: BPETokenizer) -> None:
    tok = bpe_tokenizer
    for i, b in enumerate(SMOLLM2_MISSING):
        ids = roundtrip(tok, bytes([b]))
        assert ids.tolist() == [tok.escape_id, int(tok.encode(bytes([0x41 + i]))[0])]
    data = b"text " + SMOLLM2_MISSING + b" more text\x04\x06\x13 and \x1dend"
    ids = roundtrip(tok, data)
    check_escapes(tok, ids)
    assert int((ids == tok.escape_id).sum()) == sum(data.count(bytes([b])) for b in SMOLLM2_MISSING)
    # Characters whose UTF-8 contains a missing byte (U+40000..U+BFFFF start with f1/f2) go byte by byte.
    for ch in ["\U00040000", "\U0007ffff", "\U00080000", "\U000bffff", "\U000c0000", "\U0010ffff", "\U0001f600"]:
        ids = roundtrip(tok, f"a{ch}b".encode())
        check_escapes(tok, ids)


def test_bpe_endoftext_is_plain_text(bpe_tokenizer: BPETokenizer) -> None:
    tok = bpe_tokenizer
    for i in sorted(tok.special_ids):
        data = f"before {tok.tokens[i]} after{tok.tokens[i]}".encode()
        ids = roundtrip(tok, data)
        assert not np.isin(ids, sorted(tok.special_ids)).any()
    ids = tok.encode(b"<|endoftext|>")
    assert len(ids) > 1 and tok.escape_id not in ids.tolist()


def test_bpe_ordinary_text_never_yields_special_tokens(bpe_tokenizer: BPETokenizer) -> None:
    tok = bpe_tokenizer
    ids = roundtrip(tok, (ENGLISH * 3).encode() + bytes(b for b in range(256) if b not in SMOLLM2_MISSING))
    assert not np.isin(ids, sorted(tok.special_ids)).any()
    # No merge can produce a special token's string, so no input can.
    specials = {tok.tokens[i] for i in tok.special_ids}
    assert not any(a + b in specials for a, b in tok.merges)


def test_bpe_digits(bpe_tokenizer: BPETokenizer) -> None:
    tok = bpe_tokenizer
    digit_ids = [int(tok.encode(str(d).encode())[0]) for d in range(10)]
    assert len(set(digit_ids)) == 10
    assert tok.encode(b"123").tolist() == [digit_ids[1], digit_ids[2], digit_ids[3]]
    assert len(tok.encode(b" 123")) == 4  # " " is a pre-token of its own before a digit
    assert tok.encode(b"000").tolist() == [digit_ids[0]] * 3
    for data in [b"0", b"00\x0400", b"2024-01-31 12:00:00", b"3.14159265358979", b"0\xff0\xff0", "٣٤٥ ①②".encode()]:
        roundtrip(tok, data)


def test_bpe_matches_plain_hf_tokenization(bpe_tokenizer: BPETokenizer) -> None:
    tok = bpe_tokenizer
    hf = plain_hf(tok)
    for text in [ENGLISH, "Hello, world!", "  leading spaces\n\n\ttabs\r\n", "naïve café — “quotes” ¿qué? 日本語 🙂"]:
        assert tok.encode(text.encode()).tolist() == hf.encode(text, add_special_tokens=False).ids
    assert len(tok.encode(ENGLISH.encode())) < len(ENGLISH) / 3  # real merges happen


def test_bpe_chunking_is_invisible(bpe_tokenizer: BPETokenizer) -> None:
    """Long inputs are cut for multi-threaded encoding; the ids must not change."""
    tok = bpe_tokenizer
    hf = plain_hf(tok)
    text = (ENGLISH + "x\ny\n\n z \n 12\n3 \n\n\n4a\n" + "word " * 40 + "\n") * 20
    expected = hf.encode(text, add_special_tokens=False).ids
    saved = tok.chunk_chars
    try:
        for size in (1, 7, 50, 333):
            tok.chunk_chars = size
            assert tok.encode(text.encode()).tolist() == expected
    finally:
        tok.chunk_chars = saved
    corpus = Path("/work/shared/corpora/canterbury/alice29.txt")
    if corpus.is_file():
        data = corpus.read_bytes()
        assert tok.encode(data).tolist() == hf.encode(data.decode(), add_special_tokens=False).ids


def test_bpe_runs_split_at_raw_bytes_match_per_run_encoding(bpe_tokenizer: BPETokenizer) -> None:
    """Runs between raw bytes are joined with "0" for one Rust call; ids must equal per-run encoding."""
    tok = bpe_tokenizer
    hf = plain_hf(tok)
    runs = ["Hello 0", "00", " world", "", "a0b", "10 green bottles\n", "0"]
    data = b"\xff".join(r.encode() for r in runs)
    expected: list[int] = []
    for k, r in enumerate(runs):
        if k:
            expected += tok.encode(b"\xff").tolist()
        if r:
            expected += hf.encode(r, add_special_tokens=False).ids
    assert tok.encode(data).tolist() == expected
    roundtrip(tok, data)


def test_bpe_matches_reference_bpe(bpe_tokenizer: BPETokenizer) -> None:
    """An independent pure-Python GPT-2 BPE with SmolLM2's digit splitting gives the same ids."""
    import regex
    tok = bpe_tokenizer
    pat = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
    ranks = {pair: i for i, pair in enumerate(tok.merges)}
    vocab = {t: i for i, t in enumerate(tok.tokens)}
    b2u = bytes_to_unicode()

    def reference(text: str) -> list[int]:
        ids: list[int] = []
        for piece in regex.split(r"(\p{N})", text):
            for word in pat.findall(piece):
                symbols = [b2u[b] for b in word.encode()]
                while len(symbols) > 1:
                    rank, i = min((ranks.get(p, float("inf")), i) for i, p in enumerate(zip(symbols, symbols[1:])))
                    if rank == float("inf"):
                        break
                    symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
                ids += [vocab[s] for s in symbols]
        return ids

    for text in [ENGLISH, "The year 1984 wasn't 2001.\n\n  Indented  text\r\n", "x = f(y) + 42  # comment\n"]:
        assert tok.encode(text.encode()).tolist() == reference(text)


def test_bpe_decode_is_raw_bytes(bpe_tokenizer: BPETokenizer) -> None:
    """Tokens that are not valid UTF-8 on their own decode to their raw bytes (no replacement chars)."""
    tok = bpe_tokenizer
    ids = tok.encode("🙂".encode())
    assert b"".join(tok.decode([i]) for i in ids.tolist()) == "🙂".encode()


@pytest.mark.parametrize(
    "ids, message",
    [
        ([0], "ends the sequence"),  # escape at the end
        ([65, 0], "ends the sequence"),
        ([0, 17], "identifies no escaped byte"),  # "!" is not an identifier
        ([0, 0, 49], "identifies no escaped byte"),
        ([0, 1000], "identifies no escaped byte"),
        ([1], "cannot appear"),  # <|im_start|>
        ([65, 16, 65], "cannot appear"),
        ([49152], "out of range"),
        ([-5], "out of range"),
    ],
)
def test_bpe_decode_malformed(bpe_tokenizer: BPETokenizer, ids: list, message: str) -> None:
    with pytest.raises(TokenizerError, match=message):
        bpe_tokenizer.decode(ids)


def test_bpe_decode_escape_pairs(bpe_tokenizer: BPETokenizer) -> None:
    tok = bpe_tokenizer
    a = int(tok.encode(b"A")[0])
    assert tok.decode([0, a]) == b"\x04"
    assert tok.decode([0, a, a, 0, a + 20]) == b"\x04A\xff"


def test_bpe_binary_chunking_is_invisible(bpe_tokenizer: BPETokenizer) -> None:
    """Binary data (many short BPE runs joined by separators) cut into small chunks: same ids."""
    tok = bpe_tokenizer
    data = np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    data += b"0123 text 0\xff0 more\n0" * 50
    expected = roundtrip(tok, data)
    check_escapes(tok, expected)
    saved = tok.chunk_chars
    try:
        for size in (1, 64, 1000):
            tok.chunk_chars = size
            assert np.array_equal(tok.encode(data), expected)
    finally:
        tok.chunk_chars = saved


def test_bpe_load_errors(bpe_tokenizer: BPETokenizer, tmp_path: Path) -> None:
    with pytest.raises(TokenizerError):
        BPETokenizer.from_gguf(tmp_path / "missing.gguf")
    bpe_tokenizer.save(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"model": {"vocab": {"a": 5}, "merges": []}}')
    with pytest.raises(TokenizerError):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(TokenizerError):
        load_tokenizer(tmp_path)
