"""Learned reward model (`"rm"`): the scalar of a Bradley-Terry model trained with
`rlvr train-rm`, for prompt + completion. The reference is ignored.

A loop verifier, deliberately not a pool one: a reward model wants large batches and
one copy of its weights per server process, not one per worker. So:

- the model is loaded once per process (a module-level cache keyed by path, shared
  by every verifier instance that names the same model, e.g. "rm" on its own and
  inside a composite), on first use, in a thread so the event loop keeps serving;
- items of concurrent requests are coalesced: they wait in one queue, and a single
  consumer runs a forward pass over up to `batch_size` of them at a time in a
  worker thread (torch releases the GIL), so forward passes never overlap and a
  burst of small requests still runs as full batches, with no added wait when idle;
- normalisation is explicit: "none" (raw scalar), "sigmoid" (sigmoid(r), in (0, 1)),
  or "zscore" ((r - mean) / std with `mean`/`std` from the config, else from the
  `rm_stats.json` saved with the model). The raw scalar is always in `info.raw`.

A model that fails to load or a forward pass that raises gives status `error` for
the items concerned, never a reward of 0.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from pathlib import Path
from typing import Any, Literal

from verifiers.base import ScoreItem, Verifier, VerifyResult

# path -> (model, tokenizer, stats); one copy per process
_MODELS: dict[str, tuple[Any, Any, dict[str, Any]]] = {}
_LOAD_LOCK = threading.Lock()


def load_cached(path: str) -> tuple[Any, Any, dict[str, Any]]:
    """The reward model at `path`, loaded once per process."""
    key = str(Path(path).resolve())
    with _LOAD_LOCK:
        if key not in _MODELS:
            from rlvr.reward_model import STATS_FILE, load_reward_model

            model, tok = load_reward_model(key)
            stats_path = Path(key) / STATS_FILE
            stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
            _MODELS[key] = (model, tok, stats)
        return _MODELS[key]


class RewardModelVerifier(Verifier):
    name = "rm"
    description = "learned Bradley-Terry reward model (rlvr train-rm) scoring prompt + completion"
    reference_doc = "ignored"
    runs_in = "loop"
    default_timeout_s = 120.0  # per request; the first one includes loading the model

    def __init__(
        self,
        path: str,
        *,
        normalize: Literal["none", "sigmoid", "zscore"] = "none",
        mean: float | None = None,
        std: float | None = None,
        batch_size: int = 32,
        max_length: int = 512,
        num_threads: int | None = None,
    ) -> None:
        super().__init__(path=path, normalize=normalize)
        if normalize not in ("none", "sigmoid", "zscore"):
            raise ValueError(f"normalize must be none, sigmoid or zscore, not {normalize!r}")
        if std is not None and std <= 0:
            raise ValueError("std must be > 0")
        self.path = path
        self.normalize = normalize
        self.mean = mean
        self.std = std
        self.batch_size = batch_size
        self.max_length = max_length
        self.num_threads = num_threads
        self.forward_passes = 0  # batches run (tests, metrics)
        self._queue: list[tuple[ScoreItem, asyncio.Future[VerifyResult]]] = []
        self._consumer: asyncio.Task[None] | None = None

    def _norm(self, raw: float, stats: dict[str, Any]) -> float:
        if self.normalize == "sigmoid":
            return 1.0 / (1.0 + math.exp(-raw)) if raw >= 0 else math.exp(raw) / (1.0 + math.exp(raw))
        if self.normalize == "zscore":
            mean = self.mean if self.mean is not None else stats.get("mean", 0.0)
            std = self.std if self.std is not None else stats.get("std", 1.0)
            return (raw - mean) / std
        return raw

    def _forward(self, items: list[ScoreItem]) -> list[VerifyResult]:
        """Runs in a worker thread: load (once) and score one batch."""
        import torch

        from rlvr.reward_model import rm_text, score_texts

        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        model, tok, stats = load_cached(self.path)
        texts = [rm_text(it.prompt, it.completion, tok.eos_token) for it in items]
        raw = score_texts(model, tok, texts, batch_size=len(texts), max_length=self.max_length)
        self.forward_passes += 1
        out = []
        for r in raw.tolist():
            if not math.isfinite(r):
                out.append(VerifyResult.fail("error", f"reward model produced {r}"))
            else:
                out.append(VerifyResult.ok(self._norm(r, stats), raw=r, normalize=self.normalize))
        return out

    async def _consume(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.batch_size], self._queue[self.batch_size :]
            batch = [(it, fut) for it, fut in batch if not fut.done()]  # drop cancelled
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(self._forward, [it for it, _ in batch])
            except Exception as e:  # noqa: BLE001 - errors are data
                results = [VerifyResult.fail("error", f"reward model failed: {type(e).__name__}: {e}")
                           for _ in batch]
            for (_, fut), r in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(r)
        self._consumer = None

    async def averify_batch(self, items: list[ScoreItem]) -> list[VerifyResult]:
        loop = asyncio.get_running_loop()
        futs = [loop.create_future() for _ in items]
        self._queue.extend(zip(items, futs, strict=True))
        if self._consumer is None:
            self._consumer = asyncio.create_task(self._consume())
        return list(await asyncio.gather(*futs))

    async def aclose(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            self._consumer = None
