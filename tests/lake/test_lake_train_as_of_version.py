"""Reproducible training data: `cryptovol train --from-lake` records the feature table version it
read, and `--as-of-version N` re-reads exactly those rows after the table changed (time travel)."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow

from cryptovol import lake
from cryptovol.cli import main
from cryptovol.simulator.synthetic import generate_landing_files

ARGS = ["--from-lake", "--no-register", "--models", "logistic", "--folds", "3", "--min-segment-s", "0",
        "--n-jobs", "1", "--quiet"]


def _run(capsys, *extra: str) -> tuple[int, mlflow.entities.Run]:
    assert main(["train", *ARGS, *extra]) == 0
    out = capsys.readouterr().out
    version = int(re.search(r"feature table at version (\d+)", out).group(1))
    run_id = re.search(r"MLflow run (\w+)", out).group(1)
    return version, mlflow.tracking.MlflowClient().get_run(run_id)


def _digest(run: mlflow.entities.Run) -> str:
    [dataset] = [d.dataset for d in run.inputs.dataset_inputs]
    return dataset.digest



def test_train_as_of_version_rereads_the_logged_rows(mlflow_store, data_dir: Path, capsys):
    generate_landing_files(data_dir, products=("BTC-USD",), duration_s=40 * 60, seed=8, rate_hz=2)
    assert main(["features", "build", "--all"]) == 0
    capsys.readouterr()
    version, first = _run(capsys)
    assert first.data.tags["cryptovol.feature_table_version"] == str(version)
    assert f"version {version}" in first.inputs.dataset_inputs[0].dataset.source

    # the table changes: the day is rebuilt with other values (as a fixed feature bug would)
    frame = lake.read_features(data_dir, ["BTC-USD"])
    day = lake.list_feature_partitions(data_dir)[0][1]
    lake.write_feature_part(frame.assign(spread=frame["spread"] * 3.0), data_dir, "BTC-USD", day)
    latest, changed = _run(capsys)
    assert latest > version and _digest(changed) != _digest(first)

    again_version, again = _run(capsys, "--as-of-version", str(version))
    assert again_version == version
    assert _digest(again) == _digest(first)  # the same rows, by time travel


def test_train_as_of_a_version_the_table_never_had_is_a_clear_error(mlflow_store, data_dir: Path, capsys):
    assert main(["train", *ARGS]) == 1
    assert "no feature table" in capsys.readouterr().err
    generate_landing_files(data_dir, products=("BTC-USD",), duration_s=120, seed=8, rate_hz=2)
    assert main(["features", "build", "--all"]) == 0
    capsys.readouterr()
    assert main(["train", *ARGS, "--as-of-version", "99"]) == 1
    assert "version 99" in capsys.readouterr().err
