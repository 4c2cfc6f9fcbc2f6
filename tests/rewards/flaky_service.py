"""The example keyword service (examples/custom_verifier/service.py) with failure
injection for the remote-verifier tests. Run under uvicorn in a subprocess.

POST /_control {"fail_next": N, "delay_s": S, "garbage": bool} makes the next N
POST /score answer 503, every answer wait S seconds, and (garbage) answer a result
list of the wrong length; it also resets the call counter. GET /calls returns how
many POST /score arrived.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from fastapi.responses import JSONResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "custom_verifier"))
import service  # noqa: E402

app = service.app
STATE: dict[str, Any] = {"calls": 0, "fail_next": 0, "delay_s": 0.0, "garbage": False}


@app.middleware("http")
async def inject(request: Any, call_next: Any) -> Any:
    if request.method == "POST" and request.url.path == "/score":
        STATE["calls"] += 1
        if STATE["delay_s"]:
            await asyncio.sleep(STATE["delay_s"])
        if STATE["fail_next"] > 0:
            STATE["fail_next"] -= 1
            return JSONResponse({"detail": "injected failure"}, status_code=503)
        if STATE["garbage"]:
            return JSONResponse({"results": []})
    return await call_next(request)


@app.get("/calls")
def calls() -> dict[str, int]:
    return {"calls": STATE["calls"]}


@app.post("/_control")
def control(body: dict[str, Any]) -> dict[str, Any]:
    STATE.update(calls=0, fail_next=int(body.get("fail_next", 0)),
                 delay_s=float(body.get("delay_s", 0.0)), garbage=bool(body.get("garbage", False)))
    return STATE
