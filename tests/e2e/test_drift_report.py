"""Drift report behaviour on synthetic market data: calm stays calm, a regime change drifts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cryptovol.drift import (
    DRIFT_FEATURES,
    SUMMARY_KEYS,
    DriftConfig,
    DriftError,
    decimate,
    drift_report,
    read_latest,
)
from cryptovol.features import compute_features_multi
from cryptovol.simulator.synthetic import generate_ticks_frame

REFERENCE_S = 1800


def _features(seed: int, regime_change_at_s: float | None, duration_s: float = 2700) -> pd.DataFrame:
    ticks = generate_ticks_frame(
        ("BTC-USD", "ETH-USD"), duration_s=duration_s, seed=seed, rate_hz=4.0,
        regime_change_at_s=regime_change_at_s, regime_vol_mult=4.0,
    )
    return compute_features_multi(ticks)


def _split(features: pd.DataFrame, current_from_s: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    t0 = int(features["event_time_ns"].min())
    times = features["event_time_ns"]
    reference = features[times < t0 + REFERENCE_S * 1_000_000_000]
    current = features[times >= t0 + int(current_from_s * 1e9)]
    return reference, current


@pytest.mark.parametrize("seed", [3, 21])
def test_calm_windows_of_the_same_regime_do_not_drift(seed: int) -> None:
    reference, current = _split(_features(seed, None), current_from_s=REFERENCE_S + 60)
    result = drift_report(reference, current)
    summary = result.summary
    assert summary["dataset_drift"] is False, summary["drifted_columns"]
    assert summary["drift_share"] < DriftConfig().drift_share
    assert summary["n_reference"] > 1000 and summary["n_current"] > 500


@pytest.mark.parametrize("seed", [3, 21])
def test_volatility_regime_change_drifts(seed: int) -> None:
    # x4 volatility from 32 min on; the current window starts 2 min after the change.
    features = _features(seed, regime_change_at_s=REFERENCE_S + 120)
    reference, current = _split(features, current_from_s=REFERENCE_S + 240)
    summary = drift_report(reference, current).summary
    assert summary["dataset_drift"] is True
    assert summary["drift_share"] >= DriftConfig().drift_share
    # The volatility columns are the ones that must move.
    for column in ("rv_30s", "rv_60s", "ret_30s"):
        assert summary["per_feature"][column]["drifted"], (column, summary["per_feature"][column])


def test_report_files_and_json_contract(tmp_path: Path) -> None:
    features = _features(5, regime_change_at_s=REFERENCE_S + 60, duration_s=2400)
    reference, current = _split(features, current_from_s=REFERENCE_S + 180)
    result = drift_report(reference, current, DriftConfig(threshold=2.0, drift_share=0.4))
    json_path, html_path = result.save(tmp_path / "reports" / "drift")

    saved = json.loads(json_path.read_text())
    assert set(SUMMARY_KEYS) <= set(saved)
    assert saved == read_latest(tmp_path / "reports" / "drift")
    assert html_path.is_file() and html_path.stat().st_size > 10_000
    assert saved["html_path"] == str(html_path)
    assert "<html" in html_path.read_text(errors="replace")[:5000].lower()

    assert list(saved["per_feature"]) == list(DRIFT_FEATURES)
    for name, entry in saved["per_feature"].items():
        assert entry["test"] == "wasserstein_mad", name
        assert entry["threshold"] == 2.0
        assert entry["drifted"] == (entry["distance"] >= 2.0)
    drifted = [n for n, e in saved["per_feature"].items() if e["drifted"]]
    assert saved["drifted_columns"] == drifted
    assert saved["drift_share"] == pytest.approx(len(drifted) / len(DRIFT_FEATURES))
    assert saved["dataset_drift"] == (saved["drift_share"] >= 0.4)
    for key in ("reference_window", "current_window"):
        window = saved[key]
        assert window["start_ns"] < window["end_ns"]
        assert window["start"].endswith("Z")
    assert saved["reference_window"]["end_ns"] <= saved["current_window"]["start_ns"]
    assert saved["prediction_drift"] is None and saved["live_pr_auc"] is None


def test_prediction_drift_uses_the_spike_probability_distribution() -> None:
    features = _features(8, None, duration_s=2400)
    reference, current = _split(features, current_from_s=REFERENCE_S)
    import numpy as np

    rng = np.random.default_rng(0)
    calm = drift_report(
        reference, current,
        reference_predictions=rng.beta(1, 9, 2000), current_predictions=rng.beta(1, 9, 600),
    ).summary["prediction_drift"]
    shifted = drift_report(
        reference, current,
        reference_predictions=rng.beta(1, 9, 2000), current_predictions=rng.beta(6, 4, 600),
    ).summary["prediction_drift"]
    assert calm["drifted"] is False and shifted["drifted"] is True
    assert shifted["statistic"] > calm["statistic"]
    assert shifted["n_reference"] == 2000 and shifted["n_current"] == 600


def test_too_little_data_is_a_clear_error() -> None:
    features = _features(9, None, duration_s=600)
    reference, current = _split(features, current_from_s=500)
    with pytest.raises(DriftError, match="usable rows"):
        drift_report(reference.head(50), current)


def test_decimation_keeps_the_last_row_per_product_and_second() -> None:
    frame = pd.DataFrame({
        "product_id": ["A", "A", "A", "B", "B"],
        "event_time_ns": [1_000_000_000, 1_500_000_000, 2_100_000_000, 1_200_000_000, 1_900_000_000],
        "sequence": [1, 2, 3, 1, 2],
        "x": [1.0, 2.0, 3.0, 10.0, 20.0],
    })
    out = decimate(frame, 1.0)
    assert out.set_index(["product_id", "sequence"])["x"].to_dict() == {
        ("A", 2): 2.0, ("A", 3): 3.0, ("B", 2): 20.0,
    }


def test_prediction_window_has_one_score_per_row_even_when_a_row_is_scored_twice(data_dir: Path):
    """A scorer restarted after a crash may score a row again: the prediction table keeps the
    score committed first (one transaction per flush, each key once), so drift sees one row."""
    import pandas as pd

    from cryptovol.config import Settings
    from cryptovol.drift import Window, read_prediction_window
    from cryptovol.scoring.sink import write_prediction_parts

    def score(version: str, scored_at_ns: int) -> None:
        row = {"product_id": "BTC-USD", "event_time_ns": 1_767_225_600_000_000_000, "sequence": 7,
               "spike_probability": 0.9 if version == "2" else 0.1, "spike_flag": version == "2",
               "model_name": "cryptovol-spike", "model_version": version, "model_alias": "champion",
               "feature_set_version": "x", "scored_at_ns": scored_at_ns, "scoring_latency_s": 0.001}
        write_prediction_parts(pd.DataFrame([row]), data_dir / "predictions")

    score("1", scored_at_ns=1_000)
    score("2", scored_at_ns=2_000)  # the re-score after a restart
    frame = read_prediction_window(Settings.from_env(), Window(0, 2**62))
    assert len(frame) == 1 and frame["model_version"].iloc[0] == "1"
