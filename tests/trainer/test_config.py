"""Typed config: TOML, dotted overrides, strictness."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rlvr.config import TrainConfig, load_config

REPO = Path(__file__).resolve().parents[2]


def test_toml_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "x.toml"
    f.write_text('name = "x"\nsteps = 5\n[algo]\nbeta = 0.01\n')
    cfg = load_config(f, ["algo.beta=0.04", 'sampling.stop=["\\n"]', "optim.lr=2e-4", "data.template=\"Q: {prompt}\""])
    assert cfg.name == "x" and cfg.steps == 5 and cfg.algo.beta == 0.04
    assert cfg.sampling.stop == ["\n"] and cfg.optim.lr == 2e-4 and cfg.data.template == "Q: {prompt}"


def test_typos_and_bad_values_are_errors() -> None:
    with pytest.raises(ValidationError):
        load_config(None, ["algo.betta=0.1"])
    with pytest.raises(ValidationError):
        load_config(None, ["sampling.group_size=1"])
    with pytest.raises(ValueError):
        load_config(None, ["steps"])


def test_shipped_configs_validate() -> None:
    from rlvr.demo import DemoConfig

    load_config(REPO / "configs" / "demo.toml", cls=DemoConfig)
    for name in ("smoke.toml", "gsm8k_qwen2.5_math_1.5b_gpu.toml"):
        assert isinstance(load_config(REPO / "configs" / name), TrainConfig)
    # every field documents itself
    for model in (TrainConfig, *[f.annotation for f in TrainConfig.model_fields.values() if isinstance(f.annotation, type) and hasattr(f.annotation, "model_fields")]):
        for name, field in model.model_fields.items():
            assert field.description or name in ("model", "data", "sampling", "algo", "optim"), (model, name)
