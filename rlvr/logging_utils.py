"""Metrics sinks: JSONL always, TensorBoard when asked, Weights & Biases when installed.

One `log(step, metrics)` call writes the same numbers everywhere. Differences from
the usual logger: NaN (e.g. the mean reward of a step where nothing could be scored)
is written to JSONL as `null` rather than dropped or turned into 0, and is skipped in
TensorBoard/W&B plots; a missing `wandb` package is reported once, not an error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class MetricsLogger:
    """`RUN_DIR/metrics.jsonl` (+ `RUN_DIR/tb/`, + a W&B run)."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True, wandb: bool = False,
                 name: str = "run", config: dict[str, Any] | None = None) -> None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "metrics.jsonl"
        self.tb: Any = None
        self.wandb: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"))
        if wandb:
            try:
                import wandb as wandb_mod
            except ImportError:
                print("wandb is not installed; logging to JSONL and TensorBoard only")
            else:
                self.wandb = wandb_mod.init(project="rlvr", name=name, config=config or {})

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}) + "\n")
        numeric = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, int | float) and math.isfinite(v)}
        if self.tb is not None:
            for k, v in numeric.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(numeric, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl (null stays None)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
