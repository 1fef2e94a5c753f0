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


def _gate(version, data, alerts=None, baselines=None):
    frame, y, *_, hold = data
    return R.run_promotion_gate(
        NAME, version, holdout_frame=frame.iloc[hold], holdout_y=y[hold],
        baseline_scores=baselines or {"har": {"pr_auc": 0.15, "brier": 0.09}},
        config=R.GateConfig(min_pr_auc_gain=0.01), alert_hook=alerts.append if alerts is not None else None,
    )


def test_first_model_must_beat_best_baseline(mlflow_store, data):
    bad = _log(_bad(data), data[0])
    frame, y, *_, hold = data
    strong_baseline = {"har": {"pr_auc": 0.99, "brier": 0.01}, "ewma": {"pr_auc": 0.1, "brier": 0.2}}
    decision = _gate(bad, data, baselines=strong_baseline)
    assert not decision.promote and decision.reference == "baseline har"
    assert R.alias_version(NAME, R.CHAMPION) is None
    assert R.alias_version(NAME, R.CHALLENGER) == bad


def test_gate_both_ways_and_rollback(mlflow_store, data):
    frame, y, *_, hold = data
    alerts: list[R.PromotionDecision] = []
    # A skill-less champion put in place by hand (operator override, no gate).
    v1 = _log(_bad(data), frame)
    R.promote(NAME, v1, reason="manual")
    assert R.alias_version(NAME, R.CHAMPION) == v1

    # A better challenger beats the champion on the same held-out window by the margin: promoted.
    v2 = _log(_good(data), frame)
    d2 = _gate(v2, data, alerts)
    assert d2.promote and d2.reference == f"champion v{v1}"
    champion_scores = R.score_on_window(load_spike_model(f"models:/{NAME}/{v1}"), frame.iloc[hold], y[hold])
    assert d2.reference_pr_auc == pytest.approx(champion_scores["pr_auc"])
    assert d2.challenger_pr_auc >= d2.reference_pr_auc + 0.01
    assert d2.challenger_brier <= d2.reference_brier
    assert R.alias_version(NAME, R.CHAMPION) == v2
    assert R.alias_version(NAME, R.PREVIOUS_CHAMPION) == v1

    # A worse challenger: not promoted; the decision, both scores and the reason are on its tags.
    v3 = _log(_bad(data), frame)
    d3 = _gate(v3, data, alerts)
    assert not d3.promote and d3.reference == f"champion v{v2}"
    assert d3.challenger_pr_auc < d3.reference_pr_auc
    assert R.alias_version(NAME, R.CHAMPION) == v2
    assert R.alias_version(NAME, R.CHALLENGER) == v3
    tags = mlflow.MlflowClient().get_model_version(NAME, v3).tags
    assert tags["cryptovol.gate.promote"] == "False"
    assert float(tags["cryptovol.gate.reference_pr_auc"]) == pytest.approx(d3.reference_pr_auc)
    assert float(tags["cryptovol.gate.challenger_pr_auc"]) == pytest.approx(d3.challenger_pr_auc)
    assert [a.challenger_version for a in alerts] == [v2, v3]
    assert [a.promote for a in alerts] == [True, False]

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
    assert listing[v3]["promoted"] == "False"


def test_decide_promotion_rule():
    ref = {"pr_auc": 0.30, "brier": 0.10}
    assert R.decide_promotion({"pr_auc": 0.32, "brier": 0.10}, ref, reference_name="c").promote
    assert not R.decide_promotion({"pr_auc": 0.305, "brier": 0.09}, ref, reference_name="c").promote
    worse_brier = R.decide_promotion({"pr_auc": 0.40, "brier": 0.11}, ref, reference_name="c")
    assert not worse_brier.promote and "Brier" in worse_brier.reason
    assert not R.decide_promotion({"pr_auc": float("nan"), "brier": 0.1}, ref, reference_name="c").promote
    assert M.pr_auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.8, 0.2])) == pytest.approx(1.0)
