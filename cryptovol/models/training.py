"""Walk-forward evaluation: every baseline and learned model fitted on every purged fold and scored
on its test block. Pure (no MLflow): the lifecycle (`cryptovol.models.lifecycle`) tracks,
registers and gates what this module measures.

- `evaluate_walk_forward(training_set, config, kinds=...)` -> `Evaluation` of some or all kinds;
  the Dagster model assets evaluate their own kinds, the CLI all of them, and
  `merge_evaluations` joins per-kind evaluations of the same rows and folds (results are the same
  either way: every fit is deterministic given the seed).
- `select(evaluation)` names the learned challenger (best mean PR-AUC on the clean half of the
  validation windows: a validation-only choice) and the best baseline (best pooled out-of-sample
  PR-AUC: the strongest opponent, which only makes the gate harder to pass).
- `out_of_sample_predictions(evaluation)`: each candidate's pooled test-fold predictions
  (timestamps, product, probability, flag, label) for backtests.

The registered model of a kind is its LAST fold's fitted model (trained on everything before the
most recent test block, calibrated on that fold's validation rows), so the most recent test block
is genuinely out of sample for what gets served.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.featureset import FEATURE_SET
from cryptovol.labels import LabelConfig
from cryptovol.models import metrics as M
from cryptovol.models.baselines import FWD_RV_FLOOR
from cryptovol.models.classifiers import SpikePredictor, XGBoostVolRegressor
from cryptovol.models.dataset import TrainingSet
from cryptovol.models.fitting import BASELINE_KINDS, DEFAULT_PARAMS, LEARNED_KINDS, fit_predictor
from cryptovol.models.gate import GateConfig
from cryptovol.models.walkforward import WalkForwardConfig, fold_labels, walk_forward_folds
from cryptovol.ticks import format_timestamp_ns

log = logging.getLogger(__name__)

SUMMARY_METRICS = ("pr_auc", "roc_auc", "f1", "precision", "recall", "precision_at_alert_rate",
                   "brier", "base_rate")

#: progress(message): called before each fold and each model fit (the CLI prints it on stderr).
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    label: LabelConfig = field(default_factory=LabelConfig)
    walk_forward: WalkForwardConfig = field(default_factory=WalkForwardConfig)
    learned_kinds: tuple[str, ...] = LEARNED_KINDS
    baseline_kinds: tuple[str, ...] = BASELINE_KINDS
    #: None: decision threshold = best F1 on validation; else the target alert rate.
    target_alert_rate: float | None = None
    #: Alert rate at which "precision at alert rate" is reported.
    alert_rate: float = M.DEFAULT_ALERT_RATE
    gate: GateConfig = field(default_factory=GateConfig)
    #: Per-kind overrides of `cryptovol.models.fitting.DEFAULT_PARAMS`.
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    regression_view: bool = True
    latency_repeats: int = 100
    seed: int = 0

    def params_for(self, kind: str) -> dict[str, Any]:
        return {**DEFAULT_PARAMS.get(kind, {}), **self.model_params.get(kind, {})}

    def as_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"label.{k}": v for k, v in asdict(self.label).items()}
        out.update({f"walk_forward.{k}": v for k, v in asdict(self.walk_forward).items()})
        out.update({f"gate.{k}": v for k, v in asdict(self.gate).items()})
        out.update({
            "learned_kinds": ",".join(self.learned_kinds),
            "baseline_kinds": ",".join(self.baseline_kinds),
            "target_alert_rate": self.target_alert_rate,
            "decision_rule": "best F1 on validation" if self.target_alert_rate is None else "alert rate",
            "alert_rate": self.alert_rate,
            "seed": self.seed,
        })
        for kind in self.learned_kinds:
            out.update({f"{kind}.{k}": v for k, v in self.params_for(kind).items()})
        return out


@dataclass
class FoldResult:
    index: int
    n_fit: int
    n_val: int
    n_test: int
    spike_threshold: float
    train_window: tuple[int, int]
    test_window: tuple[int, int]
    y_test: np.ndarray
    test_rows: np.ndarray
    probabilities: dict[str, np.ndarray]
    flags: dict[str, np.ndarray]
    metrics: dict[str, dict[str, float]]
    val_metrics: dict[str, dict[str, float]]
    regression: dict[str, dict[str, float]]
    predictors: dict[str, SpikePredictor]


@dataclass
class Evaluation:
    training_set: TrainingSet
    config: TrainConfig
    folds: list[FoldResult]
    kinds: tuple[str, ...]
    summary: pd.DataFrame  # index: kind; columns: "<metric>_mean", "<metric>_std", "<metric>_pooled"
    regression_summary: pd.DataFrame
    #: Mean over folds of each kind's PR-AUC on its whole validation window (reported).
    val_pr_auc: dict[str, float]
    #: Mean over folds of each kind's PR-AUC on the clean half of validation (chooses the challenger).
    selection_pr_auc: dict[str, float]
    #: Set by `select`: the learned challenger and the strongest baseline.
    chosen_kind: str | None = None
    best_baseline: str | None = None
    latency: dict[str, float] = field(default_factory=dict)
    #: Set by the lifecycle: paired bootstrap of PR-AUC(chosen) - PR-AUC(best baseline), pooled.
    bootstrap: dict[str, float] = field(default_factory=dict)

    @property
    def last_fold(self) -> FoldResult:
        return self.folds[-1]

    @property
    def learned(self) -> tuple[str, ...]:
        return tuple(k for k in self.kinds if k in self.config.learned_kinds)

    @property
    def baselines(self) -> tuple[str, ...]:
        return tuple(k for k in self.kinds if k in self.config.baseline_kinds)

    @property
    def chosen_predictor(self) -> SpikePredictor:
        return self.predictor(self.chosen_kind or self.kinds[0])

    def predictor(self, kind: str) -> SpikePredictor:
        """The model of `kind` that gets registered: the last fold's fit."""
        return self.last_fold.predictors[kind]

    def pooled(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities) of `kind` over every test fold, in time order."""
        return (np.concatenate([f.y_test for f in self.folds]),
                np.concatenate([f.probabilities[kind] for f in self.folds]))

    def pooled_rows(self) -> np.ndarray:
        """Positions (in `training_set.frame`) of the pooled test rows, in the order of `pooled`."""
        return np.concatenate([f.test_rows for f in self.folds])

    def recent_mask(self) -> np.ndarray:
        """Which pooled rows belong to the most recent test block (the last fold)."""
        return np.concatenate([np.full(f.n_test, f is self.last_fold) for f in self.folds])

    def holdout(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The most recent held-out window (last fold's test rows) and its labels."""
        fold = self.last_fold
        return self.training_set.frame.iloc[fold.test_rows].reset_index(drop=True), fold.y_test


def _window(t: np.ndarray) -> tuple[int, int]:
    return (int(t.min()), int(t.max())) if t.size else (0, 0)


def sorted_training_set(training_set: TrainingSet) -> TrainingSet:
    frame = training_set.frame.sort_values("event_time_ns", kind="stable").reset_index(drop=True)
    return TrainingSet(frame=frame, label_config=training_set.label_config, info=dict(training_set.info))


def evaluate_walk_forward(
    training_set: TrainingSet,
    config: TrainConfig = TrainConfig(),
    *,
    kinds: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Fit `kinds` (default: every baseline and learned kind of `config`) on every purged fold and
    score them on the fold's test block; then `select`."""
    training_set = sorted_training_set(training_set)
    frame = training_set.frame
    t = frame["event_time_ns"].to_numpy(np.int64)
    fwd = frame["fwd_rv"].to_numpy(float)
    horizon = float(config.label.horizon_s)
    kinds = tuple(kinds) if kinds is not None else (*config.baseline_kinds, *config.learned_kinds)
    folds: list[FoldResult] = []
    skipped: list[int] = []
    all_folds = list(walk_forward_folds(t, config.walk_forward, horizon_s=horizon))
    for fold in all_folds:
        labels = fold_labels(frame, fold, config.label)
        fit_f, val_f, test_f = frame.iloc[fold.fit], frame.iloc[fold.val], frame.iloc[fold.test]
        if len(np.unique(labels.y_fit)) < 2:
            log.warning("fold %d skipped: its fit rows hold a single class", fold.index)
            skipped.append(fold.index)
            continue
        probabilities, flags, metrics, val_metrics, predictors = {}, {}, {}, {}, {}
        for kind in kinds:
            if progress:
                progress(f"fold {fold.index + 1}/{len(all_folds)}: {kind} (fit {len(fold.fit)}, "
                         f"validation {len(fold.val)}, test {len(fold.test)} rows)")
            predictor, diag = fit_predictor(
                kind, fit_f, labels.y_fit, val_f, labels.y_val, fwd_rv_fit=fwd[fold.fit],
                horizon_s=horizon, target_alert_rate=config.target_alert_rate,
                params=config.params_for(kind),
            )
            out = predictor.predict(test_f)
            p = out["spike_probability"].to_numpy()
            probabilities[kind], flags[kind] = p, out["spike_flag"].to_numpy()
            metrics[kind] = M.classification_metrics(labels.y_test, p, flags[kind],
                                                     alert_rate=config.alert_rate)
            val_metrics[kind] = {"pr_auc": M.pr_auc(labels.y_val, predictor.predict_proba(val_f)), **diag}
            predictors[kind] = predictor
        regression = _regression_view(predictors, fit_f, val_f, test_f, fwd, fold, horizon, config, kinds) \
            if config.regression_view else {}
        folds.append(FoldResult(
            index=fold.index, n_fit=len(fold.fit), n_val=len(fold.val), n_test=len(fold.test),
            spike_threshold=labels.spike_threshold, train_window=_window(t[fold.train]),
            test_window=_window(t[fold.test]), y_test=labels.y_test, test_rows=fold.test,
            probabilities=probabilities, flags=flags, metrics=metrics, val_metrics=val_metrics,
            regression=regression, predictors=predictors,
        ))
        log.info("fold %d: fit %d val %d test %d base rate %.3f | %s", fold.index, len(fold.fit),
                 len(fold.val), len(fold.test), labels.y_test.mean(),
                 " ".join(f"{k}={metrics[k]['pr_auc']:.3f}" for k in kinds))
    if not folds:
        raise ValueError(f"not enough rows for walk-forward validation ({len(frame)} rows"
                         + (f"; folds {skipped} had a single class in training)" if skipped else ")"))
    training_set.info["folds_skipped_single_class"] = skipped
    return select(_assemble(training_set, config, folds, kinds))


def _assemble(training_set: TrainingSet, config: TrainConfig, folds: list[FoldResult],
              kinds: tuple[str, ...]) -> Evaluation:
    return Evaluation(
        training_set=training_set, config=config, folds=folds, kinds=kinds,
        summary=_summarise(folds, kinds, config), regression_summary=_regression_summary(folds),
        val_pr_auc={k: _nanmean([f.val_metrics[k]["pr_auc"] for f in folds]) for k in kinds},
        selection_pr_auc={k: _nanmean([f.val_metrics[k]["selection_pr_auc"] for f in folds]) for k in kinds},
    )


def merge_evaluations(evaluations: Iterable[Evaluation]) -> Evaluation:
    """One `Evaluation` from per-kind evaluations of the same rows, folds and label config."""
    evaluations = list(evaluations)
    if not evaluations:
        raise ValueError("nothing to merge")
    first = evaluations[0]
    keys = [(f.index, f.test_window, f.n_fit, f.n_val, f.spike_threshold) for f in first.folds]
    for other in evaluations[1:]:
        if [(f.index, f.test_window, f.n_fit, f.n_val, f.spike_threshold) for f in other.folds] != keys:
            raise ValueError("evaluations of different rows or folds cannot be merged")
    kinds = tuple(k for e in evaluations for k in e.kinds)
    folds = []
    for i, fold in enumerate(first.folds):
        merged = replace(fold, probabilities={}, flags={}, metrics={}, val_metrics={}, regression={},
                         predictors={})
        for e in evaluations:
            other = e.folds[i]
            for name in ("probabilities", "flags", "metrics", "val_metrics", "regression", "predictors"):
                getattr(merged, name).update(getattr(other, name))
        folds.append(merged)
    learned = {k for e in evaluations for k in e.config.learned_kinds}
    baseline = {k for e in evaluations for k in e.config.baseline_kinds}
    config = replace(
        first.config,
        learned_kinds=tuple(k for k in kinds if k in learned),
        baseline_kinds=tuple(k for k in kinds if k in baseline),
        model_params={k: v for e in evaluations for k, v in e.config.model_params.items()},
        regression_view=any(e.config.regression_view for e in evaluations),
    )
    return select(_assemble(first.training_set, config, folds, kinds))


def select(evaluation: Evaluation) -> Evaluation:
    """Name the learned challenger (validation only) and the strongest baseline (pooled test)."""
    learned = evaluation.learned
    if learned:
        # Clean half of each fold's validation window: no fitting step used it (XGBoost early-stops
        # on the other half). Ties go to the first listed (simpler) kind.
        evaluation.chosen_kind = max(learned, key=lambda k: _nan_low(evaluation.selection_pr_auc[k]))
    baselines = evaluation.baselines
    if baselines:
        evaluation.best_baseline = max(
            baselines, key=lambda k: _nan_low(evaluation.summary.loc[k, "pr_auc_pooled"]))
    return evaluation


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


def _nan_low(x: float) -> float:
    return x if x == x else -np.inf


def _summarise(folds: list[FoldResult], kinds: tuple[str, ...], config: TrainConfig) -> pd.DataFrame:
    rows = {}
    y_all = np.concatenate([f.y_test for f in folds])
    for kind in kinds:
        row: dict[str, float] = {}
        for metric in SUMMARY_METRICS:
            values = np.array([f.metrics[kind][metric] for f in folds], float)
            row[f"{metric}_mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            row[f"{metric}_std"] = float(np.nanstd(values)) if np.isfinite(values).any() else float("nan")
        pooled = M.classification_metrics(
            y_all, np.concatenate([f.probabilities[kind] for f in folds]),
            np.concatenate([f.flags[kind] for f in folds]), alert_rate=config.alert_rate,
        )
        row.update({f"{m}_pooled": pooled[m] for m in SUMMARY_METRICS})
        last = folds[-1].metrics[kind]
        row.update({"pr_auc_recent": last["pr_auc"], "brier_recent": last["brier"]})
        rows[kind] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def _regression_view(
    predictors: dict[str, SpikePredictor], fit_f: pd.DataFrame, val_f: pd.DataFrame, test_f: pd.DataFrame,
    fwd: np.ndarray, fold: Any, horizon: float, config: TrainConfig, kinds: tuple[str, ...],
) -> dict[str, dict[str, float]]:
    """Forecast forward realized vol on the test block; QLIKE and MSE per forecaster."""
    realized = np.maximum(fwd[fold.test], FWD_RV_FLOOR)
    forecasts: dict[str, np.ndarray] = {}
    if "persistence" in kinds:
        forecasts["persistence"] = np.asarray(test_f["rv_60s"], float) * np.sqrt(horizon / 60.0)
    for kind in ("ewma", "har"):
        if kind in predictors:
            forecasts[kind] = predictors[kind].scorer.forecast_vol(test_f)
    if "xgboost" in kinds:
        params = {k: v for k, v in config.params_for("xgboost").items()
                  if k in ("n_jobs", "max_depth", "learning_rate", "seed", "min_child_weight")}
        reg = XGBoostVolRegressor(**params).fit(fit_f, fwd[fold.fit], val_f, fwd[fold.val])
        forecasts["xgboost"] = reg.forecast_vol(test_f)
    out = {}
    for name, forecast in forecasts.items():
        forecast = np.where(np.isfinite(forecast), forecast, np.nanmedian(forecast))
        out[name] = {"qlike": M.qlike(realized, forecast), "mse_bp2": M.mse_vol(realized, forecast)}
    return out


def _regression_summary(folds: list[FoldResult]) -> pd.DataFrame:
    names = sorted({n for f in folds for n in f.regression})
    rows = {}
    for name in names:
        q = [f.regression[name]["qlike"] for f in folds if name in f.regression]
        m = [f.regression[name]["mse_bp2"] for f in folds if name in f.regression]
        rows[name] = {"qlike_mean": np.mean(q), "qlike_std": np.std(q), "mse_bp2_mean": np.mean(m),
                      "mse_bp2_std": np.std(m)}
    return pd.DataFrame.from_dict(rows, orient="index")


def measure_latency(predictor: SpikePredictor, frame: pd.DataFrame, repeats: int = 100) -> dict[str, float]:
    """Inference latency of the in-process predictor: per row in a batch, and one row at a time."""
    if frame.empty:
        return {}
    start = time.perf_counter()
    predictor.predict(frame)
    batch = time.perf_counter() - start
    single = []
    one = frame.iloc[[0]]
    for _ in range(min(repeats, 1000)):
        s = time.perf_counter()
        predictor.predict(one)
        single.append(time.perf_counter() - s)
    return {
        "latency_batch_us_per_row": 1e6 * batch / len(frame),
        "latency_single_row_ms_p50": 1e3 * float(np.median(single)),
        "latency_single_row_ms_p99": 1e3 * float(np.quantile(single, 0.99)),
    }


def out_of_sample_predictions(evaluation: Evaluation, kinds: Iterable[str] | None = None) -> pd.DataFrame:
    """Every candidate's pooled walk-forward test-fold predictions, one row per (kind, test row):
    `kind`, `fold`, `event_time_ns`, `product_id`, `spike_probability`, `spike_flag`, `spike`
    (the label, threshold fitted on that fold's training rows), `vol_ratio`/`fwd_rv`, `mid`.
    Each prediction comes from a model that never saw its row (purged, embargoed)."""
    frame = evaluation.training_set.frame
    parts = []
    for kind in kinds or evaluation.kinds:
        for f in evaluation.folds:
            rows = frame.iloc[f.test_rows]
            part = pd.DataFrame({
                "kind": kind, "fold": f.index,
                "event_time_ns": rows["event_time_ns"].to_numpy(np.int64),
                "product_id": rows["product_id"].astype(str).to_numpy(),
                "spike_probability": f.probabilities[kind], "spike_flag": f.flags[kind],
                "spike": f.y_test,
            })
            for column in ("mid", "fwd_rv", "vol_ratio"):
                if column in rows.columns:
                    part[column] = rows[column].to_numpy(float)
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def model_metadata(evaluation: Evaluation, kind: str | None = None) -> dict[str, Any]:
    """The serving contract's metadata of `kind`'s registered model (the last fold's fit)."""
    kind = kind or evaluation.chosen_kind or evaluation.kinds[0]
    fold = evaluation.last_fold
    predictor = evaluation.predictor(kind)
    ts = evaluation.training_set
    return {
        "feature_set_version": FEATURE_SET.version,
        "decision_threshold": float(predictor.decision_threshold),
        "label_config": {**asdict(evaluation.config.label), "spike_threshold": fold.spike_threshold,
                         "value_column": evaluation.config.label.value_column,
                         "grid_s": ts.info.get("grid_s", 1)},
        "model_kind": kind,
        "trained_window": {
            "first_event_time": format_timestamp_ns(fold.train_window[0]),
            "last_event_time": format_timestamp_ns(fold.train_window[1]),
            "first_event_time_ns": fold.train_window[0],
            "last_event_time_ns": fold.train_window[1],
        },
        "holdout_window": {
            "first_event_time": format_timestamp_ns(fold.test_window[0]),
            "last_event_time": format_timestamp_ns(fold.test_window[1]),
        },
        "metrics": {k: v for k, v in fold.metrics[kind].items()},
        "walk_forward": {m: float(evaluation.summary.loc[kind, f"{m}_{s}"])
                         for m in ("pr_auc", "brier", "roc_auc") for s in ("mean", "pooled")},
        "calibration": predictor.calibrator.method,
        "products": ts.info.get("products", []),
    }


def fold_table(evaluation: Evaluation) -> list[dict[str, Any]]:
    rows = []
    for fold in evaluation.folds:
        for kind, m in fold.metrics.items():
            rows.append({"fold": fold.index, "kind": kind, "n_fit": fold.n_fit, "n_val": fold.n_val,
                         "n_test": fold.n_test, "spike_threshold": fold.spike_threshold,
                         "test_start": format_timestamp_ns(fold.test_window[0]),
                         "test_end": format_timestamp_ns(fold.test_window[1]),
                         "val_pr_auc": fold.val_metrics[kind]["pr_auc"], **m})
    return rows


def evaluate_out_of_period(
    evaluation: Evaluation, sets: dict[str, TrainingSet], *, champion: Any | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Score the champion (a loaded model; else the chosen candidate) and the last fold's
    baselines on later-regime data they never saw, labelled with the champion's spike threshold."""
    threshold = evaluation.last_fold.spike_threshold
    label = f"candidate ({evaluation.chosen_kind})"
    model: Any = evaluation.chosen_predictor
    if champion is not None:
        model = champion
        threshold = float(champion.label_config.get("spike_threshold", threshold))
        label = f"champion v{champion.version} ({champion.model_kind})"
    value_col = evaluation.config.label.value_column
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, ts in sets.items():
        frame = ts.frame
        if frame.empty:
            continue
        y = frame[value_col].to_numpy(float) >= threshold
        per_model: dict[str, dict[str, float]] = {}
        pred = model.predict(frame)
        per_model[label] = M.classification_metrics(y, pred["spike_probability"].to_numpy(),
                                                    pred["spike_flag"].to_numpy(),
                                                    alert_rate=evaluation.config.alert_rate)
        for kind in evaluation.baselines:
            p = evaluation.predictor(kind).predict(frame)
            per_model[kind] = M.classification_metrics(y, p["spike_probability"].to_numpy(),
                                                       p["spike_flag"].to_numpy(),
                                                       alert_rate=evaluation.config.alert_rate)
        per_model["_info"] = {"rows": float(len(frame)), "spike_threshold": threshold,
                              "first_event_time": ts.window().get("first_event_time", ""),
                              "last_event_time": ts.window().get("last_event_time", "")}
        out[name] = per_model
    return out


def train(*args: Any, **kwargs: Any) -> Any:
    """Kept for callers of the old entry point: `cryptovol.models.lifecycle.run_lifecycle`."""
    from cryptovol.models.lifecycle import run_lifecycle

    return run_lifecycle(*args, **kwargs)
