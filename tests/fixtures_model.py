"""Fixtures for the tiny model and the one shared vLLM engine."""
