"""Benchmarks: metrics (pure functions), datasets and runners."""
