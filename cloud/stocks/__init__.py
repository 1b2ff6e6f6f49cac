"""Stocks: depots where vehicles are stored, each with a shape (seed 002 Stocks)."""
