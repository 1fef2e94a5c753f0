"""Serving the champion: one model loader with hot swap shared by the BentoML service and the
streaming scorer, request validation, shadow scoring and the serving metrics.

Framework-free (no BentoML, no Dagster): the adapters in `bento/` and `cryptovol.scoring` call it.
"""
