"""Remote verifier against the real example service under uvicorn on 127.0.0.1:
scoring, the configured-URL-only rule, retries, garbage, timeouts, circuit breaker."""

from __future__ import annotations

import time

import httpx
import pytest

from rlvr.reward_client import free_port
from tests.rewards.services import keyword_service
from verifiers.base import ScoreItem
from verifiers.remote import CircuitBreaker, RemoteVerifier


def _calls(base: str) -> int:
    return httpx.get(f"{base}/calls", timeout=5, trust_env=False).json()["calls"]


def _control(base: str, **state: object) -> None:
    httpx.post(f"{base}/_control", json=state, timeout=5, trust_env=False).raise_for_status()


def _items() -> list[ScoreItem]:
    return [
        ScoreItem("kw", "A cat sat.", ["cat", "dog"], "Write about pets", {}, "a"),
        ScoreItem("kw", "cats and DOGS", ["cat", "dog"], None, {}, "b"),
        ScoreItem("kw", "nothing", "not a list", None, {}, "c"),
    ]


@pytest.fixture(scope="module")
def service_module() -> str:
    with keyword_service() as base:
        yield base


@pytest.fixture
def service(service_module: str) -> str:
    _control(service_module)  # well-behaved, counter reset
    return service_module


async def _score(v: RemoteVerifier, items: list[ScoreItem]) -> list:
    try:
        return await v.averify_batch(items)
    finally:
        await v.aclose()


async def test_scores_through_the_example_service(service: str) -> None:
    out = await _score(RemoteVerifier(f"{service}/score", retries=0), _items())
    # "cat" of ["cat", "dog"] -> 1/2; both (case-insensitive) -> 1; bad reference -> rejected
    assert [r.reward for r in out] == [0.5, 1.0, None]
    assert [r.status for r in out] == ["ok", "ok", "rejected"]
    assert out[0].info["missing"] == ["dog"]


async def test_item_options_cannot_redirect_the_call(service: str) -> None:
    """The URL is the configured one; a URL in an item's options is data, not followed."""
    with keyword_service() as decoy:
        item = ScoreItem("kw", "cat", ["cat"], None,
                         {"url": f"{decoy}/score", "base_url": decoy, "remote": decoy})
        [r] = await _score(RemoteVerifier(f"{service}/score", retries=0), [item])
        assert r.reward == 1.0
        assert _calls(decoy) == 0
        assert _calls(service) == 1


async def test_retries_recover_from_a_flaky_service(service: str) -> None:
    _control(service, fail_next=2)
    v = RemoteVerifier(f"{service}/score", retries=2, backoff_s=0.01)
    out = await _score(v, _items()[:1])
    assert out[0].reward == 0.5
    assert v.calls == 3 and _calls(service) == 3  # two 503s, then the answer
    assert v.breaker.state == "closed" and v.breaker.failures == 0


async def test_flaky_beyond_retries_is_an_error_not_zero(service: str) -> None:
    _control(service, fail_next=5)
    out = await _score(RemoteVerifier(f"{service}/score", retries=1, backoff_s=0.01), _items()[:2])
    assert [r.status for r in out] == ["error", "error"]
    assert [r.reward for r in out] == [None, None]
    assert "HTTP 503" in out[0].info["message"] and _calls(service) == 2


async def test_garbage_response_fails_the_whole_call_without_retry(service: str) -> None:
    _control(service, garbage=True)
    v = RemoteVerifier(f"{service}/score", retries=3, backoff_s=0.01)
    out = await _score(v, _items())
    assert all(r.status == "error" and r.reward is None for r in out)
    assert "0 results for 3 items" in out[0].info["message"]
    assert v.calls == 1


async def test_slow_service_times_out(service: str) -> None:
    _control(service, delay_s=2.0)
    v = RemoteVerifier(f"{service}/score", timeout_s=0.3, retries=1, backoff_s=0.01)
    t0 = time.perf_counter()
    [r] = await _score(v, _items()[:1])
    assert r.status == "error" and "timeout after 0.3 s" in r.info["message"]
    assert time.perf_counter() - t0 < 1.5  # two attempts of 0.3 s, not the 2 s reply


async def test_circuit_opens_on_a_down_service_and_recovers() -> None:
    """Real connections (refused, then served); the breaker's clock is a variable so
    the cooldown does not depend on how fast the service starts."""
    port = free_port()  # nothing listens here yet: connection refused
    v = RemoteVerifier(f"http://127.0.0.1:{port}/score", retries=0, failure_threshold=2,
                       cooldown_s=30.0)
    now = [0.0]
    v.breaker.clock = lambda: now[0]
    item = _items()[:1]
    try:
        for _ in range(2):
            [r] = await v.averify_batch(item)
            assert r.status == "error" and "transport error" in r.info["message"]
        assert v.breaker.state == "open" and v.calls == 2
        [r] = await v.averify_batch(item)
        assert (r.status, r.reward, r.info["message"]) == ("error", None, "circuit open")
        assert v.calls == 2  # no network while open
        now[0] = 30.0
        assert v.breaker.state == "half_open"
        [r] = await v.averify_batch(item)  # the trial call fails: open again
        assert "transport error" in r.info["message"] and v.calls == 3
        assert v.breaker.state == "open" and v.breaker.opened_count == 2
        with keyword_service(port=port):
            now[0] = 59.0
            [r] = await v.averify_batch(item)
            assert r.info["message"] == "circuit open" and v.calls == 3  # still cooling down
            now[0] = 60.0
            [r] = await v.averify_batch(item)  # trial succeeds: closed
            assert r.reward == 0.5 and v.breaker.state == "closed"
            out = await v.averify_batch(item * 3)
            assert [x.reward for x in out] == [0.5] * 3 and v.calls == 5
    finally:
        await v.aclose()


def test_breaker_lets_one_trial_through_when_half_open() -> None:
    now = [0.0]
    b = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=lambda: now[0])
    for _ in range(2):
        b.failure()
    assert b.state == "closed" and b.allow()
    b.failure()
    assert b.state == "open" and not b.allow()
    now[0] = 10.0
    assert b.allow() and not b.allow()  # one trial at a time
    b.success()
    assert b.state == "closed" and b.failures == 0


def test_only_http_urls_are_accepted() -> None:
    for bad in ("file:///etc/passwd", "127.0.0.1:9000/score", "http:///score"):
        with pytest.raises(ValueError):
            RemoteVerifier(bad)
