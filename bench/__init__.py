"""Benchmarks of the TaskJuice bot: `python -m bench` prints figures and writes results.json."""
