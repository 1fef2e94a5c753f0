"""`cryptovol train` and `cryptovol models` end to end on simulator landing files and a real MLflow
SQLite store; `train()` inside a caller's MLflow run (how the Dagster asset uses it)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from models_synth import synthetic_matrix

from cryptovol.cli import main
from cryptovol.config import Settings
from cryptovol.featureset import FEATURE_SET
from cryptovol.labels import LabelConfig
from cryptovol.models import registry as R
from cryptovol.models.dataset import TrainingSet
from cryptovol.models.pyfunc import load_spike_model
from cryptovol.models.training import TrainConfig, train
from cryptovol.models.walkforward import WalkForwardConfig
from cryptovol.simulator.synthetic import generate_landing_files

FAST_ARGS = ["--folds", "3", "--min-segment-s", "0", "--xgb-trees", "40", "--n-jobs", "1"]


def test_cli_train_list_promote_rollback(mlflow_store, data_dir: Path, capsys):
    # seed 8: the most recent held-out window contains spikes (simulated bursts are rare)
    generate_landing_files(data_dir, products=("BTC-USD",), duration_s=40 * 60, seed=8, rate_hz=2)
    report, card = data_dir / "MODEL_REPORT.md", data_dir / "model_card.md"
    assert main(["train", *FAST_ARGS, "--margin", "-1", "--report", str(report),
                 "--model-card", str(card), "--tag", "origin=test"]) == 0
    out = capsys.readouterr().out
    assert "registered cryptovol-spike v1" in out

    settings = Settings.from_env()
    client = mlflow.MlflowClient()
    v1 = client.get_model_version(settings.model_name, "1")
    run = client.get_run(v1.run_id)
    assert run.data.params["feature_set_version"] == FEATURE_SET.version
    assert int(run.data.params["rows"]) > 500
    assert run.data.params["data.first_event_time"].startswith("2026-01-01T00:0")
    assert run.data.tags["origin"] == "test"
    for kind in ("persistence", "ewma", "har", "logistic", "xgboost"):
        assert 0 <= run.data.metrics[f"{kind}.pr_auc_mean"] <= 1
    assert "latency_single_row_ms_p50" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/pr_curve.png", "plots/calibration_curve.png"} <= artifacts
    # artifacts live under the data dir, not ./mlruns
    assert (data_dir / "mlflow" / "artifacts").is_dir()
    assert not (Path.cwd() / "mlruns").exists()

    # margin -1: the first model beats the best baseline and becomes champion
    assert R.alias_version(settings.model_name, R.CHAMPION) == "1"
    assert v1.tags["cryptovol.gate.promote"] == "True"
    text = report.read_text()
    for kind in ("persistence", "ewma", "har", "logistic", "xgboost"):
        assert f"| {kind} |" in text
    assert "bootstrap" in text and "QLIKE" in text
    assert "Model card" in card.read_text()

    # second run with an impossible margin: registered as challenger, gate against champion v1, kept out
    assert main(["train", *FAST_ARGS, "--margin", "1.0", "--models", "logistic"]) == 0
    assert R.alias_version(settings.model_name, R.CHAMPION) == "1"
    assert R.alias_version(settings.model_name, R.CHALLENGER) == "2"
    v2 = client.get_model_version(settings.model_name, "2")
    assert v2.tags["cryptovol.gate.reference"] == "champion v1"
    assert v2.tags["cryptovol.gate.promote"] == "False"
    capsys.readouterr()

    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "champion" in listing and "challenger" in listing and "kept out" in listing

    assert main(["models", "promote", "2"]) == 0
    assert load_spike_model(f"models:/{settings.model_name}@champion").version == "2"
    assert main(["models", "rollback"]) == 0
    assert load_spike_model(f"models:/{settings.model_name}@champion").version == "1"
    assert main(["models", "rollback"]) == 1  # nothing older to restore
    assert "no previous champion" in capsys.readouterr().out
    assert main(["models", "promote", "99"]) == 1


def test_cli_train_without_data_says_what_to_do(data_dir: Path, capsys):
    assert main(["train"]) == 1
    assert "cryptovol simulate" in capsys.readouterr().err


def test_train_logs_into_the_callers_run_with_its_tags(mlflow_store):
    frame = synthetic_matrix(1500, seed=9)
    config = TrainConfig(walk_forward=WalkForwardConfig(n_folds=2), regression_view=False, n_boot=20,
                         latency_repeats=3, model_params={"xgboost": {"n_estimators": 30, "n_jobs": 1}})
    decisions = []
    with mlflow.start_run() as run:
        result = train(TrainingSet(frame, LabelConfig(), {"grid_s": 1}), config=config,
                       run_tags={"dagster_run_id": "run-123"}, alert_hook=decisions.append)
        assert mlflow.active_run().info.run_id == run.info.run_id  # not ended by train()
    assert result.run_id == run.info.run_id
    stored = mlflow.MlflowClient().get_run(run.info.run_id)
    assert stored.data.tags["dagster_run_id"] == "run-123"
    assert len(decisions) == 1 and decisions[0].challenger_version == result.version
    version = mlflow.MlflowClient().get_model_version(Settings.from_env().model_name, result.version)
    assert version.tags["dagster_run_id"] == "run-123"
    loaded = load_spike_model(f"models:/{Settings.from_env().model_name}/{result.version}")
    meta = loaded.metadata
    last_fold = result.evaluation.last_fold
    assert meta["label_config"]["spike_threshold"] == pytest.approx(last_fold.spike_threshold)
    assert meta["trained_window"]["last_event_time_ns"] < result.evaluation.last_fold.test_window[0]
    assert meta["model_kind"] == result.evaluation.chosen_kind
    assert 0 < meta["metrics"]["pr_auc"] < 1
