"""Fixtures for a real reward server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rlvr.reward_client import LocalRewardServer


@pytest.fixture(scope="session")
def reward_server_url() -> Iterator[str]:
    """One `rlvr serve` subprocess on 127.0.0.1 for the whole session (2 workers)."""
    with LocalRewardServer(workers=2) as srv:
        yield srv.url
