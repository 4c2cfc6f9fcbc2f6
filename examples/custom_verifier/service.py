"""A custom verifier service to copy: keyword coverage, served over HTTP.

The rlvr reward server calls it with the same shapes as its own `/v1/score`:

    POST /score   {"items": [{"id", "verifier", "prompt", "completion", "reference", "options"}]}
    ->            {"results": [{"id", "reward", "status", "info"}]}   (same order, one each)

Rules every result must follow (the server checks them and treats a response that
breaks them as an error for the whole call):
- `status` is one of "ok", "timeout", "error", "rejected";
- `reward` is a finite number exactly when `status == "ok"`, else null. Never answer 0
  for "I could not score this": the trainer masks non-ok items instead of learning
  from them.

This example's verifier: the reference is a list of keywords; the reward is the
fraction that occur in the completion (case-insensitive). A reference that is not a
non-empty list of strings is `rejected`. Replace `score_one` with your own logic.

Run it:  uvicorn service:app --app-dir examples/custom_verifier --port 9000
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel


class Item(BaseModel):
    id: str | None = None
    verifier: str | None = None
    prompt: str | None = None
    completion: str
    reference: Any = None
    options: dict[str, Any] | None = None


class Request(BaseModel):
    items: list[Item]


def score_one(item: Item) -> dict[str, Any]:
    ref = item.reference
    if not isinstance(ref, list) or not ref or not all(isinstance(k, str) for k in ref):
        return {"id": item.id, "reward": None, "status": "rejected",
                "info": {"message": "reference must be a non-empty list of keywords"}}
    text = item.completion.lower()
    found = [k for k in ref if k.lower() in text]
    return {"id": item.id, "reward": len(found) / len(ref), "status": "ok",
            "info": {"found": found, "missing": [k for k in ref if k not in found]}}


app = FastAPI(title="keyword verifier")


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/score")
def score(req: Request) -> dict[str, Any]:
    results = []
    for item in req.items:
        try:
            results.append(score_one(item))
        except Exception as e:  # errors are data: one bad item never fails the batch
            results.append({"id": item.id, "reward": None, "status": "error",
                            "info": {"message": f"{type(e).__name__}: {e}"}})
    return {"results": results}
