"""Where a drift report's inputs come from: feature and prediction windows of the lake,
the champion (training window, model) from the registry."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cryptovol.drift.stats import Window, _finite, live_pr_auc_entry
from cryptovol.ticks import format_timestamp_ns

log = logging.getLogger(__name__)


@dataclass
class ChampionInfo:
    """What the drift report needs to know about the current champion."""

    name: str
    version: str | None
    trained_window: Window | None
    training_pr_auc: float | None
    label_config: dict[str, Any]
    model: Any = None  # LoadedSpikeModel, to score the reference window

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "trained_window": self.trained_window.as_dict() if self.trained_window else None,
            "training_pr_auc": self.training_pr_auc,
        }


def load_champion(settings: Any) -> ChampionInfo | None:
    """The champion from the MLflow registry (alias `champion`), or None when there is none yet."""
    try:
        from cryptovol.models.pyfunc import load_spike_model
    except ImportError:  # models package missing: no champion to compare with
        return None
    uri = f"models:/{settings.model_name}@champion"
    try:
        model = load_spike_model(uri, tracking_uri=settings.mlflow_tracking_uri)
    except Exception as exc:  # noqa: BLE001 (no registered model / alias yet is a normal state)
        log.info("no champion at %s: %s", uri, str(exc).splitlines()[0] if str(exc) else exc)
        return None
    window = model.metadata.get("trained_window") or {}
    trained = None
    first, last = window.get("first_event_time_ns"), window.get("last_event_time_ns")
    if first is None and window.get("first_event_time"):
        from cryptovol.ticks import parse_timestamp_ns

        first = parse_timestamp_ns(window["first_event_time"])
        last = parse_timestamp_ns(window["last_event_time"])
    if first is not None and last is not None:
        trained = Window(int(first), int(last) + 1)
    metrics = model.metadata.get("metrics") or {}
    pr_auc = metrics.get("pr_auc")
    return ChampionInfo(
        name=settings.model_name,
        version=model.version,
        trained_window=trained,
        training_pr_auc=_finite(pr_auc) if pr_auc is not None else None,
        label_config=dict(model.label_config),
        model=model,
    )


def read_feature_window(
    settings: Any, window: Window | None, products: Sequence[str] | None = None
) -> pd.DataFrame:
    """Feature rows inside `window` (all if None), through `cryptovol.lake` (one row per key)."""
    from cryptovol import lake
    from cryptovol.featureset import FEATURE_SET

    span = None if window is None else (window.start_ns, window.end_ns)
    lo = hi = None
    if window is not None:
        lo = format_timestamp_ns(window.start_ns)[:10]
        hi = format_timestamp_ns(window.end_ns - 1)[:10]
    frame = lake.read_features_at(settings.data_dir, products, lo, hi, check_version=False,
                                  event_window_ns=span, columns=FEATURE_SET.columns).frame
    return frame.reset_index(drop=True)


def latest_feature_time_ns(settings: Any, products: Sequence[str] | None = None) -> int | None:
    """The newest feature event time in the lake (the end of the current window)."""
    from cryptovol import lake

    return lake.latest_feature_time_ns(settings.data_dir, products)


def read_prediction_window(settings: Any, window: Window) -> pd.DataFrame:
    """Scorer predictions whose feature event time is in `window` (through `cryptovol.lake`)."""
    from cryptovol import lake

    frame = lake.read_predictions(settings.data_dir, (window.start_ns, window.end_ns))
    if "spike_probability" not in frame.columns:
        return pd.DataFrame()
    keys = [c for c in ("product_id", "event_time_ns", "sequence") if c in frame.columns]
    if "scored_at_ns" in frame.columns:  # a row scored twice (scorer restart): keep the latest score
        frame = frame.sort_values("scored_at_ns", kind="stable")
    return frame.drop_duplicates(keys, keep="last").reset_index(drop=True)


def live_pr_auc_for(
    champion: ChampionInfo, features: pd.DataFrame, predictions: pd.DataFrame
) -> dict[str, Any] | None:
    """The champion's PR-AUC on current rows whose forward label horizon has already passed."""
    threshold = champion.label_config.get("spike_threshold")
    keys = ["product_id", "event_time_ns", "sequence"]
    if threshold is None or predictions.empty or not set(keys) <= set(predictions.columns):
        return None
    from cryptovol.labels import LabelConfig, make_labels

    known = {k: champion.label_config[k] for k in ("kind", "horizon_s", "trailing_s", "quantile")
             if k in champion.label_config}
    try:
        config = LabelConfig(**known)
        labels = make_labels(features, config, threshold=float(threshold))
    except ValueError as exc:
        log.info("no live labels: %s", exc)
        return None
    preds = predictions[keys + ["spike_probability"]].astype({"product_id": "string"})
    labels = labels.astype({"product_id": "string"})
    joined = labels.merge(preds, on=keys, how="inner")
    if joined.empty:
        return None
    return live_pr_auc_entry(joined["spike"], joined["spike_probability"], champion.training_pr_auc)
