"""Drift statistics: what is monitored (`DriftConfig`, `Window`), decimation, the
`wasserstein_mad` stat test and the per-column / prediction / live PR-AUC entries.

Why these choices: see the `cryptovol.drift` package docstring."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.featureset import FEATURE_NAMES
from cryptovol.ticks import format_timestamp_ns

#: Features the report does not monitor, and why (see the `cryptovol.drift` package docstring).
EXCLUDED_FEATURES: dict[str, str] = {
    "mid": "price level: moves in every window, not a change of regime",
    "tod_sin": "time of day: differs between any two windows by construction",
    "tod_cos": "time of day: differs between any two windows by construction",
    "volume_24h_chg_60s": "rolling 24h-volume artefact (a trade leaving the 24h window moves it)",
}


#: Features monitored by default.
DRIFT_FEATURES: tuple[str, ...] = tuple(n for n in FEATURE_NAMES if n not in EXCLUDED_FEATURES)


#: Evidently tests whose statistic is a p-value (drifted when below the threshold); every other
#: test reports a distance (drifted when at or above the threshold).
_PVALUE_TESTS = frozenset(
    {"ks", "chisquare", "z", "t_test", "anderson", "cramer_von_mises", "mannw", "es",
     "fisher_exact", "g_test", "empirical_mmd"}
)


class DriftError(ValueError):
    """Not enough data (or no reference) to compute a meaningful drift report."""


@dataclass(frozen=True)
class DriftConfig:
    """How drift is measured; every field has a default that works on tick features."""

    columns: tuple[str, ...] = DRIFT_FEATURES
    method: str = "wasserstein_mad"
    threshold: float = 2.0
    per_column_threshold: dict[str, float] = field(default_factory=dict)
    drift_share: float = 0.5
    sample_every_s: float = 1.0
    current_minutes: float = 15.0
    min_rows: int = 60
    prediction_method: str = "wasserstein_mad"
    prediction_threshold: float = 2.0

    def threshold_for(self, column: str) -> float:
        return float(self.per_column_threshold.get(column, self.threshold))


@dataclass(frozen=True)
class Window:
    """A half-open event-time interval [start_ns, end_ns) in UTC nanoseconds."""

    start_ns: int
    end_ns: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": format_timestamp_ns(self.start_ns),
            "end": format_timestamp_ns(self.end_ns),
            "start_ns": int(self.start_ns),
            "end_ns": int(self.end_ns),
        }

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Window:
        times = frame["event_time_ns"]
        return cls(int(times.min()), int(times.max()) + 1)


def decimate(features: pd.DataFrame, every_s: float = 1.0) -> pd.DataFrame:
    """Keep the last row per product per `every_s` bucket of event time.

    Tick features are autocorrelated and tick arrival speeds up with volatility; one row per
    second gives every second the same weight and makes windows comparable.
    """
    if features.empty or every_s <= 0:
        return features.reset_index(drop=True)
    bucket = features["event_time_ns"].to_numpy(np.int64) // int(every_s * 1e9)
    keyed = features.assign(_bucket=bucket).sort_values(
        ["product_id", "event_time_ns"], kind="stable"
    )
    last = keyed.drop_duplicates(["product_id", "_bucket"], keep="last")
    return last.drop(columns="_bucket").reset_index(drop=True)


def prepare(features: pd.DataFrame, config: DriftConfig) -> pd.DataFrame:
    """Decimate and keep only warm rows (no NaN/inf in the monitored columns)."""
    missing = [c for c in config.columns if c not in features.columns]
    if missing:
        raise DriftError(f"feature frame lacks monitored columns {missing}")
    frame = decimate(features, config.sample_every_s)
    values = frame[list(config.columns)].to_numpy(np.float64)
    warm = np.isfinite(values).all(axis=1)
    return frame.loc[warm].reset_index(drop=True)


def wasserstein_mad(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein-1 distance divided by the reference's mean absolute deviation from its median.

    Scale-free like Evidently's `wasserstein` (which divides by the standard deviation, floored at
    0.001 -- a floor larger than the whole scale of 1-second log returns), but robust to the
    heavy tails of returns and spreads: a single jump in the reference no longer hides a x4 change.
    A x`k` scale change of a zero-centred feature gives about `k - 1`.
    """
    from scipy.stats import wasserstein_distance

    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    scale = float(np.mean(np.abs(reference - np.median(reference))))
    if not scale > 0:
        scale = float(np.std(reference)) or 1.0
    return float(wasserstein_distance(reference, current)) / scale


def register_stattests() -> None:
    """Register `wasserstein_mad` with Evidently (idempotent), so reports and HTML use it by name."""
    from evidently.legacy.calculations.stattests import registry
    from evidently.legacy.core import ColumnType

    if "wasserstein_mad" in registry._registered_stat_tests:
        return

    def _impl(reference: pd.Series, current: pd.Series, feature_type: Any, threshold: float):
        value = wasserstein_mad(reference.to_numpy(), current.to_numpy())
        return value, value >= threshold

    registry.register_stattest(
        registry.StatTest(
            name="wasserstein_mad",
            display_name="Wasserstein distance (normed by mean absolute deviation)",
            allowed_feature_types=[ColumnType.Numerical],
            default_threshold=2.0,
        ),
        _impl,
    )


def _run_evidently(ref: pd.DataFrame, cur: pd.DataFrame, config: DriftConfig) -> Any:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    register_stattests()

    definition = DataDefinition(numerical_columns=list(ref.columns))
    report = Report([
        DataDriftPreset(
            columns=list(ref.columns),
            drift_share=config.drift_share,
            method=config.method,
            threshold=config.threshold,
            per_column_threshold=dict(config.per_column_threshold) or None,
        )
    ])
    return report.run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )


def _metric_values(snapshot: Any) -> tuple[dict[str, float], float | None]:
    """Column -> ValueDrift statistic, and Evidently's drifted-column count."""
    values: dict[str, float] = {}
    count = None
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith("ValueDrift"):
            values[config["column"]] = float(metric["value"])
        elif kind.endswith("DriftedColumnsCount"):
            count = metric["value"]["count"]
    return values, count


def _is_drifted(stat: float, method: str, threshold: float) -> bool:
    if method in _PVALUE_TESTS:
        return stat < threshold
    return stat >= threshold


def _column_entry(
    column: str, stat: float, method: str, threshold: float, ref: pd.DataFrame, cur: pd.DataFrame
) -> dict[str, Any]:
    entry: dict[str, Any] = {"test": method, "threshold": threshold}
    entry["p_value" if method in _PVALUE_TESTS else "distance"] = _finite(stat)
    entry["statistic"] = _finite(stat)
    entry["drifted"] = _is_drifted(stat, method, threshold)
    entry["reference_mean"] = _finite(ref[column].mean())
    entry["current_mean"] = _finite(cur[column].mean())
    entry["reference_std"] = _finite(ref[column].std())
    entry["current_std"] = _finite(cur[column].std())
    return entry


def prediction_drift_entry(
    reference: pd.Series | np.ndarray, current: pd.Series | np.ndarray, config: DriftConfig
) -> dict[str, Any] | None:
    """Drift of the spike-probability distribution, with the same Evidently stat-test registry."""
    ref = pd.Series(np.asarray(reference, dtype=np.float64)).dropna()
    cur = pd.Series(np.asarray(current, dtype=np.float64)).dropna()
    if len(ref) < config.min_rows or len(cur) < config.min_rows:
        return None
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    register_stattests()
    test = get_stattest(ref, cur, ColumnType.Numerical, config.prediction_method)
    result = test(ref, cur, ColumnType.Numerical, config.prediction_threshold)
    return {
        "test": config.prediction_method,
        "statistic": _finite(result.drift_score),
        "threshold": config.prediction_threshold,
        "drifted": bool(result.drifted),
        "n_reference": len(ref),
        "n_current": len(cur),
        "reference_mean": _finite(ref.mean()),
        "current_mean": _finite(cur.mean()),
    }


def live_pr_auc_entry(
    labels: pd.Series | np.ndarray, scores: pd.Series | np.ndarray, training_pr_auc: float | None
) -> dict[str, Any] | None:
    """Champion PR-AUC on the labelled part of the current window, beside its training PR-AUC."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(s)
    y, s = y[ok], s[ok]
    if len(y) == 0 or y.all() or not y.any():
        return None  # undefined without both classes
    from sklearn.metrics import average_precision_score

    value = float(average_precision_score(y, s))
    return {
        "pr_auc": value,
        "training_pr_auc": _finite(training_pr_auc) if training_pr_auc is not None else None,
        "delta": (value - training_pr_auc) if training_pr_auc is not None else None,
        "n": len(y),
        "base_rate": float(y.mean()),
    }


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def select_window(features: pd.DataFrame, window: Window) -> pd.DataFrame:
    times = features["event_time_ns"]
    return features.loc[(times >= window.start_ns) & (times < window.end_ns)]


def current_window(latest_ns: int, minutes: float) -> Window:
    """The `minutes` of event time ending at (and including) `latest_ns`."""
    return Window(int(latest_ns - minutes * 60e9) + 1, int(latest_ns) + 1)
