"""The one model lifecycle against a real MLflow SQLite registry: the first champion is the learned
model only when it clears the gate against the best baseline, else the best baseline (servable like
any model); later runs must beat the champion on rows it never saw."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from models_synth import activity_matrix, synthetic_matrix

from cryptovol.config import Settings
from cryptovol.labels import LabelConfig
from cryptovol.models import registry as R
from cryptovol.models.dataset import TrainingSet
from cryptovol.models.gate import GateConfig
from cryptovol.models.lifecycle import run_lifecycle
from cryptovol.models.pyfunc import load_spike_model
from cryptovol.models.training import TrainConfig, out_of_sample_predictions
from cryptovol.models.walkforward import WalkForwardConfig
from cryptovol.serving.champion import load_registered, validate_model

#: Small and quick: no XGBoost search here (test_models_search.py and the CLI test cover it).
CONFIG = TrainConfig(walk_forward=WalkForwardConfig(n_folds=3), regression_view=False, latency_repeats=3,
                     model_params={"xgboost": {"n_estimators": 30, "n_jobs": 1, "grid": None}},
                     gate=GateConfig(n_boot=200))


def _set(frame) -> TrainingSet:
    return TrainingSet(frame, LabelConfig(), {"grid_s": 1, "source": "synthetic"})


def test_first_training_falls_back_to_the_best_baseline(mlflow_store):
    # rv-driven spikes: the EWMA/HAR baselines see the signal directly; no learned model beats them
    result = run_lifecycle(_set(synthetic_matrix(3000, seed=5)), config=CONFIG)
    name = Settings.from_env().model_name
    e = result.evaluation
    assert not result.choice.learned_won
    assert result.choice.candidate_kind == e.best_baseline
    assert e.best_baseline == max(e.baselines, key=lambda k: e.summary.loc[k, "pr_auc_pooled"])
    assert result.decision.promote and "first champion: the best baseline" in result.decision.reason
    assert set(result.versions) == {e.best_baseline, e.chosen_kind}  # both registered
    champion = load_spike_model(f"models:/{name}@champion")
    assert champion.model_kind == e.best_baseline and champion.version == result.versions[e.best_baseline]
    # the service's loader serves a baseline champion like any other model
    served = load_registered(name, champion.version, "champion", "")
    validate_model(served)
    version = mlflow.MlflowClient().get_model_version(name, champion.version)
    assert version.tags["cryptovol.role"] == "best baseline"
    assert float(version.tags["cryptovol.evidence.pr_auc_pooled"]) == pytest.approx(
        e.summary.loc[e.best_baseline, "pr_auc_pooled"], rel=1e-5)
    assert version.tags["cryptovol.gate.promote"] == "True"
    assert "Model card" in version.description and "champion" in version.description
    learned = mlflow.MlflowClient().get_model_version(name, result.versions[e.chosen_kind])
    assert "not** the champion" in learned.description


def test_learned_champion_on_a_real_gain_and_later_runs_need_new_evidence(mlflow_store):
    name = Settings.from_env().model_name
    first = run_lifecycle(_set(activity_matrix(3000, seed=1)), config=CONFIG)
    assert first.choice.learned_won, first.choice.reason
    assert first.decision.promote and first.decision.gain_low > CONFIG.gate.min_pr_auc_gain
    assert R.alias_version(name, R.CHAMPION) == first.version == first.versions["logistic"]

    # The same data again: the new candidate equals the champion on the rows after its training
    # window, so there is no gain and the champion stays.
    again = run_lifecycle(_set(activity_matrix(3000, seed=1)), config=CONFIG)
    assert again.decision.reference == f"champion v{first.version}"
    assert not again.decision.promote
    assert R.alias_version(name, R.CHAMPION) == first.version
    assert R.alias_version(name, R.CHALLENGER) == again.version

    # Rollback still works on top of gate promotions.
    R.promote(name, again.version, reason="manual")
    assert R.rollback(name) == first.version


def test_a_baseline_champion_is_replaced_when_a_learned_model_beats_it_on_newer_rows(mlflow_store):
    name = Settings.from_env().model_name
    first = run_lifecycle(_set(synthetic_matrix(3000, seed=5)), config=CONFIG)
    assert not first.choice.learned_won
    newer = activity_matrix(4000, seed=2, shift_s=3600)  # starts an hour after the first set ends
    second = run_lifecycle(_set(newer), config=CONFIG)
    d = second.decision
    assert d.reference == f"champion v{first.version}"
    assert d.promote, d.reason
    assert R.alias_version(name, R.CHAMPION) == second.version
    assert load_spike_model(f"models:/{name}@champion").model_kind == second.choice.candidate_kind
    assert R.alias_version(name, R.PREVIOUS_CHAMPION) == first.version


def test_out_of_sample_predictions_are_the_pooled_test_folds():
    from cryptovol.models.training import evaluate_walk_forward

    e = evaluate_walk_forward(_set(activity_matrix(2000, seed=3)), CONFIG, kinds=("har", "logistic"))
    oos = out_of_sample_predictions(e)
    assert set(oos["kind"]) == {"har", "logistic"}
    logistic = oos[oos["kind"] == "logistic"]
    y, p = e.pooled("logistic")
    np.testing.assert_array_equal(logistic["spike"].to_numpy(), y)
    np.testing.assert_allclose(logistic["spike_probability"].to_numpy(), p)
    # every prediction is for a row after its fold's training window
    for fold in e.folds:
        rows = logistic[logistic["fold"] == fold.index]
        assert (rows["event_time_ns"] > fold.train_window[1]).all()


def test_per_kind_evaluations_merged_equal_one_evaluation_of_every_kind():
    """Why the Dagster graph (one asset per model kind, merged in `model_evaluation`) and
    `cryptovol train` (every kind at once) decide alike: same folds, same numbers, same choice."""
    import pandas as pd

    from cryptovol.models.lifecycle import judge_candidates
    from cryptovol.models.training import evaluate_walk_forward, merge_evaluations

    ts = _set(activity_matrix(2400, seed=6))
    whole = evaluate_walk_forward(ts, CONFIG)
    parts = [evaluate_walk_forward(ts, CONFIG, kinds=kinds)
             for kinds in (("persistence", "ewma", "har"), ("logistic",), ("xgboost",))]
    merged = merge_evaluations(parts)
    pd.testing.assert_frame_equal(merged.summary.loc[whole.summary.index], whole.summary)
    assert (merged.chosen_kind, merged.best_baseline) == (whole.chosen_kind, whole.best_baseline)
    a, b = judge_candidates(merged), judge_candidates(whole)
    assert (a.candidate_kind, a.learned_won, a.reason) == (b.candidate_kind, b.learned_won, b.reason)
    with pytest.raises(ValueError, match="different rows or folds"):
        other = _set(activity_matrix(2000, seed=6))
        merge_evaluations([parts[0], evaluate_walk_forward(other, CONFIG, kinds=("logistic",))])
