"""Config-resolved verifiers: dotted-path plug-ins, remote services, weighted
composites; and all of them through the real reward server on loopback."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from rlvr.reward_client import LocalRewardServer, SyncRewardClient, free_port
from tests.rewards.plugin_for_tests import LengthVerifier
from tests.rewards.services import keyword_service
from verifiers.base import ScoreItem
from verifiers.composite import CompositeVerifier, LoopCompositeVerifier
from verifiers.format_verifier import FormatVerifier
from verifiers.math_verifier import MathVerifier
from verifiers.plugins import PluginError, resolve_verifiers
from verifiers.remote import RemoteVerifier

GOOD = "5+7=12 4+3+1=8 \\boxed{82}"  # 45 + 37
WRONG = "5+7=12 4+3=7 \\boxed{72}"
UNBOXED = "the answer: 82 maybe"


def test_resolve_builds_each_kind_of_entry() -> None:
    base = {"math": (MathVerifier, {"float_rounding": 6}), "format": (FormatVerifier, {})}
    table = resolve_verifiers({
        "kw": {"type": "remote", "url": "http://127.0.0.1:9/score", "options": {"retries": 1}},
        "len": {"class": "tests.rewards.plugin_for_tests:LengthVerifier", "options": {"target": 4}},
        "math_fmt": {"type": "composite", "normalize": True,
                     "parts": [{"verifier": "math", "weight": 1.0},
                               {"verifier": "format", "weight": 0.2}]},
        "math_kw": {"type": "composite", "parts": [{"verifier": "math_fmt", "weight": 2},
                                                   {"verifier": "kw", "weight": 1}]},
    }, base=base)
    assert table["kw"] == (RemoteVerifier, {"url": "http://127.0.0.1:9/score", "retries": 1})
    assert table["len"] == (LengthVerifier, {"target": 4})
    cls, opts = table["math_fmt"]
    assert cls is CompositeVerifier and opts["normalize"] is True
    assert opts["parts"] == [("math", MathVerifier, {"float_rounding": 6}, 1.0, None),
                             ("format", FormatVerifier, {}, 0.2, None)]
    cls, opts = table["math_kw"]  # a loop part (remote) makes the composite a loop verifier
    assert cls is LoopCompositeVerifier
    assert [p[1] for p in opts["parts"]] == [CompositeVerifier, RemoteVerifier]


@pytest.mark.parametrize("spec, message", [
    ({"x": {"class": "tests.rewards.plugin_for_tests:NotAVerifier"}}, "not a subclass of"),
    ({"x": {"class": "tests.rewards.plugin_for_tests:LoopWithoutAverify"}}, "does not override"),
    ({"x": {"class": "tests.rewards.plugin_for_tests.LengthVerifier"}}, "package.module:ClassName"),
    ({"x": {"class": "no_such_module_xyz:V"}}, "cannot import"),
    ({"x": {"class": "tests.rewards.plugin_for_tests:Nope"}}, "has no attribute"),
    ({"x": {"type": "nonsense"}}, "unknown type"),
    ({"x": {"type": "remote", "class": "a:b", "url": "http://127.0.0.1:1/"}}, "exactly one"),
    ({"x": {"type": "remote", "urll": "http://127.0.0.1:1/"}}, "bad options"),
    ({"x": {"class": "tests.rewards.plugin_for_tests:LengthVerifier", "targett": 3}}, "bad options"),
    ({"x": {"type": "composite", "parts": [{"verifier": "ghost"}]}}, "unknown verifier 'ghost'"),
    ({"x": {"type": "composite", "parts": []}}, "non-empty list"),
    ({"x": {"type": "composite", "parts": [{"verifier": "math", "wieght": 1}]}}, "unknown keys"),
    ({"x": {"type": "composite", "parts": [{"verifier": "math"}, {"verifier": "math"}]}}, "unique"),
    ({"a": {"type": "composite", "parts": [{"verifier": "b"}]},
      "b": {"type": "composite", "parts": [{"verifier": "a"}]}}, "cycle"),
])
def test_resolve_rejects_bad_entries_naming_them(spec: dict, message: str) -> None:
    with pytest.raises(PluginError, match=message) as e:
        resolve_verifiers(spec)
    assert repr(next(iter(spec))) in str(e.value) or "cycle" in str(e.value)


def _composite(spec_parts: list[dict], **kw: object):
    cls, opts = resolve_verifiers({"c": {"type": "composite", "parts": spec_parts, **kw}})["c"]
    return cls(**opts)


def test_pool_composite_is_the_weighted_sum_with_parts_in_info() -> None:
    c = _composite([{"verifier": "math", "weight": 1.0}, {"verifier": "format", "weight": 0.2}])
    assert c.runs_in == "pool"
    # math 1 + 0.2 * format 1 = 1.2; wrong but boxed: 0 + 0.2 = 0.2; right, unboxed: 1 + 0
    rewards = [c.verify(ScoreItem("c", x, "82")).reward for x in (GOOD, WRONG, UNBOXED)]
    assert rewards == pytest.approx([1.2, 0.2, 1.0])
    r = c.verify(ScoreItem("c", WRONG, "82"))
    assert r.info["parts"]["math"]["reward"] == 0.0 and r.info["parts"]["format"]["reward"] == 1.0
    assert r.info["parts"]["format"]["weight"] == 0.2
    # normalised by sum |w| = 1.2: 1.0, 0.2 / 1.2
    n = _composite([{"verifier": "math", "weight": 1.0}, {"verifier": "format", "weight": 0.2}],
                   normalize=True)
    assert n.verify(ScoreItem("c", WRONG, "82")).reward == pytest.approx(0.2 / 1.2)


def test_composite_with_a_failing_part_is_an_error_naming_it() -> None:
    c = _composite([{"verifier": "math", "weight": 1.0, "reference_key": "answer"},
                    {"verifier": "format", "weight": 0.2}])
    ok = c.verify(ScoreItem("c", GOOD, {"answer": "82"}))
    assert ok.reward == pytest.approx(1.2)
    bad = c.verify(ScoreItem("c", GOOD, {"gold": "82"}))  # math's key is missing
    assert (bad.status, bad.reward, bad.info["failed"]) == ("error", None, ["math"])
    assert "math: error" in bad.info["message"] and "answer" in bad.info["message"]
    assert bad.info["parts"]["format"] == {"reward": 1.0, "status": "ok", "weight": 0.2,
                                           "info": {"matched": True}}


@pytest.fixture(scope="module")
def kw_service() -> str:
    with keyword_service() as base:
        yield base


async def test_loop_composite_runs_pool_parts_in_processes_and_remote_parts_in_the_loop(
    kw_service: str,
) -> None:
    cls, opts = resolve_verifiers({
        "kw": {"type": "remote", "url": f"{kw_service}/score", "retries": 0},
        "down": {"type": "remote", "url": f"http://127.0.0.1:{free_port()}/score", "retries": 0},
        "c": {"type": "composite", "parts": [
            {"verifier": "math", "weight": 1.0, "reference_key": "answer"},
            {"verifier": "kw", "weight": 0.5, "reference_key": "keywords"}]},
        "c_down": {"type": "composite", "parts": [
            {"verifier": "math", "weight": 1.0, "reference_key": "answer"},
            {"verifier": "down", "weight": 0.5, "reference_key": "keywords"}]},
    })["c"]
    assert cls is LoopCompositeVerifier
    c = cls(**opts)
    ref = {"answer": "82", "keywords": ["boxed", "12", "zebra"]}
    try:
        out = await c.averify_batch([ScoreItem("c", GOOD, ref), ScoreItem("c", WRONG, ref)])
    finally:
        await c.aclose()
    # GOOD: math 1 + 0.5 * (2 of 3 keywords) = 1.3333; WRONG: 0 + 0.5 * 2/3 = 0.3333
    assert [r.reward for r in out] == pytest.approx([1 + 0.5 * 2 / 3, 0.5 * 2 / 3])
    assert out[0].info["parts"]["kw"]["info"]["missing"] == ["zebra"]

    cls, opts = resolve_verifiers({
        "down": {"type": "remote", "url": f"http://127.0.0.1:{free_port()}/score", "retries": 0},
        "c": {"type": "composite", "parts": [
            {"verifier": "math", "weight": 1.0, "reference_key": "answer"},
            {"verifier": "down", "weight": 0.5, "reference_key": "keywords"}]},
    })["c"]
    c = cls(**opts)
    try:
        [r] = await c.averify_batch([ScoreItem("c", GOOD, ref)])
    finally:
        await c.aclose()
    assert (r.status, r.reward, r.info["failed"]) == ("error", None, ["down"])
    assert r.info["parts"]["math"]["reward"] == 1.0  # the part that worked is still reported


def test_plugins_through_the_real_reward_server(kw_service: str, tmp_path: Path) -> None:
    """`rlvr serve`-equivalent server (same create_app, uvicorn, worker pool) with the
    [plugins] table resolved and merged; items scored over HTTP like a trainer does."""
    with keyword_service() as decoy:
        cfg = tmp_path / "server.toml"
        cfg.write_text(f"""
workers = 1
[verifiers.kw]
timeout_s = 10
[plugins.kw]
type = "remote"
url = "{kw_service}/score"
retries = 0
[plugins.len]
class = "tests.rewards.plugin_for_tests:LengthVerifier"
options = {{ target = 4 }}
[plugins.math_fmt]
type = "composite"
parts = [ {{ verifier = "math", weight = 1.0 }}, {{ verifier = "format", weight = 0.2 }} ]
[plugins.math_kw]
type = "composite"
parts = [ {{ verifier = "math", weight = 1.0, reference_key = "answer" }},
          {{ verifier = "kw", weight = 0.5, reference_key = "keywords" }} ]
""")
        with LocalRewardServer(workers=1, config=str(cfg)) as server:
            url = server.url
            names = {v["name"]: v for v in httpx.get(f"{url}/v1/verifiers").json()["verifiers"]}
            assert {"kw", "len", "math_fmt", "math_kw", "math", "format", "judge", "rm"} <= set(names)
            assert names["kw"]["runs_in"] == "loop" and names["math_fmt"]["runs_in"] == "pool"
            assert names["kw"]["timeout_s"] == 10
            ref = {"answer": "82", "keywords": ["boxed", "zebra"]}
            with SyncRewardClient(url) as client:
                res = client.score([
                    {"verifier": "kw", "completion": "cat", "reference": ["cat", "dog"],
                     "options": {"url": f"{decoy}/score"}},
                    {"verifier": "len", "completion": "ab"},
                    {"verifier": "math_fmt", "completion": WRONG, "reference": "82"},
                    {"verifier": "math_kw", "completion": GOOD, "reference": ref},
                    {"verifier": "math_kw", "completion": GOOD, "reference": {"answer": "82"}},
                ])
            assert [r.reward for r in res[:4]] == pytest.approx([0.5, 0.5, 0.2, 1.25])
            assert res[3].info["parts"]["kw"]["reward"] == 0.5
            assert (res[4].status, res[4].reward) == ("error", None)
            assert res[4].info["failed"] == ["kw"]
            assert httpx.get(f"{decoy}/calls").json()["calls"] == 0  # never followed
