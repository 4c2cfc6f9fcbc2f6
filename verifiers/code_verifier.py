"""Code verifier (`"code"`): run the completion's program in the sandbox against tests.

Two reference forms:
- HumanEval style `{"tests": "<code defining check(candidate)>", "entry_point": "f"}`
  (optional `"prefix"`: code put before the program, e.g. the prompt's imports):
  reward 1.0 if `check(f)` returns, else 0.0.
- Competitive-programming style `{"io": [{"stdin": "...", "stdout": "..."}, ...]}`:
  one sandbox run per case, outputs compared line by line after whitespace
  normalisation (option `float_tol` for numeric tokens); reward is the fraction of
  cases passed, or 1/0 with option `all_or_nothing` (which stops at the first failure).

The program is the last fenced ```python (or untagged ```) block of the completion,
else the whole completion.

What differs from the usual "exit code 0 means pass" harness:
- A pass must be *proven*: the harness reads a fresh random nonce from stdin before
  the program runs, replaces stdin by /dev/null, and prints `RLVR-PASS <nonce>` only
  after `check()` returned. `exit(0)`, `os._exit(0)`, raising SystemExit inside a
  test, killing its own process or printing a fake success line all fail. (Residual
  risk, stated in the sandbox threat model: a program that introspects the harness
  in its own process could find the nonce.) For io problems the expected output
  never enters the sandbox at all.
- Status decisions: a program that fails, crashes, exceeds time, memory or output
  limits is *wrong*: status "ok", reward 0.0, with the sandbox status in
  `info["run_status"]`. Only a failure of the sandbox itself (status "error": it
  could not start, a layer is missing, the supervisor failed) is `error` with
  reward None, so the trainer masks the sample instead of punishing it.
"""

from __future__ import annotations

import math
import re
import secrets
from typing import Any

from sandbox.base import Limits, Program, RunResult
from verifiers.base import ScoreItem, Verifier, VerifyResult

_FENCE_RE = re.compile(r"```[ \t]*(python3?|py)[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_ANY_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)```", re.DOTALL)
PASS_MARK = "RLVR-PASS"

_HARNESS = '''\
def _rlvr_harness():
    import os, sys
    nonce = sys.stdin.readline().strip()
    fd = os.open("/dev/null", os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    write, flush = os.write, sys.stdout.flush
    ns = {{"__name__": "candidate", "__builtins__": __builtins__}}
    exec(compile({program!r}, "candidate.py", "exec"), ns)
    exec(compile({tests!r}, "tests.py", "exec"), ns)
    ns["check"](ns[{entry_point!r}])
    flush()
    write(1, ("\\n{mark} " + nonce + "\\n").encode())


_rlvr_harness()
'''


def extract_program(completion: str) -> str:
    """Last ```python block (or last untagged block), else the whole completion."""
    blocks = [m.group(2) for m in _FENCE_RE.finditer(completion)]
    if not blocks:
        blocks = [m.group(2) for m in _ANY_FENCE_RE.finditer(completion) if not m.group(1)]
    return blocks[-1] if blocks else completion


def _norm_lines(text: str) -> list[list[str]]:
    lines = [line.split() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def outputs_match(got: str, want: str, float_tol: float | None = None) -> bool:
    """Whitespace-normalised line comparison; numeric tokens within `float_tol`
    (absolute or relative to the expected value) when given."""
    a, b = _norm_lines(got), _norm_lines(want)
    if len(a) != len(b):
        return False
    for la, lb in zip(a, b, strict=True):
        if len(la) != len(lb):
            return False
        for ta, tb in zip(la, lb, strict=True):
            if ta == tb:
                continue
            if float_tol is None:
                return False
            try:
                fa, fb = float(ta), float(tb)
            except ValueError:
                return False
            if not (math.isfinite(fa) and math.isfinite(fb)):
                return False
            if abs(fa - fb) > float_tol * max(1.0, abs(fb)):
                return False
    return True


class CodeVerifier(Verifier):
    """Runs Python programs in the sandbox against HumanEval-style or io tests."""

    name = "code"
    description = "Python program checked by tests in the sandbox (HumanEval check() or stdin/stdout)."
    reference_doc = ('{"tests": "<code defining check(candidate)>", "entry_point": "name", '
                     '"prefix"?: "<code>"} or {"io": [{"stdin": "...", "stdout": "..."}, ...]}')
    runs_in = "pool"
    # A few io cases at a few seconds each, plus sandbox overhead; the per-case wall
    # limit and `total_time_s` below keep the verifier inside this.
    default_timeout_s = 60.0

    def __init__(
        self,
        *,
        backend: Any = None,
        timeout_s: float = 6.0,
        memory_mb: int = 512,
        max_processes: int = 16,
        max_output_bytes: int = 1 << 20,
        total_time_s: float = 40.0,
        float_tol: float | None = None,
        all_or_nothing: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        # A backend name ("native", "docker"; None: the default) or a backend instance.
        self.backend = backend
        self.limits = Limits(
            wall_time_s=timeout_s, cpu_time_s=timeout_s, memory_bytes=memory_mb << 20,
            max_processes=max_processes, max_output_bytes=max_output_bytes,
        )
        self.total_time_s = total_time_s
        self.float_tol = float_tol
        self.all_or_nothing = all_or_nothing

    def _run(self, program: Program) -> RunResult:
        import sandbox  # heavy-ish; keep the registry import cheap

        if self.backend is None or isinstance(self.backend, str):
            return sandbox.run(program, self.limits, backend=self.backend)
        return self.backend.run(program, self.limits)  # a backend instance (tests)

    def verify(self, item: ScoreItem) -> VerifyResult:
        ref = item.reference
        if not isinstance(ref, dict) or not ({"tests", "io"} & ref.keys()):
            return VerifyResult.fail("rejected", "reference must be a dict with 'tests' "
                                     "(and 'entry_point') or 'io'")
        opts = item.options or {}
        program = extract_program(item.completion)
        if "io" in ref:
            return self._verify_io(program, ref["io"], opts)
        if not isinstance(ref.get("entry_point"), str) or not isinstance(ref["tests"], str):
            return VerifyResult.fail("rejected", "'tests' and 'entry_point' must be strings")
        return self._verify_tests(ref.get("prefix", "") + program, ref["tests"],
                                  ref["entry_point"])

    def _verify_tests(self, program: str, tests: str, entry_point: str) -> VerifyResult:
        nonce = secrets.token_hex(16)
        code = _HARNESS.format(program=program, tests=tests, entry_point=entry_point,
                               mark=PASS_MARK)
        r = self._run(Program(code=code, stdin=nonce + "\n"))
        if r.status == "error":
            return VerifyResult.fail("error", f"sandbox: {r.message}")
        lines = r.stdout.rstrip("\n").rsplit("\n", 1)
        proven = r.status == "ok" and r.exit_code == 0 and lines[-1] == f"{PASS_MARK} {nonce}"
        info: dict[str, Any] = {"run_status": r.status, "exit_code": r.exit_code,
                                "wall_time_s": round(r.wall_time_s, 4)}
        if not proven:
            info["stderr_tail"] = r.stderr[-500:]
            if r.status == "ok" and r.exit_code == 0:
                info["message"] = "exited without proving that every test ran"
            elif r.message:
                info["message"] = r.message
        return VerifyResult.ok(1.0 if proven else 0.0, **info)

    def _verify_io(self, program: str, cases: Any, opts: dict[str, Any]) -> VerifyResult:
        if not isinstance(cases, list) or not cases or not all(
            isinstance(c, dict) and isinstance(c.get("stdout"), str) for c in cases
        ):
            return VerifyResult.fail("rejected", "'io' must be a non-empty list of "
                                     "{'stdin': str, 'stdout': str}")
        float_tol = opts.get("float_tol", self.float_tol)
        all_or_nothing = bool(opts.get("all_or_nothing", self.all_or_nothing))
        passed, spent = 0, 0.0
        statuses: list[str] = []
        for case in cases:
            if spent > self.total_time_s:
                statuses.append("skipped")  # over the budget: counted as failed
                continue
            r = self._run(Program(code=program, stdin=str(case.get("stdin", ""))))
            spent += r.wall_time_s
            if r.status == "error":
                return VerifyResult.fail("error", f"sandbox: {r.message}", cases_run=len(statuses))
            ok = r.status == "ok" and r.exit_code == 0 and outputs_match(
                r.stdout, case["stdout"], float_tol)
            statuses.append("pass" if ok else (r.status if r.status != "ok" else
                                               ("wrong" if r.exit_code == 0 else "crash")))
            passed += ok
            if all_or_nothing and not ok:
                break
        n = len(cases)
        reward = float(passed == n) if all_or_nothing else passed / n
        return VerifyResult.ok(reward, passed=passed, total=n, cases=statuses)
