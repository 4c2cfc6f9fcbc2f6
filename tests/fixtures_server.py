"""Fixtures for a real reward server on loopback."""
