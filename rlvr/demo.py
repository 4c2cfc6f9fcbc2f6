"""`rlvr demo`: the main job on the embedded default.

Until the GRPO trainer lands (issue 4) the demo does what issue 2 allows: it starts
the reward server on loopback, scores a sample batch of GSM8K solutions (each gold
solution, the same with its final number changed, a hedged answer, an empty one and
a pathological one) and writes `runs/demo/score_report.md`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rlvr.reward_client import LocalRewardServer, SyncRewardClient

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def sample_batch(n: int) -> list[dict]:
    rows = [json.loads(line) for line in open(DATA / "gsm8k_test.jsonl")][:n]
    items = []
    for r in rows:
        head, tail = r["answer"].rsplit("####", 1)
        wrong = int(tail.strip().replace(",", "")) + 1
        items.append({"id": f"{r['idx']}-gold", "verifier": "math", "completion": r["answer"], "reference": r["answer"]})
        items.append({"id": f"{r['idx']}-wrong", "verifier": "math", "completion": f"{head}#### {wrong}", "reference": r["answer"]})
    gold = rows[0]["answer"]
    items += [
        {"id": "hedged", "verifier": "math", "completion": f"\\boxed{{{gold.rsplit('####', 1)[1].strip()}}} or \\boxed{{0}}", "reference": gold},
        {"id": "empty", "verifier": "math", "completion": "", "reference": gold},
        {"id": "pathological", "verifier": "math", "completion": "\\boxed{2003^{2002^{2001}}}", "reference": "5"},
        {"id": "unknown-verifier", "verifier": "nope", "completion": "1", "reference": "1"},
    ]
    return items


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="rlvr demo")
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--out", default="runs/demo")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    items = sample_batch(args.problems)
    t0 = time.perf_counter()
    with LocalRewardServer() as srv, SyncRewardClient(srv.url) as client:
        print(f"reward server up at {srv.url} ({time.perf_counter() - t0:.1f} s)")
        t1 = time.perf_counter()
        results = client.score(items)
        dt = time.perf_counter() - t1
    lines = ["| id | status | reward | answer |", "|---|---|---|---|"]
    for it, r in zip(items, results, strict=True):
        lines.append(f"| {it['id']} | {r.status} | {r.reward} | {r.info.get('answer', r.info.get('message', ''))} |")
    gold_ok = sum(r.reward == 1.0 for it, r in zip(items, results, strict=True) if it["id"].endswith("-gold"))
    wrong_ok = sum(r.reward == 0.0 for it, r in zip(items, results, strict=True) if it["id"].endswith("-wrong"))
    summary = (f"Scored {len(items)} items in {dt:.2f} s: {gold_ok}/{args.problems} gold solutions got 1.0, "
               f"{wrong_ok}/{args.problems} altered ones got 0.0; the pathological item is "
               f"`{results[-2].status}` and the unknown verifier `{results[-1].status}`.")
    report = "# rlvr demo: reward server on a sample batch\n\n" + summary + "\n\n" + "\n".join(lines) + "\n"
    (out / "score_report.md").write_text(report)
    print(report)
    print(f"wrote {out / 'score_report.md'}")
    return 0 if gold_ok == wrong_ok == args.problems else 1
