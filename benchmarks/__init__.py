"""pela's benchmarks and studies: each module a script run from the repository's root,
``.venv/bin/python -m benchmarks.NAME``, writing its figures to benchmarks/results/NAME.json
(`benchmarks._results`), which docs/BENCHMARKS.md quotes; ``make bench`` runs the quick ones.
"""
