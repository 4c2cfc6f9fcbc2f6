"""The worker pool on its own: hard limits, chunk re-dispatch, a never-blocked event loop."""

from __future__ import annotations

import asyncio
import time

from reward_server.dispatch import WorkerPool
from tests.server.verifiers_for_tests import BrokenVerifier, EchoVerifier

TABLE = {"echo": (EchoVerifier, {}), "broken": (BrokenVerifier, {})}


def _echo(c: str) -> tuple:
    return ("echo", c, None, None, {})


async def test_big_chunk_behind_a_hung_item_never_blocks_the_loop() -> None:
    # 30 items of 100 kB behind a hung one: the chunk posted after the hang is ~1.6 MB,
    # far more than a socket buffer. A blocking send would freeze the event loop (and
    # with it every timer) until the worker read it, i.e. until the 30 s sleep ended.
    pool = WorkerPool(TABLE, workers=1, chunk_size=16)
    await pool.start()
    try:
        # Distinct strings (pickle would send one shared object once); float() ignores
        # the spaces, so each reward is 7.0.
        items = [_echo("1"), _echo("sleep:30")] + [_echo("7" + " " * (100_000 + i)) for i in range(30)]
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.02)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        t0 = time.monotonic()
        res = await pool.submit(items, [1.0] * len(items))
        elapsed = time.monotonic() - t0
        done.set()
        await tick
    finally:
        await pool.close()
    assert [r.status for r in res] == ["ok", "timeout"] + ["ok"] * 30
    assert res[0].reward == 1.0 and res[1].reward is None
    assert [r.reward for r in res[2:]] == [7.0] * 30
    assert elapsed < 15  # 1 s limit + one worker restart, not the 30 s sleep
    assert max(gaps) < 1.0  # the loop kept running its timers throughout
    assert pool.replaced == 1


async def test_unbuildable_verifier_is_an_error_per_item() -> None:
    pool = WorkerPool(TABLE, workers=1)
    await pool.start()
    try:
        res = await pool.submit([("broken", "x", None, None, {}), _echo("2")], [1.0, 1.0])
    finally:
        await pool.close()
    assert res[0].status == "error" and "missing option 'model_path'" in res[0].info["message"]
    assert res[1].status == "ok" and res[1].reward == 2.0
    assert pool.replaced == 0  # the worker itself is fine


async def test_the_running_item_is_blamed_not_the_buffered_ones_before_it() -> None:
    # A worker sends its results in batches, so when it hangs or dies the results of
    # the fast items it finished just before are still in its buffer. The shared
    # progress counter must pin the timeout / crash on the item actually running;
    # the finished ones are verified again elsewhere and come back ok.
    pool = WorkerPool(TABLE, workers=1, chunk_size=16)
    await pool.start()
    try:
        hang = [_echo("1"), _echo("2"), _echo("3"), _echo("sleep:30"), _echo("5"), _echo("6")]
        res = await pool.submit(hang, [1.0] * len(hang))
        assert [r.status for r in res] == ["ok", "ok", "ok", "timeout", "ok", "ok"]
        assert [r.reward for r in res] == [1.0, 2.0, 3.0, None, 5.0, 6.0]
        crash = [_echo("1"), _echo("2"), _echo("crash"), _echo("4")]
        res = await pool.submit(crash, [5.0] * len(crash))
        assert [r.status for r in res] == ["ok", "ok", "error", "ok"]
        assert "died" in res[2].info["message"]
        assert [r.reward for r in res] == [1.0, 2.0, None, 4.0]
    finally:
        await pool.close()
    assert pool.replaced == 2


async def test_a_result_that_cannot_travel_is_that_items_error_only() -> None:
    # Results travel in batches; one bad result must not take its batch mates with it.
    pool = WorkerPool(TABLE, workers=1, chunk_size=16)
    await pool.start()
    try:
        items = [_echo("1"), _echo("unpicklable"), _echo("3"), _echo("unloadable"), _echo("5")]
        res = await pool.submit(items, [5.0] * len(items))
    finally:
        await pool.close()
    assert [r.status for r in res] == ["ok", "error", "ok", "error", "ok"]
    assert [r.reward for r in res] == [1.0, None, 3.0, None, 5.0]
    assert "unsendable result" in res[1].info["message"]
    assert "invalid result from worker" in res[3].info["message"]
    assert pool.replaced == 0  # the worker itself is fine
