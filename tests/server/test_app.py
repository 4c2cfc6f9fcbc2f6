"""Handler-level tests of the reward server (FastAPI TestClient, real worker pool)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from reward_server.app import completion_of, create_app
from reward_server.settings import Settings, check_bind_policy, is_loopback
from tests.server.verifiers_for_tests import EchoVerifier, SlowLoopVerifier
from verifiers.math_verifier import MathVerifier

TABLE = {"math": (MathVerifier, {}), "echo": (EchoVerifier, {}), "loopy": (SlowLoopVerifier, {})}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(Settings(workers=2, max_body_bytes=4096, max_items=100), table=TABLE)
    with TestClient(app) as c:
        yield c


def _score(client: TestClient, items: list[dict]) -> list[dict]:
    r = client.post("/v1/score", json={"items": items})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_results_keep_order_ids_and_null_reward_iff_not_ok(client: TestClient) -> None:
    items = [
        {"id": "a", "verifier": "echo", "completion": "0.25"},
        {"id": "b", "verifier": "nope", "completion": "x"},
        {"id": "c", "verifier": "echo", "completion": "raise"},
        {"id": "d", "verifier": "math", "completion": "\\boxed{12}", "reference": "#### 12"},
        {"id": "e", "verifier": "echo", "completion": "nan"},
    ]
    res = _score(client, items)
    assert [r["id"] for r in res] == ["a", "b", "c", "d", "e"]
    assert [r["status"] for r in res] == ["ok", "rejected", "error", "ok", "error"]
    assert [r["reward"] for r in res] == [0.25, None, None, 1.0, None]
    assert "unknown verifier 'nope'" in res[1]["info"]["message"]
    assert "verifier bug" in res[2]["info"]["message"]
    assert "non-finite" in res[4]["info"]["message"]


def test_hung_item_times_out_its_chunk_mates_still_scored(client: TestClient) -> None:
    # echo's limit is 1 s; the sleeper hangs its worker, which is killed and replaced.
    items = [{"verifier": "echo", "completion": "sleep:30"}] + [
        {"verifier": "echo", "completion": str(i)} for i in range(20)
    ]
    t0 = time.monotonic()
    res = _score(client, items)
    assert time.monotonic() - t0 < 6
    assert res[0]["status"] == "timeout" and res[0]["reward"] is None
    assert [r["reward"] for r in res[1:]] == [float(i) for i in range(20)]


def test_crashed_worker_is_an_error_and_is_replaced(client: TestClient) -> None:
    res = _score(client, [{"verifier": "echo", "completion": "crash"}, {"verifier": "echo", "completion": "2"}])
    assert res[0]["status"] == "error" and "died" in res[0]["info"]["message"]
    assert res[1] == {"id": None, "reward": 2.0, "status": "ok", "info": res[1]["info"]}
    deadline = time.monotonic() + 10  # the replacement is up once its verifiers are built
    while client.get("/healthz").json()["workers"] != 2:
        assert time.monotonic() < deadline, "the crashed worker was not replaced"
        time.sleep(0.05)


def test_loop_verifier_and_its_timeout(client: TestClient) -> None:
    res = _score(client, [{"verifier": "loopy", "completion": "abc"}])
    assert res[0]["reward"] == 3.0
    res = _score(client, [{"verifier": "loopy", "completion": "sleep:5"}])
    assert res[0]["status"] == "timeout" and res[0]["reward"] is None


def test_malformed_request_is_422_naming_the_field(client: TestClient) -> None:
    r = client.post("/v1/score", json={"items": [{"verifier": "math"}]})
    assert r.status_code == 422
    assert "items.0.completion" in r.json()["detail"]
    r = client.post("/v1/score", json={"itemz": []})
    assert r.status_code == 422 and "items" in r.json()["fields"]
    r = client.post("/v1/score", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_oversized_body_is_413_and_server_stays_up(client: TestClient) -> None:
    big = {"items": [{"verifier": "echo", "completion": "1" * 5000}]}
    assert client.post("/v1/score", json=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the stream itself is counted
        yield b'{"items": [{"verifier": "echo", "completion": "'
        for _ in range(10):
            yield b"1" * 1000
        yield b'"}]}'

    r = client.post("/v1/score", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    too_many = {"items": [{"verifier": "echo", "completion": "1"}] * 101}
    assert client.post("/v1/score", json=too_many).status_code == 413
    assert client.get("/healthz").status_code == 200


def test_verifiers_listing(client: TestClient) -> None:
    vs = {v["name"]: v for v in client.get("/v1/verifiers").json()["verifiers"]}
    assert set(vs) == {"math", "echo", "loopy"}
    assert vs["math"]["timeout_s"] == 5.0 and "####" in vs["math"]["reference"]
    assert vs["loopy"]["runs_in"] == "loop"


def test_metrics_count_items_by_status(client: TestClient) -> None:
    def count(text: str, status: str) -> float:
        key = f'rlvr_items_total{{status="{status}",verifier="echo"}}'
        lines = [ln for ln in text.splitlines() if ln.startswith(key)]
        return float(lines[0].split()[-1]) if lines else 0.0

    before = client.get("/metrics").text
    _score(client, [{"verifier": "echo", "completion": "1"}, {"verifier": "echo", "completion": "raise"}])
    after = client.get("/metrics").text
    assert count(after, "ok") == count(before, "ok") + 1
    assert count(after, "error") == count(before, "error") + 1
    assert "rlvr_verify_seconds_bucket" in after and "rlvr_items_in_flight" in after


def test_openrlhf_get_reward(client: TestClient) -> None:
    # The shapes OpenRLHF's remote_rm_fn posts: queries are prompt + response decoded
    # with special tokens (so possibly left padding before the prompt).
    # The 3rd and 4th prompts box a number themselves: scoring the whole query would
    # take that box instead of the response's "#### N".
    body = {
        "query": ["Q: 6*7? A: \\boxed{42}<|endoftext|>", "Q: 1+1? A: \\boxed{3}",
                  "<pad><pad>Q: is \\boxed{5} right? A: #### 4", "Q: \\boxed{9}? A: #### 8"],
        "prompts": ["Q: 6*7? A:", "Q: 1+1? A:", "Q: is \\boxed{5} right? A:", "Q: \\boxed{9}? A:"],
        "labels": ["42", "2", "4", "9"],
    }
    r = client.post("/get_reward", json=body).json()
    assert r["rewards"] == [1.0, 0.0, 1.0, 0.0] and r["scores"] == r["rewards"]
    assert completion_of("<pad>P: x", "P:") == " x" and completion_of("no prompt", "P:") == "no prompt"
    # OpenRLHF concatenates each extra_logs key across requests: fixed keys, one float per item.
    assert sorted(r["extra_logs"]) == ["error", "scored", "timeout"]
    assert r["extra_logs"]["scored"] == [1.0, 1.0, 1.0, 1.0]
    # The oldest protocol posts only {"query": [...]}.
    r = client.post("/get_reward", json={"query": ["so \\boxed{5}"]}).json()
    # ... without labels math has nothing to compare with: unscored, flagged, 0.0.
    assert r["rewards"] == [0.0] and r["extra_logs"]["scored"] == [0.0]
    assert r["extra_logs"]["error"] == [1.0]
    bad = client.post("/get_reward", json={"query": ["a"], "prompts": ["a", "b"], "labels": ["1"]})
    assert bad.status_code == 422 and "prompts" in bad.text
    bad = client.post("/get_reward", json={"prompts": ["a"]})
    assert bad.status_code == 422 and "query" in bad.json()["fields"]


def test_openrlhf_unscored_items_are_flagged() -> None:
    settings = Settings(workers=1, default_verifier="echo")
    with TestClient(create_app(settings, table={"echo": (EchoVerifier, {})})) as c:
        r = c.post("/get_reward", json={"query": ["0.5", "raise"], "prompts": ["", ""]}).json()
        assert r["rewards"] == [0.5, 0.0]
        assert r["extra_logs"] == {"scored": [1.0, 0.0], "timeout": [0.0, 0.0], "error": [0.0, 1.0]}
    settings = Settings(workers=1, default_verifier="echo", openrlhf_unscored="error")
    with TestClient(create_app(settings, table={"echo": (EchoVerifier, {})})) as c:
        r = c.post("/get_reward", json={"query": ["0.5", "raise"]})
        assert r.status_code == 503 and "verifier bug" in r.text


def test_auth_required_when_key_set() -> None:
    app = create_app(Settings(workers=1, api_key="s3cret"), table={"echo": (EchoVerifier, {})})
    with TestClient(app) as c:
        item = {"items": [{"verifier": "echo", "completion": "1"}]}
        assert c.post("/v1/score", json=item).status_code == 401
        assert c.post("/v1/score", json=item, headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = c.post("/v1/score", json=item, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["results"][0]["reward"] == 1.0
        assert c.get("/healthz").status_code == 200  # health stays open


def test_bind_policy() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    check_bind_policy(Settings(host="127.0.0.1"))  # loopback: auth off by default
    with pytest.raises(SystemExit, match="API key"):
        check_bind_policy(Settings(host="0.0.0.0"))
    check_bind_policy(Settings(host="0.0.0.0", api_key="k"))
    check_bind_policy(Settings(host="0.0.0.0", insecure_no_auth=True))


def test_settings_from_toml_flags_and_env(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reward_server.settings import load_settings

    cfg = tmp_path / "server.toml"
    cfg.write_text('workers = 3\ndefault_verifier = "echo"\n[verifiers.math]\ntimeout_s = 2.5\n'
                   'options = { float_rounding = 4 }\n')
    monkeypatch.setenv("RLVR_API_KEY", "from-env")
    s = load_settings(cfg, workers=None, max_body_bytes=2048)  # None: keep the file's value
    assert (s.workers, s.default_verifier, s.max_body_bytes, s.api_key) == (3, "echo", 2048, "from-env")
    assert s.verifier("math").timeout_s == 2.5 and s.verifier("math").options == {"float_rounding": 4}
    assert s.verifier("code").timeout_s is None  # not configured: the verifier's default
    assert load_settings(cfg, api_key="flag").api_key == "flag"  # the flag wins over the env
    cfg.write_text("workerz = 3\n")
    with pytest.raises(ValueError, match="workerz"):
        load_settings(cfg)
