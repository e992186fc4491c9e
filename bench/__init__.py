"""devicecloud's benchmark harness: a lean asyncio load generator and its scenarios.

Run from the repository's root with the project's virtualenv::

    .venv/bin/python -m bench.loadgen --help

Results (one JSON file per command) go to `bench/results/`; `docs/benchmarks.md` explains them.
"""
