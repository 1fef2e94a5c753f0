"""What the dashboard shows, read through the project's own lake, alert, drift and registry code.

Every function returns a JSON-able dict with a `state`: "ready" (data to draw), "empty" (nothing
yet, with a `message` saying what produces it) or "error" (with the error), so the page never
shows a blank chart without saying why.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.config import Settings
from cryptovol.ticks import format_timestamp_ns

log = logging.getLogger(__name__)

SEC = 1_000_000_000
#: The held-out evaluation uses at most this many of the newest hours of lake rows.
MAX_EVAL_HOURS = 6.0
#: Threshold grid of the slider (probability 0.00 .. 1.00).
THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)


def _iso(ns: Any) -> str:
    return format_timestamp_ns(int(ns))[:23] + "Z"


def _empty(message: str, **extra: Any) -> dict[str, Any]:
    return {"state": "empty", "message": message, **extra}


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


# --- live signal ------------------------------------------------------------------------------------


def signal(settings: Settings, minutes: float = 30.0, champion: Any | None = None) -> dict[str, Any]:
    """Per product, on a 1 s grid over the last `minutes` of the lake: the spike probability (the
    scorer's predictions; where there are none, the champion scores the feature rows) and the
    realized volatility (rv_60s, in bps)."""
    from cryptovol import lake

    con = lake.connect(settings.data_dir)
    try:
        latest = con.execute("SELECT max(event_time_ns) FROM features").fetchone()[0]
        if latest is None:
            return _empty("no feature rows in the lake yet: start the featurizer (make demo does)")
        start = int(latest - minutes * 60 * SEC)
        rv = con.execute(
            "SELECT product_id, event_time_ns // 1000000000 AS sec, arg_max(rv_60s, event_time_ns) AS rv "
            "FROM features WHERE event_time_ns >= ? GROUP BY ALL ORDER BY product_id, sec", [start]).df()
        preds = con.execute(
            "SELECT product_id, event_time_ns // 1000000000 AS sec, "
            "arg_max(spike_probability, event_time_ns) AS p, bool_or(spike_flag) AS flag "
            "FROM predictions WHERE event_time_ns >= ? GROUP BY ALL ORDER BY product_id, sec", [start]
        ).df() if _has_column(con, "predictions", "spike_flag") else pd.DataFrame()
        source = "scorer predictions (lake)"
        if preds.empty and champion is not None:
            preds = _score_window(con, start, champion)
            source = f"champion v{champion.version} on lake features"
    finally:
        con.close()
    products = {}
    for product, rows in rv.groupby("product_id", sort=True):
        p_rows = preds[preds["product_id"] == product] if not preds.empty else preds
        products[str(product)] = {
            "t": [_iso(s * SEC) for s in rows["sec"]],
            "realized_vol_bps": [_finite(v * 1e4) for v in rows["rv"]],
            "pt": [_iso(s * SEC) for s in p_rows["sec"]] if len(p_rows) else [],
            "probability": [_finite(v) for v in p_rows["p"]] if len(p_rows) else [],
            "alerts": [_iso(s * SEC) for s in p_rows.loc[p_rows["flag"].astype(bool), "sec"]]
            if len(p_rows) else [],
        }
    n_pred = sum(len(v["probability"]) for v in products.values())
    return {"state": "ready" if n_pred else "empty",
            "message": "" if n_pred else "no predictions yet: start the scorer or register a champion",
            "source": source if n_pred else "", "window_end": _iso(latest), "minutes": minutes,
            "products": products}


def _has_column(con: Any, view: str, column: str) -> bool:
    return column in [r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()]


def _score_window(con: Any, start: int, champion: Any) -> pd.DataFrame:
    from cryptovol.featureset import FEATURE_NAMES

    cols = ", ".join(f"arg_max({c}, event_time_ns) AS {c}" for c in FEATURE_NAMES)
    rows = con.execute(f"SELECT product_id, event_time_ns // 1000000000 AS sec, {cols} FROM features "
                       "WHERE event_time_ns >= ? GROUP BY ALL ORDER BY product_id, sec", [start]).df()
    if rows.empty:
        return pd.DataFrame()
    out = champion.predict(rows)
    return pd.DataFrame({"product_id": rows["product_id"], "sec": rows["sec"],
                         "p": out["spike_probability"].to_numpy(), "flag": out["spike_flag"].to_numpy()})


# --- alerts and champion changes ---------------------------------------------------------------------


def timeline(settings: Settings, limit: int = 200) -> dict[str, Any]:
    """Alerts from the alert log and the registry's champion history, newest last."""
    from cryptovol.alerts import CHAMPION_CHANGED, alert_log_path, read_alerts

    events = []
    try:
        alerts = read_alerts(alert_log_path(settings))
    except (OSError, ValueError) as exc:
        return {"state": "error", "message": f"alert log unreadable: {exc}", "events": []}
    for a in alerts[-limit:]:
        events.append({"time": a.get("created_at"), "kind": a.get("kind"), "severity": a.get("severity"),
                       "title": a.get("title"), "champion_change": a.get("kind") == CHAMPION_CHANGED})
    for v in champion_versions(settings):
        if v.get("champion_at"):
            events.append({"time": v["champion_at"], "kind": "registry", "severity": "info",
                           "title": f"v{v['version']} ({v['model_kind'] or '?'}) in the champion history",
                           "champion_change": True})
    events.sort(key=lambda e: str(e["time"]))
    if not events:
        return _empty("no alerts or champion changes yet", events=[])
    return {"state": "ready", "message": "", "events": events}


def champion_versions(settings: Settings) -> list[dict[str, Any]]:
    """Registry versions (registry.list_versions) with the time each entered the champion history."""
    from cryptovol.models import registry

    try:
        client = _client(settings)
        versions = registry.list_versions(settings.model_name, client)
        history = set(registry.champion_history(settings.model_name, client)) if versions else set()
    except Exception as exc:  # noqa: BLE001 - no store / no model yet
        log.info("registry unavailable: %s", exc)
        return []
    for v in versions:
        in_history = v["version"] in history or "champion" in v.get("aliases", [])
        created = v.get("created")
        v["champion_at"] = (time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(created / 1000))
                            if in_history and created else None)
    return versions


def _client(settings: Settings) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)


# --- the champion on held-out data ---------------------------------------------------------------------


def load_champion(settings: Settings) -> Any | None:
    from cryptovol.models.pyfunc import load_spike_model

    try:
        return load_spike_model(f"models:/{settings.model_name}@champion",
                                tracking_uri=settings.mlflow_tracking_uri)
    except Exception as exc:  # noqa: BLE001 - no champion yet is a normal state
        log.info("no champion: %s", str(exc).splitlines()[0] if str(exc) else exc)
        return None


def champion_evaluation(settings: Settings, champion: Any | None) -> dict[str, Any]:
    """PR curve, calibration and the slider's precision/recall/alert-rate table of the champion on
    held-out lake rows: feature rows after its training window whose label horizon has passed,
    one per product-second, labelled with the champion's own stored spike threshold."""
    if champion is None:
        return _empty("no champion in the registry yet: train one (`cryptovol train`, or make demo)")
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve

    from cryptovol import lake
    from cryptovol.labels import LabelConfig, make_labels
    from cryptovol.models import metrics as M

    label_config = champion.label_config
    threshold = label_config.get("spike_threshold")
    if threshold is None:
        return _empty(f"champion v{champion.version} has no stored spike threshold to label rows with")
    known = {k: label_config[k] for k in ("kind", "horizon_s", "trailing_s", "quantile") if k in label_config}
    trained = (champion.metadata.get("trained_window") or {}).get("last_event_time_ns")
    start_day = lake.day_str(pd.Timestamp(int(trained), unit="ns", tz="UTC")) if trained is not None else None
    features = lake.read_features(settings.data_dir, start=start_day, check_version=False)
    held_out = "rows after the champion's training window"
    if trained is not None:
        features = features[features["event_time_ns"] > int(trained)]
    else:
        held_out = "all lake rows (the champion records no training window)"
    # bounded work on a long-running lake: the newest MAX_EVAL_HOURS of held-out rows
    if not features.empty:
        newest = int(features["event_time_ns"].max())
        features = features[features["event_time_ns"] > newest - int(MAX_EVAL_HOURS * 3600 * SEC)]
    if features.empty:
        return _empty("no lake rows after the champion's training window yet")
    try:
        labels = make_labels(features, LabelConfig(**known), threshold=float(threshold))
    except ValueError as exc:
        return _empty(f"cannot label held-out rows: {exc}")
    keys = ["product_id", "event_time_ns", "sequence"]
    labels = features.astype({"product_id": "string"}).merge(
        labels[[*keys, "spike"]].astype({"product_id": "string"}), on=keys, how="inner")
    labels = labels.assign(sec=labels["event_time_ns"] // SEC)
    labels = labels.drop_duplicates(["product_id", "sec"], keep="last").reset_index(drop=True)
    y = labels["spike"].to_numpy(bool)
    if labels.empty or y.all() or not y.any():
        return _empty(f"{len(labels)} held-out rows hold one class only: no curve to draw yet",
                      rows=int(len(labels)))
    p = champion.predict(labels)["spike_probability"].to_numpy(float)
    precision, recall, _ = precision_recall_curve(y, p)
    keep = np.unique(np.linspace(0, len(precision) - 1, min(len(precision), 400)).astype(int))
    frac, mean_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    table = []
    for t in THRESHOLDS:
        flag = p >= t
        tp = int((flag & y).sum())
        table.append({"threshold": float(t), "precision": tp / flag.sum() if flag.any() else None,
                      "recall": tp / y.sum(), "alert_rate": float(flag.mean()), "alerts": int(flag.sum())})
    return {
        "state": "ready", "message": "", "held_out": held_out, "rows": int(len(y)),
        "base_rate": float(y.mean()), "pr_auc": _finite(M.pr_auc(y, p)),
        "decision_threshold": champion.decision_threshold,
        "window": [_iso(labels["event_time_ns"].min()), _iso(labels["event_time_ns"].max())],
        "pr_curve": {"precision": precision[keep].tolist(), "recall": recall[keep].tolist()},
        "calibration": {"predicted": mean_pred.tolist(), "observed": frac.tolist()},
        "thresholds": table,
    }


def champion_info(champion: Any | None) -> dict[str, Any]:
    if champion is None:
        return _empty("no champion yet")
    return {"state": "ready", "version": champion.version, "kind": champion.model_kind,
            "decision_threshold": champion.decision_threshold, "name": champion.model_name}


# --- drift and backtest ------------------------------------------------------------------------------


def drift(settings: Settings) -> dict[str, Any]:
    from cryptovol.drift import read_latest

    report = read_latest(settings.reports_dir / "drift")
    if report is None:
        return _empty("no drift report yet: `cryptovol drift` or the Dagster drift_report asset writes one")
    per_feature = report.get("per_feature") or {}
    drifted = report.get("drifted_columns") or []
    return {"state": "ready", "message": "", "generated_at": report.get("generated_at"),
            "dataset_drift": report.get("dataset_drift"), "drift_share": report.get("drift_share"),
            "drifted_columns": drifted, "n_reference": report.get("n_reference"),
            "n_current": report.get("n_current"), "reference_window": report.get("reference_window"),
            "current_window": report.get("current_window"), "live_pr_auc": report.get("live_pr_auc"),
            "prediction_drift": report.get("prediction_drift"),
            "features": {k: v for k, v in per_feature.items()} if isinstance(per_feature, dict) else {}}


def backtest(settings: Settings) -> dict[str, Any]:
    from cryptovol.backtest.publish import backtest_dir

    directory = backtest_dir(settings)
    try:
        summary = json.loads((directory / "latest.json").read_text())
    except (OSError, ValueError):
        return _empty("no backtest yet: `cryptovol backtest` or the Dagster backtest asset writes one")
    # equity before drawdown, test folds before the later regime
    charts = sorted((p.name for p in directory.glob("backtest_*.png")),
                    key=lambda n: ("out_of_period" in n, "drawdown" in n, n))
    sections = []
    for s in summary.get("sections", []):
        rows = {name: {k: _finite(m.get(k)) for k in ("sharpe", "sharpe_gross", "max_drawdown", "turnover",
                                                       "cost_paid", "realized_vol")}
                for name, m in s.get("metrics", {}).items()}
        sections.append({"name": s["name"], "title": s["title"], "hours": s.get("hours"),
                         "verdict": list(s.get("verdict", {}).values()), "metrics": rows})
    return {"state": "ready", "message": "", "champion": summary.get("champion"), "charts": charts,
            "sections": sections}


class Cache:
    """Recompute an expensive view at most every `ttl_s` seconds (thread-safe)."""

    def __init__(self, ttl_s: float = 30.0) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, Any]] = {}

    def get(self, key: str, compute: Any) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit and time.monotonic() - hit[0] < self.ttl_s:
                return hit[1]
        value = compute()
        with self._lock:
            self._items[key] = (time.monotonic(), value)
        return value
