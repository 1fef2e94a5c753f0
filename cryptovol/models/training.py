"""Training: purged walk-forward evaluation of every model and baseline, then MLflow tracking,
registration of the chosen learned model as challenger, and the promotion gate.

Building blocks (the Dagster assets call these one by one; the CLI calls `train`):
- `evaluate_walk_forward(training_set, config)` -> `Evaluation` (pure, no MLflow);
- `log_evaluation(evaluation, ...)` -> logs params/metrics/plots and the model into the active run;
- `train(training_set, ...)` -> `TrainResult`: the whole thing inside one MLflow run.

Which model is registered: the last fold's fitted models (trained on everything before the most
recent held-out window) are the candidates; the learned kind with the best PR-AUC on the clean half
of that fold's validation window is registered (test folds are never used for choices). The
held-out window is what the promotion gate compares the challenger and the current champion on.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.config import Settings
from cryptovol.featureset import FEATURE_SET
from cryptovol.labels import LabelConfig
from cryptovol.models import metrics as M
from cryptovol.models.baselines import FWD_RV_FLOOR
from cryptovol.models.classifiers import SpikePredictor, XGBoostVolRegressor
from cryptovol.models.dataset import TrainingSet
from cryptovol.models.fitting import BASELINE_KINDS, LEARNED_KINDS, fit_predictor
from cryptovol.models.registry import GateConfig, PromotionDecision
from cryptovol.models.walkforward import WalkForwardConfig, fold_labels, walk_forward_folds
from cryptovol.ticks import format_timestamp_ns

log = logging.getLogger(__name__)

SUMMARY_METRICS = ("pr_auc", "roc_auc", "f1", "precision", "recall", "precision_at_alert_rate",
                   "brier", "base_rate")


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
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    regression_view: bool = True
    n_boot: int = 500
    bootstrap_block: int = 60
    latency_repeats: int = 100
    seed: int = 0

    def as_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"label.{k}": v for k, v in asdict(self.label).items()}
        out.update({f"walk_forward.{k}": v for k, v in asdict(self.walk_forward).items()})
        out.update({
            "learned_kinds": ",".join(self.learned_kinds),
            "baseline_kinds": ",".join(self.baseline_kinds),
            "target_alert_rate": self.target_alert_rate,
            "decision_rule": "best F1 on validation" if self.target_alert_rate is None else "alert rate",
            "alert_rate": self.alert_rate,
            "gate.min_pr_auc_gain": self.gate.min_pr_auc_gain,
            "gate.brier_tolerance": self.gate.brier_tolerance,
            "seed": self.seed,
        })
        for kind, params in self.model_params.items():
            out.update({f"{kind}.{k}": v for k, v in params.items()})
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
    chosen_kind: str
    best_baseline: str
    summary: pd.DataFrame  # index: kind; columns: "<metric>_mean", "<metric>_std", "<metric>_pooled"
    regression_summary: pd.DataFrame
    bootstrap: dict[str, float]
    latency: dict[str, float]
    #: Mean over folds of each kind's PR-AUC on its whole validation window (reported).
    val_pr_auc: dict[str, float]
    #: Learned kinds' PR-AUC on the clean half of the LAST fold's validation (decides registration).
    selection_pr_auc: dict[str, float] = field(default_factory=dict)

    @property
    def last_fold(self) -> FoldResult:
        return self.folds[-1]

    @property
    def chosen_predictor(self) -> SpikePredictor:
        return self.last_fold.predictors[self.chosen_kind]

    def holdout(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The most recent held-out window (last fold's test rows) and its labels."""
        fold = self.last_fold
        return self.training_set.frame.iloc[fold.test_rows].reset_index(drop=True), fold.y_test

    def baseline_holdout_scores(self) -> dict[str, dict[str, float]]:
        fold = self.last_fold
        return {k: {"pr_auc": fold.metrics[k]["pr_auc"], "brier": fold.metrics[k]["brier"]}
                for k in self.config.baseline_kinds if k in fold.metrics}


def _window(t: np.ndarray) -> tuple[int, int]:
    return (int(t.min()), int(t.max())) if t.size else (0, 0)


def evaluate_walk_forward(training_set: TrainingSet, config: TrainConfig = TrainConfig()) -> Evaluation:
    """Fit every baseline and learned model on every purged fold and score it on the test block."""
    frame = training_set.frame.sort_values("event_time_ns", kind="stable").reset_index(drop=True)
    training_set = TrainingSet(frame=frame, label_config=training_set.label_config, info=training_set.info)
    t = frame["event_time_ns"].to_numpy(np.int64)
    fwd = frame["fwd_rv"].to_numpy(float)
    horizon = float(config.label.horizon_s)
    kinds = (*config.baseline_kinds, *config.learned_kinds)
    folds: list[FoldResult] = []
    skipped: list[int] = []
    for fold in walk_forward_folds(t, config.walk_forward, horizon_s=horizon):
        labels = fold_labels(frame, fold, config.label)
        fit_f, val_f, test_f = frame.iloc[fold.fit], frame.iloc[fold.val], frame.iloc[fold.test]
        if len(np.unique(labels.y_fit)) < 2:
            log.warning("fold %d skipped: its fit rows hold a single class", fold.index)
            skipped.append(fold.index)
            continue
        probabilities, flags, metrics, val_metrics, predictors = {}, {}, {}, {}, {}
        for kind in kinds:
            predictor, diag = fit_predictor(
                kind, fit_f, labels.y_fit, val_f, labels.y_val, fwd_rv_fit=fwd[fold.fit],
                horizon_s=horizon, target_alert_rate=config.target_alert_rate,
                params=config.model_params.get(kind),
            )
            out = predictor.predict(test_f)
            p = out["spike_probability"].to_numpy()
            probabilities[kind], flags[kind] = p, out["spike_flag"].to_numpy()
            metrics[kind] = M.classification_metrics(labels.y_test, p, flags[kind],
                                                     alert_rate=config.alert_rate)
            val_metrics[kind] = {"pr_auc": M.pr_auc(labels.y_val, predictor.predict_proba(val_f)), **diag}
            predictors[kind] = predictor
        regression = _regression_view(predictors, fit_f, val_f, test_f, fwd, fold, horizon, config) \
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
    summary = _summarise(folds, kinds, config)
    val_pr_auc = {k: float(np.nanmean([f.val_metrics[k]["pr_auc"] for f in folds])) for k in kinds}
    # The candidates for registration ARE the last fold's fitted models, so they are compared on
    # that fold's own clean validation rows (the half no fitting step touched; XGBoost early-stops
    # on the other half). Ties go to the first listed (simpler) kind.
    selection = {k: float(folds[-1].val_metrics[k]["selection_pr_auc"]) for k in config.learned_kinds}
    chosen = max(config.learned_kinds, key=lambda k: _nan_low(selection[k]))
    best_baseline = max(config.baseline_kinds, key=lambda k: _nan_low(summary.loc[k, "pr_auc_mean"]))
    y_all = np.concatenate([f.y_test for f in folds])
    bootstrap = M.paired_block_bootstrap(
        y_all,
        np.concatenate([f.probabilities[chosen] for f in folds]),
        np.concatenate([f.probabilities[best_baseline] for f in folds]),
        block=config.bootstrap_block, n_boot=config.n_boot, seed=config.seed,
    )
    reg_summary = _regression_summary(folds)
    latency = measure_latency(folds[-1].predictors[chosen], frame.iloc[folds[-1].test_rows],
                              repeats=config.latency_repeats)
    return Evaluation(training_set=training_set, config=config, folds=folds, chosen_kind=chosen,
                      best_baseline=best_baseline, summary=summary, regression_summary=reg_summary,
                      bootstrap=bootstrap, latency=latency, val_pr_auc=val_pr_auc,
                      selection_pr_auc=selection)


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
        rows[kind] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def _regression_view(
    predictors: dict[str, SpikePredictor], fit_f: pd.DataFrame, val_f: pd.DataFrame, test_f: pd.DataFrame,
    fwd: np.ndarray, fold: Any, horizon: float, config: TrainConfig,
) -> dict[str, dict[str, float]]:
    """Forecast forward realized vol on the test block; QLIKE and MSE per forecaster."""
    realized = np.maximum(fwd[fold.test], FWD_RV_FLOOR)
    forecasts: dict[str, np.ndarray] = {
        "persistence": np.asarray(test_f["rv_60s"], float) * np.sqrt(horizon / 60.0),
    }
    for kind in ("ewma", "har"):
        if kind in predictors:
            forecasts[kind] = predictors[kind].scorer.forecast_vol(test_f)
    if "xgboost" in config.learned_kinds:
        params = {k: v for k, v in config.model_params.get("xgboost", {}).items()
                  if k in ("n_jobs", "max_depth", "learning_rate", "seed")}
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


# --- MLflow -----------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    evaluation: Evaluation
    run_id: str | None = None
    model_uri: str | None = None
    version: str | None = None
    decision: PromotionDecision | None = None
    out_of_period: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    model_name: str | None = None

    def summary_line(self) -> str:
        e = self.evaluation
        s = e.summary
        parts = [f"chosen {e.chosen_kind}: PR-AUC {s.loc[e.chosen_kind, 'pr_auc_mean']:.3f}",
                 f"best baseline {e.best_baseline}: {s.loc[e.best_baseline, 'pr_auc_mean']:.3f}",
                 f"base rate {s.loc[e.chosen_kind, 'base_rate_mean']:.3f}"]
        if self.version:
            parts.append(f"registered {self.model_name} v{self.version}")
        if self.decision:
            parts.append(("PROMOTED: " if self.decision.promote else "not promoted: ") + self.decision.reason)
        return "; ".join(parts)


def model_metadata(evaluation: Evaluation) -> dict[str, Any]:
    fold = evaluation.last_fold
    predictor = evaluation.chosen_predictor
    ts = evaluation.training_set
    return {
        "feature_set_version": FEATURE_SET.version,
        "decision_threshold": float(predictor.decision_threshold),
        "label_config": {**asdict(evaluation.config.label), "spike_threshold": fold.spike_threshold,
                         "value_column": evaluation.config.label.value_column,
                         "grid_s": ts.info.get("grid_s", 1)},
        "model_kind": evaluation.chosen_kind,
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
        "metrics": {k: v for k, v in fold.metrics[evaluation.chosen_kind].items()},
        "calibration": predictor.calibrator.method,
        "products": ts.info.get("products", []),
    }


def log_evaluation(evaluation: Evaluation, *, model_name: str | None, register: bool = True) -> Any:
    """Log params, metrics, plots and the chosen model into the ACTIVE MLflow run.

    Returns MLflow's ModelInfo of the logged model (registered under `model_name` if `register`).
    """
    import mlflow

    from cryptovol.models.plots import write_plots
    from cryptovol.models.pyfunc import log_spike_model

    ts = evaluation.training_set
    config = evaluation.config
    params = {
        **config.as_params(),
        "feature_set_version": FEATURE_SET.version,
        "rows": ts.n_rows,
        "chosen_kind": evaluation.chosen_kind,
        **{f"data.{k}": v for k, v in ts.window().items() if not k.endswith("_ns")},
        **{f"data.{k}": v for k, v in ts.info.items() if not isinstance(v, dict | list)},
        **{f"{evaluation.chosen_kind}.{k}": v
           for k, v in evaluation.chosen_predictor.scorer.params().items()},
    }
    mlflow.log_params({k: ("" if v is None else str(v)[:500]) for k, v in params.items()})
    mlflow.set_tags({"cryptovol.feature_set_version": FEATURE_SET.version,
                     "cryptovol.chosen_kind": evaluation.chosen_kind})
    metrics: dict[str, float] = {}
    for kind, row in evaluation.summary.iterrows():
        metrics.update({f"{kind}.{col}": float(v) for col, v in row.items()})
    for name, row in evaluation.regression_summary.iterrows():
        metrics.update({f"regression.{name}.{col}": float(v) for col, v in row.items()})
    metrics.update({f"bootstrap.pr_auc_diff_{k}": float(v) for k, v in evaluation.bootstrap.items()})
    metrics.update(evaluation.latency)
    metrics.update({f"holdout.{k}": float(v)
                    for k, v in evaluation.last_fold.metrics[evaluation.chosen_kind].items()})
    mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
    for fold in evaluation.folds:
        for kind, m in fold.metrics.items():
            values = {f"fold.{kind}.{k}": float(v) for k, v in m.items() if np.isfinite(v)}
            mlflow.log_metrics(values, step=fold.index)
    with tempfile.TemporaryDirectory() as tmp:
        for path in write_plots(evaluation, Path(tmp)):
            mlflow.log_artifact(str(path), artifact_path="plots")
        table = Path(tmp) / "folds.json"
        table.write_text(json.dumps(fold_table(evaluation), indent=1, default=float))
        mlflow.log_artifact(str(table), artifact_path="evaluation")
    holdout_frame, _ = evaluation.holdout()
    return log_spike_model(
        evaluation.chosen_predictor,
        metadata=model_metadata(evaluation),
        input_example=holdout_frame,
        registered_model_name=model_name if register else None,
    )


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


def train(
    training_set: TrainingSet,
    *,
    settings: Settings | None = None,
    config: TrainConfig = TrainConfig(),
    run_tags: dict[str, str] | None = None,
    experiment_name: str | None = None,
    active_run: Any | None = None,
    alert_hook: Callable[[PromotionDecision], None] | None = None,
    register: bool = True,
    out_of_period: dict[str, TrainingSet] | None = None,
    evaluation: Evaluation | None = None,
) -> TrainResult:
    """Evaluate, track, register and gate, all in one MLflow run.

    - `active_run`: an MLflow run to log into (e.g. started by dagster-mlflow); by default the
      currently active run is used if there is one, else a new run is started (and ended) here.
    - `experiment_name`: experiment of the run started here (default `cryptovol-spike`, created
      with its artifacts under the data dir); ignored when logging into an existing run.
    - `run_tags`: extra tags for the run (e.g. `dagster_run_id`), also set on the model version.
    - `alert_hook(decision)`: called with the promotion decision (notifications).
    - `out_of_period`: named later-regime sets scored by the champion after the gate (never trained on).
    """
    import mlflow

    from cryptovol.models import registry
    from cryptovol.models.tracking import DEFAULT_EXPERIMENT, configure_tracking

    settings = settings or Settings.from_env()
    evaluation = evaluation or evaluate_walk_forward(training_set, config)
    own_run = False
    if active_run is None and mlflow.active_run() is None:
        configure_tracking(settings, experiment_name or DEFAULT_EXPERIMENT)
        active_run = mlflow.start_run(run_name=f"train-{evaluation.chosen_kind}")
        own_run = True
    run = active_run or mlflow.active_run()
    result = TrainResult(evaluation=evaluation, run_id=run.info.run_id, model_name=settings.model_name)
    try:
        if run_tags:
            mlflow.set_tags(run_tags)
        info = log_evaluation(evaluation, model_name=settings.model_name, register=register)
        result.model_uri = info.model_uri
        if register:
            result.version = str(info.registered_model_version)
            client = mlflow.MlflowClient()
            client.set_model_version_tag(settings.model_name, result.version, "cryptovol.model_kind",
                                         evaluation.chosen_kind)
            client.set_model_version_tag(settings.model_name, result.version, "cryptovol.run_id",
                                         result.run_id)
            for key, value in (run_tags or {}).items():
                client.set_model_version_tag(settings.model_name, result.version, key, value)
            holdout_frame, holdout_y = evaluation.holdout()
            result.decision = registry.run_promotion_gate(
                settings.model_name, result.version, holdout_frame=holdout_frame, holdout_y=holdout_y,
                baseline_scores=evaluation.baseline_holdout_scores(), config=config.gate,
                alert_hook=alert_hook, client=client,
            )
            mlflow.set_tags({f"cryptovol.gate.{k}": str(v) for k, v in asdict(result.decision).items()})
        if out_of_period:
            result.out_of_period = evaluate_out_of_period(
                evaluation, out_of_period,
                champion_uri=f"models:/{settings.model_name}@champion" if register else None,
            )
            for name, per_model in result.out_of_period.items():
                for model, m in per_model.items():
                    mlflow.log_metrics({f"oop.{name}.{model}.{k}": float(v) for k, v in m.items()
                                        if isinstance(v, int | float) and np.isfinite(v)})
    finally:
        if own_run:
            mlflow.end_run()
    return result


def evaluate_out_of_period(
    evaluation: Evaluation, sets: dict[str, TrainingSet], *, champion_uri: str | None
) -> dict[str, dict[str, dict[str, float]]]:
    """Score the champion (and the last fold's baselines) on later-regime data it never saw, labelled
    with the champion's own stored spike threshold."""
    from cryptovol.models.pyfunc import load_spike_model

    champion = None
    threshold = evaluation.last_fold.spike_threshold
    label = "challenger"
    if champion_uri:
        try:
            champion = load_spike_model(champion_uri)
            threshold = float(champion.label_config.get("spike_threshold", threshold))
            label = f"champion v{champion.version} ({champion.model_kind})"
        except Exception as exc:  # noqa: BLE001 - no champion yet: report the challenger instead
            log.warning("no champion to score out of period (%s); using the challenger", exc)
    value_col = evaluation.config.label.value_column
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, ts in sets.items():
        frame = ts.frame
        if frame.empty:
            continue
        y = frame[value_col].to_numpy(float) >= threshold
        per_model: dict[str, dict[str, float]] = {}
        model = champion if champion is not None else evaluation.chosen_predictor
        pred = model.predict(frame)
        per_model[label] = M.classification_metrics(y, pred["spike_probability"].to_numpy(),
                                                    pred["spike_flag"].to_numpy(),
                                                    alert_rate=evaluation.config.alert_rate)
        for kind in evaluation.config.baseline_kinds:
            p = evaluation.last_fold.predictors[kind].predict(frame)
            per_model[kind] = M.classification_metrics(y, p["spike_probability"].to_numpy(),
                                                       p["spike_flag"].to_numpy(),
                                                       alert_rate=evaluation.config.alert_rate)
        per_model["_info"] = {"rows": float(len(frame)), "spike_threshold": threshold,
                              "first_event_time": ts.window().get("first_event_time", ""),
                              "last_event_time": ts.window().get("last_event_time", "")}
        out[name] = per_model
    return out
