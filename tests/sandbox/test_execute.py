"""`POST /v1/execute` through FastAPI's TestClient on a tiny app with only this router."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from reward_server.execute import MAX_LIMITS, LimitsIn, effective_limits, router


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.include_router(router)
    return TestClient(app)


def test_execute_runs_code(client: TestClient) -> None:
    r = client.post("/v1/execute", json={
        "language": "python", "code": "import data\nprint(int(input()) + data.X)",
        "stdin": "40", "files": {"data.py": "X = 2"}, "limits": {"wall_time_s": 5},
    })
    assert r.status_code == 200
    body = r.json()
    assert (body["status"], body["exit_code"], body["stdout"]) == ("ok", 0, "42\n")
    assert body["limits"]["wall_time_s"] == 5


def test_execute_limits_are_capped_and_enforced(client: TestClient) -> None:
    r = client.post("/v1/execute", json={
        "code": "while True: pass",
        "limits": {"wall_time_s": 1e9, "cpu_time_s": 1, "memory_bytes": 1 << 50},
    }).json()
    assert r["limits"]["wall_time_s"] == MAX_LIMITS.wall_time_s
    assert r["limits"]["memory_bytes"] == MAX_LIMITS.memory_bytes
    assert r["status"] == "timeout"
    r = client.post("/v1/execute", json={"code": "print('x' * 5000)",
                                         "limits": {"max_output_bytes": 100}}).json()
    assert r["status"] == "output_limit" and len(r["stdout"]) == 100 and r["stdout_truncated"]


def test_effective_limits() -> None:
    lim = effective_limits(LimitsIn(cpu_time_s=3.0, max_processes=10**6))
    assert lim.cpu_time_s == 3.0 and lim.max_processes == MAX_LIMITS.max_processes
    assert lim.wall_time_s == 10.0  # the Limits() default, under the cap


def test_execute_bad_requests(client: TestClient) -> None:
    assert client.post("/v1/execute", json={"language": "python"}).status_code == 422
    assert client.post("/v1/execute", json={"code": "1", "files": {"/etc/x": ""}}).status_code == 422
    assert client.post("/v1/execute", json={"code": "1", "limits": {"cpu": 1}}).status_code == 422
    r = client.post("/v1/execute", json={"code": "1", "language": "cobol"}).json()
    assert r["status"] == "error" and "unknown language" in r["message"]
