"""Stage 1: calibration, rank rules and allocation, factorization, the report."""
