"""lmzip on Ray (cluster.py, cluster_commands.py): byte-identical to the local run, faults cost
only retries, back-pressure, and the CLI's guarantees (atomic outputs, one-line errors).

The pool's scheduling is tested against a stand-in for Ray (fast, deterministic); the rest on a
local multi-node cluster (``ray.cluster_utils.Cluster``: a head and a second node, one CPU each)
with the tiny model."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray")

from click.testing import CliRunner  # noqa: E402

from lmzip import api  # noqa: E402
from lmzip import cluster as CL  # noqa: E402
from lmzip.commands.cli import main  # noqa: E402
from lmzip.testing import write_tiny_model  # noqa: E402

OPTIONS = dict(segment_size=2048)


# ------------------------------------------------------------------ the pool, without Ray


class FakeRef:
    def __init__(self, fn, args, actor):
        self.fn, self.args, self.actor = fn, args, actor


class FakeActor:
    def __init__(self, ray_, name):
        self.ray_, self.name, self.dead = ray_, name, False
        for method in ("hello", "encode", "decode", "echo"):
            setattr(self, method, self._method(method))

    def _method(self, method):
        actor = self

        class M:
            @staticmethod
            def remote(*args):
                ref = FakeRef(method, args, actor)
                actor.ray_.submitted.append(ref)
                return ref

        return M


class FakeRay:
    """Just enough of Ray for ``Pool``: calls finish in a shuffled order; an actor may be made to
    die on a given call."""

    def __init__(self, seed=0, die_on=None):
        self.rng = random.Random(seed)
        self.submitted: list = []
        self.die_on = die_on or set()  # values whose call kills the actor that runs it
        self.calls = 0

    def wait(self, refs, num_returns=1, timeout=None):
        return [self.rng.choice(refs)], []

    def get(self, ref):
        from ray.exceptions import ActorDiedError

        if ref.actor.dead:
            raise ActorDiedError()
        if ref.fn == "hello":
            return {"version": "x", "node": ref.actor.name}
        self.calls += 1
        (value,) = ref.args
        if value in self.die_on:
            self.die_on.discard(value)
            ref.actor.dead = True
            raise ActorDiedError()
        return value * 10

    def kill(self, actor):
        actor.dead = True


def _pool(fake, n=3):
    names = iter(range(1000))
    return CL.Pool(fake, lambda: FakeActor(fake, next(names)), n)


def test_pool_keeps_order_and_bounds_what_is_in_flight():
    fake = FakeRay(seed=1)
    pool = _pool(fake)
    pool.wait_ready()
    taken = []

    def items():
        for v in range(200):
            taken.append(v)
            yield CL.Call("echo", (v,)) if v % 5 else CL.Mark("mark", v)

    out = []
    for r in pool.ordered(items(), limit=7):
        out.append(r)
        assert len(taken) - len(out) <= 7  # never more than the limit between reading and writing
    assert [r if not isinstance(r, CL.Mark) else r.value for r in out] == \
        [v * 10 if v % 5 else v for v in range(200)]


def test_pool_retries_a_call_lost_with_its_worker():
    fake = FakeRay(seed=2, die_on={13, 77, 150})
    pool = _pool(fake)
    pool.wait_ready()
    out = list(pool.ordered((CL.Call("echo", (v,)) for v in range(1, 200)), limit=9))
    assert out == [v * 10 for v in range(1, 200)]
    assert pool.lost == 3


def test_pool_gives_up_when_every_worker_dies():
    fake = FakeRay(seed=3, die_on=set(range(1, 1000)))
    pool = _pool(fake, n=2)
    pool.wait_ready()
    with pytest.raises(CL.ClusterError):
        list(pool.ordered((CL.Call("echo", (v,)) for v in range(1, 50)), limit=4))


# ------------------------------------------------------------------ a real local cluster


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1,
        "include_dashboard": False,
        # A lost node is noticed in about a second, not half a minute.
        "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 250,
                           "health_check_timeout_ms": 250, "health_check_failure_threshold": 3},
    })
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False, logging_level="error")
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(write_tiny_model(tmp_path_factory.mktemp("tiny")))


def _corpus(directory, n=22, seed=0):
    """n files: prose of several sizes (some several segments long), binary data, an empty file."""
    rng = random.Random(seed)
    words = ("the model predicts the next token and the coder turns predictions into bits; "
             "every bit saved is a token seen coming. Logs, code and documents compress well.").split()
    paths = []
    for i in range(n):
        size = [0, 12, 300, 2500, 7000][i % 5]
        data = (" ".join(rng.choice(words) for _ in range(size // 5 + 1)).encode()[:size] if i % 7 != 3
                else rng.randbytes(size))
        p = directory / f"f{i:02d}.txt"
        p.write_bytes(data)
        paths.append(p)
    return paths


def test_files_byte_identical_to_the_local_run(cluster, tiny, tmp_path):
    paths = _corpus(tmp_path)
    local = api.Compressor(tiny, **OPTIONS)
    expected = {p: local.compress(p.read_bytes()) for p in paths}
    with CL.ClusterCoder(cluster.address, model=tiny, workers=2, **OPTIONS) as coder:
        results = coder.compress_files(paths)
        assert all(isinstance(r, str) for _, r in results), results
        for p in paths:
            assert (tmp_path / (p.name + ".lmz")).read_bytes() == expected[p], p
        originals = {p: p.read_bytes() for p in paths}
        for p in paths:
            p.unlink()
        restored = coder.decompress_files([str(p) + ".lmz" for p in paths])
        assert all(isinstance(r, str) for _, r in restored), restored
        for p in paths:
            assert p.read_bytes() == originals[p]
        # Outputs exist now: nothing is overwritten without force, and nothing else is touched.
        again = coder.compress_files(paths)
        assert all(isinstance(r, CL.UsageError) for _, r in again)
        assert coder.lost_workers == 0


def test_blob_api_and_a_damaged_file(cluster, tiny):
    data = b"a line of a log file, and another line of the same log file\n" * 200
    with CL.ClusterCoder(cluster.address, model=tiny, workers=2, **OPTIONS) as coder:
        blob = coder.compress(data)
        assert blob == api.Compressor(tiny, **OPTIONS).compress(data)
        assert coder.decompress(blob) == data
        bad = bytearray(blob)
        bad[-3] ^= 0x10
        with pytest.raises(CL.LmzipError) as err:  # the data's own error, raised as itself
            coder.decompress(bytes(bad))
        assert not isinstance(err.value, CL.ClusterError)


def test_a_killed_worker_costs_only_a_retry(cluster, tiny):
    data = b"".join(b"record %d: value %d ok\n" % (i, i * i % 97) for i in range(1500))
    expected = api.Compressor(tiny, **OPTIONS).compress(data)
    with CL.ClusterCoder(cluster.address, model=tiny, workers=2, **OPTIONS) as coder:
        pool = coder._pool()
        pool.compress_mode()
        killed = []

        def progress(n):
            if not killed and pool.alive:
                killed.append(pool.alive[0])
                ray.kill(pool.alive[0].actor)

        ((_, result),) = coder.compress_sources([(None, lambda: CL.BytesInput(data))], progress)
        assert result.to_bytes() == expected
        assert killed and coder.lost_workers >= 1
        assert coder.decompress(expected) == data


def test_a_lost_node_costs_only_a_retry(cluster, tiny):
    node = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    data = b"".join(b"event=%d user=u%d status=%s\n" % (i, i % 13, b"ok" if i % 5 else b"fail") for i in range(2500))
    expected = api.Compressor(tiny, **OPTIONS).compress(data)
    try:
        with CL.ClusterCoder(cluster.address, model=tiny, workers=3, **OPTIONS) as coder:
            pool = coder._pool()
            pool.compress_mode()
            deadline = time.monotonic() + 60
            while len(pool.alive) < 3 and time.monotonic() < deadline:
                pool.ray.wait(list(pool.starting), num_returns=1, timeout=1)
                for ref in list(pool.starting):
                    if ray.wait([ref], timeout=0)[0]:
                        pool._started(ref)
            assert any(s.info.get("node") == node.node_id for s in pool.alive), "no worker on the doomed node"
            removed = []

            def progress(n):
                if not removed:
                    removed.append(True)
                    cluster.remove_node(node)

            ((_, result),) = coder.compress_sources([(None, lambda: CL.BytesInput(data))], progress)
            assert result.to_bytes() == expected
            assert coder.lost_workers >= 1
    finally:
        if any(n is node for n in cluster.list_all_nodes()):
            cluster.remove_node(node)


def test_cli_compress_decompress_test_on_the_cluster(cluster, tiny, tmp_path):
    paths = _corpus(tmp_path, n=21, seed=5)
    local = api.Compressor(tiny, **OPTIONS)
    expected = {p: local.compress(p.read_bytes()) for p in paths}
    originals = {p: p.read_bytes() for p in paths}
    runner = CliRunner()
    args = ["--cluster", cluster.address, "--model", tiny, "--workers", "2"]
    r = runner.invoke(main, ["compress", "-q", "--segment-size", "2K", *args, *map(str, paths)])
    assert r.exit_code == 0, r.output
    for p in paths:
        assert (tmp_path / (p.name + ".lmz")).read_bytes() == expected[p]
    r = runner.invoke(main, ["test", "-v", *args, *[str(p) + ".lmz" for p in paths]])
    assert r.exit_code == 0 and r.output.count(": OK") == len(paths), r.output
    r = runner.invoke(main, ["decompress", "-q", *args, *[str(p) + ".lmz" for p in paths]])
    assert r.exit_code == 4  # the originals exist: refused one by one, nothing written
    r = runner.invoke(main, ["decompress", "-q", "-f", *args, *[str(p) + ".lmz" for p in paths]])
    assert r.exit_code == 0, r.output
    assert all(p.read_bytes() == originals[p] for p in paths)
    # -r: a directory becomes one .lmz per file, as locally.
    r = runner.invoke(main, ["compress", "-q", "-f", "-r", "--segment-size", "2K", *args, str(tmp_path)])
    assert r.exit_code == 0, r.output
    for p in paths:
        assert (tmp_path / (p.name + ".lmz")).read_bytes() == expected[p]
    # --rm: inputs go only once their outputs decode back to them.
    for p in paths:
        (tmp_path / (p.name + ".lmz")).unlink()
    r = runner.invoke(main, ["compress", "-q", "--rm", "--segment-size", "2K", *args, *map(str, paths)])
    assert r.exit_code == 0, r.output
    assert not any(p.exists() for p in paths)
    assert all((tmp_path / (p.name + ".lmz")).read_bytes() == expected[p] for p in paths)


def test_cli_errors_are_one_line(cluster, tiny, tmp_path):
    runner = CliRunner()
    f = tmp_path / "x.txt"
    f.write_bytes(b"some text\n" * 50)
    # In a process of its own (this one is connected already): nothing listens there.
    r = subprocess.run([sys.executable, "-m", "lmzip", "compress", "--cluster", "127.0.0.1:1", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "cannot reach the Ray cluster" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.txt.lmz").exists()
    r = runner.invoke(main, ["compress", "--cluster", cluster.address, "--model", str(tmp_path / "nope"), str(f)])
    assert r.exit_code == 3, r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not (tmp_path / "x.txt.lmz").exists()
    r = runner.invoke(main, ["compress", "--workers", "2", str(f)])
    assert r.exit_code == 4 and "--cluster" in r.output
    good = tmp_path / "g.txt"
    good.write_bytes(b"fine text\n" * 40)
    r = runner.invoke(main, ["compress", "-q", "--cluster", cluster.address, "--model", tiny,
                             str(tmp_path / "missing.txt"), str(good)])
    assert r.exit_code == 5 and "missing.txt" in r.output  # the first code; the others still done
    assert (tmp_path / "g.txt.lmz").exists()
    blob = bytearray((tmp_path / "g.txt.lmz").read_bytes())
    blob[-2] ^= 1
    (tmp_path / "bad.txt.lmz").write_bytes(bytes(blob))
    r = runner.invoke(main, ["decompress", "-q", "--cluster", cluster.address, str(tmp_path / "bad.txt.lmz")])
    assert r.exit_code == 2, r.output
    assert not (tmp_path / "bad.txt").exists()
    assert not [x for x in os.listdir(tmp_path) if x.endswith(".tmp")]


def test_an_interrupted_driver_leaves_no_partial_output(cluster, tiny, tmp_path):
    rng = random.Random(9)
    paths = []
    for i in range(20):
        p = tmp_path / f"big{i:02d}.txt"
        p.write_bytes(b"".join(b"line %d of file %d: %d\n" % (j, i, rng.randrange(10**6)) for j in range(4000)))
        paths.append(p)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "lmzip", "compress", "-q", "--cluster", cluster.address,
                             "--model", tiny, "--workers", "2", "--segment-size", "4K", *map(str, paths)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(x.endswith(".lmz") for x in os.listdir(tmp_path)):  # the job is under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert not [x for x in os.listdir(tmp_path) if x.endswith(".tmp")]
    local = api.Compressor(tiny, segment_size=4096)
    written = [p for p in paths if (tmp_path / (p.name + ".lmz")).exists()]
    assert 0 < len(written) < len(paths), "the signal came after the job"
    for p in paths:  # what was written is whole; the rest was never started
        if p in written:
            assert (tmp_path / (p.name + ".lmz")).read_bytes() == local.compress(p.read_bytes())
        assert p.exists()
