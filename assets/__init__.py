"""Dagster assets: each calls one cryptovol core function and records what happened."""
