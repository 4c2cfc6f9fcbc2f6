"""Sandboxed execution of untrusted programs (see sandbox/THREAT_MODEL in the package docstring of sandbox.native)."""
