"""What coding on a Ray cluster costs beside the local CLI: CPU seconds and wall time, side by side.

    python benchmarks/cluster_overhead.py [--model tiny|ID] [--files 24] [--size 600] [--nodes 2]

Builds a corpus of ``--files`` text files (paragraphs of this repository's documentation and
sources, cut to about ``--size`` bytes each; no benchmark corpus), compresses and decompresses it
with the local CLI (``lmzip compress FILES``) and with ``lmzip compress --cluster ADDRESS`` on a
simulated cluster of ``--nodes`` nodes on this machine (``ray.cluster_utils.Cluster``, one CPU
and one single-threaded worker per node), checks that the outputs are byte-identical, and prints
the CPU seconds of everything involved: the CLI process, and for the cluster every Ray process
(workers, raylets, GCS) counted from /proc over the job (the cluster's own start is not part of
a job). The local run uses the native runtime's threads on all cores; the cluster's workers one
thread each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds (user+system, with reaped children) of every process below ``root``."""
    parent, cpu = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(d)
        parent[pid] = int(fields[1])
        cpu[pid] = sum(int(x) for x in fields[11:15]) / TICK
    below, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier and p not in below}
        below |= frontier
    return {p: cpu[p] for p in below}


CLI_PIDS: set[int] = set()  # the CLI processes (counted by their own rusage, not by the sampler)


def run_cli(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the CLI process) of one lmzip command."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "lmzip", *args], stderr=subprocess.PIPE)
    CLI_PIDS.add(proc.pid)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"lmzip {' '.join(args[:3])}... failed ({proc.returncode}): {err.strip()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime


def corpus(directory: Path, files: int, size: int) -> list[Path]:
    sources = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md", *ROOT.glob("lmzip/*.py")])
    paragraphs = [p for src in sources for p in src.read_text(errors="replace").split("\n\n") if len(p) > 80]
    out, k = [], 0
    for i in range(files):
        text = ""
        while len(text) < size:
            text += paragraphs[k % len(paragraphs)] + "\n\n"
            k += 7
        path = directory / f"doc{i:02d}.txt"
        path.write_text(text[:size])
        out.append(path)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny", help="tiny (a random-weight test model) or a registry id/directory")
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--size", type=int, default=600)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    work = Path(tempfile.mkdtemp(prefix="lmzip-cluster-"))
    model = a.model
    if model == "tiny":
        from lmzip.testing import write_tiny_model

        model = str(write_tiny_model(work / "tiny"))
    model_args = ["--model", model] if model else []
    local_dir, cl_dir = work / "local", work / "cluster"
    local_dir.mkdir()
    cl_dir.mkdir()
    files_l = corpus(local_dir, a.files, a.size)
    files_c = corpus(cl_dir, a.files, a.size)
    total = sum(p.stat().st_size for p in files_l)

    res: dict = {"model": a.model, "files": a.files, "bytes": total, "nodes": a.nodes, "cpus": os.cpu_count()}
    res["local_compress"] = run_cli(["compress", "-q", *model_args, *map(str, files_l)])
    lmz_l = [str(p) + ".lmz" for p in files_l]
    for p in files_l:
        p.unlink()
    res["local_decompress"] = run_cli(["decompress", "-q", *model_args, *lmz_l])

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(a.nodes - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        me = os.getpid()
        for step, args in (("compress", ["compress", "-q", *model_args, *map(str, files_c)]),
                           ("decompress", ["decompress", "-q", *model_args, *[str(p) + ".lmz" for p in files_c]])):
            before = tree_cpu(me)
            seen: dict[int, float] = {}  # sampled while the job runs: workers that exit keep their last figure
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.1):
                    for pid, c in tree_cpu(me).items():
                        if pid not in CLI_PIDS:
                            seen[pid] = max(seen.get(pid, 0.0), c)

            sampler = threading.Thread(target=sample)
            sampler.start()
            try:
                wall, cli_cpu = run_cli([*args[:1], "--cluster", cluster.address, "--worker-cpus", "1", *args[1:]])
            finally:
                stop.set()
                sampler.join()
            for pid, c in tree_cpu(me).items():
                if pid not in CLI_PIDS:
                    seen[pid] = max(seen.get(pid, 0.0), c)
            ray_cpu = sum(c - before.get(p, 0.0) for p, c in seen.items())
            res[f"cluster_{step}"] = (wall, cli_cpu + ray_cpu)
            res[f"cluster_{step}_driver_cpu"] = cli_cpu
            if step == "compress":
                same = all(Path(str(q) + ".lmz").read_bytes() == Path(str(p)).read_bytes()
                           for p, q in zip(lmz_l, files_c))
                res["byte_identical"] = same
                for p in files_c:
                    p.unlink()
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    res["restored"] = all((cl_dir / p.name).read_bytes() == (local_dir / p.name).read_bytes() for p in files_l)

    print(f"{a.files} files, {total} bytes, model {a.model}; cluster: {a.nodes} nodes x 1 CPU, one worker each")
    print(f"{'':12} {'local wall':>10} {'local CPU':>10} {'cluster wall':>12} {'cluster CPU':>11} {'CPU overhead':>12}")
    for step in ("compress", "decompress"):
        lw, lc = res[f"local_{step}"]
        cw, cc = res[f"cluster_{step}"]
        res[f"{step}_cpu_overhead"] = cc / lc - 1
        print(f"{step:12} {lw:9.1f}s {lc:9.1f}s {cw:11.1f}s {cc:10.1f}s {100 * (cc / lc - 1):+11.1f}%")
    print(f"byte-identical: {res['byte_identical']}, restored: {res['restored']}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
