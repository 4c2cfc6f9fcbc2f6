"""Fixtures for the tiny model and the one shared vLLM engine of a test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    from rlvr.model import build_tiny_model

    return build_tiny_model(Path(tmp_path_factory.mktemp("tiny")) / "model", max_position=256)


@pytest.fixture(scope="session")
def vllm_sampler(tiny_model_dir: str) -> Iterator[object]:
    """ONE vLLM engine per test session (engine start ~15-25 s); tests that change its
    weights must sync the weights they need first."""
    from rlvr.sampler import VLLMSampler

    yield VLLMSampler(tiny_model_dir, max_model_len=256, seed=0)
