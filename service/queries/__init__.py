"""Queries: the DP query engine and the budgeted API flow around it."""
