"""The dashboard's views on a lake with features and scorer predictions but nothing else yet:
the live signal is drawn, every other section says what would produce it (never a blank chart)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from cryptovol import lake
from cryptovol.config import Settings
from cryptovol.dashboard import data
from cryptovol.features import compute_features
from cryptovol.scoring.sink import write_prediction_parts
from cryptovol.simulator.synthetic import generate_ticks_frame

START = datetime(2025, 12, 1, 10, tzinfo=UTC)


def test_live_signal_and_empty_states(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, products=("BTC-USD",),
                        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert data.signal(settings)["state"] == "empty"
    ticks = generate_ticks_frame(("BTC-USD",), start=START, duration_s=900, seed=3, rate_hz=2.0)
    features = compute_features(ticks)
    lake.write_feature_part(features, tmp_path, "BTC-USD", START.date())
    scored = features.iloc[::3].reset_index(drop=True)
    p = np.linspace(0, 1, len(scored))
    write_prediction_parts(pd.DataFrame({
        "product_id": "BTC-USD", "event_time_ns": scored["event_time_ns"], "sequence": scored["sequence"],
        "spike_probability": p, "spike_flag": p >= 0.9, "model_name": "m", "model_version": "1",
        "model_alias": "champion", "feature_set_version": "1.0.0",
        "scored_at_ns": scored["event_time_ns"] + 1, "scoring_latency_s": 0.001,
    }), settings.predictions_dir)

    view = data.signal(settings, minutes=10)
    assert view["state"] == "ready" and view["source"].startswith("scorer predictions")
    btc = view["products"]["BTC-USD"]
    assert 500 <= len(btc["t"]) <= 601  # one point per second of the last 10 minutes
    assert len(btc["probability"]) == len(btc["pt"]) > 100
    assert btc["probability"][-1] == 1.0 and len(btc["alerts"]) > 10
    finite = [v for v in btc["realized_vol_bps"] if v is not None]
    assert finite and all(0 < v < 1000 for v in finite)

    for view in (data.champion_evaluation(settings, data.load_champion(settings)), data.drift(settings),
                 data.backtest(settings), data.timeline(settings)):
        assert view["state"] == "empty" and view["message"], view
