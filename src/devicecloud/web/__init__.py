"""HTTP endpoints (ASGI)."""
