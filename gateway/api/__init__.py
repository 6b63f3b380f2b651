"""HTTP layer: FastAPI routers only. Parses, authenticates, picks the response type."""
