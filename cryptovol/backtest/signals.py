"""Each driver's spike probabilities where the backtest may use them, from the models' own code.

Out-of-sample test folds: `cryptovol.models.training.evaluate_walk_forward` fits every baseline
and learned kind on each purged fold; the test probabilities are the lifecycle's pooled
out-of-sample predictions (`out_of_sample_predictions`), and the validation probabilities (for
choosing thresholds) come from the same fold's fitted predictors on that fold's validation rows
(`walk_forward_folds` with the same config yields the same folds). Nothing here fits a model.

The `champion` driver on the test folds is the learned kind the evaluation chose on validation
(re-fitted per fold, so every test row is out of sample). On later-regime data (the 2026-04
slices) it is the registered champion when one loads (trained before those recordings), else the
last fold's chosen predictor; the baselines and thresholds are the last fold's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.models.dataset import TrainingSet
from cryptovol.models.training import Evaluation, out_of_sample_predictions
from cryptovol.models.walkforward import walk_forward_folds

log = logging.getLogger(__name__)

CHAMPION = "champion"


@dataclass
class DriverSignal:
    """One driver on one fold: validation rows/probabilities (choices) and test ones (report)."""

    fold: int
    val_frame: pd.DataFrame
    val_probability: np.ndarray
    test_frame: pd.DataFrame
    test_probability: np.ndarray
    decision_threshold: float
    predictor: Any


def fold_signals(evaluation: Evaluation, drivers: dict[str, str]) -> dict[str, list[DriverSignal]]:
    """{driver name: [DriverSignal per fold]}; `drivers` maps a name to an evaluated model kind."""
    frame = evaluation.training_set.frame
    t = frame["event_time_ns"].to_numpy(np.int64)
    folds = {f.index: f for f in walk_forward_folds(t, evaluation.config.walk_forward,
                                                    horizon_s=float(evaluation.config.label.horizon_s))}
    out: dict[str, list[DriverSignal]] = {name: [] for name in drivers}
    predictions = out_of_sample_predictions(evaluation, kinds=sorted(set(drivers.values())))
    by_fold = {key: rows for key, rows in predictions.groupby(["kind", "fold"], sort=False)}
    for result in evaluation.folds:
        fold = folds[result.index]
        if not np.array_equal(fold.test, result.test_rows):
            raise RuntimeError(f"fold {result.index}: recomputed folds differ from the evaluation's")
        val_frame = frame.iloc[fold.val].reset_index(drop=True)
        test_frame = frame.iloc[result.test_rows].reset_index(drop=True)
        for name, kind in drivers.items():
            predictor = result.predictors[kind]
            rows = by_fold[(kind, result.index)]
            if not np.array_equal(rows["event_time_ns"].to_numpy(np.int64),
                                  test_frame["event_time_ns"].to_numpy(np.int64)):
                raise RuntimeError(f"fold {result.index}: {kind}'s out-of-sample rows are not the test rows")
            out[name].append(DriverSignal(
                fold=result.index, val_frame=val_frame,
                val_probability=np.asarray(predictor.predict_proba(val_frame), float),
                test_frame=test_frame, test_probability=rows["spike_probability"].to_numpy(float),
                decision_threshold=float(predictor.decision_threshold), predictor=predictor,
            ))
    return out


def registered_champion(settings: Any) -> Any | None:
    """The registry's champion (`models:/<name>@champion`) or None when there is none."""
    from cryptovol.models.pyfunc import load_spike_model

    uri = f"models:/{settings.model_name}@champion"
    try:
        return load_spike_model(uri, tracking_uri=settings.mlflow_tracking_uri)
    except Exception as exc:  # noqa: BLE001 - no registered champion yet is a normal state
        log.info("no registered champion at %s (%s)", uri, str(exc).splitlines()[0] if str(exc) else exc)
        return None


def out_of_period_probabilities(
    sets: dict[str, TrainingSet], predictors: dict[str, Any]
) -> dict[str, dict[str, np.ndarray]]:
    """{set name: {driver: probabilities}} on later-regime rows (nothing is fitted here)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, ts in sets.items():
        if ts.frame.empty:
            continue
        out[name] = {driver: np.asarray(model.predict(ts.frame)["spike_probability"], float)
                     for driver, model in predictors.items()}
    return out
