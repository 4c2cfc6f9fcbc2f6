"""Verification dispatch: worker processes with a hard wall-clock limit per item.

Deliberately not `concurrent.futures.ProcessPoolExecutor`: it cannot kill one hung
task, and math-verify's own timeout (`signal.alarm`) does nothing off the main
thread. Here each worker is a process with a pipe; the asyncio side hands it a
chunk of items, reads one result per item, and if an item exceeds its limit the
worker is SIGKILLed and replaced: that item is `timeout`, the rest of the chunk is
put back at the head of the queue. A worker that dies is `error` for the item it
was on. Workers fork from a forkserver that has the verifiers pre-imported and say
READY once their verifiers are built; only then do item clocks start, so a slow
start on a loaded machine is never charged to an item.

Throughput comes from keeping the cost per result small on both sides: a worker
sends its results in batches (at the end of each chunk, or sooner once a result has
waited `FLUSH_S`), not one message per item, and the parent has a reader callback
per worker registered once (no task, future or timer per item) and a single watchdog
ticking every 50 ms for the limits. Batching does not blur which item is hung: each
worker publishes, in a two-slot shared array, how many items it has started and
when it started the latest, so the watchdog times the item actually running. If a
worker is killed, results it had computed but not yet sent are simply re-queued.

The parent never blocks on a worker: chunks are pickled once and written to the
worker's socket without waiting (`MSG_DONTWAIT`); what the socket does not take now
waits in a per-worker outbox that the event loop drains when the socket is writable.
A plain `conn.send` of a large chunk to a worker that is stuck on an item would
block the whole event loop (and with it every timeout) until the worker read it.
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing as mp
import os
import pickle
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from verifiers.base import ScoreItem, Status, Verifier, VerifyResult

# (verifier, completion, reference, prompt, options)
ItemTuple = tuple[str, str, Any, str | None, dict[str, Any]]
# name -> (class, constructor options)
VerifierTable = dict[str, tuple[type[Verifier], dict[str, Any]]]


READY = "ready"
STARTUP_TIMEOUT_S = 60.0
FLUSH_S = 0.005  # longest a computed result waits in the worker before it is sent


def _pack(out: tuple[Any, ...], elapsed: float) -> bytes:
    """One result, pickled on its own so the parent can unpickle (or reject) each item
    of a batch separately; a result that cannot be pickled (an odd object in `info`)
    becomes that item's error."""
    try:
        return pickle.dumps((out, elapsed), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001 - errors are data
        return pickle.dumps(((None, "error", {"message": f"unsendable result: {e}"}), 0.0))


def _worker_main(conn: Connection, table: VerifierTable, progress: Any) -> None:
    """Worker loop: build every verifier, say READY, then verify items in order; the
    results go back in batches (a list with one `_pack`ed result per item, in order). Before each
    item `progress` gets (items started so far, monotonic start time) for the parent's
    watchdog. A verifier whose constructor fails makes its items `error`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    built: dict[str, Verifier | BaseException] = {}
    for name, (cls, opts) in table.items():
        try:
            built[name] = cls(**opts)
        except Exception as e:  # noqa: BLE001 - reported per item below
            built[name] = e
    conn.send(READY)  # the parent starts item clocks only after this
    started = 0
    buf: list[bytes] = []
    buf_since = 0.0
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        for name, completion, reference, prompt, options in msg:
            if buf and time.monotonic() - buf_since > FLUSH_S:
                conn.send(buf)
                buf = []
            started += 1
            progress[1] = time.monotonic()  # the time first: the parent reads the count first
            progress[0] = started
            t0 = time.perf_counter()
            try:
                v = built[name]
                if isinstance(v, BaseException):
                    raise RuntimeError(f"verifier {name!r} could not be built: {v!r}")
                r = v.verify(ScoreItem(name, completion, reference, prompt, options or {}))
                out: tuple[Any, ...] = (r.reward, r.status, r.info)
            except BaseException as e:  # noqa: BLE001 - errors are data
                out = (None, "error", {
                    "message": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(limit=3),
                })
            if not buf:
                buf_since = time.monotonic()
            buf.append(_pack(out, time.perf_counter() - t0))
        if buf:
            conn.send(buf)
            buf = []


@dataclass
class _Pending:
    item: ItemTuple
    fut: asyncio.Future[VerifyResult]
    timeout_s: float


class _Worker:
    def __init__(self, ctx: Any, table: VerifierTable) -> None:
        parent, child = ctx.Pipe(duplex=True)  # a socketpair on POSIX
        # [items started, monotonic time the latest started], written by the worker
        self.progress = ctx.RawArray("d", 2)
        self.answered = 0  # results received from this worker
        self.proc = ctx.Process(target=_worker_main, args=(child, table, self.progress),
                                daemon=True)
        self.proc.start()
        child.close()
        self.conn: Connection = parent
        # Wait (in the caller's thread) until the worker has built its verifiers, so a
        # slow start on a loaded machine never counts against an item's time limit.
        try:
            ready = parent.poll(STARTUP_TIMEOUT_S) and parent.recv() == READY
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            parent.close()
            raise RuntimeError(
                f"verification worker failed to start (exit code {self.proc.exitcode})"
            )
        # From here on the parent talks through a second handle on the same socket with
        # per-call MSG_DONTWAIT reads and writes (the worker keeps `Connection`'s
        # blocking framing on its side): the event loop never waits on a worker.
        self.sock = socket.socket(fileno=os.dup(parent.fileno()))
        self.outbox = bytearray()
        self.inbox = bytearray()
        self.loop: asyncio.AbstractEventLoop | None = None

    def next_frame(self) -> bytes | None:
        """One complete message from what has been read so far, else None."""
        buf = self.inbox
        if len(buf) < 4:
            return None
        (n,) = struct.unpack_from("!i", buf)
        start = 4
        if n == -1:
            if len(buf) < 12:
                return None
            (n,) = struct.unpack_from("!Q", buf, 4)
            start = 12
        if len(buf) < start + n:
            return None
        frame = bytes(buf[start : start + n])
        del buf[: start + n]
        return frame

    def fill(self) -> bool:
        """Read whatever the worker has written (several results at once, typically)
        without blocking; False if nothing was there. EOFError if the worker is gone."""
        try:
            data = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        if not data:
            raise EOFError
        self.inbox += data
        return True

    def post(self, loop: asyncio.AbstractEventLoop, payload: bytes) -> None:
        """Queue one message (`Connection`'s framing) without ever blocking."""
        n = len(payload)
        header = struct.pack("!i", n) if n <= 0x7FFFFFFF else struct.pack("!iQ", -1, n)
        self.outbox += header
        self.outbox += payload
        if len(self.outbox) == len(header) + n:  # the outbox was empty: try now
            self.loop = loop
            self._flush()
            if self.outbox:
                loop.add_writer(self.sock.fileno(), self._flush)

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.outbox, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the worker died; the reader side reports it
            sent = len(self.outbox)
        del self.outbox[:sent]
        if not self.outbox and self.loop is not None:
            self.loop.remove_writer(self.sock.fileno())

    def kill(self) -> None:
        """SIGKILL and reap (blocking: run it in a thread)."""
        try:
            os.kill(self.proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
        except (ProcessLookupError, TypeError):
            pass
        self.proc.join(timeout=5)

    def close_handles(self) -> None:
        """Drop unsent data and close both handles (in the event loop's thread)."""
        if self.loop is not None and self.outbox:
            self.loop.remove_writer(self.sock.fileno())
        self.outbox.clear()
        self.sock.close()
        self.conn.close()


OnResult = Callable[[str, VerifyResult, float], None]


class _Slot:
    """One worker position: the process (None while it is being replaced) and the
    items posted to it, in order, whose results have not arrived yet."""

    def __init__(self) -> None:
        self.worker: _Worker | None = None
        self.inflight: collections.deque[_Pending] = collections.deque()

    def current(self) -> tuple[int, float] | None:
        """(index in `inflight`, start time) of the item the worker is on, or None if it
        has not started any of them yet. Items before that index are done, their
        results still in the worker's buffer."""
        w = self.worker
        if w is None or not self.inflight:
            return None
        k = int(w.progress[0]) - w.answered
        if k < 1:
            return None
        return min(k, len(self.inflight)) - 1, float(w.progress[1])


class WorkerPool:
    """N worker processes fed from one queue. `await pool.submit(items, timeouts)`.

    Event-driven: each worker's socket has a reader callback that is registered once
    and consumes every result already written (results of a busy pool arrive one by
    one, so per-result cost is what limits throughput); a watchdog ticking every
    `tick_s` enforces the per-item limits; chunks are topped up as results arrive so
    a worker always has up to two chunks of work queued and never idles. New work
    goes to the least loaded worker that is not stuck on one item (`stall_s`).
    """

    def __init__(
        self,
        table: VerifierTable,
        workers: int,
        chunk_size: int = 16,
        on_result: OnResult | None = None,
        tick_s: float = 0.05,
        stall_s: float = 0.25,
    ) -> None:
        self.table = table
        self.n = workers
        self.chunk_size = chunk_size
        self.on_result = on_result
        self.tick_s = tick_s
        self.stall_s = stall_s
        self._queue: collections.deque[_Pending] = collections.deque()
        self._slots = [_Slot() for _ in range(workers)]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._replacing: set[asyncio.Task[None]] = set()
        self._closed = False
        self.replaced = 0  # workers killed and replaced (timeouts, crashes)
        ctx = mp.get_context("forkserver")
        mods = sorted({cls.__module__ for cls, _ in table.values()} | {__name__})
        ctx.set_forkserver_preload(mods)
        self._ctx = ctx

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        workers = await asyncio.gather(
            *[asyncio.to_thread(_Worker, self._ctx, self.table) for _ in range(self.n)]
        )
        for i, w in enumerate(workers):
            self._attach(i, w)
        self._watchdog = asyncio.create_task(self._watch())

    async def close(self) -> None:
        self._closed = True
        for t in [self._watchdog, *self._replacing]:
            if t is not None:
                t.cancel()
        assert self._loop is not None
        for slot in self._slots:
            w, slot.worker = slot.worker, None
            if w is None:
                continue
            self._loop.remove_reader(w.sock.fileno())
            w.post(self._loop, pickle.dumps(None))  # asks the worker to exit
            await asyncio.to_thread(w.proc.join, 1)
            if w.proc.is_alive():
                await asyncio.to_thread(w.kill)
            w.close_handles()
            self._queue.extendleft(reversed(slot.inflight))
            slot.inflight.clear()
        for p in self._queue:
            if not p.fut.done():
                p.fut.set_result(VerifyResult.fail("error", "server shutting down"))
        self._queue.clear()

    def alive_workers(self) -> int:
        return sum(1 for s in self._slots if s.worker is not None and s.worker.proc.is_alive())

    async def submit(self, items: list[ItemTuple], timeouts: list[float]) -> list[VerifyResult]:
        loop = asyncio.get_running_loop()
        pend = [_Pending(it, loop.create_future(), t) for it, t in zip(items, timeouts, strict=True)]
        self._queue.extend(pend)
        self._pump_all()
        return list(await asyncio.gather(*(p.fut for p in pend)))

    def _pump_all(self) -> None:
        """Hand queued items to the least loaded workers first, and never to a worker
        that has been on one item for more than `stall_s` while another is moving:
        a new request must not wait behind an item that is about to time out."""
        assert self._loop is not None
        now = self._loop.time()

        def stalled(slot: _Slot) -> bool:
            cur = slot.current()
            return cur is not None and now - cur[1] > self.stall_s

        live = [i for i in range(self.n) if self._slots[i].worker is not None]
        moving = [i for i in live if not stalled(self._slots[i])]
        for i in sorted(moving or live, key=lambda i: len(self._slots[i].inflight)):
            self._pump(i)

    # -- event-loop callbacks -------------------------------------------------------

    def _attach(self, i: int, w: _Worker) -> None:
        assert self._loop is not None
        slot = self._slots[i]
        slot.worker = w
        self._loop.add_reader(w.sock.fileno(), self._on_readable, i)
        self._pump(i)

    def _pump(self, i: int) -> None:
        """Top up worker `i` to at most two chunks of posted, unanswered items."""
        slot = self._slots[i]
        w = slot.worker
        if w is None or self._closed:
            return
        while self._queue and len(slot.inflight) < self.chunk_size:
            batch: list[_Pending] = []
            while self._queue and len(batch) < self.chunk_size:
                p = self._queue.popleft()
                if not p.fut.done():  # cancelled requests leave their items behind
                    batch.append(p)
            if not batch:
                return
            try:
                payload = pickle.dumps([p.item for p in batch], protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:  # noqa: BLE001 - an unpicklable item is that item's error
                for p in batch:
                    self._finish(p, VerifyResult.fail("error", f"item cannot be sent: {e}"), 0.0)
                continue
            assert self._loop is not None
            slot.inflight.extend(batch)
            w.post(self._loop, payload)

    def _on_readable(self, i: int) -> None:
        slot = self._slots[i]
        w = slot.worker
        if w is None:
            return
        assert self._loop is not None
        dead = False
        try:
            while w.fill():
                pass
        except (EOFError, OSError):
            dead = True  # results it wrote before dying are still credited below
        got = False
        while (frame := w.next_frame()) is not None:
            for blob in pickle.loads(frame):  # a list of bytes: always loads
                if not slot.inflight:  # cannot happen: one result per item posted
                    break
                head = slot.inflight.popleft()
                w.answered += 1
                got = True
                try:
                    out, elapsed = pickle.loads(blob)
                    res = VerifyResult(*out)
                except Exception as e:  # noqa: BLE001 - a verifier broke the contract
                    res, elapsed = VerifyResult.fail("error", f"invalid result from worker: {e}"), 0.0
                self._finish(head, res, elapsed)
        if dead:
            w.proc.join(timeout=0.1)  # reaped (it has closed its socket), so the exit code is known
            self._fail_current(i, "error", f"verification worker died (exit {w.proc.exitcode})")
        elif got:
            self._pump(i)

    async def _watch(self) -> None:
        """Kill and replace a worker whose current item is over its limit."""
        assert self._loop is not None
        while True:
            await asyncio.sleep(self.tick_s)
            now = self._loop.time()
            for i, slot in enumerate(self._slots):
                cur = slot.current()
                if cur is not None:
                    item = slot.inflight[cur[0]]
                    if now - cur[1] > item.timeout_s:
                        self._fail_current(
                            i, "timeout",
                            f"verification exceeded {item.timeout_s:g} s; worker replaced",
                        )

    def _fail_current(self, i: int, status: Status, message: str) -> None:
        """The item worker `i` is on failed (timeout or crash): finish it, put every
        other unanswered item of that worker back at the head of the queue (done ones
        whose results were still buffered in it are verified again), replace it."""
        slot = self._slots[i]
        cur = slot.current()
        at = cur[0] if cur is not None else 0  # died before starting any: blame the first
        if slot.inflight:
            victim = slot.inflight[at]
            del slot.inflight[at]
            self._finish(victim, VerifyResult.fail(status, message), victim.timeout_s)
        self._queue.extendleft(reversed(slot.inflight))
        slot.inflight.clear()
        w, slot.worker = slot.worker, None
        assert w is not None and self._loop is not None
        self._loop.remove_reader(w.sock.fileno())
        task = asyncio.ensure_future(self._replace(i, w))
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)
        self._pump_all()  # the other workers take the re-queued items meanwhile

    def _finish(self, p: _Pending, result: VerifyResult, elapsed: float) -> None:
        if not p.fut.done():
            p.fut.set_result(result)
        if self.on_result is not None:
            self.on_result(p.item[0], result, elapsed)

    async def _replace(self, i: int, old: _Worker) -> None:
        await asyncio.to_thread(old.kill)
        old.close_handles()
        self.replaced += 1
        delay = 0.5
        while True:  # a worker that cannot start leaves the queue to the others
            try:
                w = await asyncio.to_thread(_Worker, self._ctx, self.table)
                break
            except RuntimeError as e:
                print(f"rlvr reward server: {e}; retrying in {delay:g} s", file=sys.stderr)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        if self._closed:
            await asyncio.to_thread(w.kill)
            w.close_handles()
            return
        self._attach(i, w)
