"""Typed config: TOML, dotted overrides typed by the model, strictness, the saved config."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from rlvr.config import TrainConfig, load_config, save_config, split_config_arg
from rlvr.demo import DemoConfig
from rlvr.sft import SFTConfig

REPO = Path(__file__).resolve().parents[2]


def test_toml_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "x.toml"
    f.write_text('name = "x"\nsteps = 5\n[algo]\nbeta = 0.01\n')
    cfg = load_config(f, ["algo.beta=0.04", 'sampling.stop=["\\n"]', "optim.lr=2e-4",
                          'data.template="Q: {prompt}"', "algo.mask_truncated=true", "eval_every=3"])
    assert cfg.name == "x" and cfg.steps == 5 and cfg.algo.beta == 0.04 and cfg.eval_every == 3
    assert cfg.sampling.stop == ["\n"] and cfg.optim.lr == 2e-4 and cfg.data.template == "Q: {prompt}"
    assert cfg.algo.mask_truncated is True
    # a bare word that is not TOML is a string, then typed by the model
    assert load_config(None, ["algo.advantage=rloo"]).algo.advantage == "rloo"


def test_typos_and_bad_values_are_errors() -> None:
    for bad in (["algo.betta=0.1"], ["sampling.group_size=1"], ["algo.advantage=ppo"],
                ["optim.lr=-1"], ["sampling.top_p=1.5"], ["steps=many"]):
        with pytest.raises(ValidationError):
            load_config(None, bad)
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["steps"])


def test_command_line_without_a_file() -> None:
    assert split_config_arg("steps=3", ["seed=1"]) == (None, ["steps=3", "seed=1"])
    assert split_config_arg("c.toml", ["seed=1"]) == ("c.toml", ["seed=1"])


def test_saved_config_reads_back_identically(tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs" / "gsm8k_qwen2.5_math_1.5b_gpu.toml",
                      ["sampling.stop=['</answer>', \"\\n\\n\"]", "time_budget_s=60"])
    save_config(cfg, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == cfg
    demo = load_config(REPO / "configs" / "demo.toml", cls=DemoConfig)
    save_config(demo, tmp_path / "demo.toml")
    assert load_config(tmp_path / "demo.toml", cls=DemoConfig) == demo


def _all_fields(model: type[BaseModel]):
    for name, field in model.model_fields.items():
        yield model, name, field
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _all_fields(field.annotation)


def test_shipped_configs_validate_and_every_field_is_documented() -> None:
    load_config(REPO / "configs" / "demo.toml", cls=DemoConfig)
    load_config(REPO / "configs" / "sft_arithmetic.toml", cls=SFTConfig)
    for name in ("smoke.toml", "demo_train.toml", "gsm8k_qwen2.5_math_1.5b_gpu.toml"):
        assert isinstance(load_config(REPO / "configs" / name), TrainConfig)
    for cls in (TrainConfig, SFTConfig, DemoConfig):
        undocumented = [f"{m.__name__}.{n}" for m, n, f in _all_fields(cls) if not f.description]
        assert not undocumented, undocumented
