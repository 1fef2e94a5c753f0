"""The lifecycle every long-running cryptovol process shares: signals, metrics server, work loop.

`cryptovol.runtime.runner` holds it once; ingest, featurize, score and the drift monitor supply
only their own step (`Step`) or periodic job.
"""

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
    "Cadence", "MetricsServer", "Runner", "Step", "StopSignal", "close_metrics", "every", "serve_metrics",
]
