"""Errors the cost layer raises for bad input (non-positive prices, mixed units, unknown names)."""


class CostError(ValueError):
    """Bad input to the cost layer; the message names the problem. The CLI exits 2 on it."""
