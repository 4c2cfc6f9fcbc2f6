"""LLM judge (`"judge"`): grades a completion against a rubric through any
OpenAI-compatible chat endpoint (vLLM's `vllm serve`, or a hosted provider).

The item's `reference` is the rubric, in one of two shapes:

- criteria: `[{"criterion": "states the final answer", "weight": 1.0},
  {"criterion": "insults the user", "weight": -2.0}, ...]` (a bare string is a
  criterion of weight 1; `{"criteria": [...]}` also works). The judge says, for each
  criterion, whether it is met (`scale = "binary"`, c in {0, 1}) or how well
  (`scale = "graded"`, an integer 0..levels-1 mapped to [0, 1]). Aggregation is
  explicit: reward = sum(w_i * c_i) / sum(|w_i|). A negative weight is a pitfall:
  meeting it costs. So the reward lies in [-(sum of |negative w|), sum of positive w]
  / sum |w|, which is [0, 1] when every weight is positive.
- one rubric text with a score range: `{"rubric": "...", "min": 1, "max": 10}` (a bare
  string uses the configured default range); reward = (score - min) / (max - min).

What differs from the common "ask for a score and regex a number out of the reply":

- The verdict is a JSON object with exactly the required keys (c1..cn booleans or
  integers, or one integer `score`), requested with the endpoint's structured output
  (`response_format = {"type": "json_schema", ...}`, which vLLM 0.32 turns into a
  grammar; its older `guided_json` field is ignored there) and parsed strictly
  anyway: wrong keys, wrong types, out-of-range values or a reply cut at
  `max_tokens` are errors. Enumerated values keep the grammar finite.
- A judge that is down, slow or answers garbage gives status `error` with reward
  null after `retries` extra attempts, never a 0: a broken judge must not teach the
  policy that its answers were bad.
- Concurrency is limited by a semaphore (`max_concurrency` requests in flight per
  server process), and each request has its own timeout.
- The judge never sees the weights, so it cannot game the aggregation.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from dataclasses import dataclass
from typing import Any, Literal

from verifiers.base import ScoreItem, Verifier, VerifyResult

SYSTEM_PROMPT = (
    "You are a strict grader. You are given a task, a response to grade and a rubric. "
    "Judge only the response. Answer with a single JSON object and nothing else."
)


class RubricError(ValueError):
    """The item's reference is not a usable rubric (status `rejected`)."""


class JudgeError(Exception):
    """The judge could not produce a valid verdict (status `error`)."""


@dataclass
class Rubric:
    kind: Literal["criteria", "score"]
    criteria: list[tuple[str, float]]  # (text, weight) for kind == "criteria"
    text: str = ""
    lo: int = 0
    hi: int = 10


def parse_rubric(reference: Any, default_range: tuple[int, int]) -> Rubric:
    """Validate an item's reference into a Rubric; RubricError says what is wrong."""
    if isinstance(reference, str):
        if not reference.strip():
            raise RubricError("empty rubric text")
        return Rubric("score", [], reference, *default_range)
    if isinstance(reference, dict) and "criteria" in reference:
        reference = reference["criteria"]
    if isinstance(reference, dict) and "rubric" in reference:
        lo = reference.get("min", default_range[0])
        hi = reference.get("max", default_range[1])
        if not (isinstance(lo, int) and isinstance(hi, int)) or isinstance(lo, bool) or hi <= lo:
            raise RubricError(f"score range must be integers min < max, got {lo!r}..{hi!r}")
        if hi - lo > 1000:
            raise RubricError("score range wider than 1000")
        text = reference["rubric"]
        if not isinstance(text, str) or not text.strip():
            raise RubricError("'rubric' must be a non-empty string")
        return Rubric("score", [], text, lo, hi)
    if isinstance(reference, list) and reference:
        crit: list[tuple[str, float]] = []
        for i, c in enumerate(reference):
            if isinstance(c, str):
                c = {"criterion": c, "weight": 1.0}
            if not isinstance(c, dict) or not isinstance(c.get("criterion"), str):
                raise RubricError(f"criterion {i} must be a string or "
                                  "{'criterion': str, 'weight': number}")
            w = c.get("weight", 1.0)
            if isinstance(w, bool) or not isinstance(w, int | float) or w != w:
                raise RubricError(f"criterion {i}: weight {w!r} is not a number")
            crit.append((c["criterion"], float(w)))
        if sum(abs(w) for _, w in crit) == 0:
            raise RubricError("all criterion weights are zero")
        if len(crit) > 64:
            raise RubricError("more than 64 criteria")
        return Rubric("criteria", crit)
    raise RubricError("reference must be a list of criteria, {'criteria': [...]}, "
                      "{'rubric': str, 'min': int, 'max': int}, or a rubric string")


def verdict_schema(rubric: Rubric, scale: str, levels: int) -> dict[str, Any]:
    """JSON schema of the verdict. Only booleans and enumerated integers: a grammar
    built from it always finishes in a few tokens."""
    if rubric.kind == "score":
        props: dict[str, Any] = {"score": {"type": "integer",
                                           "enum": list(range(rubric.lo, rubric.hi + 1))}}
    elif scale == "binary":
        props = {f"c{i + 1}": {"type": "boolean"} for i in range(len(rubric.criteria))}
    else:
        props = {f"c{i + 1}": {"type": "integer", "enum": list(range(levels))}
                 for i in range(len(rubric.criteria))}
    return {"type": "object", "properties": props, "required": list(props),
            "additionalProperties": False}


def aggregate(rubric: Rubric, verdict: dict[str, Any], scale: str, levels: int) -> tuple[float, dict[str, Any]]:
    """Strictly check the verdict against the schema and turn it into a reward.
    Raises JudgeError on any deviation (missing/extra keys, wrong type, out of range)."""
    schema = verdict_schema(rubric, scale, levels)
    keys = set(schema["properties"])
    if not isinstance(verdict, dict) or set(verdict) != keys:
        got = sorted(verdict) if isinstance(verdict, dict) else type(verdict).__name__
        raise JudgeError(f"verdict keys {got} != {sorted(keys)}")
    if rubric.kind == "score":
        s = verdict["score"]
        if isinstance(s, bool) or not isinstance(s, int) or not rubric.lo <= s <= rubric.hi:
            raise JudgeError(f"score {s!r} not an integer in [{rubric.lo}, {rubric.hi}]")
        return (s - rubric.lo) / (rubric.hi - rubric.lo), {"score": s, "range": [rubric.lo, rubric.hi]}
    per: list[dict[str, Any]] = []
    num = 0.0
    for i, (text, w) in enumerate(rubric.criteria):
        v = verdict[f"c{i + 1}"]
        if scale == "binary":
            if not isinstance(v, bool):
                raise JudgeError(f"c{i + 1} = {v!r} is not a boolean")
            c = 1.0 if v else 0.0
        else:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < levels:
                raise JudgeError(f"c{i + 1} = {v!r} is not an integer in [0, {levels - 1}]")
            c = v / (levels - 1)
        num += w * c
        per.append({"criterion": text, "weight": w, "score": c})
    return num / sum(abs(w) for _, w in rubric.criteria), {"criteria": per}


def build_messages(item: ScoreItem, rubric: Rubric, scale: str, levels: int,
                   system_prompt: str) -> list[dict[str, str]]:
    parts = []
    if item.prompt:
        parts.append(f"Task:\n{item.prompt}")
    parts.append(f"Response to grade:\n{item.completion}")
    if rubric.kind == "score":
        parts.append(f"Rubric:\n{rubric.text}\n\nGive an integer score from {rubric.lo} "
                     f"(worst) to {rubric.hi} (best). Reply as {{\"score\": <integer>}}.")
    else:
        lines = "\n".join(f"c{i + 1}: {t}" for i, (t, _) in enumerate(rubric.criteria))
        how = ("true if the response meets it, false if not" if scale == "binary"
               else f"an integer from 0 (not at all) to {levels - 1} (fully)")
        parts.append(f"Criteria:\n{lines}\n\nFor each criterion give {how}. Reply as a JSON "
                     "object with exactly the keys " + ", ".join(
                         f'"c{i + 1}"' for i in range(len(rubric.criteria))) + ".")
    return [{"role": "system", "content": system_prompt},
            {"role": "user", "content": "\n\n".join(parts)}]


class JudgeVerifier(Verifier):
    name = "judge"
    description = "LLM judge over an OpenAI-compatible chat endpoint, graded against a rubric"
    reference_doc = ("criteria [{criterion, weight}] (reward = sum w*c / sum |w|), or "
                     "{rubric, min, max} (reward = (score - min) / (max - min))")
    runs_in = "loop"
    default_timeout_s = 300.0

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        api_key_env: str | None = None,
        structured_output: Literal["json_schema", "json_object", "none"] = "json_schema",
        scale: Literal["binary", "graded"] = "binary",
        levels: int = 5,
        score_range: tuple[int, int] | list[int] = (0, 10),
        temperature: float = 0.0,
        max_tokens: int = 256,
        timeout_s: float = 60.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        max_concurrency: int = 8,
        system_prompt: str = SYSTEM_PROMPT,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        """`base_url` like "http://127.0.0.1:8000/v1"; `model` None asks `/models` for
        the first served model. The key comes from `api_key` or the environment
        variable named by `api_key_env` (keep keys out of config files)."""
        super().__init__(base_url=base_url, model=model)
        if scale not in ("binary", "graded") or levels < 2 or retries < 0 or max_concurrency < 1:
            raise ValueError("scale in {binary, graded}, levels >= 2, retries >= 0, "
                             "max_concurrency >= 1")
        if structured_output not in ("json_schema", "json_object", "none"):
            raise ValueError(f"structured_output {structured_output!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key or (os.environ.get(api_key_env) if api_key_env else None)
        self.structured_output = structured_output
        self.scale = scale
        self.levels = levels
        lo, hi = score_range
        self.score_range = (int(lo), int(hi))
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_concurrency = max_concurrency
        self.system_prompt = system_prompt
        self.extra_body = dict(extra_body or {})
        self.requests = 0  # HTTP attempts made
        self._client: Any = None
        self._sem: asyncio.Semaphore | None = None
        self._model_lock: asyncio.Lock | None = None

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.AsyncClient(timeout=self.timeout_s, headers=headers,
                                             follow_redirects=False, trust_env=False)
            self._sem = asyncio.Semaphore(self.max_concurrency)
            self._model_lock = asyncio.Lock()
        return self._client

    async def _model_name(self) -> str:
        if self.model:
            return self.model
        assert self._model_lock is not None
        async with self._model_lock:
            if not self.model:
                resp = await self._http().get(f"{self.base_url}/models")
                resp.raise_for_status()
                self.model = resp.json()["data"][0]["id"]
        return self.model

    def _body(self, model: str, item: ScoreItem, rubric: Rubric) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": build_messages(item, rubric, self.scale, self.levels, self.system_prompt),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            **self.extra_body,
        }
        if self.structured_output == "json_schema":
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "verdict", "strict": True,
                "schema": verdict_schema(rubric, self.scale, self.levels)}}
        elif self.structured_output == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    async def _attempt(self, item: ScoreItem, rubric: Rubric) -> tuple[float, dict[str, Any]]:
        """One request; JudgeError for anything but a valid verdict."""
        import httpx

        client = self._http()
        try:
            model = await self._model_name()
            self.requests += 1
            resp = await client.post(f"{self.base_url}/chat/completions",
                                     json=self._body(model, item, rubric))
        except httpx.TimeoutException:
            raise JudgeError(f"judge timed out after {self.timeout_s:g} s") from None
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as e:
            raise JudgeError(f"judge unreachable: {type(e).__name__}: {e}") from None
        if resp.status_code != 200:
            raise JudgeError(f"judge HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            choice = resp.json()["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError(f"malformed chat response: {resp.text[:300]}") from None
        if choice.get("finish_reason") == "length":
            raise JudgeError(f"verdict cut at max_tokens={self.max_tokens}: {str(content)[:200]!r}")
        if not isinstance(content, str):
            raise JudgeError("judge returned no text")
        try:
            verdict = json.loads(content)
        except json.JSONDecodeError:
            raise JudgeError(f"verdict is not JSON: {content[:200]!r}") from None
        reward, info = aggregate(rubric, verdict, self.scale, self.levels)
        return reward, {**info, "verdict": verdict, "judge_model": model}

    async def _one(self, item: ScoreItem) -> VerifyResult:
        try:
            rubric = parse_rubric(item.reference, self.score_range)
        except RubricError as e:
            return VerifyResult.fail("rejected", f"bad rubric: {e}")
        self._http()
        assert self._sem is not None
        errors: list[str] = []
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random() / 2))
            async with self._sem:
                try:
                    reward, info = await self._attempt(item, rubric)
                except JudgeError as e:
                    errors.append(str(e))
                    continue
            return VerifyResult.ok(reward, **info, attempts=attempt + 1)
        return VerifyResult.fail("error", f"judge failed after {len(errors)} attempt(s): "
                                 f"{errors[-1]}", errors=errors)

    async def averify_batch(self, items: list[ScoreItem]) -> list[VerifyResult]:
        return list(await asyncio.gather(*(self._one(it) for it in items)))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
