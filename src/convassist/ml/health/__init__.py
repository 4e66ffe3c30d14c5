"""Health: `/health` and `/metrics`."""
