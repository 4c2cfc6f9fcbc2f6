"""Shared fixtures. Each fixture module is owned by the package it serves."""

pytest_plugins = ["tests.fixtures_server", "tests.fixtures_model"]
