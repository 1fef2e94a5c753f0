"""The versioned feature-set definition: the single contract between featurizers, models,
the Parquet schema and the service.

Anything that stores or consumes feature rows checks itself against `FEATURE_SET` (see
`FeatureSet.validate_columns`), so a renamed or missing feature is a loud error, never a silent NaN.
Bump `FEATURE_SET_VERSION` whenever a definition, window or unit changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FEATURE_SET_VERSION = "1.0.0"

#: A gap between consecutive ticks of one product longer than this starts a new segment:
#: windows never reach across it and warm-up starts again (features are NaN until warm).
MAX_GAP_S = 15.0

#: Identity columns every feature row carries before the features themselves.
KEY_COLUMNS = ("product_id", "event_time_ns", "sequence")


class FeatureSchemaError(ValueError):
    """Feature rows whose columns or version do not match the feature-set definition."""


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its name, dtype, unit, the lookback it needs, and what it means."""

    name: str
    unit: str
    window_s: float
    description: str
    dtype: str = "float64"


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("mid", "USD", 0, "(best_bid + best_ask) / 2 of this tick"),
    FeatureSpec("spread", "USD", 0, "best_ask - best_bid of this tick"),
    FeatureSpec("spread_bps", "bps", 0, "spread / mid * 1e4"),
    FeatureSpec("ret_1s", "log-return", 1, "log(mid / mid as-of the tick at or before t - 1 s)"),
    FeatureSpec("ret_5s", "log-return", 5, "log(mid / mid as-of t - 5 s)"),
    FeatureSpec("ret_30s", "log-return", 30, "log(mid / mid as-of t - 30 s)"),
    FeatureSpec("ret_60s", "log-return", 60, "log(mid / mid as-of t - 60 s)"),
    FeatureSpec(
        "rv_30s", "log-return", 30,
        "sqrt of the sum of squared 1-second mid log returns over the last 30 s "
        "(1-second grid of whole UTC seconds, plus the partial second up to this tick)",
    ),
    FeatureSpec("rv_60s", "log-return", 60, "realized volatility over the last 60 s, as rv_30s"),
    FeatureSpec("rv_300s", "log-return", 300, "realized volatility over the last 300 s, as rv_30s"),
    FeatureSpec(
        "ewma_vol", "log-return / sqrt(s)", 300,
        "sqrt of the exponentially weighted mean of squared 1-second returns "
        "(half-life 30 s, RiskMetrics-style, truncated at 300 s)",
    ),
    FeatureSpec(
        "vol_of_vol", "log-return", 150,
        "standard deviation of the per-second rv_30s over the last 120 s",
    ),
    FeatureSpec("tick_rate_30s", "ticks/s", 30, "ticks of this product in (t - 30 s, t] / 30"),
    FeatureSpec("tick_rate_60s", "ticks/s", 60, "ticks of this product in (t - 60 s, t] / 60"),
    FeatureSpec(
        "book_imbalance", "ratio", 0,
        "(bid_qty - ask_qty) / (bid_qty + ask_qty) in [-1, 1]; 0 when sizes are unknown",
    ),
    FeatureSpec(
        "volume_24h_chg_60s", "ratio", 60,
        "volume_24h / volume_24h as-of t - 60 s - 1; 0 when volume is unknown",
    ),
    FeatureSpec("tod_sin", "unit", 0, "sin(2 pi * UTC seconds of day / 86400)"),
    FeatureSpec("tod_cos", "unit", 0, "cos(2 pi * UTC seconds of day / 86400)"),
)

#: The longest lookback any feature needs; also the warm-up length after a segment starts.
WARMUP_S = 300.0
#: How much history a streaming featurizer must keep to compute the next row exactly.
HISTORY_S = WARMUP_S + MAX_GAP_S + 5.0


@dataclass(frozen=True)
class FeatureSet:
    version: str
    features: tuple[FeatureSpec, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def columns(self) -> list[str]:
        """Full column order of a feature row: keys, then features."""
        return [*KEY_COLUMNS, *self.names]

    def dtypes(self) -> dict[str, np.dtype]:
        return {f.name: np.dtype(f.dtype) for f in self.features}

    def validate_columns(self, columns: list[str] | tuple[str, ...], *, exact: bool = False) -> None:
        """Raise `FeatureSchemaError` naming missing (and, if `exact`, extra) features."""
        present = set(columns)
        missing = [n for n in self.names if n not in present]
        extra = sorted(present - set(self.columns)) if exact else []
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing features {missing}")
            if extra:
                parts.append(f"unexpected columns {extra}")
            raise FeatureSchemaError(
                f"feature set {self.version}: " + "; ".join(parts)
            )

    def check_version(self, version: str) -> None:
        if version != self.version:
            raise FeatureSchemaError(
                f"feature-set version mismatch: model/data has {version!r}, "
                f"this code computes {self.version!r}"
            )


FEATURE_SET = FeatureSet(version=FEATURE_SET_VERSION, features=FEATURES)
FEATURE_NAMES: list[str] = FEATURE_SET.names
