"""Where envs run: worker processes (spawn) or, with ``workers=0``, a thread pool in this process.

    pool = WorkerPool(workers=2, devices=["0", "1"])
    await pool.start()
    spec = await pool.open(handle=1, env_id="frozenlake", config={}, seed=3)
    outcomes = await pool.step([(1, "Right"), (2, "Up")], strict=False)   # split per worker, gathered
    await pool.stop()

Each env lives in one worker, chosen by load when it is opened; the asyncio side
routes by handle. A process worker talks over a pipe served by two threads (one
writes, one reads), so the event loop never blocks on it. A worker that dies
fails its in-flight calls with UNAVAILABLE, its envs' later requests get ABORTED,
and a fresh worker takes its slot for new envs. Workers are daemonic (they die
with the server even if it never called stop), so an env inside one may start
helper processes with ``subprocess`` but not with ``multiprocessing``; and they
die with it when it is killed outright, even one stuck in an env call
(``atlasrl.lifeline``).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing as mp
import os
import pickle
import queue
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc

from atlasrl.envserver.host import EnvHost, HostError, Outcome
from atlasrl.lifeline import die_with_parent
from atlasrl.rpc.errors import ServiceError
from atlasrl.v1 import tensor_pb2

log = logging.getLogger("atlasrl.envserver")

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
ABORTED = grpc.StatusCode.ABORTED
_CODES = {c.value[0]: c for c in grpc.StatusCode}
_START_LOCK = threading.Lock()  # os.environ is patched around Process.start()


class WorkerLost(ServiceError):
    code = UNAVAILABLE


class _Worker:
    index: int
    alive: bool = True

    def __init__(self, index: int):
        self.index = index
        self.handles: set[int] = set()

    async def call(self, op: str, *args):
        raise NotImplementedError

    def describe(self) -> str:
        return f"worker {self.index}"


class ThreadWorker(_Worker):
    """Envs in this process; calls run on a thread pool so the event loop stays free.

    Exception: a reset/step batch whose envs took under ``inline_s`` in all on
    average runs right on the event loop. Two thread hops cost more than a grid
    game's step (~0.1 ms), and under the GIL the pool adds no parallelism for
    them; slow envs (ManiSkill, first calls) always go to the pool.
    """

    def __init__(self, index: int, threads: int, inline_s: float = 0.001, frame_cache_bytes: int = 0):
        super().__init__(index)
        self.host = EnvHost(frame_cache_bytes)
        self.inline_s = inline_s
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="atlasrl-env")

    async def start(self) -> None:
        pass

    async def call(self, op: str, *args):
        fn = getattr(self.host, op)
        if op in ("step", "reset", "reset_many"):
            handles = [h for h, _ in args[0]] if op != "reset" else [args[0]]
            cost = self.host.estimated_seconds("step" if op == "step" else "reset", handles)
            if cost is not None and cost <= self.inline_s:
                return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, self.host.close_all)
        self.executor.shutdown(wait=True)


class ProcessWorker(_Worker):
    """Envs in a child process started with the spawn context."""

    def __init__(self, index: int, device: str | None, on_death, frame_cache_bytes: int = 0):
        super().__init__(index)
        self.device = device
        self.frame_cache_bytes = frame_cache_bytes
        self._on_death = on_death
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        self._stopping = False
        self.ready = False  # answered its first "ready"; only then is a death worth a replacement
        self._loop: asyncio.AbstractEventLoop | None = None
        self.proc = None

    def describe(self) -> str:
        pid = self.proc.pid if self.proc else "-"
        dev = f", device {self.device}" if self.device is not None else ""
        return f"worker {self.index} (pid {pid}{dev})"

    async def start(self, timeout: float = 120.0) -> None:
        self._loop = asyncio.get_running_loop()
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=worker_main, args=(child, self.index, self.device, os.getpid(), self.frame_cache_bytes), daemon=True,
                                name=f"atlasrl-envworker-{self.index}")
        with _START_LOCK:  # the child inherits os.environ as it is at exec time
            saved = os.environ.get("CUDA_VISIBLE_DEVICES")
            if self.device is not None:
                os.environ["CUDA_VISIBLE_DEVICES"] = self.device
            try:
                self.proc.start()
            finally:
                if self.device is not None:
                    if saved is None:
                        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                    else:
                        os.environ["CUDA_VISIBLE_DEVICES"] = saved
        child.close()
        ready = self._loop.create_future()
        self._pending[0] = ready
        threading.Thread(target=self._read_loop, name=f"atlasrl-envworker-{self.index}-rx", daemon=True).start()
        threading.Thread(target=self._write_loop, name=f"atlasrl-envworker-{self.index}-tx", daemon=True).start()
        await asyncio.wait_for(ready, timeout)
        self.ready = True

    async def call(self, op: str, *args):
        if not self.alive:
            raise WorkerLost(f"env {self.describe()} is not running")
        fut = self._loop.create_future()
        op_id = next(self._ids)
        self._pending[op_id] = fut
        self._outbox.put(pickle.dumps((op_id, op, args), protocol=pickle.HIGHEST_PROTOCOL))
        return await fut

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._outbox.put(pickle.dumps((0, "stop", ())))
        self._outbox.put(None)
        if self.proc is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.proc.join, timeout)
            if self.proc.is_alive():
                self.proc.kill()

    def _write_loop(self) -> None:
        while (item := self._outbox.get()) is not None:
            try:
                self._conn.send_bytes(item)
            except (OSError, ValueError):
                return

    def _read_loop(self) -> None:
        while True:
            try:
                op_id, ok, payload = pickle.loads(self._conn.recv_bytes())
            except (EOFError, OSError):
                break
            self._post(self._resolve, op_id, ok, payload)
        self.proc.join(timeout=5)
        self._post(self._died, self.proc.exitcode)

    def _post(self, fn, *args) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop already closed at shutdown
            pass

    def _resolve(self, op_id: int, ok: bool, payload) -> None:
        fut = self._pending.pop(op_id, None)
        if fut is None or fut.done():
            return
        if ok:
            fut.set_result(payload)
        else:
            code, message = payload
            fut.set_exception(HostError(code, message))

    def _died(self, exitcode) -> None:
        self.alive = False
        self._outbox.put(None)
        err = WorkerLost(f"env {self.describe()} exited with code {exitcode} while handling this request")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()
        if not self._stopping and self.ready:
            log.error("env %s died (exit code %s); %d envs lost", self.describe(), exitcode, len(self.handles))
            self._on_death(self, exitcode)


def worker_main(conn, index: int, device: str | None, parent_pid: int, frame_cache_bytes: int = 0) -> None:
    """Body of a worker process: serve EnvHost calls from the pipe until told to stop or the parent goes."""
    die_with_parent(parent_pid)     # even a SIGKILLed server leaves no orphan (the pipe's EOF only ends an idle worker)
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    # The parent owns shutdown (SIGTERM -> drain -> "stop"); a group-wide signal must not kill envs mid-drain.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from atlasrl import log as atlas_log

    atlas_log.setup()
    host = EnvHost(frame_cache_bytes)
    conn.send_bytes(pickle.dumps((0, True, "ready")))
    while True:
        try:
            op_id, op, args = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            break
        if op == "stop":
            break
        try:
            reply = (op_id, True, getattr(host, op)(*args))
        except HostError as e:
            reply = (op_id, False, (e.code, e.message))
        except Exception as e:
            log.exception("worker %d: %s failed", index, op)
            reply = (op_id, False, (grpc.StatusCode.INTERNAL.value[0], f"{op} failed in env worker {index}: {type(e).__name__}: {e}"))
        try:
            conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        except (OSError, ValueError):
            break
    host.close_all()


class WorkerPool:
    """Routes env calls by handle to the worker that holds the env."""

    def __init__(self, workers: int = 0, devices: list[str] | None = None, threads: int = 4, frame_cache_bytes: int = 0):
        self.devices = list(devices or [])
        self.n_processes = workers
        self.threads = threads
        self.frame_cache_bytes = frame_cache_bytes  # EnvServerConfig.frame_cache_mb, in bytes, for each host
        self.workers: list[_Worker] = []
        self._where: dict[int, _Worker] = {}
        self._lost: dict[int, str] = {}
        self._respawns: set[asyncio.Task] = set()

    async def start(self) -> None:
        if self.n_processes == 0:
            self.workers = [ThreadWorker(0, self.threads, frame_cache_bytes=self.frame_cache_bytes)]
        else:
            self.workers = [ProcessWorker(i, self._device(i), self._on_death, self.frame_cache_bytes) for i in range(self.n_processes)]
        await asyncio.gather(*(w.start() for w in self.workers))

    async def stop(self) -> None:
        for t in list(self._respawns):
            t.cancel()
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)

    def _device(self, i: int) -> str | None:
        return self.devices[i % len(self.devices)] if self.devices else None

    def _on_death(self, worker: ProcessWorker, exitcode) -> None:
        for h in worker.handles:
            self._where.pop(h, None)
            self._lost[h] = f"env handle {h} was lost: its {worker.describe()} exited with code {exitcode}; close it and open a new env"
        worker.handles.clear()
        fresh = ProcessWorker(worker.index, worker.device, self._on_death, self.frame_cache_bytes)
        self.workers[worker.index] = fresh
        task = asyncio.ensure_future(self._start_replacement(fresh))
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _start_replacement(self, worker: ProcessWorker) -> None:
        try:
            await worker.start()
        except Exception:
            worker.alive = False
            log.exception("could not restart env %s", worker.describe())

    def _pick(self) -> _Worker:
        alive = [w for w in self.workers if w.alive]
        if not alive:
            raise WorkerLost("no env worker is running")
        return min(alive, key=lambda w: len(w.handles))

    async def open(self, handle: int, env_id: str, config: dict[str, str], seed: int | None) -> bytes:
        worker = self._pick()
        worker.handles.add(handle)
        self._where[handle] = worker
        try:
            return await worker.call("open", handle, env_id, config, seed)
        except BaseException as e:
            worker.handles.discard(handle)
            self._where.pop(handle, None)
            if isinstance(e, HostError):
                raise ServiceError(e.message, _CODES.get(e.code, grpc.StatusCode.UNKNOWN)) from None
            raise

    async def reset(self, handle: int, seed: int | None) -> Outcome:
        return (await self._batch("reset", [handle], lambda w, hs: w.call("reset", hs[0], seed)))[0]

    async def reset_many(self, resets: list[tuple[int, int | None]]) -> list[Outcome]:
        """One call per worker for its share of the (handle, seed) pairs; outcomes in request order."""
        seeds = dict(resets)
        return await self._batch("reset", [h for h, _ in resets],
                                 lambda w, hs: w.call("reset_many", [(h, seeds[h]) for h in hs]))

    async def step(self, actions: list[tuple[int, str | tensor_pb2.Tensor]], strict: bool, auto_reset: bool = False) -> list[Outcome]:
        texts = dict(actions)
        return await self._batch("step", [h for h, _ in actions],
                                 lambda w, hs: w.call("step", [(h, texts[h]) for h in hs], strict, auto_reset))

    async def close(self, handles: list[int]) -> None:
        groups: dict[_Worker, list[int]] = {}
        for h in handles:
            self._lost.pop(h, None)
            worker = self._where.pop(h, None)
            if worker is not None:
                worker.handles.discard(h)
                groups.setdefault(worker, []).append(h)
        await asyncio.gather(*(w.call("close", hs) for w, hs in groups.items() if w.alive), return_exceptions=True)

    async def default_spec(self, env_id: str) -> bytes:
        try:
            return await self._pick().call("default_spec", env_id)
        except HostError as e:
            raise ServiceError(e.message, _CODES.get(e.code, grpc.StatusCode.UNKNOWN)) from None

    def env_count(self) -> int:
        return len(self._where)

    async def _batch(self, what: str, handles: list[int], send) -> list[Outcome]:
        """Split ``handles`` per worker, call each worker once, and put outcomes back in order."""
        out: list[Outcome | None] = [None] * len(handles)
        groups: dict[_Worker, list[int]] = {}
        for i, h in enumerate(handles):
            worker = self._where.get(h)
            if worker is None:
                msg = self._lost.get(h) or f"env handle {h} is not open"
                out[i] = Outcome(ABORTED.value[0] if h in self._lost else grpc.StatusCode.NOT_FOUND.value[0], msg)
            else:
                groups.setdefault(worker, []).append(i)
        workers = list(groups)
        if len(workers) == 1:  # the common case: no gather, no extra task
            try:
                replies = [await send(workers[0], [handles[i] for i in groups[workers[0]]])]
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - becomes the outcome of each action below
                replies = [e]
        else:
            replies = await asyncio.gather(*(send(w, [handles[i] for i in groups[w]]) for w in workers), return_exceptions=True)
        for worker, reply in zip(workers, replies):
            idx = groups[worker]
            if isinstance(reply, BaseException):
                if isinstance(reply, asyncio.CancelledError):
                    raise reply
                code, msg = _error_of(reply, what)
                for i in idx:
                    out[i] = Outcome(code, msg)
            else:
                reply = reply if isinstance(reply, list) else [reply]
                for i, o in zip(idx, reply):
                    out[i] = o
        return out  # type: ignore[return-value]


def _error_of(exc: BaseException, what: str) -> tuple[int, str]:
    if isinstance(exc, HostError):
        return exc.code, exc.message
    if isinstance(exc, ServiceError):
        return exc.code.value[0], exc.message
    log.error("%s failed", what, exc_info=exc)
    return grpc.StatusCode.INTERNAL.value[0], f"{what} failed: {type(exc).__name__}"
