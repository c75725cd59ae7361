"""Benchmarks of the payouts pipeline on the real stack (PostgreSQL, Redis, anvil).

Run with ``scripts/bench`` (``--quick`` for a smoke-sized run). Each scenario module measures
one part of the pipeline against a baseline and a floor (``floors``) measured in the same
run, and reports rows that ``report`` renders as Markdown. Nothing here is imported by ``payouts``.
"""
