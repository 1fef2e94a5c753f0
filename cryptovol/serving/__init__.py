"""Serving the champion: one model loader with hot swap shared by the BentoML service and the
streaming scorer, request validation, shadow scoring and the serving metrics.

Framework-free (no BentoML, no Dagster): the adapters in `bento/` and `cryptovol.scoring` call it.
`runtime` holds how the service runs (options, ASGI middlewares, stopping `bentoml serve`), `host`
what it serves (champion, opt-in challenger, one function per endpoint).
"""
