"""Dagster sensors: new landing files, drift -> retrain, run and check failure alerts."""
