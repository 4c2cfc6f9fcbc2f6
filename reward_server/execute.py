"""`POST /v1/execute`: run one program in the sandbox and return the raw result.

For custom verifiers and debugging, in the spirit of SandboxFusion's `/run_code`.
Differences: requested limits are *capped* by server-side maxima (`MAX_LIMITS`, or
`RLVR_EXECUTE_MAX_*` environment variables) instead of trusted, and a sandbox that
cannot run is reported as a result with `status: "error"` (HTTP 200), like any other
outcome; only a malformed request is a 422.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import PurePosixPath

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from sandbox.base import Limits, Program

router = APIRouter()


def _env_limits() -> Limits:
    e = os.environ
    return Limits(
        wall_time_s=float(e.get("RLVR_EXECUTE_MAX_WALL_S", 30.0)),
        cpu_time_s=float(e.get("RLVR_EXECUTE_MAX_CPU_S", 30.0)),
        memory_bytes=int(e.get("RLVR_EXECUTE_MAX_MEMORY_BYTES", 2 << 30)),
        max_processes=int(e.get("RLVR_EXECUTE_MAX_PROCESSES", 64)),
        max_output_bytes=int(e.get("RLVR_EXECUTE_MAX_OUTPUT_BYTES", 16 << 20)),
        max_file_bytes=int(e.get("RLVR_EXECUTE_MAX_FILE_BYTES", 64 << 20)),
    )


MAX_LIMITS = _env_limits()


class LimitsIn(BaseModel):
    """Requested limits; each is capped by the server's maximum."""

    model_config = ConfigDict(extra="forbid")
    wall_time_s: float | None = Field(None, gt=0)
    cpu_time_s: float | None = Field(None, gt=0)
    memory_bytes: int | None = Field(None, gt=0)
    max_processes: int | None = Field(None, ge=1)
    max_output_bytes: int | None = Field(None, ge=0)
    max_file_bytes: int | None = Field(None, ge=0)


class ExecuteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: str = Field("python", description="Language of `code` (python, cpp).")
    code: str
    stdin: str = ""
    files: dict[str, str] = Field(default_factory=dict,
                                  description="Extra files, relative path -> text.")
    limits: LimitsIn = Field(default_factory=LimitsIn)
    backend: str | None = Field(None, description="Sandbox backend; default native.")


def effective_limits(req: LimitsIn, cap: Limits = MAX_LIMITS) -> Limits:
    """Defaults from `Limits()`, requested values, each capped by `cap`."""
    base = dataclasses.asdict(Limits())
    out = {}
    for name, default in base.items():
        want = getattr(req, name)
        out[name] = min(want if want is not None else default, getattr(cap, name))
    return Limits(**out)


@router.post("/v1/execute")
async def execute(req: ExecuteRequest) -> dict:
    import sandbox

    for name in req.files:
        p = PurePosixPath(name)
        if not name or p.is_absolute() or ".." in p.parts:
            raise HTTPException(422, f"file name {name!r} must be relative, without '..'")
    limits = effective_limits(req.limits)
    program = Program(code=req.code, language=req.language, stdin=req.stdin, files=req.files)
    result = await run_in_threadpool(sandbox.run, program, limits, req.backend)
    return {**dataclasses.asdict(result), "limits": dataclasses.asdict(limits)}
