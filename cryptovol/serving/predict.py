"""What each prediction endpoint does, without the web framework: the service only adapts HTTP.

`predict_rows` scores validated feature rows with one model snapshot. `features_for_last_tick`
turns a window of raw ticks into the feature row of the last tick with the same
`cryptovol.features.compute_features` the streaming featurizer runs (no second implementation).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET, WARMUP_S
from cryptovol.serving.champion import ServedModel


class BadRequest(ValueError):
    """Input that passed type checks but cannot be scored; `field` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def prediction_records(
    model: ServedModel, out: pd.DataFrame, keys: list[tuple[str | None, int | None]] | None = None
) -> list[dict[str, Any]]:
    """Model output -> one answer dict per row, stamped with the model that produced it."""
    probs = out["spike_probability"].to_numpy(dtype=np.float64)
    return _answers(model, probs, out["spike_flag"].to_numpy(dtype=bool), keys or [(None, None)] * len(probs))


def matrix_records(
    model: ServedModel, probability: np.ndarray, flag: np.ndarray, rows: list[Any]
) -> list[dict[str, Any]]:
    """`prediction_records` for the service's matrix path: answers keyed by each validated row's
    optional `product_id` / `event_time_ns`, without building an output DataFrame."""
    return _answers(model, probability, flag, [(r.product_id, r.event_time_ns) for r in rows])


def _answers(
    model: ServedModel, probability: np.ndarray, flag: np.ndarray, keys: list[tuple[str | None, int | None]]
) -> list[dict[str, Any]]:
    """The answer dicts both paths return (the service's `Prediction` fields)."""
    name, version, alias = model.name, model.version, model.alias
    return [
        {
            "spike_probability": p,
            "spike_flag": f,
            "model_name": name,
            "model_version": version,
            "model_alias": alias,
            "product_id": k[0],
            "event_time_ns": k[1],
        }
        for p, f, k in zip(np.asarray(probability, dtype=np.float64).tolist(),
                           np.asarray(flag, dtype=bool).tolist(), keys, strict=True)
    ]


def features_for_last_tick(ticks: pd.DataFrame) -> pd.Series:
    """The feature row of the last tick of one product's window (TICK_COLUMNS, event-time order).

    Raises `BadRequest` naming the features whose windows the given ticks do not cover yet
    (they would be NaN: warm-up or a gap longer than MAX_GAP_S inside the window).
    """
    from cryptovol.features import compute_features  # the one feature implementation

    if ticks.empty:
        raise BadRequest("ticks", "no ticks given")
    if ticks["product_id"].nunique() != 1:
        raise BadRequest("ticks", "ticks of exactly one product are required")
    rows = compute_features(ticks, emit_from=len(ticks) - 1)
    if len(rows) != 1:
        raise BadRequest("ticks", f"expected one feature row for the last tick, got {len(rows)}")
    row = rows.iloc[-1]
    cold = [name for name in FEATURE_NAMES if not math.isfinite(float(row[name]))]
    if cold:
        span_s = (int(ticks["event_time_ns"].iloc[-1]) - int(ticks["event_time_ns"].iloc[0])) / 1e9
        raise BadRequest(
            "ticks",
            f"window not warm: features {cold} are undefined for the last tick; send at least "
            f"{WARMUP_S:.0f} s of ticks without gaps (got {span_s:.1f} s, feature set "
            f"{FEATURE_SET.version})",
        )
    return row


def features_frame(row: pd.Series) -> pd.DataFrame:
    return pd.DataFrame([row[FEATURE_NAMES].astype(np.float64).to_numpy()], columns=FEATURE_NAMES)
