"""Benchmarks for cache_service (run from the repo root: ``python -m benchmarks.<name>``)."""
