"""Client of the reward server: batching, concurrency limit, retries, several URLs.

The trainer reaches the reward server only through this module (HTTP), sharing
nothing with `reward_server/` but its wire schemas. Unlike a bare `httpx.post`, a
transport failure or a 5xx is retried with exponential backoff on the next URL, and
what cannot be recovered raises a typed error instead of turning into rewards of 0.

Exception tree:

    RewardClientError                 any failure of this client
    ├── RewardTransportError          connect/read failures after all retries
    │   └── RewardTimeoutError        the request timed out (after all retries)
    ├── RewardServerError             5xx after all retries (.status_code)
    ├── RewardAuthError               401/403: missing or wrong API key (not retried)
    └── RewardProtocolError           4xx other than auth, or a malformed response
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import httpx

from reward_server.schemas import ScoreRequestItem, ScoreResult

T = TypeVar("T")


class RewardClientError(Exception):
    """Base class of every error raised by this client."""


class RewardTransportError(RewardClientError):
    """The server could not be reached or the connection broke (after all retries)."""


class RewardTimeoutError(RewardTransportError):
    """A request exceeded its timeout (after all retries)."""


class RewardServerError(RewardClientError):
    """The server answered 5xx (after all retries)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code


class RewardAuthError(RewardClientError):
    """401/403: the API key is missing or wrong. Not retried."""


class RewardProtocolError(RewardClientError):
    """A 4xx other than auth (the request was wrong) or a response of the wrong shape."""


def _as_payload(item: ScoreRequestItem | dict[str, Any]) -> dict[str, Any]:
    if isinstance(item, ScoreRequestItem):
        return item.model_dump(exclude_none=True)
    return item


class RewardClient:
    """Async client. `results = await client.score(items)`, same order as `items`.

    Items are sent in batches of `batch_size`, at most `max_concurrency` requests at
    once, each with a `timeout_s` limit. A transport error, timeout or 5xx is retried
    up to `retries` times with exponential backoff (`backoff_s` * 2^attempt, jittered),
    each attempt on the next URL in round-robin order; a URL that just failed is
    skipped for `down_s` seconds unless all are down.
    """

    def __init__(
        self,
        urls: Sequence[str] | str,
        *,
        api_key: str | None = None,
        max_concurrency: int = 8,
        batch_size: int = 256,
        timeout_s: float = 60.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        down_s: float = 5.0,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("at least one server URL is required")
        self.urls = [u.rstrip("/") for u in self.urls]
        self.batch_size = batch_size
        self.retries = retries
        self.backoff_s = backoff_s
        self.down_s = down_s
        self._sem = asyncio.Semaphore(max_concurrency)
        self._next = itertools.cycle(range(len(self.urls)))
        # URL index -> monotonic time until which it is skipped (after a transport
        # error or a 5xx); if every URL is marked down, the rotation uses them anyway.
        self._down_until: dict[int, float] = {}
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s), headers=headers,
            limits=httpx.Limits(max_connections=max_concurrency * 2),
        )

    async def __aenter__(self) -> RewardClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def score(self, items: Sequence[ScoreRequestItem | dict[str, Any]]) -> list[ScoreResult]:
        payload = [_as_payload(it) for it in items]
        chunks = [payload[i : i + self.batch_size] for i in range(0, len(payload), self.batch_size)]
        outs = await asyncio.gather(*(self._post_chunk(c) for c in chunks))
        return [r for out in outs for r in out]

    async def _post_chunk(self, chunk: list[dict[str, Any]]) -> list[ScoreResult]:
        data = await self.post_json("/v1/score", {"items": chunk})
        try:
            results = [ScoreResult.model_validate(r) for r in data["results"]]
        except Exception as e:
            raise RewardProtocolError(f"malformed response: {e}") from e
        if len(results) != len(chunk):
            raise RewardProtocolError(f"{len(results)} results for {len(chunk)} items")
        return results

    def _pick(self) -> int:
        """Next URL in round-robin order, skipping ones that failed in the last `down_s`."""
        now = time.monotonic()
        for _ in range(len(self.urls)):
            i = next(self._next)
            if self._down_until.get(i, 0.0) <= now:
                return i
        return next(self._next)

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        """POST with retries over the URLs; returns the decoded JSON body."""
        last: Exception | None = None
        async with self._sem:
            for attempt in range(self.retries + 1):
                i = self._pick()
                url = self.urls[i] + path
                try:
                    resp = await self._http.post(url, json=body)
                except httpx.TimeoutException as e:
                    last = RewardTimeoutError(f"{url}: timed out ({e!r})")
                except httpx.TransportError as e:
                    last = RewardTransportError(f"{url}: {type(e).__name__}: {e}")
                else:
                    if resp.status_code in (401, 403):
                        raise RewardAuthError(f"{url}: HTTP {resp.status_code}: {resp.text[:200]}")
                    if resp.status_code >= 500:
                        last = RewardServerError(resp.status_code, f"{url}: {resp.text[:200]}")
                    elif resp.status_code >= 400:
                        raise RewardProtocolError(f"{url}: HTTP {resp.status_code}: {resp.text[:500]}")
                    else:
                        try:
                            return resp.json()
                        except ValueError as e:
                            raise RewardProtocolError(f"{url}: response is not JSON") from e
                self._down_until[i] = time.monotonic() + self.down_s
                if attempt < self.retries:
                    delay = self.backoff_s * (2**attempt) * (1 + 0.25 * random.random())
                    await asyncio.sleep(delay)
        assert last is not None
        raise last

    async def get_json(self, path: str) -> Any:
        resp = await self._http.get(self.urls[0] + path)
        resp.raise_for_status()
        return resp.json()


class SyncRewardClient:
    """Blocking wrapper for scripts: runs a `RewardClient` on a private event loop thread."""

    def __init__(self, urls: Sequence[str] | str, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def make() -> RewardClient:
            return RewardClient(urls, **kwargs)

        self._client = self._run(make())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def score(self, items: Sequence[ScoreRequestItem | dict[str, Any]]) -> list[ScoreResult]:
        return self._run(self._client.score(items))

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        return self._run(self._client.post_json(path, body))

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._client.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()

    def __enter__(self) -> SyncRewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalRewardServer:
    """`rlvr serve` in a subprocess on a free loopback port; `.url` once healthy."""

    def __init__(
        self,
        workers: int | None = None,
        config: str | None = None,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 60.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.port = free_port(host)
        self.url = f"http://{host}:{self.port}"
        cmd = [sys.executable, "-m", "rlvr.cli", "serve", "--host", host, "--port", str(self.port)]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        if config is not None:
            cmd += ["--config", str(config)]
        cmd += list(extra_args)
        self.cmd = cmd
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def log_tail(self, n: int = 2000) -> str:
        """The last `n` characters the server wrote to stderr."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-n:]

    def start(self) -> LocalRewardServer:
        # stderr goes to a temporary file, never to a pipe nobody reads (a full pipe
        # would block the server on its next log line).
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.cmd, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=self._log
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.log_tail()
                raise RuntimeError(f"reward server exited with {self.proc.returncode}: {err}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        err = self.log_tail()
        self.stop()
        raise RuntimeError(
            f"reward server did not become healthy within {self.startup_timeout_s} s: {err}"
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalRewardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
