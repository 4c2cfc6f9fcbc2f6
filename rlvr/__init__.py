"""rlvr: reinforcement learning from verifiable rewards (trainer side)."""

__version__ = "0.1.0"
