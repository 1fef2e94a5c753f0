"""Feature and prediction drift between the champion's training window and the recent stream.

The report answers one question for the retraining loop: *does the market the champion is scoring
now still look like the market it was trained on?* It is computed with Evidently (`Report` +
`DataDriftPreset`, imported lazily: the import costs ~6 s) and saved as
`<data>/reports/drift/<timestamp>.{html,json}` plus `latest.json`. The JSON summary is the stable
interface the drift sensor reads (keys in `SUMMARY_KEYS`).

Why not Evidently's defaults: its per-column tests (K-S for small samples, a 0.1 normalized
distance for large ones) flag drift on market data almost always, because tick features are
heavily autocorrelated (thousands of rows carry the information of a few dozen independent
observations) and volatility clusters. Three choices make calm data look calm and a real regime
change look drifted:

1. *Decimation*: one row per product per `sample_every_s` (the last tick of each second), so busy
   periods are not overweighted.
2. *Scale-free columns only*: `mid` (the price level), `tod_sin`/`tod_cos` (time of day, which by
   construction differs between any two windows) and `volume_24h_chg_60s` (a rolling-24h artefact)
   are not monitored (`EXCLUDED_FEATURES`).
3. *A robust, scale-free distance*: `wasserstein_mad`, a custom Evidently stat test = Wasserstein-1
   distance divided by the reference's mean absolute deviation (Evidently's own `wasserstein`
   divides by a std floored at 0.001, larger than the whole scale of 1-second returns, and the std
   of heavy-tailed returns is dominated by a few jumps). A column drifts when the distance >=
   `threshold` (default 2.0: the distributions moved by two typical deviations); the dataset
   drifts when the share of drifted columns >= `drift_share` (default 0.5).

Measured on simulator data (8 seeds, reference = 30 min, windows after it; docs/RELIABILITY.md,
`python -m bench.bench_drift`): calm 3-min windows reach share >= 0.5 in 2% of windows (bursts),
calm 15-min windows never (max 0.29); after a x4 volatility regime change every 3- and 15-min
window does (min 0.50 and 0.79; typically 13 of 14 columns). The retrain policy's persistence
(consecutive drifted reports) absorbs the rare calm burst. On the real BTC-USD recording of
2025-12-06 (reference 01:00-02:00 UTC, eleven 15-30 min segments until 07:42) the share stays at
0.00-0.14: no dataset drift within one quiet day, as expected. Evidently's default preset on the
same simulator windows flags 98% of the calm ones.

The package: `stats` (what is measured and how), `sources` (the lake and the registry),
`report` (Evidently -> summary + files), `metrics` (Prometheus), `monitor` (the periodic loop).
"""

from cryptovol.drift.metrics import (
    drift_metrics,
)
from cryptovol.drift.monitor import (
    DriftMonitor,
)
from cryptovol.drift.report import (
    SUMMARY_KEYS,
    DriftResult,
    build_drift_report,
    drift_report,
    read_latest,
)
from cryptovol.drift.sources import (
    ChampionInfo,
    latest_feature_time_ns,
    live_pr_auc_for,
    load_champion,
    read_feature_window,
    read_prediction_window,
)
from cryptovol.drift.stats import (
    DRIFT_FEATURES,
    EXCLUDED_FEATURES,
    DriftConfig,
    DriftError,
    Window,
    current_window,
    decimate,
    live_pr_auc_entry,
    prediction_drift_entry,
    prepare,
    register_stattests,
    select_window,
    wasserstein_mad,
)

__all__ = [
    "ChampionInfo",
    "DRIFT_FEATURES",
    "DriftConfig",
    "DriftError",
    "DriftMonitor",
    "DriftResult",
    "EXCLUDED_FEATURES",
    "SUMMARY_KEYS",
    "Window",
    "build_drift_report",
    "current_window",
    "decimate",
    "drift_metrics",
    "drift_report",
    "latest_feature_time_ns",
    "live_pr_auc_entry",
    "live_pr_auc_for",
    "load_champion",
    "prediction_drift_entry",
    "prepare",
    "read_feature_window",
    "read_latest",
    "read_prediction_window",
    "register_stattests",
    "select_window",
    "wasserstein_mad",
]
