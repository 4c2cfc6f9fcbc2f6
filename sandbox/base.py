"""The sandbox contract: `run(program, limits) -> RunResult` for untrusted programs.

Backends (native isolation layers, Docker) implement `SandboxBackend`; the code
verifier and `POST /v1/execute` only see this module's types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

RunStatus = Literal["ok", "timeout", "memory", "output_limit", "error"]


@dataclass(frozen=True)
class Limits:
    """Resource limits for one job. Sizes in bytes, times in seconds."""

    wall_time_s: float = 10.0
    cpu_time_s: float = 10.0
    memory_bytes: int = 512 * 1024 * 1024
    max_processes: int = 16
    max_output_bytes: int = 1024 * 1024
    max_file_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class Program:
    """What to run. `files` are written into the private scratch directory first."""

    code: str
    language: str = "python"
    stdin: str = ""
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    status: RunStatus
    exit_code: int | None
    stdout: str
    stderr: str
    wall_time_s: float
    cpu_time_s: float
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    message: str = ""


class SandboxBackend(Protocol):
    name: str

    def run(self, program: Program, limits: Limits) -> RunResult: ...

    def close(self) -> None: ...
