"""LLM judge: rubric aggregation and strict verdict parsing (hand-computed), then a
real `vllm serve` of the tiny model on 127.0.0.1 with structured output, a judge that
answers garbage, a judge that is down, and the concurrency limit."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator

import pytest

from rlvr.reward_client import free_port
from tests.rewards.services import run_service
from verifiers.base import ScoreItem
from verifiers.judge import (
    JudgeError,
    JudgeVerifier,
    RubricError,
    aggregate,
    parse_rubric,
    verdict_schema,
)

CRITERIA = [{"criterion": "gives the sum", "weight": 2.0},
            {"criterion": "shows the work", "weight": 1.0},
            {"criterion": "is rude", "weight": -1.0}]


def test_criteria_aggregation_is_sum_w_c_over_sum_abs_w() -> None:
    r = parse_rubric(CRITERIA, (0, 10))
    # (2*1 + 1*0 - 1*1) / (2 + 1 + 1) = 0.25
    reward, info = aggregate(r, {"c1": True, "c2": False, "c3": True}, "binary", 5)
    assert reward == pytest.approx(0.25)
    assert [c["score"] for c in info["criteria"]] == [1.0, 0.0, 1.0]
    # best case 3/4 = 0.75 (the pitfall avoided); worst -1/4
    assert aggregate(r, {"c1": True, "c2": True, "c3": False}, "binary", 5)[0] == 0.75
    assert aggregate(r, {"c1": False, "c2": False, "c3": True}, "binary", 5)[0] == -0.25
    # graded, 5 levels: c = [4/4, 2/4, 0/4] -> (2*1 + 1*0.5 - 0) / 4 = 0.625
    assert aggregate(r, {"c1": 4, "c2": 2, "c3": 0}, "graded", 5)[0] == pytest.approx(0.625)
    # one rubric text, range 1..5: score 4 -> (4-1)/(5-1) = 0.75
    s = parse_rubric({"rubric": "Is it correct?", "min": 1, "max": 5}, (0, 10))
    assert aggregate(s, {"score": 4}, "binary", 5)[0] == 0.75
    assert parse_rubric("just text", (0, 10)).hi == 10
    assert parse_rubric(["a", "b"], (0, 10)).criteria == [("a", 1.0), ("b", 1.0)]


@pytest.mark.parametrize("verdict", [
    {"c1": True, "c2": False},                          # missing key
    {"c1": True, "c2": False, "c3": True, "c4": True},  # extra key
    {"c1": 1, "c2": False, "c3": True},                 # int for bool
    {"c1": "true", "c2": False, "c3": True},            # string for bool
    ["c1", "c2", "c3"],                                 # not an object
])
def test_strict_parsing_rejects_malformed_binary_verdicts(verdict: object) -> None:
    with pytest.raises(JudgeError):
        aggregate(parse_rubric(CRITERIA, (0, 10)), verdict, "binary", 5)  # type: ignore[arg-type]


@pytest.mark.parametrize("verdict", [{"score": 6}, {"score": 0}, {"score": 2.5}, {"score": True}])
def test_strict_parsing_rejects_out_of_range_scores(verdict: dict) -> None:
    with pytest.raises(JudgeError):
        aggregate(parse_rubric({"rubric": "r", "min": 1, "max": 5}, (0, 10)), verdict, "binary", 5)


@pytest.mark.parametrize("ref", [None, 42, [], [{"criterion": "x", "weight": "heavy"}],
                                 [{"criterion": "x", "weight": 0}], {"rubric": "r", "min": 5, "max": 5}])
def test_bad_rubrics_are_rejected(ref: object) -> None:
    with pytest.raises(RubricError):
        parse_rubric(ref, (0, 10))


def test_verdict_schema_is_closed_and_enumerated() -> None:
    s = verdict_schema(parse_rubric(CRITERIA, (0, 10)), "graded", 3)
    assert s["required"] == ["c1", "c2", "c3"] and s["additionalProperties"] is False
    assert s["properties"]["c2"] == {"type": "integer", "enum": [0, 1, 2]}


# ----------------------------------------------------------------------------- real vLLM


@pytest.fixture(scope="module")
def judge_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`vllm serve` of a randomly initialised tiny Qwen2, started once for the module.
    Built here rather than from `tiny_model_dir` because the judge prompt needs 512
    positions (that fixture has 256). `disable_any_whitespace` keeps a random model from
    padding its JSON with spaces until max_tokens."""
    from rlvr.model import build_tiny_model

    model = build_tiny_model(tmp_path_factory.mktemp("judge") / "tiny", max_position=512)
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
           "--served-model-name", "tiny-judge", "--dtype", "float32", "--enforce-eager",
           "--max-model-len", "512", "--host", "127.0.0.1", "--port", str(port), "--seed", "0",
           "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']
    env = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # engine in the server process: one less start
           "NO_PROXY": "127.0.0.1", "HF_HUB_OFFLINE": "1"}
    if "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = "1"
    with run_service(cmd, f"http://127.0.0.1:{port}/health", env=env, timeout_s=300):
        yield f"http://127.0.0.1:{port}/v1"


def _items(ref: object, n: int) -> list[ScoreItem]:
    return [ScoreItem("judge", f"{10 + i}+{20 + i}={30 + 2 * i}", ref, f"Q: {10 + i}+{20 + i}")
            for i in range(n)]


async def test_vllm_judge_verdicts_parse_and_aggregate(judge_url: str) -> None:
    # model=None: the judge asks /models; temperature 1 so verdicts vary
    v = JudgeVerifier(judge_url, temperature=1.0, max_tokens=64, retries=0)
    try:
        out = await v.averify_batch(_items(CRITERIA, 6))
        scored = await v.averify_batch(_items({"rubric": "Is the sum right?", "min": 1, "max": 5}, 4))
        bad = await v.averify_batch(_items("", 1))
    finally:
        await v.aclose()
    assert all(r.status == "ok" for r in out + scored), [r.info for r in out + scored]
    for r in out:
        verdict = r.info["verdict"]
        assert sorted(verdict) == ["c1", "c2", "c3"]
        assert all(isinstance(x, bool) for x in verdict.values())
        want = (2 * verdict["c1"] + 1 * verdict["c2"] - 1 * verdict["c3"]) / 4
        assert r.reward == pytest.approx(want)
        assert r.info["judge_model"] == "tiny-judge"
    for r in scored:
        assert r.reward == pytest.approx((r.info["verdict"]["score"] - 1) / 4)
        assert 1 <= r.info["verdict"]["score"] <= 5
    assert bad[0].status == "rejected" and bad[0].reward is None
    assert v.requests == 10


async def test_vllm_judge_without_structured_output_answers_garbage_as_error(judge_url: str) -> None:
    v = JudgeVerifier(judge_url, model="tiny-judge", structured_output="none", max_tokens=24,
                      retries=1, backoff_s=0.01)
    try:
        out = await v.averify_batch(_items(CRITERIA, 2))
    finally:
        await v.aclose()
    for r in out:
        assert (r.status, r.reward) == ("error", None)
        assert len(r.info["errors"]) == 2  # first try + one retry
        assert "judge failed after 2 attempt(s)" in r.info["message"]
    assert v.requests == 4


async def test_judge_down_is_an_error_never_zero() -> None:
    port = free_port()  # closed loopback port: connection refused
    v = JudgeVerifier(f"http://127.0.0.1:{port}/v1", model="m", retries=2, backoff_s=0.01)
    try:
        out = await v.averify_batch(_items(CRITERIA, 3))
    finally:
        await v.aclose()
    assert [(r.status, r.reward) for r in out] == [("error", None)] * 3
    assert "judge unreachable" in out[0].info["message"] and len(out[0].info["errors"]) == 3


async def test_concurrency_limit_holds() -> None:
    """A stand-in judge on loopback (a few lines of asyncio HTTP) that records how many
    requests it holds at once; vLLM cannot report that."""
    state = {"now": 0, "peak": 0}
    body = json.dumps({"choices": [{"finish_reason": "stop", "message": {
        "content": json.dumps({"c1": True, "c2": True, "c3": False})}}]}).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next((ln.split(b":")[1] for ln in head.split(b"\r\n")
                                   if ln.lower().startswith(b"content-length")), b"0"))
                await reader.readexactly(length)
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
                await asyncio.sleep(0.05)
                state["now"] -= 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    v = JudgeVerifier(f"http://127.0.0.1:{port}/v1", model="m", max_concurrency=2)
    try:
        out = await v.averify_batch(_items(CRITERIA, 8))
    finally:
        await v.aclose()
        server.close()
    assert [r.reward for r in out] == [0.75] * 8  # (2 + 1 - 0) / 4
    assert state["peak"] == 2
