"""Remote verifier: a user's own verifier service, called over HTTP.

The service speaks the reward server's own protocol: `POST {"items": [...]}` with
items shaped like `/v1/score` items, answered by `{"results": [...]}` (one result per
item, same order, `reward` null exactly when `status != "ok"`). See
`examples/custom_verifier/` for a service to copy.

What differs from a plain `httpx.post` in a loop:

- Only the configured URL is ever called. It comes from the server config when the
  verifier is built; nothing in a request (item options included) can change it,
  and redirects are not followed (a 3xx is an error), so a request can never make
  the server call a host of its choosing.
- Timeouts, and retries with exponential backoff and jitter on transport errors,
  timeouts, 5xx and 429. Other 4xx are not retried: the request itself was wrong.
- A circuit breaker: after `failure_threshold` consecutive failed calls (after their
  retries) the circuit opens and items fail at once with status `error`, message
  "circuit open", without touching the network; after `cooldown_s` one trial call
  is let through (half-open) and its outcome closes or re-opens the circuit.
- A response of the wrong shape is an error for every item of the call, never a
  partial score; per-item errors the service reports itself are data, passed
  through, and do not count against the circuit.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any, Literal
from urllib.parse import urlsplit

from verifiers.base import STATUSES, ScoreItem, Verifier, VerifyResult


class RemoteCallError(Exception):
    """One call to the remote service failed (after retries)."""


class CircuitBreaker:
    """closed -> (N consecutive failures) -> open -> (cooldown) -> half-open -> one trial
    call -> closed on success, open again on failure."""

    def __init__(self, failure_threshold: int, cooldown_s: float, clock: Any = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.trial_in_flight = False
        self.opened_count = 0

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one trial call at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.trial_in_flight = False

    def failure(self) -> None:
        self.failures += 1
        if self.trial_in_flight or self.failures >= self.failure_threshold:
            if self.opened_at is None or self.trial_in_flight:
                self.opened_count += 1
            self.opened_at = self.clock()
        self.trial_in_flight = False


def _parse_result(raw: Any) -> VerifyResult:
    """One result of the remote's response, validated strictly."""
    if not isinstance(raw, dict):
        raise ValueError(f"result is {type(raw).__name__}, not an object")
    status = raw.get("status")
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    reward = raw.get("reward")
    if reward is not None:
        if isinstance(reward, bool) or not isinstance(reward, int | float):
            raise ValueError(f"reward {reward!r} is not a number")
        if not math.isfinite(reward):
            raise ValueError(f"reward {reward!r} is not finite")
    info = raw.get("info") or {}
    if not isinstance(info, dict):
        raise ValueError("info is not an object")
    return VerifyResult(None if reward is None else float(reward), status, dict(info))


class RemoteVerifier(Verifier):
    name = "remote"
    description = "a verifier service over HTTP, called with the /v1/score item and result shapes"
    reference_doc = "passed through to the remote service unchanged"
    runs_in = "loop"
    default_timeout_s = 120.0

    def __init__(
        self,
        url: str,
        *,
        remote_verifier: str | None = None,
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        batch_size: int = 256,
        max_concurrency: int = 4,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """`url`: the full endpoint, e.g. "http://127.0.0.1:9000/score" (http or https).
        `remote_verifier`: the `verifier` field sent with each item (default: the
        item's own). `timeout_s` is per HTTP attempt; `retries` extra attempts."""
        super().__init__(url=url)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"remote verifier url must be http(s)://host/...: got {url!r}")
        if retries < 0 or failure_threshold < 1 or batch_size < 1 or max_concurrency < 1:
            raise ValueError("retries >= 0, failure_threshold >= 1, batch_size >= 1, "
                             "max_concurrency >= 1")
        self.url = url
        self.remote_verifier = remote_verifier
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.headers = dict(headers or {})
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.breaker = CircuitBreaker(failure_threshold, cooldown_s)
        self.calls = 0  # HTTP attempts made (tests, metrics)
        self._client: Any = None
        self._sem: asyncio.Semaphore | None = None

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            # follow_redirects=False: a 3xx could point anywhere; it is an error here.
            self._client = httpx.AsyncClient(
                timeout=self.timeout_s, follow_redirects=False, headers=self.headers,
                trust_env=False,  # no proxy from the environment: only the configured host
            )
            self._sem = asyncio.Semaphore(self.max_concurrency)
        return self._client

    def _payload(self, items: list[ScoreItem]) -> dict[str, Any]:
        return {"items": [
            {"id": it.id, "verifier": self.remote_verifier or it.verifier, "prompt": it.prompt,
             "completion": it.completion, "reference": it.reference, "options": it.options or None}
            for it in items
        ]}

    async def _call(self, items: list[ScoreItem]) -> list[VerifyResult]:
        """One logical call with retries; raises RemoteCallError when it finally fails."""
        import httpx

        client = self._http()
        body = self._payload(items)
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
            self.calls += 1
            try:
                resp = await client.post(self.url, json=body)
            except httpx.TimeoutException as e:
                last = f"timeout after {self.timeout_s:g} s ({type(e).__name__})"
                continue
            except httpx.TransportError as e:
                last = f"transport error: {type(e).__name__}: {e}"
                continue
            if resp.status_code >= 500 or resp.status_code == 429:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                continue
            if resp.status_code != 200:  # 3xx (not followed) and 4xx: not retried
                raise RemoteCallError(f"HTTP {resp.status_code}: {resp.text[:200]}")
            try:
                data = resp.json()
                results = data["results"]
                if not isinstance(results, list) or len(results) != len(items):
                    raise ValueError(
                        f"{len(results) if isinstance(results, list) else 'no'} results for "
                        f"{len(items)} items")
                return [_parse_result(r) for r in results]
            except (ValueError, KeyError, TypeError) as e:
                raise RemoteCallError(f"invalid response: {type(e).__name__}: {e}") from None
        raise RemoteCallError(f"{self.retries + 1} attempt(s) failed; last: {last}")

    async def _chunk(self, items: list[ScoreItem]) -> list[VerifyResult]:
        self._http()
        assert self._sem is not None
        async with self._sem:
            if not self.breaker.allow():
                return [VerifyResult.fail("error", "circuit open", remote=self.url,
                                          consecutive_failures=self.breaker.failures)] * len(items)
            try:
                out = await self._call(items)
            except RemoteCallError as e:
                self.breaker.failure()
                return [VerifyResult.fail("error", f"remote verifier failed: {e}",
                                          remote=self.url)] * len(items)
            except BaseException:
                # cancelled (server timeout) or a bug: release a half-open trial slot
                self.breaker.trial_in_flight = False
                raise
            self.breaker.success()
            return out

    async def averify_batch(self, items: list[ScoreItem]) -> list[VerifyResult]:
        chunks = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        outs = await asyncio.gather(*(self._chunk(c) for c in chunks))
        return [r for out in outs for r in out]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
