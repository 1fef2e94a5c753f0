"""THE model lifecycle: walk-forward evaluation -> selection -> MLflow tracking -> registration ->
the promotion gate. `cryptovol train` calls `run_lifecycle`; the Dagster assets call the same
steps one by one (so the same data gives the same kind, metrics and decision either way):

    evaluate_walk_forward (per kind)        model assets       -> `Evaluation`
    log_run + log_models (into an MLflow run)  model assets    -> `LoggedModel` per candidate kind
    merge_evaluations + judge_candidates    model_evaluation   -> challenger vs best baseline
    register_and_gate                       champion_model     -> versions, aliases, decision

Candidates: the learned challenger (chosen on validation folds only) and the best baseline (pooled
test evidence). Both are registered as servable versions. The learned challenger becomes the
candidate only if it clears the gate (`cryptovol.models.gate`) against the best baseline on the
pooled walk-forward test folds; otherwise the best baseline is the candidate. With no champion yet
the candidate becomes champion (the service always has the best model there is); with a champion,
the candidate must clear the same gate against it on the rows the champion never trained on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.config import Settings
from cryptovol.models import gate as G
from cryptovol.models.dataset import TrainingSet
from cryptovol.models.gate import PromotionDecision
from cryptovol.models.training import (
    Evaluation,
    Progress,
    TrainConfig,
    evaluate_out_of_period,
    evaluate_walk_forward,
    fold_table,
    measure_latency,
    model_metadata,
    out_of_sample_predictions,
)

log = logging.getLogger(__name__)

__all__ = ["LifecycleResult", "LoggedModel", "TrainConfig", "judge_candidates", "log_models", "log_run",
           "out_of_sample_predictions", "register_and_gate", "run_lifecycle", "walk_forward_predictions"]


@dataclass(frozen=True)
class LoggedModel:
    kind: str
    uri: str
    run_id: str


@dataclass
class CandidateChoice:
    """The learned challenger against the best baseline on the pooled test folds."""

    candidate_kind: str
    learned_kind: str | None
    best_baseline: str | None
    learned_won: bool
    reason: str
    evidence: G.Evidence | None


@dataclass
class LifecycleResult:
    evaluation: Evaluation
    choice: CandidateChoice | None = None
    run_id: str | None = None
    model_name: str | None = None
    #: kind -> registered version (the candidate and the other registered kind).
    versions: dict[str, str] = field(default_factory=dict)
    version: str | None = None  # the candidate's version
    decision: PromotionDecision | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    out_of_period: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    @property
    def model_uri(self) -> str | None:
        return f"models:/{self.model_name}/{self.version}" if self.version else None

    def summary_line(self) -> str:
        e = self.evaluation
        s = e.summary
        parts = []
        if e.chosen_kind:
            k = e.chosen_kind
            parts.append(f"learned challenger {k}: PR-AUC mean {s.loc[k, 'pr_auc_mean']:.3f} "
                         f"pooled {s.loc[k, 'pr_auc_pooled']:.3f}")
        if e.best_baseline:
            parts.append(f"best baseline {e.best_baseline}: mean {s.loc[e.best_baseline, 'pr_auc_mean']:.3f} "
                         f"pooled {s.loc[e.best_baseline, 'pr_auc_pooled']:.3f}")
        if self.choice:
            parts.append(f"candidate {self.choice.candidate_kind}")
        if self.version:
            parts.append(f"registered {self.model_name} " + ", ".join(
                f"v{v} ({k})" for k, v in self.versions.items()))
        if self.decision:
            parts.append(("PROMOTED: " if self.decision.promote else "not promoted: ") + self.decision.reason)
        if self.champion_after:
            kind = next((k for k, v in self.versions.items() if v == self.champion_after), None)
            parts.append(f"champion v{self.champion_after}" + (f" ({kind})" if kind else ""))
        return "; ".join(parts)


# --- pure steps ---------------------------------------------------------------------------------------


def judge_candidates(evaluation: Evaluation) -> CandidateChoice:
    """Does the learned challenger clear the gate against the best baseline? Sets
    `evaluation.bootstrap` (the gain's paired bootstrap) and returns the candidate to register."""
    gate = evaluation.config.gate
    learned, baseline = evaluation.chosen_kind, evaluation.best_baseline
    if learned is None or baseline is None:
        kind = learned or baseline
        if kind is None:
            raise ValueError("nothing to choose from: the evaluation holds no model")
        return CandidateChoice(kind, learned, baseline, learned is not None,
                               "only one kind of candidate was evaluated", None)
    y, p_learned = evaluation.pooled(learned)
    _, p_base = evaluation.pooled(baseline)
    evidence = G.measure(y, p_learned, p_base, evaluation.recent_mask(), gate)
    evaluation.bootstrap = {"diff": evidence.gain, "low": evidence.gain_low, "high": evidence.gain_high,
                            "n_boot": float(gate.n_boot)}
    won, reason = G.judge(evidence, gate, candidate=learned, reference=f"baseline {baseline}")
    return CandidateChoice(learned if won else baseline, learned, baseline, won, reason, evidence)


def candidate_kinds(evaluation: Evaluation) -> list[str]:
    """Kinds whose models get logged and registered: the best baseline and the learned challenger."""
    return [k for k in (evaluation.best_baseline, evaluation.chosen_kind) if k]


def walk_forward_predictions(
    training_set: TrainingSet, config: TrainConfig | None = None, *, kinds: list[str] | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Each candidate's pooled out-of-sample test-fold predictions (see
    `training.out_of_sample_predictions`) straight from a training set: for backtests."""
    evaluation = evaluate_walk_forward(training_set, config or TrainConfig(), kinds=kinds, progress=progress)
    return out_of_sample_predictions(evaluation)


# --- MLflow -------------------------------------------------------------------------------------------


def log_run(evaluation: Evaluation, *, source: str | None = None) -> None:
    """Params, metrics, per-fold metrics, plots, the fold table and the input dataset, logged into
    the ACTIVE MLflow run."""
    import json
    import tempfile
    from pathlib import Path

    import mlflow

    from cryptovol.featureset import FEATURE_SET
    from cryptovol.models.plots import write_plots

    ts = evaluation.training_set
    config = evaluation.config
    params = {
        **config.as_params(),
        "feature_set_version": FEATURE_SET.version,
        "rows": ts.n_rows,
        "kinds": ",".join(evaluation.kinds),
        "chosen_kind": evaluation.chosen_kind or "",
        "best_baseline": evaluation.best_baseline or "",
        **{f"data.{k}": v for k, v in ts.window().items() if not k.endswith("_ns")},
        **{f"data.{k}": v for k, v in ts.info.items() if not isinstance(v, dict | list)},
    }
    for kind in evaluation.learned:
        params.update({f"{kind}.{k}": v for k, v in evaluation.predictor(kind).scorer.params().items()})
    mlflow.log_params({k: ("" if v is None else str(v)[:500]) for k, v in params.items()})
    mlflow.set_tags({"cryptovol.feature_set_version": FEATURE_SET.version,
                     "cryptovol.chosen_kind": evaluation.chosen_kind or "",
                     "cryptovol.best_baseline": evaluation.best_baseline or ""})
    metrics: dict[str, float] = {}
    for kind, row in evaluation.summary.iterrows():
        metrics.update({f"{kind}.{col}": float(v) for col, v in row.items()})
    for name, row in evaluation.regression_summary.iterrows():
        metrics.update({f"regression.{name}.{col}": float(v) for col, v in row.items()})
    metrics.update({f"bootstrap.pr_auc_diff_{k}": float(v) for k, v in evaluation.bootstrap.items()})
    metrics.update(evaluation.latency)
    mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
    for fold in evaluation.folds:
        for kind, m in fold.metrics.items():
            values = {f"fold.{kind}.{k}": float(v) for k, v in m.items() if np.isfinite(v)}
            mlflow.log_metrics(values, step=fold.index)
    log_input_dataset(evaluation, source=source)
    with tempfile.TemporaryDirectory() as tmp:
        for path in write_plots(evaluation, Path(tmp)):
            mlflow.log_artifact(str(path), artifact_path="plots")
        table = Path(tmp) / "folds.json"
        table.write_text(json.dumps(fold_table(evaluation), indent=1, default=float))
        mlflow.log_artifact(str(table), artifact_path="evaluation")


def log_input_dataset(evaluation: Evaluation, *, source: str | None = None) -> None:
    """The training rows as an MLflow dataset input: source, window and row counts as tags."""
    import warnings

    import mlflow

    from cryptovol.featureset import FEATURE_NAMES

    ts = evaluation.training_set
    window = ts.window()
    src = source or str(ts.info.get("source") or "feature lake")
    columns = [c for c in ("event_time_ns", "product_id", *FEATURE_NAMES, "fwd_rv", "vol_ratio")
               if c in ts.frame.columns]
    name = f"{','.join(ts.info.get('products', [])) or 'ticks'} {window.get('first_event_time', '')[:16]}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = mlflow.data.from_pandas(ts.frame.loc[:, columns], source=src, name=name)
    tags = {
        "source": src,
        "first_event_time": str(window.get("first_event_time", "")),
        "last_event_time": str(window.get("last_event_time", "")),
        "rows": str(ts.n_rows),
        "ticks": str(ts.info.get("ticks", "")),
        "feature_rows": str(ts.info.get("feature_rows", "")),
        "segments_kept": str(ts.info.get("segments_kept", "")),
        "test_rows_pooled": str(sum(f.n_test for f in evaluation.folds)),
    }
    mlflow.log_input(dataset, context="training", tags={k: v for k, v in tags.items() if v})


def log_models(evaluation: Evaluation, kinds: list[str] | None = None) -> dict[str, LoggedModel]:
    """Log the last-fold model of each kind (default: the candidates) into the ACTIVE run as a
    `SpikeModel` pyfunc (the serving contract); returns kind -> `LoggedModel`."""
    import mlflow

    from cryptovol.models.pyfunc import log_spike_model

    holdout_frame, _ = evaluation.holdout()
    run_id = mlflow.active_run().info.run_id
    out = {}
    for kind in kinds if kinds is not None else candidate_kinds(evaluation):
        info = log_spike_model(evaluation.predictor(kind), metadata=model_metadata(evaluation, kind),
                               input_example=holdout_frame, name=f"model_{kind}")
        out[kind] = LoggedModel(kind=kind, uri=info.model_uri, run_id=run_id)
    return out


def _evidence_tags(evaluation: Evaluation, kind: str) -> dict[str, str]:
    s = evaluation.summary.loc[kind]
    tags = {f"cryptovol.evidence.{m}_{agg}": f"{float(s[f'{m}_{agg}']):.6g}"
            for m in ("pr_auc", "brier", "roc_auc") for agg in ("mean", "std", "pooled")}
    tags["cryptovol.evidence.pr_auc_recent"] = f"{float(s['pr_auc_recent']):.6g}"
    tags["cryptovol.evidence.folds"] = str(len(evaluation.folds))
    tags["cryptovol.evidence.test_rows"] = str(sum(f.n_test for f in evaluation.folds))
    return tags


def register_and_gate(
    evaluation: Evaluation,
    logged: dict[str, LoggedModel],
    *,
    settings: Settings,
    choice: CandidateChoice | None = None,
    run_tags: dict[str, str] | None = None,
    alert_hook: Callable[[PromotionDecision], None] | None = None,
    client: Any | None = None,
) -> LifecycleResult:
    """Register the candidates, gate the chosen one against the champion (or make it the first
    champion), record the evidence (tags + the model card as description) and move the aliases."""
    import mlflow

    from cryptovol.models import registry
    from cryptovol.models.report import render_model_card

    client = client or mlflow.MlflowClient()
    choice = choice or judge_candidates(evaluation)
    name = settings.model_name
    result = LifecycleResult(evaluation=evaluation, choice=choice, model_name=name,
                             run_id=logged[choice.candidate_kind].run_id)
    result.champion_before = registry.alias_version(name, registry.CHAMPION, client)
    for kind in candidate_kinds(evaluation):
        role = "best baseline" if kind == evaluation.best_baseline else "learned challenger"
        tags = {"cryptovol.model_kind": kind, "cryptovol.run_id": logged[kind].run_id, "cryptovol.role": role,
                "cryptovol.candidate": str(kind == choice.candidate_kind), **_evidence_tags(evaluation, kind),
                **(run_tags or {})}
        result.versions[kind] = registry.register_version(name, logged[kind].uri, tags=tags, client=client)
    candidate = choice.candidate_kind
    version = result.version = result.versions[candidate]
    registry.set_challenger(name, version, client)
    gate = evaluation.config.gate
    if result.champion_before is None:
        why = (f"first champion: learned {candidate} cleared the gate against the best baseline "
               f"({choice.reason})"
               if choice.learned_won and choice.learned_kind else
               f"first champion: the best baseline {candidate}; no learned model cleared the gate"
               + (f" ({choice.reason})" if choice.learned_kind else ""))
        decision = PromotionDecision.from_evidence(
            choice.evidence, gate, promote=True, reason=why, version=version, kind=candidate,
            reference=f"baseline {choice.best_baseline}" if choice.learned_won else "none (first champion)")
    else:
        decision = _gate_against_champion(evaluation, candidate, version, result.champion_before, name, gate)
    result.decision = decision
    for key, value in decision.as_tags().items():
        client.set_model_version_tag(name, version, key, value)
    if decision.promote:
        registry.promote(name, version, reason=decision.reason, client=client)
    result.champion_after = registry.alias_version(name, registry.CHAMPION, client)
    for kind, v in result.versions.items():
        client.update_model_version(name, v, description=render_model_card(result, kind))
    log.info("gate for %s v%s (%s): %s (%s)", name, version, candidate,
             "PROMOTE" if decision.promote else "keep", decision.reason)
    if alert_hook is not None:
        alert_hook(decision)
    return result


def _gate_against_champion(evaluation: Evaluation, candidate: str, version: str, champion_version: str,
                           name: str, gate: G.GateConfig) -> PromotionDecision:
    """Candidate vs the current champion on the pooled test rows after the champion's training
    window (+ embargo): rows the champion never saw, where the candidate's predictions are
    walk-forward out of sample too."""
    from cryptovol.models.pyfunc import load_spike_model

    reference = f"champion v{champion_version}"
    try:
        champion = load_spike_model(f"models:/{name}/{champion_version}")
    except Exception as exc:  # noqa: BLE001 - an unloadable champion is replaced by a sound candidate
        reason = f"champion v{champion_version} cannot be loaded ({exc}); the candidate replaces it"
        return PromotionDecision.from_evidence(None, gate, promote=True, reason=reason, version=version,
                                               kind=candidate, reference=reference)
    trained_end = (champion.metadata.get("trained_window") or {}).get("last_event_time_ns")
    cutoff = int(trained_end) + int(evaluation.config.walk_forward.embargo_s * 1e9) if trained_end else None
    frame = evaluation.training_set.frame
    rows = evaluation.pooled_rows()
    y, p_candidate = evaluation.pooled(candidate)
    recent = evaluation.recent_mask()
    keep = np.ones(rows.size, bool) if cutoff is None else \
        frame["event_time_ns"].to_numpy(np.int64)[rows] > cutoff
    if keep.sum() < gate.block or len(np.unique(y[keep])) < 2:
        reason = (f"{candidate} vs {reference}: only {int(keep.sum())} test rows after the champion's "
                  "training window (or one class only): no out-of-sample evidence to replace it")
        return PromotionDecision.from_evidence(None, gate, promote=False, reason=reason, version=version,
                                               kind=candidate, reference=reference)
    p_champion = champion.predict(frame.iloc[rows[keep]])["spike_probability"].to_numpy(float)
    evidence = G.measure(y[keep], p_candidate[keep], p_champion, recent[keep], gate)
    promote, reason = G.judge(evidence, gate, candidate=candidate, reference=reference)
    return PromotionDecision.from_evidence(evidence, gate, promote=promote, reason=reason, version=version,
                                           kind=candidate, reference=reference)


def run_lifecycle(
    training_set: TrainingSet,
    *,
    settings: Settings | None = None,
    config: TrainConfig | None = None,
    run_tags: dict[str, str] | None = None,
    experiment_name: str | None = None,
    active_run: Any | None = None,
    alert_hook: Callable[[PromotionDecision], None] | None = None,
    register: bool = True,
    out_of_period: dict[str, TrainingSet] | None = None,
    evaluation: Evaluation | None = None,
    progress: Progress | None = None,
    source: str | None = None,
) -> LifecycleResult:
    """Evaluate every kind, track one MLflow run, register the candidates and gate, in one call.

    - `active_run`: log into this run (or the currently active one); else one is started and ended.
    - `run_tags`: extra tags for the run, also set on the registered versions.
    - `alert_hook(decision)`: called with the gate decision (notifications).
    - `out_of_period`: named later-regime sets scored by the champion after the gate (never trained on).
    - `progress(message)`: called per fold and model (the CLI prints it on stderr).
    """
    import mlflow

    from cryptovol.models.tracking import DEFAULT_EXPERIMENT, configure_tracking

    settings = settings or Settings.from_env()
    config = config or (evaluation.config if evaluation is not None else TrainConfig())
    evaluation = evaluation or evaluate_walk_forward(training_set, config, progress=progress)
    if progress:
        progress("gate: learned challenger vs the best baseline (paired block bootstrap)")
    choice = judge_candidates(evaluation)
    evaluation.latency = measure_latency(evaluation.predictor(choice.candidate_kind),
                                         evaluation.holdout()[0], repeats=config.latency_repeats)
    own_run = False
    if active_run is None and mlflow.active_run() is None:
        configure_tracking(settings, experiment_name or DEFAULT_EXPERIMENT)
        active_run = mlflow.start_run(run_name=f"train-{choice.candidate_kind}")
        own_run = True
    run = active_run or mlflow.active_run()
    result = LifecycleResult(evaluation=evaluation, choice=choice, run_id=run.info.run_id,
                             model_name=settings.model_name)
    try:
        if run_tags:
            mlflow.set_tags(run_tags)
        if progress:
            progress("MLflow: logging the run, plots, input dataset and candidate models")
        log_run(evaluation, source=source)
        mlflow.set_tags({"cryptovol.candidate": choice.candidate_kind,
                         "cryptovol.learned_won": str(choice.learned_won)})
        logged = log_models(evaluation)
        if register:
            if progress:
                progress("registry: registering the candidates and running the promotion gate")
            result = register_and_gate(evaluation, logged, settings=settings, choice=choice,
                                       run_tags=run_tags, alert_hook=alert_hook)
            result.run_id = run.info.run_id
            mlflow.set_tags({k: v[:5000] for k, v in result.decision.as_tags().items()})
        if out_of_period:
            result.out_of_period = score_out_of_period(result, out_of_period, registered=register)
            for name, per_model in result.out_of_period.items():
                for model, m in per_model.items():
                    mlflow.log_metrics({f"oop.{name}.{_safe(model)}.{k}": float(v) for k, v in m.items()
                                        if isinstance(v, int | float) and math.isfinite(v)})
    finally:
        if own_run:
            mlflow.end_run()
    return result


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def score_out_of_period(result: LifecycleResult, sets: dict[str, TrainingSet], *,
                        registered: bool = True) -> dict[str, dict[str, dict[str, float]]]:
    champion = None
    if registered and result.champion_after:
        from cryptovol.models.pyfunc import load_spike_model

        champion = load_spike_model(f"models:/{result.model_name}/{result.champion_after}")
    return evaluate_out_of_period(result.evaluation, sets, champion=champion)


def decision_dict(decision: PromotionDecision | None) -> dict[str, Any]:
    return asdict(decision) if decision else {}


#: Old names, kept for callers (e.g. the demo bootstrap).
TrainResult = LifecycleResult
train = run_lifecycle
