"""lmzip on a Ray cluster: segments coded by workers that each hold one loaded model.

Every segment of a .lmz file is coded on its own and the exact model computes the same integers
on every machine, so a cluster can share the work and still write the bytes one machine would.
The driver (this process) does what one machine must do in order: it reads the inputs, cuts
them into segments exactly as ``streaming.PieceStream`` does locally, sends each segment to a
worker, and assembles the containers and outputs in order; the workers (Ray actors, one per GPU
where the cluster has GPUs, else one per ``worker_cpus`` CPUs) hold a model each and code.

Back-pressure: at most ``in_flight`` segments are between reading and writing at any time
(sent, being coded, or coded and waiting for an earlier one), whatever the corpus size.

Faults: a worker is stateless between calls (a call codes one segment, or decodes one group of
a file's segments, from what it is sent), so a call lost with its worker or node is sent again to
another worker (at most ``MAX_ATTEMPTS`` times) and a replacement worker is started. Errors of
the data itself (a damaged file) are not retried: they reach the caller as the lmzip error they
are. The driver writes outputs as the local CLI does (temporary file, renamed when complete), so
an interrupted driver leaves no partial output.

Ray is an optional dependency (``pip install 'lmzip[ray]'``); nothing here imports it before a
cluster is asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .coding import container as C
from .coding.codec import CodecParams, ModelStamp, make_header
from .errors import LmzipError, ModelError, UsageError
from .coding.streaming import SPOOL_MEMORY, OutputCheck, PieceStream, decode_groups, write_container

DEPTH = 2  # calls queued per worker, so that the next one is there when a call finishes
MAX_ATTEMPTS = 4  # workers a call is tried on before the job fails
START_TIMEOUT = 900.0  # seconds to wait for a first worker (a first use may pull the model)
CHUNK = 1 << 20


class ClusterError(LmzipError):
    """The cluster could not do the job (unreachable, no worker could start, workers kept dying)."""


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--cluster needs Ray: pip install 'lmzip[ray]'") from None
    return ray


# ------------------------------------------------------------------------------- the worker


class Worker:
    """One Ray actor's state: a loaded model and what to code with it. Load errors are kept and
    raised by ``hello`` (a failed actor constructor would surface as a bare actor death)."""

    def __init__(self, model: Any, device: str, options: dict, batch: int, threads: int | None) -> None:
        if threads:
            os.environ["LMZIP_THREADS"] = str(threads)  # before the native runtime reads it
        self.model, self.device, self.options, self.batch = model, device, options, batch
        self.compressor = self.decompressor = None

    def _compressor(self):
        if self.compressor is None:
            from .api import Compressor

            self.compressor = Compressor(self.model, device=self.device, **self.options)
        return self.compressor

    def _decompressor(self):
        if self.decompressor is None:
            from .api import Decompressor

            self.decompressor = Decompressor(self.model, device=self.device, batch=self.batch)
        return self.decompressor

    def hello(self, compressing: bool) -> dict:
        """What the driver checks before it relies on this worker: lmzip's version, and for
        compression the model and the settings (every worker must code alike)."""
        from . import __version__

        info: dict = {"version": __version__, "pid": os.getpid(), "node": _node_id()}
        if compressing:
            c = self._compressor()
            info["stamp"], info["params"] = ModelStamp.of(c.model), c.params
        return info

    def encode(self, chunk: bytes, text: bool) -> tuple[C.Segment, bytes]:
        from .coding.encode import encode_piece

        c = self._compressor()
        return encode_piece(c.model, chunk, text, c.params)

    def decode(self, header: C.Header, group: list) -> list[bytes]:
        from .coding.codec import check_decodable, decode_group

        d = self._decompressor()
        lm = d.model_for(header)
        out = decode_group(header, group, lm, check_decodable(header, lm), d.batch)
        return [out[i] for i, _, _ in group]


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (tests call Worker directly)
        return None


# ------------------------------------------------------------------------------- the pool


@dataclass
class Call:
    """A worker method to run, with its arguments."""

    method: str
    args: tuple


class _Slot:
    def __init__(self, actor) -> None:
        self.actor, self.load, self.dead = actor, 0, False
        self.compressing = False  # what its last hello was asked
        self.info: dict = {}


class Pool:
    """The workers and the ordered, bounded map that feeds them (``ordered``). One pool serves
    compression and decompression alike (a second set of workers could not start on a cluster
    the first one fills); ``compressing()`` has every worker load its model and checks that all
    code alike."""

    def __init__(self, ray, make: Callable[[], Any], size: int) -> None:
        self.ray, self.make, self.size = ray, make, size
        self.compressing = False
        self.alive: list[_Slot] = []
        self.starting: dict = {}  # hello ref -> slot
        self.started = 0
        self.info: dict | None = None
        self.lost = 0  # workers lost during the job (reported by tests and benchmarks)
        for _ in range(size):
            self._start()

    def _start(self) -> None:
        slot = _Slot(self.make())
        self._hello(slot)
        self.started += 1

    def _hello(self, slot: _Slot) -> None:
        slot.compressing = self.compressing
        self.starting[slot.actor.hello.remote(self.compressing)] = slot

    def _started(self, ref) -> None:
        from ray.exceptions import RayTaskError

        slot = self.starting.pop(ref)
        try:
            info = self.ray.get(ref)
        except RayTaskError as exc:  # the model or the options: every worker would fail alike
            raise _cause(exc) from None
        except _lost_errors() as exc:
            self._lose(slot, exc)
            return
        if self.compressing and not slot.compressing:  # said hello before compression was asked for
            self._hello(slot)
            return
        slot.info = info
        if self.info is None:
            self.info = info
        else:
            for key in ("version", "stamp", "params"):
                if info.get(key) != self.info.get(key):
                    raise ModelError(f"workers disagree on the {key} ({info.get(key)} vs {self.info.get(key)}): "
                                     f"every node needs the same lmzip and model")
        self.alive.append(slot)

    def _lose(self, slot: _Slot, exc: BaseException) -> None:
        if slot.dead:
            return
        slot.dead = True
        self.lost += 1
        if slot in self.alive:
            self.alive.remove(slot)
        try:
            self.ray.kill(slot.actor)
        except Exception:  # already gone
            pass
        if self.started < 3 * self.size:  # replacements, while there is hope
            self._start()
        if not self.alive and not self.starting:
            raise ClusterError(f"every worker was lost ({_one_line(exc)})")

    def compress_mode(self) -> dict:
        """Make every worker ready to compress (its model loaded, its settings known); return the
        first one's hello."""
        if not self.compressing:
            self.compressing, self.info = True, None
            for slot in self.alive:
                self._hello(slot)
            self.alive = []
        return self.wait_ready()

    def wait_ready(self) -> dict:
        """Block until one worker is ready; return its hello (model, settings)."""
        deadline = time.monotonic() + START_TIMEOUT
        while self.info is None:
            if not self.starting:
                raise ClusterError("no worker could start")
            left = deadline - time.monotonic()
            ready, _ = self.ray.wait(list(self.starting), num_returns=1, timeout=max(0.0, left))
            if not ready:
                raise ClusterError(f"no worker started within {START_TIMEOUT:.0f} s: does the cluster have "
                                   f"the CPUs/GPUs the workers ask for?")
            self._started(ready[0])
        return self.info

    def _free(self) -> _Slot | None:
        slots = [s for s in self.alive if s.load < DEPTH]
        return min(slots, key=lambda s: s.load) if slots else None

    def ordered(self, items: Iterable, limit: int) -> Iterator:
        """Run the ``Call`` items on the workers and pass other items through; yield every result
        in the order of ``items``. At most ``limit`` items are taken and not yet yielded."""
        from ray.exceptions import RayTaskError

        ray = self.ray
        it = iter(items)
        taken = yielded = 0
        done: dict[int, Any] = {}
        queue: deque = deque()  # (seq, call, attempts) waiting for a worker; retries go first
        running: dict = {}  # ref -> (seq, slot, call, attempts)
        exhausted = False
        while True:
            while True:  # take items while a worker is free for them (and the limit allows)
                while queue and (slot := self._free()) is not None:
                    seq, call, attempts = queue.popleft()
                    ref = getattr(slot.actor, call.method).remote(*call.args)
                    slot.load += 1
                    running[ref] = (seq, slot, call, attempts)
                if queue or exhausted or taken - yielded >= limit:
                    break
                try:
                    item = next(it)
                except StopIteration:
                    exhausted = True
                    break
                if isinstance(item, Call):
                    queue.append((taken, item, 0))
                else:
                    done[taken] = item
                taken += 1
            while yielded in done:
                yield done.pop(yielded)
                yielded += 1
            if exhausted and yielded == taken:
                return
            if not running and not queue:
                continue  # only pass-through items were taken: take more
            waitable = list(running) + list(self.starting)
            if not waitable:
                raise ClusterError("no worker left to run the job")
            ready, _ = ray.wait(waitable, num_returns=1)
            for ref in ready:
                if ref in self.starting:
                    self._started(ref)
                    continue
                seq, slot, call, attempts = running.pop(ref)
                slot.load -= 1
                try:
                    done[seq] = ray.get(ref)
                except RayTaskError as exc:  # the data's own error: the same on any worker
                    raise _cause(exc) from None
                except _lost_errors() as exc:  # the worker or its node died: try elsewhere
                    if attempts + 1 >= MAX_ATTEMPTS:
                        raise ClusterError(f"a segment was lost with {MAX_ATTEMPTS} workers ({_one_line(exc)})") from None
                    queue.appendleft((seq, call, attempts + 1))
                    self._lose(slot, exc)

    def close(self) -> None:
        for slot in [*self.alive, *self.starting.values()]:
            try:
                self.ray.kill(slot.actor)
            except Exception:
                pass
        self.alive, self.starting = [], {}


@contextlib.contextmanager
def _own_signals():
    """Keep this process's signal handlers across ``ray.init``, which installs its own for SIGTERM
    (print a stack, die at once): the CLI's handlers remove temporary outputs first."""
    import signal
    import threading

    names = [n for n in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, n)]
    main = threading.current_thread() is threading.main_thread()
    saved = {n: signal.getsignal(getattr(signal, n)) for n in names} if main else {}
    try:
        yield
    finally:
        for n, handler in saved.items():
            if handler is not None:
                signal.signal(getattr(signal, n), handler)


CONNECT_TIMEOUT = 5.0


def _check_reachable(address: str) -> None:
    """Fail in seconds with one line where Ray itself would retry for minutes: nothing listens at
    the address (``auto``: the address a running cluster leaves on this machine)."""
    import socket

    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
        if not address:
            try:
                with open(os.path.join(tempfile.gettempdir(), "ray", "ray_current_cluster")) as f:
                    address = f.read().strip()
            except OSError:
                raise ClusterError("no Ray cluster is running on this machine (start one with 'ray start --head', "
                                   "give its address, or use --cluster local)") from None
        if address in ("", "auto", "local"):
            return
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--cluster {address!r}: give auto, local, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def _lost_errors() -> tuple:
    from ray import exceptions as E

    return (E.RayActorError, E.WorkerCrashedError, E.NodeDiedError, E.ObjectLostError, E.OutOfMemoryError,
            E.LocalRayletDiedError)


def _cause(exc) -> BaseException:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else ClusterError(_one_line(str(exc)))


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())[:300]


# ------------------------------------------------------------------------------- jobs


@dataclass
class Compressed:
    """One input coded by the cluster, ready to be written: its header and spooled payloads."""

    header: C.Header
    spool: Any
    version: int
    read: int  # input bytes
    sha256: bytes  # of the input (to verify it later)

    @property
    def size(self) -> int:
        return len(C.encode_prefix(self.header, self.version)) + self.header.payload_total

    def write_to(self, out) -> int:
        return write_container(out, self.header, self.version, self.spool)

    def to_bytes(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.write_to(buf)
        return buf.getvalue()


@dataclass
class Mark:
    """An item of a job that needs no worker (an input begins, ends or failed), kept in order."""

    kind: str
    value: Any = None


class BytesInput:
    """An in-memory input, shaped like ``cmdline.Input`` (a context with ``file`` and ``size``)."""

    def __init__(self, data: bytes) -> None:
        import io

        self.file, self.size = io.BytesIO(data), len(data)

    def __enter__(self) -> "BytesInput":
        return self

    def __exit__(self, *exc) -> None:
        pass


#: (key, open) where ``open()`` gives a context with ``file`` and ``size`` (None: unknown), such as
#: ``cmdline.Input``; opened only when the job reaches that input.
Source = tuple[Any, Callable[[], Any]]
_READ_ERRORS = (OSError, LmzipError, MemoryError)


class ClusterCoder:
    """Compress and decompress on a Ray cluster, byte for byte as ``api.Compressor`` and
    ``api.Decompressor`` would (same options); one object owns the connection and the workers.

    ``address``: a Ray address (``auto``: the cluster this machine belongs to; ``local``: start
    Ray on this machine for the object's lifetime; ``host:port`` or ``ray://host:port``).
    ``workers``: how many (default: one per GPU where the cluster has GPUs, else one per
    ``worker_cpus`` CPUs). ``in_flight``: segments between reading and writing at most.
    ``model`` must name the same model on every node (a registry id is pulled where missing; a
    directory must exist at that path on every node).
    """

    def __init__(self, address: str = "auto", *, model: Any = None, device: str | None = None,
                 workers: int | None = None, worker_cpus: int = 1, batch: int | None = None,
                 in_flight: int | None = None, **options) -> None:
        ray = _ray()
        self.ray = ray
        self.owned = False
        if not ray.is_initialized():
            if address != "local":
                _check_reachable(address)
            kw: dict = dict(log_to_driver=False, logging_level=logging.ERROR)
            with _own_signals():
                try:
                    if address == "local":
                        ray.init(include_dashboard=False, **kw)
                    else:
                        ray.init(address=address, **kw)
                except (ConnectionError, ValueError, RuntimeError) as exc:
                    raise ClusterError(f"cannot reach the Ray cluster at {address}: {_one_line(exc)}") from None
            self.owned = True
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if device is None or device.startswith("cuda") else 0
        self.gpu = gpus > 0
        self.device = device or ("cuda" if self.gpu else "cpu")
        self.worker_cpus = max(1, int(worker_cpus))
        if workers is None:
            workers = gpus if self.gpu else max(1, int(resources.get("CPU", 1)) // self.worker_cpus)
        if workers < 1:
            raise UsageError("--workers must be at least 1")
        self.workers = workers
        self.in_flight = in_flight or max(4, 4 * workers)
        self.model = os.fspath(model) if isinstance(model, os.PathLike) else model
        if self.model is not None and not isinstance(self.model, str):
            raise UsageError("a cluster's workers load the model themselves: give a registry id or a directory")
        from .api import decode_batch

        self.options, self.batch = options, decode_batch(batch, self.device)
        self._workers: Pool | None = None

    # -- workers

    def _pool(self) -> Pool:
        if self._workers is None:
            ray = self.ray
            env = {k: v for k, v in os.environ.items() if k.startswith("LMZIP_") and k != "LMZIP_THREADS"}
            actor_cls = ray.remote(Worker).options(
                num_cpus=self.worker_cpus if not self.gpu else 1, num_gpus=1 if self.gpu else 0,
                max_restarts=0, scheduling_strategy="SPREAD", runtime_env={"env_vars": env} if env else None)
            threads = None if self.gpu else self.worker_cpus
            args = (self.model, self.device, self.options, self.batch, threads)
            self._workers = Pool(ray, lambda: actor_cls.remote(*args), self.workers)
        return self._workers

    @property
    def lost_workers(self) -> int:
        return self._workers.lost if self._workers is not None else 0

    def params(self) -> CodecParams:
        return self._pool().compress_mode()["params"]

    # -- compression

    def compress_sources(self, sources: Iterable[Source], progress: Callable[[int], None] | None = None
                         ) -> Iterator[tuple[Any, Compressed | BaseException]]:
        """Compress many inputs; yield (key, Compressed) per input in order, or (key, error) for an
        input that could not be read (the others go on). Errors of the cluster itself are raised."""
        pool = self._pool()
        info = pool.compress_mode()
        p, stamp = info["params"], info["stamp"]

        def items() -> Iterator:
            for key, open_ in sources:
                yield Mark("begin", key)
                sha, read = hashlib.sha256(), 0
                try:
                    with open_() as inp:
                        pieces = PieceStream(p, inp.size)
                        while chunk := inp.file.read(CHUNK):
                            sha.update(chunk)
                            read += len(chunk)
                            for piece, text in pieces.write(chunk):
                                yield Call("encode", (piece, text))
                        for piece, text in pieces.finish():
                            yield Call("encode", (piece, text))
                except _READ_ERRORS as exc:
                    yield Mark("error", exc)
                    continue
                yield Mark("end", (sha.digest(), read))

        current: _Assembly | None = None
        for result in pool.ordered(items(), self.in_flight):
            if isinstance(result, Mark):
                if result.kind == "begin":
                    current = _Assembly(result.value, p.format_version)
                    continue
                assert current is not None
                if result.kind == "error":
                    current.spool.close()
                    yield current.key, result.value
                else:
                    yield current.key, current.finish(stamp, p, *result.value)
                current = None
                continue
            if current is None:  # the rest of an input that failed to read
                continue
            seg, payload = result
            current.add(seg, payload)
            if progress:
                progress(seg.original_length)

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        """The .lmz bytes of ``data``, its segments coded across the cluster."""
        data = bytes(data)
        ((_, result),) = self.compress_sources([(None, lambda: BytesInput(data))])
        if isinstance(result, BaseException):
            raise result
        return result.to_bytes()

    # -- decompression

    def decompress_sources(self, sources: Iterable[Source], progress: Callable[[int], None] | None = None
                           ) -> Iterator[tuple[Any, str, Any]]:
        """Decompress many .lmz inputs; yield events in order: (key, "data", bytes) for each
        segment's verified bytes, then (key, "done", header) once the whole output is checked, or
        (key, "error", exc) instead (what was yielded of that input must then be discarded)."""
        pool = self._pool()
        pool.wait_ready()
        ray = self.ray

        def items() -> Iterator:
            for key, open_ in sources:
                yield Mark("begin", key)
                try:
                    with open_() as inp:
                        header, _ = C.peek(inp.file)
                        yield Mark("header", header)
                        ref = ray.put(header)  # once per file, not once per group
                        for group in decode_groups(header, C.iter_payloads_from(inp.file, header), self.batch):
                            yield Call("decode", (ref, group))
                except _READ_ERRORS as exc:
                    yield Mark("error", exc)
                    continue
                yield Mark("end")

        key: Any = None
        check: OutputCheck | None = None
        failed = False
        for result in pool.ordered(items(), self.in_flight):
            if isinstance(result, Mark):
                if result.kind == "begin":
                    key, check, failed = result.value, None, False
                elif result.kind == "header":
                    check = OutputCheck(result.value)
                elif result.kind == "error":
                    failed = True
                    yield key, "error", result.value
                elif not failed:
                    assert check is not None
                    try:
                        check.finish()
                    except LmzipError as exc:
                        yield key, "error", exc
                        continue
                    yield key, "done", check.header
                continue
            if failed:
                continue
            assert check is not None
            for data in result:
                check.update(data)
                if progress:
                    progress(len(data))
                yield key, "data", data

    def decompress(self, data: bytes | bytearray | memoryview) -> bytes:
        """The original bytes of a .lmz blob, its segments decoded across the cluster."""
        data = bytes(data)
        parts = []
        for _, kind, value in self.decompress_sources([(None, lambda: BytesInput(data))]):
            if kind == "error":
                raise value
            if kind == "data":
                parts.append(value)
        return b"".join(parts)

    # -- files

    def compress_files(self, paths: Iterable[str | os.PathLike], *, force: bool = False
                       ) -> list[tuple[str, str | BaseException]]:
        """Compress each path into path.lmz (atomically; an existing output needs ``force``);
        return (path, output path or the error) per input."""
        from .commands.cmdline import SUFFIX, Input, Output, check_dest

        def source(src: str) -> Source:
            def open_():
                check_dest(src, src + SUFFIX, force)
                return Input(src, compressed=False)

            return src, open_

        results: list[tuple[str, str | BaseException]] = []
        for src, result in self.compress_sources(source(os.fspath(x)) for x in paths):
            if isinstance(result, BaseException):
                results.append((src, result))
                continue
            try:
                with Output(src + SUFFIX, force, os.stat(src)) as out:
                    result.write_to(out.file)
                    out.commit()
                results.append((src, src + SUFFIX))
            except (OSError, LmzipError) as exc:
                results.append((src, exc))
        return results

    def decompress_files(self, paths: Iterable[str | os.PathLike], *, force: bool = False
                         ) -> list[tuple[str, str | BaseException]]:
        """Restore each path.lmz into path (atomically); return (path, output path or the error)."""
        from .commands.cmdline import SUFFIX, Input, Output, check_dest

        def source(src: str) -> Source:
            def open_():
                if not src.endswith(SUFFIX) or os.path.basename(src) == SUFFIX:
                    raise UsageError(f"unknown suffix, expected {SUFFIX}")
                check_dest(src, src[: -len(SUFFIX)], force)
                return Input(src, compressed=True)

            return src, open_

        results: list[tuple[str, str | BaseException]] = []
        out = None
        try:
            for src, kind, value in self.decompress_sources(source(os.fspath(x)) for x in paths):
                if out is None and kind != "error":
                    out = Output(src[: -len(SUFFIX)], force, os.stat(src)).__enter__()
                if kind == "data":
                    out.write(value)
                    continue
                try:
                    if kind == "error":
                        raise value
                    out.commit()
                    results.append((src, out.dest))
                except (OSError, LmzipError) as exc:
                    results.append((src, exc))
                finally:
                    if out is not None:
                        out.__exit__(None, None, None)
                    out = None
        finally:
            if out is not None:
                out.__exit__(None, None, None)
        return results

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()
            self._workers = None
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
            self.owned = False

    def __enter__(self) -> "ClusterCoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Assembly:
    """The container of one input being put together from its coded segments, in order."""

    def __init__(self, key: Any, version: int) -> None:
        self.key, self.version = key, version
        self.segments: list[C.Segment] = []
        self.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)

    def add(self, seg: C.Segment, payload: bytes) -> None:
        self.segments.append(seg)
        self.spool.write(payload)

    def finish(self, stamp: ModelStamp, p: CodecParams, sha: bytes, read: int) -> Compressed:
        header = make_header(stamp, p, self.segments, sha if p.format_version < 3 else b"")
        return Compressed(header, self.spool, p.format_version, read, sha)
