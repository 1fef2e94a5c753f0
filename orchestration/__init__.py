"""Dagster wiring for cryptovol: Definitions, resources, jobs, schedules (thin adapters)."""
