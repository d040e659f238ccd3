"""Benchmarks of Topup on Prefect on the simulated site (issue 7).

Run with ``python -m bench`` (everything) or ``python -m bench overhead|remote|latency|facade|
backfill``; each figure is the median of ``--repeat`` runs, baselines are measured in the same
run. Results go to ``var/bench/<name>.json`` and ``docs/performance.md`` is regenerated from
them. Not a test suite: pytest never collects this package (``testpaths = ["tests"]``).
"""
