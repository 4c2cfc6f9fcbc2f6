"""Typed experiment config: pydantic models, one small TOML per run, `key=value` overrides.

    rlvr train configs/demo_train.toml algo.beta=0.04 steps=50 sampling.stop='["\\n"]'

What differs from the usual argparse-or-Hydra setups:
- Every field has a description and bounds; unknown keys are errors (`extra="forbid"`),
  so a typo such as `algo.betta=0.1` fails at load instead of being ignored.
- Overrides are dotted paths whose values are parsed as TOML (`3`, `1e-3`, `true`,
  `"x"`, `[1, 2]`) and then typed by the model, so the command line and the file
  speak the same language; a bare word that is not TOML is taken as a string.
- The resolved config is written with the run as TOML (`runs/NAME/config.toml`),
  which `rlvr train` accepts back as is: the effective config is always visible.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


_Strict = StrictModel  # older name, kept for importers


class ModelConfig(StrictModel):
    path: str = Field("tiny", description="HF model directory, or 'tiny' to build the embedded "
                      "tiny Qwen2 (size from `tiny_size`) into RUN_DIR/init.")
    tiny_size: Literal["0.3M", "2.4M", "25M"] = Field(
        "0.3M", description="Size of the embedded model when path = 'tiny' (rlvr.model.SIZES).")
    max_model_len: int = Field(256, ge=16, description="Longest prompt + completion, in tokens.")
    device: str = Field("auto", description="Trainer device: 'auto' (cuda when available), "
                        "'cpu', 'cuda', 'cuda:1', ...")


class DataConfig(StrictModel):
    train: str = Field("arithmetic", description="Training problems: a name in rlvr.data.DATASETS "
                       "(e.g. 'arithmetic', 'gsm8k') or a JSONL/Parquet/`datasets` path.")
    eval: str = Field("arithmetic", description="Held-out problems for periodic evaluation (split "
                      "'test' of a named dataset).")
    train_size: int = Field(4000, ge=1, description="Training problems to load (at most).")
    eval_size: int = Field(200, ge=1, description="Held-out problems evaluated each time.")
    template: str | None = Field(None, description="Prompt template: none (prompt as is), 'chat' "
                                 "(the tokenizer's chat template), or a format string with {prompt}.")
    verifier: str | None = Field(None, description="Override every problem's verifier name.")
    field_map: dict[str, str] | None = Field(None, description="Files: our field -> column, e.g. "
                                             "{prompt = 'question', reference = 'answer'}.")


class SamplingConfig(StrictModel):
    backend: Literal["vllm", "hf"] = Field(
        "vllm", description="Rollout engine: vLLM in this process, or the transformers fallback.")
    group_size: int = Field(8, ge=2, description="G: completions sampled per prompt.")
    prompts_per_step: int = Field(32, ge=1, description="P: prompts per optimizer step (batch = P*G).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (the loss uses the same).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(48, ge=1, description="Longest completion, in tokens.")
    stop: list[str] = Field(default_factory=list, description="Extra stop strings (kept in the text).")
    engine_dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="vLLM weights/activations dtype (bfloat16 on GPUs; the trainer "
        "keeps float32 master weights and casts on sync).")
    gpu_memory_utilization: float = Field(
        0.5, gt=0, le=1, description="vLLM: share of GPU memory for weights + KV cache (GPU only; "
        "leave room for the trainer when colocated).")
    enforce_eager: bool = Field(
        True, description="vLLM: run the model eagerly (default). False compiles it once "
        "(CUDA graphs on GPUs: set it there, as the GPU config does; torch.compile on CPUs, "
        "20-40 s more start-up). Measured on the 2-core CPU: compiling sped up generation "
        "alone but slowed the trainer's forward/backward in the same process, for a slower "
        "step at every size (docs/benchmarks.md).")


class AlgoConfig(StrictModel):
    advantage: Literal["group_std", "batch_std", "none", "rloo"] = Field(
        "group_std", description="Advantage estimator (rlvr.advantages.ADVANTAGE_FNS): GRPO's group "
        "std, batch std, none (Dr. GRPO), or RLOO's leave-one-out baseline.")
    eps_low: float = Field(0.2, ge=0, lt=1, description="Ratio clip below: 1 - eps_low.")
    eps_high: float = Field(0.28, ge=0, description="Ratio clip above: 1 + eps_high (DAPO clip-higher).")
    beta: float = Field(0.0, ge=0, description="KL-to-reference coefficient; 0 loads no reference model.")
    kl_estimator: Literal["k1", "k2", "k3"] = Field(
        "k3", description="Per-token KL estimator (rlvr.losses.KL_ESTIMATORS).")
    loss_agg: Literal["token_mean", "sequence_mean", "constant"] = Field(
        "token_mean", description="How token losses become one number (rlvr.losses.LOSS_AGG): over "
        "all tokens (DAPO), per sequence then over sequences (GRPO), or / (B * max_tokens) (Dr. GRPO).")
    epochs_per_batch: int = Field(1, ge=1, description="Optimizer steps on each sampled batch; the "
                                  "importance ratio is taken against the old (sampling) logprobs.")
    old_logprobs: Literal["sampler", "recompute"] = Field(
        "sampler", description="Old logprobs: the sampler's own (free), or a forward pass of the "
        "trainer's model before the first epoch (when the engine's numerics differ, e.g. bf16).")
    filter_equal_groups: bool = Field(False, description="Leave out of the loss the groups whose "
                                      "scored rewards are all equal (DAPO dynamic sampling, no refill).")
    mask_truncated: bool = Field(False, description="Leave completions cut at max_tokens out of the loss.")


class OptimConfig(StrictModel):
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    grad_clip: float = Field(1.0, gt=0, description="Max global gradient norm.")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup from lr/warmup_steps to lr.")
    schedule: Literal["constant", "cosine"] = Field("constant", description="LR schedule after warmup.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Cosine: final lr as a share of the peak.")
    micro_batch: int = Field(64, ge=1, description="Sequences per forward/backward; gradients are "
                             "accumulated to exactly the update of one big batch.")


class TrainConfig(StrictModel):
    name: str = Field("run", description="Run name; outputs go to runs/NAME unless out_dir is set.")
    out_dir: str | None = Field(None, description="Output directory (default runs/NAME).")
    seed: int = Field(0, description="Seed for model init, data order and sampling.")
    steps: int = Field(60, ge=0, description="Optimizer steps (batches sampled).")
    eval_every: int = Field(10, ge=0, description="Evaluate every N steps (0: only at start and end).")
    save_every: int = Field(0, ge=0, description="Checkpoint every N steps (0: only at the end).")
    reward_url: str | None = Field(None, description="Reward server URL; none starts one locally.")
    reward_workers: int | None = Field(None, ge=1, description="Workers of the locally started "
                                       "reward server (none: its default).")
    tensorboard: bool = Field(True, description="Write TensorBoard event files to RUN_DIR/tb.")
    wandb: bool = Field(False, description="Also log to Weights & Biases (when installed).")
    time_budget_s: float | None = Field(None, gt=0, description="Stop (and checkpoint) after this "
                                        "many seconds; resume later with --resume.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (none: torch's default).")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Policy model.")
    data: DataConfig = Field(default_factory=DataConfig, description="Problems.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="Rollouts.")
    algo: AlgoConfig = Field(default_factory=AlgoConfig, description="GRPO objective.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimizer and schedule.")

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir or f"runs/{self.name}")


# ----------------------------------------------------------------------------- loading


def _parse_value(raw: str) -> Any:
    """TOML-typed value of one override (`3`, `1e-3`, `true`, `"x"`, `[1,2]`); else a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a nested dict: ["algo.beta=0.04"] -> data["algo"]["beta"] = 0.04."""
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


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                cls: type[BaseModel] = TrainConfig) -> Any:
    """Validate TOML file + overrides into `cls`; pydantic's ValidationError on bad input."""
    data: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    return cls.model_validate(apply_overrides(data, overrides or []))


def split_config_arg(config: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """`rlvr train key=value ...` with no file: the first positional is an override."""
    if config is not None and "=" in config:
        return None, [config, *overrides]
    return config, overrides


# ----------------------------------------------------------------------------- saving


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(data: dict[str, Any], _prefix: str = "") -> str:
    """Nested dict -> TOML text. None values are left out (TOML has no null; every field
    that may be None defaults to None, so reading the file back gives the same config)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items()
             if v is not None and not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{_prefix}{k}]", to_toml(v, f"{_prefix}{k}.")]
    return "\n".join(lines).strip() + "\n"


def save_config(cfg: BaseModel, path: str | Path) -> None:
    """Write the resolved config (TOML if the path ends in .toml, else JSON)."""
    data = cfg.model_dump(mode="json")
    text = to_toml(data) if str(path).endswith(".toml") else json.dumps(data, indent=2)
    Path(path).write_text(text)
