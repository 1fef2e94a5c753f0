"""Champion/challenger gate and rollback against a real MLflow SQLite registry."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from models_synth import spike_labels, synthetic_matrix

from cryptovol.featureset import FEATURE_SET
from cryptovol.models import metrics as M
from cryptovol.models import registry as R
from cryptovol.models.fitting import fit_predictor
from cryptovol.models.pyfunc import load_spike_model, log_spike_model

NAME = "spike-registry-test"


@pytest.fixture(scope="module")
def data():
    frame = synthetic_matrix(2400, seed=3)
    y = spike_labels(frame)
    fit, val, hold = slice(0, 1400), slice(1460, 1900), slice(1960, None)
    return frame, y, fit, val, hold


def _log(predictor, frame) -> str:
    meta = {
        "feature_set_version": FEATURE_SET.version,
        "decision_threshold": predictor.decision_threshold,
        "label_config": {"horizon_s": 60},
        "model_kind": predictor.kind,
        "trained_window": {},
        "metrics": {},
    }
    with mlflow.start_run():
        info = log_spike_model(predictor, metadata=meta, input_example=frame, registered_model_name=NAME)
    return str(info.registered_model_version)


def _good(data):
    frame, y, fit, val, _ = data
    return fit_predictor("logistic", frame.iloc[fit], y[fit], frame.iloc[val], y[val])[0]


def _bad(data):
    """Same model class trained on permuted labels: no skill."""
    frame, y, fit, val, _ = data
    rng = np.random.default_rng(0)
    return fit_predictor("logistic", frame.iloc[fit], rng.permutation(y[fit]), frame.iloc[val],
                         rng.permutation(y[val]))[0]


def test_manual_promotion_history_and_rollback(mlflow_store, data):
    frame = data[0]
    v1 = _log(_bad(data), frame)
    assert R.promote(NAME, v1, reason="manual") is None
    assert R.alias_version(NAME, R.CHAMPION) == v1
    v2 = _log(_good(data), frame)
    assert R.promote(NAME, v2, reason="better") == v1
    assert R.alias_version(NAME, R.PREVIOUS_CHAMPION) == v1
    v3 = _log(_bad(data), frame)
    R.set_challenger(NAME, v3)
    assert R.alias_version(NAME, R.CHALLENGER) == v3

    # Rollback restores the previous champion and keeps the history.
    assert R.champion_history(NAME) == [v1, v2]
    assert R.rollback(NAME) == v1
    assert R.alias_version(NAME, R.CHAMPION) == v1
    assert R.champion_history(NAME) == [v1]
    assert "cryptovol.rolled_back_at" in mlflow.MlflowClient().get_model_version(NAME, v2).tags
    assert load_spike_model(f"models:/{NAME}@champion").version == v1
    with pytest.raises(R.RegistryError, match="no previous champion"):
        R.rollback(NAME)

    listing = {row["version"]: row for row in R.list_versions(NAME)}
    assert listing[v1]["aliases"] == ["champion"]
    assert listing[v3]["aliases"] == ["challenger"]


def test_register_version_sets_tags_and_description(mlflow_store, data):
    frame = data[0]
    predictor = _good(data)
    meta = {"feature_set_version": FEATURE_SET.version, "decision_threshold": predictor.decision_threshold,
            "label_config": {"horizon_s": 60}, "model_kind": predictor.kind, "trained_window": {},
            "metrics": {}}
    with mlflow.start_run():
        info = log_spike_model(predictor, metadata=meta, input_example=frame, name="model_logistic")
    version = R.register_version(NAME, info.model_uri, tags={"cryptovol.role": "learned challenger"},
                                 description="# Model card")
    mv = mlflow.MlflowClient().get_model_version(NAME, version)
    assert mv.tags["cryptovol.role"] == "learned challenger" and mv.description == "# Model card"
    assert load_spike_model(f"models:/{NAME}/{version}").model_kind == "logistic"


def test_pr_auc_definition():
    assert M.pr_auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.8, 0.2])) == pytest.approx(1.0)
