"""Typed experiment config: pydantic models, one small TOML per run, `key=value` overrides.

    rlvr train configs/demo.toml algo.beta=0.04 steps=50

Every field has a description; unknown keys are errors, so a typo never passes
silently. The resolved config is saved with the run.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    path: str = Field("tiny", description="HF model directory, or 'tiny' to build the embedded "
                      "tiny Qwen2 (size from `tiny_size`) into the run directory.")
    tiny_size: Literal["0.3M", "2.4M", "25M"] = Field("0.3M", description="Size of the embedded model.")
    max_model_len: int = Field(256, ge=16, description="Longest prompt+completion, tokens.")


class DataConfig(_Strict):
    train: str = Field("arithmetic", description="Dataset name (rlvr.data.DATASETS, 'arithmetic'), "
                       "or a JSONL/Parquet/datasets path.")
    eval: str = Field("arithmetic", description="Held-out dataset for periodic evaluation.")
    train_size: int = Field(4000, ge=1, description="Problems to draw for training (generated tasks).")
    eval_size: int = Field(200, ge=1, description="Held-out problems evaluated.")
    template: str | None = Field(None, description="Prompt template: None (as is), 'chat', or a "
                                 "format string with {prompt}.")
    verifier: str | None = Field(None, description="Override the dataset's verifier.")


class SamplingConfig(_Strict):
    backend: Literal["vllm", "hf"] = Field("vllm", description="Rollout engine.")
    group_size: int = Field(8, ge=2, description="G: completions sampled per prompt.")
    prompts_per_step: int = Field(32, ge=1, description="P: prompts per optimizer step.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(48, ge=1, description="Longest completion, tokens.")
    stop: list[str] = Field(default_factory=list, description="Extra stop strings.")


class AlgoConfig(_Strict):
    advantage: Literal["group_std", "batch_std", "none", "rloo"] = Field(
        "group_std", description="Advantage scaling (rlvr.advantages.ADVANTAGE_FNS).")
    eps_low: float = Field(0.2, ge=0, description="Lower clip range of the ratio.")
    eps_high: float = Field(0.28, ge=0, description="Upper clip range (DAPO clip-higher).")
    beta: float = Field(0.0, ge=0, description="KL coefficient; 0 loads no reference model.")
    kl_estimator: Literal["k1", "k2", "k3"] = Field("k3", description="KL estimator.")
    loss_agg: Literal["token_mean", "sequence_mean", "constant"] = Field(
        "token_mean", description="How token losses become one number (rlvr.losses.LOSS_AGG).")
    epochs_per_batch: int = Field(1, ge=1, description="Optimisation passes over each batch.")
    filter_equal_groups: bool = Field(False, description="Drop groups whose rewards are all equal "
                                      "(DAPO dynamic sampling).")
    mask_truncated: bool = Field(False, description="Leave completions cut at max_tokens out of the loss.")


class OptimConfig(_Strict):
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    grad_clip: float = Field(1.0, gt=0, description="Max global gradient norm.")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup steps.")
    schedule: Literal["constant", "cosine"] = Field("constant", description="LR schedule after warmup.")
    micro_batch: int = Field(64, ge=1, description="Sequences per forward/backward; gradients are "
                             "accumulated to the same update as one big batch.")


class TrainConfig(_Strict):
    name: str = Field("run", description="Run name; outputs go to runs/NAME.")
    out_dir: str | None = Field(None, description="Output directory (default runs/NAME).")
    seed: int = Field(0, description="Seed for data order, sampling and init.")
    steps: int = Field(60, ge=0, description="Optimizer steps.")
    eval_every: int = Field(10, ge=0, description="Evaluate every N steps (0: only at start/end).")
    save_every: int = Field(0, ge=0, description="Checkpoint every N steps (0: only at the end).")
    reward_url: str | None = Field(None, description="Reward server URL; None starts one locally.")
    tensorboard: bool = Field(True, description="Write TensorBoard event files.")
    wandb: bool = Field(False, description="Log to Weights & Biases when installed.")
    time_budget_s: float | None = Field(None, gt=0, description="Stop early after this many seconds.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    algo: AlgoConfig = Field(default_factory=AlgoConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir or f"runs/{self.name}")


def _parse_value(raw: str) -> Any:
    """TOML-typed value of one override (`3`, `1e-3`, `true`, `"x"`, `[1,2]`); else a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for ov in overrides:
        if "=" not in ov:
            raise ValueError(f"override {ov!r} is not key=value")
        key, raw = ov.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {key!r}: {p!r} is not a section")
        node[parts[-1]] = _parse_value(raw.strip())
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None, cls: type[BaseModel] = TrainConfig) -> Any:
    data: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    return cls.model_validate(apply_overrides(data, overrides or []))


def save_config(cfg: BaseModel, path: str | Path) -> None:
    Path(path).write_text(json.dumps(cfg.model_dump(), indent=2))
