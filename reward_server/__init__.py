"""HTTP reward server: FastAPI app that dispatches scoring requests to verifiers."""
