"""FastAPI app of the reward server: `/v1/score`, `/v1/verifiers`, `/get_reward`, ...

What differs from a plain "call the reward function" endpoint: every item comes back
with a status, and an item that could not be scored (`timeout`, `error`,
`rejected`) has `reward: null` rather than 0, so a trainer can mask it. One bad
item never fails its batch; a malformed request is a 422 naming the field, an
oversized body a 413, and no input takes the server down.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from pydantic_core import to_json
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reward_server.dispatch import ItemTuple, VerifierTable, WorkerPool
from reward_server.execute import router as execute_router
from reward_server.metrics import Metrics
from reward_server.schemas import OpenRLHFRequest, ScoreRequest
from reward_server.settings import Settings
from verifiers.base import ScoreItem, Verifier, VerifyResult
from verifiers.registry import VERIFIERS


class BodyLimitMiddleware:
    """413 for bodies over the limit, by Content-Length and while reading the stream."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _reject(self, send: Send) -> None:
        body = b'{"detail":"request body too large"}'
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    if int(v) > self.limit:
                        await self._reject(send)
                        return
                except ValueError:
                    pass
        chunks: list[bytes] = []
        total = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            part = msg.get("body", b"")
            total += len(part)
            if total > self.limit:
                await self._reject(send)
                return
            chunks.append(part)
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def build_table(settings: Settings) -> VerifierTable:
    """Verifier name -> (class, constructor options) from the registry and settings,
    plus the user's `[plugins]` entries (checked here, so a bad entry stops start-up)."""
    from verifiers.plugins import resolve_verifiers

    table: VerifierTable = {
        name: (cls, dict(settings.verifier(name).options)) for name, cls in VERIFIERS.items()
    }
    if settings.plugins:
        table.update(resolve_verifiers(settings.plugins, base=table))
    return table


class Scorer:
    """Routes items to the worker pool (pool verifiers) or the event loop (loop ones)."""

    def __init__(self, settings: Settings, table: VerifierTable, metrics: Metrics) -> None:
        self.settings = settings
        self.table = table
        self.metrics = metrics
        self.pool: WorkerPool | None = None
        self.loop_verifiers: dict[str, Verifier] = {}

    def timeout_for(self, name: str) -> float:
        t = self.settings.verifier(name).timeout_s
        return float(t) if t is not None else float(self.table[name][0].default_timeout_s)

    async def start(self) -> None:
        pool_table = {n: e for n, e in self.table.items() if e[0].runs_in == "pool"}
        self.pool = WorkerPool(
            pool_table, self.settings.workers, self.settings.chunk_size, self.metrics.observe
        )
        await self.pool.start()

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        for v in self.loop_verifiers.values():
            await v.aclose()

    def _loop_verifier(self, name: str) -> Verifier:
        v = self.loop_verifiers.get(name)
        if v is None:
            cls, opts = self.table[name]
            v = self.loop_verifiers[name] = cls(**opts)
        return v

    async def _run_loop(self, name: str, items: list[ScoreItem]) -> list[VerifyResult]:
        t0 = time.perf_counter()
        timeout = self.timeout_for(name)
        try:
            out = await asyncio.wait_for(self._loop_verifier(name).averify_batch(items), timeout)
            if len(out) != len(items):
                raise ValueError(f"returned {len(out)} results for {len(items)} items")
        except TimeoutError:
            out = [VerifyResult.fail("timeout", f"verification exceeded {timeout:g} s")] * len(items)
        except Exception as e:  # noqa: BLE001 - errors are data
            out = [VerifyResult.fail("error", f"{type(e).__name__}: {e}")] * len(items)
        elapsed = (time.perf_counter() - t0) / max(1, len(items))
        for r in out:
            self.metrics.observe(name, r, elapsed)
        return out

    async def score(self, items: list[ScoreItem]) -> list[VerifyResult]:
        results: list[VerifyResult | None] = [None] * len(items)
        pool_idx: list[int] = []
        pool_items: list[ItemTuple] = []
        pool_timeouts: list[float] = []
        loop_groups: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            entry = self.table.get(it.verifier)
            if entry is None:
                results[i] = VerifyResult.fail(
                    "rejected", f"unknown verifier {it.verifier!r}; known: {sorted(self.table)}"
                )
                self.metrics.items.labels("unknown", "rejected").inc()
            elif entry[0].runs_in == "pool":
                pool_idx.append(i)
                pool_items.append((it.verifier, it.completion, it.reference, it.prompt, it.options))
                pool_timeouts.append(self.timeout_for(it.verifier))
            else:
                loop_groups.setdefault(it.verifier, []).append(i)
        jobs: list[tuple[list[int], Awaitable[list[VerifyResult]]]] = []
        if pool_items:
            assert self.pool is not None
            jobs.append((pool_idx, self.pool.submit(pool_items, pool_timeouts)))
        for name, idxs in loop_groups.items():
            jobs.append((idxs, self._run_loop(name, [items[i] for i in idxs])))
        n_pending = len(items) - sum(r is not None for r in results)
        self.metrics.in_flight.inc(n_pending)
        try:
            outs = await asyncio.gather(*(j for _, j in jobs))
        finally:
            self.metrics.in_flight.dec(n_pending)
            if self.pool is not None:
                self.metrics.workers_replaced.set(self.pool.replaced)
        for (idxs, _), out in zip(jobs, outs, strict=True):
            for i, r in zip(idxs, out, strict=True):
                results[i] = r
        final: list[VerifyResult] = []
        for r in results:
            assert r is not None
            if r.reward is not None and not math.isfinite(r.reward):
                r = VerifyResult.fail("error", f"verifier returned a non-finite reward {r.reward}")
            final.append(r)
        return final


def completion_of(query: str, prompt: str | None) -> str:
    """The response part of an OpenRLHF query (prompt + response, decoded with special
    tokens, so it may carry left padding before the prompt). Without the prompt in it,
    the whole query is the completion."""
    if not prompt:
        return query
    at = query.find(prompt)
    return query[at + len(prompt):] if at >= 0 else query


def _result_json(item_id: str | None, r: VerifyResult) -> dict[str, Any]:
    return {"id": item_id, "reward": r.reward, "status": r.status, "info": r.info}


def create_app(settings: Settings | None = None, table: VerifierTable | None = None) -> FastAPI:
    """Build the app. `table` overrides the verifier registry (tests, plug-ins)."""
    settings = settings or Settings()
    metrics = Metrics()
    scorer = Scorer(settings, table if table is not None else build_table(settings), metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await scorer.start()
        try:
            yield
        finally:
            await scorer.close()

    app = FastAPI(title="rlvr reward server", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.scorer = scorer
    app.state.metrics = metrics
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)

    async def require_auth(request: Request) -> None:
        if not settings.api_key:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), settings.api_key.encode()
        ):
            raise HTTPException(401, "missing or invalid bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        fields = [".".join(str(p) for p in e.get("loc", ()) if p != "body") for e in errors]
        message = "; ".join(f"{f or 'body'}: {e.get('msg')}" for f, e in zip(fields, errors, strict=True))
        metrics.requests.labels(request.url.path, "422").inc()
        return JSONResponse(
            status_code=422,
            content={"detail": message, "fields": fields,
                     "errors": [{"loc": e.get("loc"), "msg": e.get("msg"), "type": e.get("type")}
                                for e in errors]},
        )

    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        metrics.requests.labels(request.url.path, "500").inc()
        return JSONResponse(status_code=500, content={"detail": f"{type(exc).__name__}: {exc}"})

    def timed(endpoint: str) -> Callable[[float], None]:
        t0 = time.perf_counter()

        def done(_: float = 0.0) -> None:
            metrics.request_latency.labels(endpoint).observe(time.perf_counter() - t0)
            metrics.requests.labels(endpoint, "200").inc()

        return done

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        pool = scorer.pool
        return {"status": "ok", "workers": pool.alive_workers() if pool else 0,
                "verifiers": sorted(scorer.table)}

    @app.get("/metrics", dependencies=[Depends(require_auth)])
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/verifiers", dependencies=[Depends(require_auth)])
    async def list_verifiers() -> dict[str, Any]:
        return {"verifiers": [
            {"name": n, "description": cls.description, "reference": cls.reference_doc,
             "runs_in": cls.runs_in, "timeout_s": scorer.timeout_for(n)}
            for n, (cls, _) in sorted(scorer.table.items())
        ]}

    score_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": ScoreRequest.model_json_schema()}}}}

    @app.post("/v1/score", dependencies=[Depends(require_auth)], openapi_extra=score_body)
    async def score(request: Request) -> Response:
        done = timed("/v1/score")
        # One pass of pydantic-core's JSON parser validates and decodes the body;
        # this is the hot path, about twice as fast as json.loads + validate.
        try:
            req = ScoreRequest.model_validate_json(await request.body())
        except ValidationError as e:
            raise RequestValidationError(
                [{**err, "loc": ("body", *err["loc"])} for err in e.errors()]
            ) from None
        if len(req.items) > settings.max_items:
            raise HTTPException(413, f"too many items: {len(req.items)} > {settings.max_items}")
        items = [ScoreItem(it.verifier, it.completion, it.reference, it.prompt,
                           it.options or {}, it.id) for it in req.items]
        results = await scorer.score(items)
        done()
        body = {"results": [_result_json(it.id, r) for it, r in zip(items, results, strict=True)]}
        return Response(to_json(body), media_type="application/json")

    @app.post("/get_reward", dependencies=[Depends(require_auth)])
    async def get_reward(req: OpenRLHFRequest) -> JSONResponse:
        """OpenRLHF's `--remote_rm_url` protocol, scored by `settings.default_verifier`.

        OpenRLHF posts `{"query", "prompts", "labels"}` and reads `rewards` (advantages),
        `scores` (dynamic filtering) and `extra_logs` (each key a per-sample list that it
        concatenates across requests, so the keys never vary). The protocol has no way
        to say "unscored": with `openrlhf_unscored = "zero"` (default) such an item gets
        0.0 and `extra_logs["scored"] = 0`; with `"error"` the request fails with 503
        and OpenRLHF retries it.
        """
        done = timed("/get_reward")
        n = len(req.query)
        for name, seq in (("prompts", req.prompts), ("labels", req.labels)):
            if seq is not None and len(seq) != n:
                raise HTTPException(422, f"{name}: length {len(seq)} != len(query) {n}")
        items = []
        for i, q in enumerate(req.query):
            p = req.prompts[i] if req.prompts is not None else None
            items.append(ScoreItem(settings.default_verifier, completion_of(q, p),
                                   req.labels[i] if req.labels is not None else None, p))
        results = await scorer.score(items)
        scored = [r.status == "ok" for r in results]
        if settings.openrlhf_unscored == "error" and not all(scored):
            bad = [r.info.get("message", r.status) for r in results if r.status != "ok"]
            raise HTTPException(503, f"{len(bad)} item(s) could not be scored: {bad[:3]}")
        rewards = [r.reward if r.reward is not None else 0.0 for r in results]
        done()
        return JSONResponse({
            "rewards": rewards,
            "scores": rewards,
            "extra_logs": {
                "scored": [1.0 if s else 0.0 for s in scored],
                "timeout": [1.0 if r.status == "timeout" else 0.0 for r in results],
                "error": [1.0 if r.status in ("error", "rejected") else 0.0 for r in results],
            },
        })

    app.include_router(execute_router, dependencies=[Depends(require_auth)])
    return app
