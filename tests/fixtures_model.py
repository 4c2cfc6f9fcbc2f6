"""Session fixtures: the tiny model, the ONE vLLM engine of a test session, an HF sampler.

Every test that needs a rollout engine reuses `vllm_sampler` (engine start is about
25 s here). The engine's weights are shared state: a test that needs particular
weights must `sync_weights` them first, and must not assume what an earlier test left.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The embedded 0.35M-parameter Qwen2 with random weights (seed 0), built once."""
    from rlvr.model import build_tiny_model

    return build_tiny_model(Path(tmp_path_factory.mktemp("tiny")) / "model", max_position=256)


@pytest.fixture(scope="session")
def vllm_sampler(tiny_model_dir: str) -> Iterator[Any]:
    """ONE in-process vLLM engine on `tiny_model_dir` (max_model_len 256) per session."""
    pytest.importorskip("vllm", reason="vLLM is not installed")
    from rlvr.sampler import VLLMSampler

    yield VLLMSampler(tiny_model_dir, max_model_len=256, seed=0)


@pytest.fixture(scope="session")
def hf_sampler(tiny_model_dir: str) -> Any:
    """The transformers fallback with its own copy of the tiny model (sync to change it)."""
    from rlvr.sampler import HFSampler

    return HFSampler(tiny_model_dir, seed=0)
