"""The lifecycle every long-running cryptovol process shares: signals, metrics server, work loop.

`cryptovol.runtime.runner` holds it once; ingest, featurize, score, the drift monitor and the
simulator supply only their own step (`Step`), periodic job or stop callback.
`cryptovol.runtime.background.OrderedWriter` takes the lake writes off the polling thread.
"""

from cryptovol.runtime.background import OrderedWriter
from cryptovol.runtime.runner import (
    Cadence,
    MetricsServer,
    Runner,
    Step,
    StopSignal,
    close_metrics,
    every,
    serve_metrics,
)

__all__ = [
    "Cadence", "MetricsServer", "OrderedWriter", "Runner", "Step", "StopSignal", "close_metrics", "every",
    "serve_metrics",
]
