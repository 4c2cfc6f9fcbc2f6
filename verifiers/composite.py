"""Composite reward: a weighted sum of several verifiers (e.g. correctness + 0.2 * format).

    reward = sum_i w_i * r_i        (or / sum_i |w_i| with normalize = true)

Each part's reward, status, weight and info are reported in `info["parts"]`. What
differs from the usual "sum what you can" composition: if any part is not `ok` the
composite is not ok (status `error`, reward null, the failing parts named in
`info["failed"]`); a partial sum would silently score the item as if the failed part
had earned 0.

Parts are `(label, class, options, weight, reference_key)` entries resolved from the
config by `verifiers.plugins.resolve_verifiers`. A part gets the item's reference, or
`reference[reference_key]` when the part names a key (e.g. math gets the gold
answer from `{"answer": "42", "rubric": [...]}`).

Two classes, chosen by the resolver from the parts:

- `CompositeVerifier` (pool) when every part is a pool verifier: the parts run one
  after another inside the same worker process, under the composite's own hard
  time limit (the reward server's per-item kill).
- `LoopCompositeVerifier` (loop) when any part is a loop verifier (judge, rm,
  remote): loop parts are awaited concurrently; pool parts run in a small private
  worker pool (`reward_server.dispatch.WorkerPool`, the server's own process pool
  with per-item kills), never in the event loop, because a CPU-bound verifier there
  would stall every request and math-verify's signal timeouts do not work off the
  main thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from verifiers.base import ScoreItem, Verifier, VerifyResult

# (label, verifier class, constructor options, weight, reference key or None)
Part = tuple[str, type[Verifier], dict[str, Any], float, str | None]


def _part_reference(item: ScoreItem, key: str | None) -> Any:
    if key is None:
        return item.reference
    if not isinstance(item.reference, dict) or key not in item.reference:
        raise KeyError(f"reference has no key {key!r}")
    return item.reference[key]


def combine(parts: list[Part], results: list[VerifyResult], normalize: bool) -> VerifyResult:
    """The weighted sum, or an error naming every part that was not ok."""
    info: dict[str, Any] = {}
    failed: list[str] = []
    total = 0.0
    for (label, _, _, w, _), r in zip(parts, results, strict=True):
        info[label] = {"reward": r.reward, "status": r.status, "weight": w, "info": r.info}
        if r.status != "ok":
            failed.append(label)
        else:
            assert r.reward is not None
            total += w * r.reward
    if failed:
        why = "; ".join(f"{p}: {info[p]['status']} ({info[p]['info'].get('message', '')})"
                        for p in failed)
        return VerifyResult.fail("error", f"part(s) not ok: {why}", failed=failed, parts=info)
    if normalize:
        total /= sum(abs(p[3]) for p in parts)
    return VerifyResult.ok(total, parts=info)


class CompositeVerifier(Verifier):
    name = "composite"
    description = "weighted sum of several verifiers; not ok if any part is not ok"
    reference_doc = "passed to every part, or reference[key] to parts that name a reference_key"
    runs_in = "pool"
    default_timeout_s = 10.0

    def __init__(self, parts: list[Part], normalize: bool = False) -> None:
        super().__init__(parts=parts, normalize=normalize)
        if not parts:
            raise ValueError("a composite needs at least one part")
        if normalize and sum(abs(p[3]) for p in parts) == 0:
            raise ValueError("normalize with all weights zero")
        self.parts = list(parts)
        self.normalize = normalize
        self._built: dict[str, Verifier] = {}

    def _part(self, i: int) -> Verifier:
        label, cls, opts, _, _ = self.parts[i]
        if label not in self._built:
            self._built[label] = cls(**opts)
        return self._built[label]

    def _sub_item(self, item: ScoreItem, key: str | None, label: str) -> ScoreItem:
        return ScoreItem(label, item.completion, _part_reference(item, key), item.prompt,
                         item.options, item.id)

    def verify(self, item: ScoreItem) -> VerifyResult:
        results = []
        for i, (label, _, _, _, key) in enumerate(self.parts):
            try:
                results.append(self._part(i).verify(self._sub_item(item, key, label)))
            except Exception as e:  # noqa: BLE001 - errors are data, per part
                results.append(VerifyResult.fail("error", f"{type(e).__name__}: {e}"))
        return combine(self.parts, results, self.normalize)


class LoopCompositeVerifier(CompositeVerifier):
    runs_in = "loop"
    default_timeout_s = 300.0

    def __init__(self, parts: list[Part], normalize: bool = False, pool_workers: int = 1) -> None:
        super().__init__(parts, normalize)
        self.pool_workers = pool_workers
        self._pool: Any = None
        self._pool_lock: asyncio.Lock | None = None

    async def _worker_pool(self) -> Any:
        from reward_server.dispatch import WorkerPool

        if self._pool_lock is None:
            self._pool_lock = asyncio.Lock()
        async with self._pool_lock:
            if self._pool is None:
                table = {p[0]: (p[1], p[2]) for p in self.parts if p[1].runs_in == "pool"}
                pool = WorkerPool(table, self.pool_workers)
                await pool.start()
                self._pool = pool
        return self._pool

    async def _run_part(self, i: int, items: list[ScoreItem]) -> list[VerifyResult]:
        label, cls, _, _, key = self.parts[i]
        results: list[VerifyResult | None] = [None] * len(items)
        subs: list[tuple[int, ScoreItem]] = []
        for j, it in enumerate(items):
            try:
                subs.append((j, self._sub_item(it, key, label)))
            except KeyError as e:
                results[j] = VerifyResult.fail("error", str(e))
        if subs:
            try:
                if cls.runs_in == "pool":
                    pool = await self._worker_pool()
                    t = float(cls.default_timeout_s)
                    out = await pool.submit(
                        [(label, s.completion, s.reference, s.prompt, s.options) for _, s in subs],
                        [t] * len(subs))
                else:
                    out = await self._part(i).averify_batch([s for _, s in subs])
                    if len(out) != len(subs):
                        raise ValueError(f"returned {len(out)} results for {len(subs)} items")
            except Exception as e:  # noqa: BLE001 - errors are data, per part
                out = [VerifyResult.fail("error", f"{type(e).__name__}: {e}")] * len(subs)
            for (j, _), r in zip(subs, out, strict=True):
                results[j] = r
        return [r for r in results if r is not None]

    def verify(self, item: ScoreItem) -> VerifyResult:  # pragma: no cover - loop only
        raise TypeError("LoopCompositeVerifier runs in the event loop: use averify_batch")

    async def averify_batch(self, items: list[ScoreItem]) -> list[VerifyResult]:
        per_part = await asyncio.gather(*(self._run_part(i, items) for i in range(len(self.parts))))
        return [combine(self.parts, [per_part[p][j] for p in range(len(self.parts))], self.normalize)
                for j in range(len(items))]

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        for v in self._built.values():
            await v.aclose()
