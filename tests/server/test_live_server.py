"""Integration tests against a real `rlvr serve` subprocess on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from rlvr.adapters import UnscoredError, compute_score, compute_score_batch, make_trl_reward_func
from rlvr.reward_client import (
    RewardAuthError,
    RewardClient,
    RewardClientError,
    RewardProtocolError,
    RewardServerError,
    RewardTimeoutError,
    RewardTransportError,
    SyncRewardClient,
    free_port,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_every_gsm8k_solution_through_the_server(reward_server_url: str) -> None:
    rows = [json.loads(line) for line in open(DATA / "gsm8k_test.jsonl")]
    items, changed = [], []
    for r in rows:
        head, tail = r["answer"].rsplit("####", 1)
        n = int(tail.strip().replace(",", ""))
        items.append({"id": str(r["idx"]), "verifier": "math", "completion": r["answer"], "reference": r["answer"]})
        changed.append({"verifier": "math", "completion": f"{head}#### {n + 1}", "reference": r["answer"]})
    with SyncRewardClient(reward_server_url, batch_size=128, max_concurrency=4) as c:
        res = c.score(items + changed)
    assert len(res) == 2 * 1319
    assert [r.id for r in res[:1319]] == [str(r["idx"]) for r in rows]
    wrong = [(i, r.reward, r.status, r.info.get("message")) for i, r in enumerate(res[:1319])
             if r.reward != 1.0]
    assert not wrong, wrong[:5]
    wrong = [(i, r.reward, r.status, r.info.get("message")) for i, r in enumerate(res[1319:])
             if r.reward != 0.0]
    assert not wrong, wrong[:5]


def test_pathological_input_times_out_while_server_keeps_answering(reward_server_url: str) -> None:
    async def run() -> tuple[list, float, list[float]]:
        async with RewardClient(reward_server_url, max_concurrency=8) as c:
            t0 = time.monotonic()
            slow = asyncio.create_task(c.score([{
                "verifier": "math", "completion": "\\boxed{2003^{2002^{2001}}}", "reference": "5"}]))
            await asyncio.sleep(0.5)
            lat = []
            for i in range(10):  # meanwhile the other worker keeps answering
                t = time.monotonic()
                (r,) = await c.score([{"verifier": "math", "completion": f"\\boxed{{{i}}}", "reference": i}])
                assert r.reward == 1.0
                lat.append(time.monotonic() - t)
            res = await slow
            return res, time.monotonic() - t0, lat

    res, elapsed, lat = asyncio.run(run())
    assert res[0].status == "timeout" and res[0].reward is None
    assert 4.5 < elapsed < 8.0  # the limit is 5 s
    assert max(lat) < 1.0
    # The hung worker was killed; its replacement is back once it has built its verifiers.
    deadline = time.monotonic() + 10
    while httpx.get(reward_server_url + "/healthz").json()["workers"] != 2:
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.1)


class _Flaky(BaseHTTPRequestHandler):
    """Loopback stub: fails the first `fail_first` POSTs with 503, then echoes rewards."""

    fail_first = 0
    calls = 0
    mode = "ok"

    def do_POST(self) -> None:  # noqa: N802
        cls = type(self)
        cls.calls += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if cls.mode == "auth":
            self.send_response(401)
            self.end_headers()
            return
        if cls.mode == "sleep":
            time.sleep(1.0)
        if cls.calls <= cls.fail_first:
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"overloaded")
            return
        out = {"results": [{"id": it.get("id"), "reward": 1.0, "status": "ok", "info": {}}
                           for it in body["items"]]}
        if cls.mode == "short":
            out["results"] = out["results"][:-1]
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Handler", (_Flaky,), {"fail_first": 0, "calls": 0, "mode": "ok"})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    srv.shutdown()
    srv.server_close()


ITEM = [{"verifier": "math", "completion": "1", "reference": "1"}]


def test_client_retries_5xx_with_backoff(flaky) -> None:
    url, h = flaky
    h.fail_first = 2
    with SyncRewardClient(url, retries=3, backoff_s=0.01) as c:
        assert c.score(ITEM)[0].reward == 1.0
    assert h.calls == 3
    h.calls, h.fail_first = 0, 10
    with SyncRewardClient(url, retries=2, backoff_s=0.01) as c, pytest.raises(RewardServerError) as e:
        c.score(ITEM)
    assert e.value.status_code == 503 and h.calls == 3


def test_client_typed_errors(flaky) -> None:
    url, h = flaky
    dead = f"http://127.0.0.1:{free_port()}"
    with SyncRewardClient(dead, retries=1, backoff_s=0.01) as c, pytest.raises(RewardTransportError):
        c.score(ITEM)
    h.mode = "auth"
    with SyncRewardClient(url, retries=3) as c, pytest.raises(RewardAuthError):
        c.score(ITEM)
    assert h.calls == 1  # auth errors are not retried
    h.mode = "sleep"
    with SyncRewardClient(url, retries=0, timeout_s=0.2) as c, pytest.raises(RewardTimeoutError):
        c.score(ITEM)
    h.mode = "short"
    with SyncRewardClient(url) as c, pytest.raises(RewardProtocolError):
        c.score(ITEM * 3)
    assert issubclass(RewardTimeoutError, RewardTransportError)
    assert all(issubclass(e, RewardClientError) for e in (RewardServerError, RewardAuthError, RewardProtocolError))


def test_client_spreads_over_urls_and_skips_a_dead_one(reward_server_url: str, flaky) -> None:
    url, h = flaky
    dead = f"http://127.0.0.1:{free_port()}"
    items = [{"verifier": "math", "completion": f"\\boxed{{{i}}}", "reference": str(i)} for i in range(40)]
    with SyncRewardClient([dead, reward_server_url, url], batch_size=4, retries=2, backoff_s=0.01) as c:
        res = c.score(items)
    assert [r.reward for r in res] == [1.0] * 40
    assert h.calls >= 2  # the stub got a share of the 10 batches


def test_client_skips_a_failing_url_for_a_while(reward_server_url: str, flaky) -> None:
    url, h = flaky
    h.fail_first = 10**6  # the stub answers 503 to everything
    items = [{"verifier": "math", "completion": f"\\boxed{{{i}}}", "reference": str(i)} for i in range(20)]
    with SyncRewardClient([url, reward_server_url], batch_size=2, max_concurrency=1,
                          retries=2, backoff_s=0.01, down_s=60) as c:
        res = c.score(items)
    assert [r.reward for r in res] == [1.0] * 20
    # Plain round robin would send it half of the 10 batches' first attempts; after its
    # first 503 it is skipped for `down_s`.
    assert h.calls == 1


def test_trl_adapter(reward_server_url: str) -> None:
    f = make_trl_reward_func(reward_server_url, reference_key="answer")
    prompts = [[{"role": "user", "content": "2+2?"}]] * 3 + ["3+3?"]
    completions = [
        [{"role": "assistant", "content": "\\boxed{4}"}],
        [{"role": "assistant", "content": "\\boxed{5}"}],
        # a tool-calling turn with no content, then content given as typed parts
        [{"role": "assistant", "content": None},
         {"role": "assistant", "content": [{"type": "text", "text": "so \\boxed{4}"}]}],
        "so \\boxed{6}",
    ]
    logged: dict[str, float] = {}
    out = f(prompts=prompts, completions=completions, answer=["4", "4", "4", "6"],
            completion_ids=None, trainer_state=None, log_extra=lambda *a: None,
            log_metric=logged.__setitem__)
    assert out == [1.0, 0.0, 1.0, 1.0]
    assert logged == {"rlvr/math_unscored": 0.0}
    g = make_trl_reward_func(reward_server_url, verifier="no-such")
    assert g(prompts=["p"], completions=["c"], answer=["1"]) == [None]  # unscored is None, not 0


def test_verl_adapter(reward_server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLVR_REWARD_URL", reward_server_url)
    assert compute_score("gsm8k", "... #### 1,234", "1234") == {"score": 1.0, "scored": 1.0}
    assert compute_score("gsm8k", "\\boxed{7}", "8", extra_info={"index": 3})["score"] == 0.0
    with pytest.raises(UnscoredError, match="not scored"):
        compute_score("x", "1", "1", extra_info={"verifier": "no-such"})
    assert compute_score("x", "1", "1", verifier="no-such", on_unscored="zero") == {
        "score": 0.0, "scored": 0.0}
    out = compute_score_batch(
        data_sources=["a", "b", "c"], solution_strs=["\\boxed{1}", "\\boxed{2}", "x"],
        ground_truths=["1", "3", "1"],
        extra_infos=[None, None, {"verifier": "no-such"}], on_unscored="zero",
    )
    assert out == [{"score": 1.0, "scored": 1.0}, {"score": 0.0, "scored": 1.0},
                   {"score": 0.0, "scored": 0.0}]
