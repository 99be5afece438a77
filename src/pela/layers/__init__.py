"""The low-rank layer pela swaps in for linear layers."""
