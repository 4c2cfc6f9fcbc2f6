"""Verification dispatch: worker processes with a hard wall-clock limit per item.

Deliberately not `concurrent.futures.ProcessPoolExecutor`: it cannot kill one hung
task, and math-verify's own timeout (`signal.alarm`) does nothing off the main
thread. Here each worker is a process with a pipe; the asyncio side hands it a
chunk of items, reads one result per item, and if an item exceeds its limit the
worker is SIGKILLed and replaced: that item is `timeout`, the rest of the chunk is
put back at the head of the queue. A worker that dies is `error` for the item it
was on. Workers fork from a forkserver that has the verifiers pre-imported, so a
replacement is ready in milliseconds.
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from verifiers.base import ScoreItem, Verifier, VerifyResult

# (verifier, completion, reference, prompt, options)
ItemTuple = tuple[str, str, Any, str | None, dict[str, Any]]
# name -> (class, constructor options)
VerifierTable = dict[str, tuple[type[Verifier], dict[str, Any]]]


def _worker_main(conn: Connection, table: VerifierTable) -> None:
    """Worker loop: build verifiers lazily, verify items in order, one reply each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    built: dict[str, Verifier] = {}
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        for name, completion, reference, prompt, options in msg:
            t0 = time.perf_counter()
            try:
                v = built.get(name)
                if v is None:
                    cls, opts = table[name]
                    v = built[name] = cls(**opts)
                r = v.verify(
                    ScoreItem(name, completion, reference, prompt, options or {})
                )
                out: tuple[Any, ...] = (r.reward, r.status, r.info)
            except BaseException as e:  # noqa: BLE001 - errors are data
                out = (None, "error", {
                    "message": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(limit=3),
                })
            try:
                conn.send((None, out, time.perf_counter() - t0))
            except Exception as e:  # info not picklable, for example
                conn.send((None, (None, "error", {"message": f"unsendable result: {e}"}), 0.0))


@dataclass
class _Pending:
    item: ItemTuple
    fut: asyncio.Future[VerifyResult]
    timeout_s: float


class _Worker:
    def __init__(self, ctx: Any, table: VerifierTable) -> None:
        parent, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, table), daemon=True)
        self.proc.start()
        child.close()
        self.conn: Connection = parent

    def kill(self) -> None:
        try:
            os.kill(self.proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
        except (ProcessLookupError, TypeError):
            pass
        self.proc.join(timeout=5)
        self.conn.close()


OnResult = Callable[[str, VerifyResult, float], None]


class WorkerPool:
    """N worker processes fed from one queue. `await pool.submit(items, timeouts)`."""

    def __init__(
        self,
        table: VerifierTable,
        workers: int,
        chunk_size: int = 16,
        on_result: OnResult | None = None,
    ) -> None:
        self.table = table
        self.n = workers
        self.chunk_size = chunk_size
        self.on_result = on_result
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: list[_Worker | None] = []
        self.replaced = 0  # workers killed and replaced (timeouts, crashes)
        ctx = mp.get_context("forkserver")
        mods = sorted({cls.__module__ for cls, _ in table.values()} | {"verifiers.base"})
        ctx.set_forkserver_preload(mods)
        self._ctx = ctx

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._workers = await asyncio.gather(
            *[asyncio.to_thread(_Worker, self._ctx, self.table) for _ in range(self.n)]
        )
        self._tasks = [asyncio.create_task(self._drive(i)) for i in range(self.n)]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for w in self._workers:
            if w is not None:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
                w.proc.join(timeout=1)
                if w.proc.is_alive():
                    w.kill()
        for p in self._queue:
            if not p.fut.done():
                p.fut.set_result(VerifyResult.fail("error", "server shutting down"))
        self._queue.clear()

    def alive_workers(self) -> int:
        return sum(1 for w in self._workers if w is not None and w.proc.is_alive())

    async def submit(self, items: list[ItemTuple], timeouts: list[float]) -> list[VerifyResult]:
        loop = asyncio.get_running_loop()
        pend = [_Pending(it, loop.create_future(), t) for it, t in zip(items, timeouts, strict=True)]
        self._queue.extend(pend)
        assert self._wakeup is not None
        self._wakeup.set()
        return list(await asyncio.gather(*(p.fut for p in pend)))

    async def _recv(self, conn: Connection, timeout: float) -> Any:
        """One message from a worker, or TimeoutError; EOFError if it died.
        (`loop.call_later` rather than `asyncio.wait_for`: no task per item.)"""
        if conn.poll():
            return conn.recv()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not fut.done():
                fut.set_result(None)

        def expired() -> None:
            if not fut.done():
                fut.set_exception(TimeoutError())

        fd = conn.fileno()
        loop.add_reader(fd, readable)
        handle = loop.call_later(timeout, expired)
        try:
            await fut
        finally:
            loop.remove_reader(fd)
            handle.cancel()
        return conn.recv()

    async def _drive(self, slot: int) -> None:
        """Feed one worker. Up to two chunks are in flight so the worker never idles
        between chunks; results come back in order, and the item at the head of the
        in-flight queue is the one the worker is on, so its clock starts when the
        previous result arrives."""
        assert self._wakeup is not None
        inflight: collections.deque[_Pending] = collections.deque()
        while True:
            if len(inflight) < self.chunk_size and self._queue:
                batch: list[_Pending] = []
                while self._queue and len(batch) < self.chunk_size:
                    p = self._queue.popleft()
                    if not p.fut.cancelled():
                        batch.append(p)
                if batch and not await self._send(slot, batch):
                    continue
                inflight.extend(batch)
            if not inflight:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            w = self._workers[slot]
            assert w is not None
            head = inflight[0]
            try:
                _, (reward, status, info), elapsed = await self._recv(w.conn, head.timeout_s)
            except (TimeoutError, EOFError, OSError) as e:
                inflight.popleft()
                if isinstance(e, TimeoutError):
                    res = VerifyResult.fail(
                        "timeout", f"verification exceeded {head.timeout_s:g} s; worker replaced"
                    )
                else:
                    res = VerifyResult.fail(
                        "error", f"verification worker died (exit {w.proc.exitcode})"
                    )
                self._finish(head, res, head.timeout_s)
                self._queue.extendleft(reversed(inflight))
                inflight.clear()
                await self._replace(slot)
                if self._queue:
                    self._wakeup.set()
                continue
            inflight.popleft()
            try:
                res = VerifyResult(reward, status, info)
            except ValueError as e:  # a verifier broke the contract
                res = VerifyResult.fail("error", f"verifier returned an invalid result: {e}")
            self._finish(head, res, elapsed)

    async def _send(self, slot: int, batch: list[_Pending]) -> bool:
        """Send a chunk to the worker of `slot` (replacing it if dead); False if the
        chunk went back to the queue."""
        w = self._workers[slot]
        if w is None or not w.proc.is_alive():
            await self._replace(slot)
            w = self._workers[slot]
        assert w is not None
        try:
            w.conn.send([p.item for p in batch])
            return True
        except (OSError, ValueError):
            self._queue.extendleft(reversed(batch))
            await self._replace(slot)
            return False

    def _finish(self, p: _Pending, result: VerifyResult, elapsed: float) -> None:
        if not p.fut.done():
            p.fut.set_result(result)
        if self.on_result is not None:
            self.on_result(p.item[0], result, elapsed)

    async def _replace(self, slot: int) -> None:
        old = self._workers[slot]
        self._workers[slot] = None
        if old is not None:
            await asyncio.to_thread(old.kill)
        self.replaced += 1
        self._workers[slot] = await asyncio.to_thread(_Worker, self._ctx, self.table)
