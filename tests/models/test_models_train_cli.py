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
from cryptovol.models.dataset import TrainingSet
from cryptovol.models.gate import GateConfig
from cryptovol.models.lifecycle import run_lifecycle
from cryptovol.models.pyfunc import load_spike_model
from cryptovol.models.training import TrainConfig
from cryptovol.models.walkforward import WalkForwardConfig
from cryptovol.simulator.synthetic import generate_landing_files

FAST_ARGS = ["--folds", "3", "--min-segment-s", "0", "--xgb-trees", "40", "--n-jobs", "1"]


def test_cli_train_list_promote_rollback(mlflow_store, data_dir: Path, capsys):
    # seed 8: the most recent held-out window contains spikes (simulated bursts are rare)
    generate_landing_files(data_dir, products=("BTC-USD",), duration_s=40 * 60, seed=8, rate_hz=2)
    report, card = data_dir / "docs" / "MODEL_REPORT.md", data_dir / "docs" / "model_card.md"
    assert main(["train", *FAST_ARGS, "--report", str(report), "--model-card", str(card),
                 "--tag", "origin=test"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    # progress over folds and models on stderr
    assert "fold 3/3: xgboost" in captured.err and "promotion gate" in captured.err

    settings = Settings.from_env()
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    kind = champion.tags["cryptovol.model_kind"]
    assert f"champion v{champion.version} ({kind})" in out
    versions = {str(mv.version): mv for mv in client.search_model_versions(f"name='{settings.model_name}'")}
    assert set(versions) == {"1", "2"}  # the learned challenger and the best baseline
    assert {mv.tags["cryptovol.role"] for mv in versions.values()} == {"learned challenger", "best baseline"}
    run = client.get_run(champion.run_id)
    assert run.data.params["feature_set_version"] == FEATURE_SET.version
    assert int(run.data.params["rows"]) > 500
    assert run.data.params["data.first_event_time"].startswith("2026-01-01T00:0")
    assert run.data.tags["origin"] == "test"
    for kind_ in ("persistence", "ewma", "har", "logistic", "xgboost"):
        assert 0 <= run.data.metrics[f"{kind_}.pr_auc_mean"] <= 1
    assert "latency_single_row_ms_p50" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/pr_curve.png", "plots/calibration_curve.png", "plots/per_fold.png"} <= artifacts
    # the training rows are the run's dataset input: source, window and row counts
    [dataset_input] = run.inputs.dataset_inputs
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags["rows"] == run.data.params["rows"] and "landing files" in tags["source"]
    assert tags["first_event_time"].startswith("2026-01-01T00:0")
    # artifacts live under the data dir, not ./mlruns
    assert (data_dir / "mlflow" / "artifacts").is_dir()
    assert not (Path.cwd() / "mlruns").exists()
    # the evidence is on the version: tags and the model card as description
    assert champion.tags["cryptovol.gate.promote"] == "True"
    assert "cryptovol.evidence.pr_auc_pooled" in champion.tags
    assert champion.description.startswith("# Model card")
    text = report.read_text()
    for kind_ in ("persistence", "ewma", "har", "logistic", "xgboost"):
        assert f"| {kind_} |" in text
    assert "bootstrap" in text and "QLIKE" in text and "## The promotion gate" in text
    for image in ("pr_curve", "calibration_curve", "per_fold"):
        assert f"](images/{image}.png)" in text
        assert (report.parent / "images" / f"{image}.png").stat().st_size > 1000
    assert card.read_text().startswith(f"# Model card: `{settings.model_name}` v{champion.version}")

    # second run, learned only, with a margin no model can clear: gated against the champion, kept out
    assert main(["train", *FAST_ARGS, "--margin", "1.0", "--models", "logistic", "--quiet"]) == 0
    assert client.get_model_version_by_alias(settings.model_name, "champion").version == champion.version
    challenger = client.get_model_version_by_alias(settings.model_name, "challenger")
    assert challenger.tags["cryptovol.gate.reference"] == f"champion v{champion.version}"
    assert challenger.tags["cryptovol.gate.promote"] == "False"
    capsys.readouterr()

    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "champion" in listing and "challenger" in listing and "kept out" in listing

    assert main(["models", "promote", str(challenger.version)]) == 0
    assert load_spike_model(f"models:/{settings.model_name}@champion").version == str(challenger.version)
    assert main(["models", "rollback"]) == 0
    assert load_spike_model(f"models:/{settings.model_name}@champion").version == str(champion.version)
    assert main(["models", "rollback"]) == 1  # nothing older to restore
    assert "no previous champion" in capsys.readouterr().out
    assert main(["models", "promote", "99"]) == 1


def test_cli_train_without_data_says_what_to_do(data_dir: Path, capsys):
    assert main(["train"]) == 1
    assert "cryptovol simulate" in capsys.readouterr().err


def test_train_logs_into_the_callers_run_with_its_tags(mlflow_store):
    frame = synthetic_matrix(1500, seed=9)
    config = TrainConfig(walk_forward=WalkForwardConfig(n_folds=2), regression_view=False,
                         latency_repeats=3, gate=GateConfig(n_boot=50),
                         model_params={"xgboost": {"n_estimators": 30, "n_jobs": 1}})
    decisions = []
    with mlflow.start_run() as run:
        result = run_lifecycle(TrainingSet(frame, LabelConfig(), {"grid_s": 1}), config=config,
                               run_tags={"dagster_run_id": "run-123"}, alert_hook=decisions.append)
        assert mlflow.active_run().info.run_id == run.info.run_id  # not ended by run_lifecycle()
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
    assert meta["model_kind"] == result.choice.candidate_kind
    assert 0 < meta["metrics"]["pr_auc"] < 1
