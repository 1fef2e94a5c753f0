"""The serving contract: a spike model logged to a real MLflow store loads and predicts as documented."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from models_synth import spike_labels, synthetic_matrix

from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET, FeatureSchemaError
from cryptovol.models.fitting import fit_predictor
from cryptovol.models.pyfunc import load_spike_model, log_spike_model, warmup_frame


def _metadata(predictor, frame, **extra):
    return {
        "feature_set_version": FEATURE_SET.version,
        "decision_threshold": predictor.decision_threshold,
        "label_config": {"horizon_s": 60, "spike_threshold": 1.7},
        "model_kind": predictor.kind,
        "trained_window": {"first_event_time_ns": int(frame["event_time_ns"].iloc[0])},
        "metrics": {"pr_auc": 0.5},
        **extra,
    }


@pytest.fixture
def fitted():
    frame = synthetic_matrix(1500, seed=1)
    y = spike_labels(frame)
    predictor, _ = fit_predictor("logistic", frame.iloc[:1000], y[:1000], frame.iloc[1060:], y[1060:])
    return frame, predictor


def test_logged_model_predicts_the_documented_columns(mlflow_store, fitted):
    frame, predictor = fitted
    with mlflow.start_run():
        info = log_spike_model(predictor, metadata=_metadata(predictor, frame), input_example=frame,
                               registered_model_name="spike-test")
    loaded = load_spike_model("models:/spike-test/1")
    assert loaded.version == "1" and loaded.model_name == "spike-test"
    assert loaded.run_id == info.run_id
    assert loaded.model_kind == "logistic"
    assert loaded.decision_threshold == pytest.approx(predictor.decision_threshold)
    assert loaded.feature_set_version == FEATURE_SET.version

    rows = frame.iloc[1100:1150]
    out = loaded.predict(rows)
    assert list(out.columns) == ["spike_probability", "spike_flag"]
    assert out["spike_probability"].dtype == np.float64 and out["spike_flag"].dtype == bool
    assert out["spike_probability"].between(0, 1).all()
    np.testing.assert_allclose(out["spike_probability"], predictor.predict_proba(rows))
    assert (out["spike_flag"] == (out["spike_probability"] >= loaded.decision_threshold)).all()

    # Column order and extra key columns do not matter; the raw pyfunc accepts the same input.
    shuffled = rows[list(reversed(rows.columns))]
    np.testing.assert_allclose(loaded.predict(shuffled)["spike_probability"], out["spike_probability"])
    # The raw MLflow pyfunc (with MLflow's schema enforcement) gives the same answer.
    raw = loaded.pyfunc.predict(rows[FEATURE_NAMES[::-1]])
    np.testing.assert_allclose(raw["spike_probability"], out["spike_probability"])
    assert (raw["spike_flag"].to_numpy() == out["spike_flag"].to_numpy()).all()

    # Warm-up rows (all NaN) are imputed, not a crash.
    warm = loaded.predict(warmup_frame(3))
    assert warm["spike_probability"].notna().all()


def test_alias_uri_and_missing_feature_and_version_mismatch(mlflow_store, fitted):
    frame, predictor = fitted
    with mlflow.start_run():
        log_spike_model(predictor, metadata=_metadata(predictor, frame), input_example=frame,
                        registered_model_name="spike-test")
        log_spike_model(predictor, metadata=_metadata(predictor, frame, feature_set_version="0.0.1"),
                        input_example=frame, registered_model_name="spike-test")
    mlflow.MlflowClient().set_registered_model_alias("spike-test", "champion", "1")
    loaded = load_spike_model("models:/spike-test@champion")
    assert (loaded.version, loaded.alias) == ("1", "champion")
    with pytest.raises(FeatureSchemaError, match="rv_300s"):
        loaded.predict(frame.drop(columns=["rv_300s"]).iloc[:5])
    with pytest.raises(FeatureSchemaError, match="0.0.1"):
        load_spike_model("models:/spike-test/2")
    assert load_spike_model("models:/spike-test/2", check_feature_set=False).version == "2"


def test_metadata_is_required(mlflow_store, fitted):
    frame, predictor = fitted
    with mlflow.start_run(), pytest.raises(ValueError, match="decision_threshold"):
        meta = _metadata(predictor, frame)
        del meta["decision_threshold"]
        log_spike_model(predictor, metadata=meta, input_example=pd.DataFrame(frame))


@pytest.mark.parametrize("kind", ["logistic", "xgboost", "har", "ewma", "persistence"])
def test_every_kind_scores_warmup_and_partial_nan_rows_deterministically(kind):
    frame = synthetic_matrix(1200, seed=4)
    y = spike_labels(frame)
    predictor, _ = fit_predictor(kind, frame.iloc[:800], y[:800], frame.iloc[860:], y[860:],
                                 fwd_rv_fit=frame["fwd_rv"].to_numpy()[:800],
                                 params={"n_estimators": 30, "n_jobs": 1} if kind == "xgboost" else None)
    rows = pd.concat([warmup_frame(2), frame.iloc[900:903][FEATURE_NAMES]], ignore_index=True)
    rows.loc[3, ["rv_300s", "ewma_vol"]] = np.nan  # a row with some windows still warming up
    first = predictor.predict(rows)
    assert first["spike_probability"].between(0, 1).all()
    pd.testing.assert_frame_equal(first, predictor.predict(rows))
