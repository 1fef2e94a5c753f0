"""MODEL_REPORT.md and the champion's model card, generated from a `TrainResult`.

Generated, never hand-edited: `cryptovol train --real-data ../shared/data --report
docs/MODEL_REPORT.md --model-card docs/model_card.md` rewrites both.
"""

from __future__ import annotations

import math
import platform
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptovol.models.training import TrainResult

METRIC_LABELS = {
    "pr_auc": "PR-AUC",
    "roc_auc": "ROC-AUC",
    "f1": "F1",
    "precision": "precision",
    "recall": "recall",
    "precision_at_alert_rate": "prec@alert",
    "brier": "Brier",
}


def _f(x: Any, digits: int = 3) -> str:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def _model_table(result: TrainResult) -> list[str]:
    e = result.evaluation
    s = e.summary
    head = ["model", "role"] + [f"{METRIC_LABELS[m]} mean ± sd" for m in METRIC_LABELS] + ["pooled PR-AUC",
                                                                                         "mean val PR-AUC"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind in s.index:
        role = "baseline" if kind in e.config.baseline_kinds else "learned"
        if kind == e.chosen_kind:
            role = "**learned, registered**"
        if kind == e.best_baseline:
            role = "best baseline"
        cells = [kind, role]
        for m in METRIC_LABELS:
            cells.append(f"{_f(s.loc[kind, f'{m}_mean'])} ± {_f(s.loc[kind, f'{m}_std'])}")
        cells += [_f(s.loc[kind, "pr_auc_pooled"]), _f(e.val_pr_auc.get(kind))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _fold_table(result: TrainResult) -> list[str]:
    from cryptovol.ticks import format_timestamp_ns

    e = result.evaluation
    kinds = list(e.summary.index)
    head = ["fold", "fit / val / test rows", "test window (UTC)", "spike threshold", "test base rate"] + \
        [f"{k} PR-AUC" for k in kinds]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f in e.folds:
        start, end = format_timestamp_ns(f.test_window[0]), format_timestamp_ns(f.test_window[1])
        window = f"{start[:19]} → {end[11:19]}"
        cells = [str(f.index), f"{f.n_fit} / {f.n_val} / {f.n_test}", window, _f(f.spike_threshold),
                 _f(f.metrics[kinds[0]]["base_rate"])] + [_f(f.metrics[k]["pr_auc"]) for k in kinds]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _regression_table(result: TrainResult) -> list[str]:
    r = result.evaluation.regression_summary
    if r.empty:
        return ["(regression view disabled)"]
    lines = ["| forecaster | QLIKE mean ± sd | MSE (bp²) mean ± sd |", "|---|---|---|"]
    for name in r.sort_values("qlike_mean").index:
        lines.append(f"| {name} | {_f(r.loc[name, 'qlike_mean'])} ± {_f(r.loc[name, 'qlike_std'])} | "
                     f"{_f(r.loc[name, 'mse_bp2_mean'])} ± {_f(r.loc[name, 'mse_bp2_std'])} |")
    return lines


def _oop_table(result: TrainResult) -> list[str]:
    if not result.out_of_period:
        return ["(no out-of-period data given)"]
    lines = ["| recording | rows | window (UTC) | spike threshold | base rate | model | PR-AUC | ROC-AUC | "
             "Brier | F1 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, per_model in result.out_of_period.items():
        info = per_model.get("_info", {})
        for model, m in per_model.items():
            if model == "_info":
                continue
            lines.append(
                f"| {name} | {int(info.get('rows', 0))} | {str(info.get('first_event_time', ''))[:19]} | "
                f"{_f(info.get('spike_threshold'))} | {_f(m['base_rate'])} | {model} | {_f(m['pr_auc'])} | "
                f"{_f(m['roc_auc'])} | {_f(m['brier'])} | {_f(m['f1'])} |"
            )
    return lines


def verdict(result: TrainResult) -> str:
    e = result.evaluation
    s = e.summary
    chosen, base = e.chosen_kind, e.best_baseline
    diff = e.bootstrap
    c_pr, b_pr = s.loc[chosen, "pr_auc_mean"], s.loc[base, "pr_auc_mean"]
    if math.isfinite(diff.get("low", float("nan"))) and diff["low"] > 0:
        strength = "and the paired block-bootstrap 95% CI of the difference excludes zero"
    else:
        strength = ("but the paired block-bootstrap 95% CI of the difference includes zero: on this much "
                    "data the advantage is **not statistically established**")
    if c_pr > b_pr:
        return (f"The registered model ({chosen}) has mean PR-AUC {_f(c_pr)} against {_f(b_pr)} for the best "
                f"baseline ({base}) {strength}.")
    return (f"The registered model ({chosen}, mean PR-AUC {_f(c_pr)}) does **not** beat the best baseline "
            f"({base}, {_f(b_pr)}) across folds; the data do not support a learned model over the baseline.")


def render_report(result: TrainResult, *, command: str = "") -> str:
    e = result.evaluation
    ts = e.training_set
    window = ts.window()
    cfg = e.config
    d = result.decision
    lines = [
        "# Model report: volatility-spike classifier",
        "",
        f"_Generated by `{command or 'cryptovol train'}` on {_now()} "
        f"(Python {platform.python_version()}). Do not edit by hand; rerun the command._",
        "",
        "## Verdict",
        "",
        verdict(result),
        "",
        f"- Paired block bootstrap (blocks of {cfg.bootstrap_block} rows, "
        f"{int(e.bootstrap.get('n_boot', 0))} "
        f"resamples) of PR-AUC({e.chosen_kind}) − PR-AUC({e.best_baseline}) on the pooled test folds: "
        f"{_f(e.bootstrap['diff'])} [95% CI {_f(e.bootstrap['low'])}, {_f(e.bootstrap['high'])}].",
        "- Sanity: a PR-AUC near 1 on 60 s spike labels would indicate leakage; the leakage tests in "
        "`tests/models/` (shuffled future labels, truncated-data feature recomputation) guard against it.",
    ]
    if d is not None:
        lines += [
            f"- Registry: `{result.model_name}` v{result.version} registered as challenger; gate vs "
            f"{d.reference} on the most recent held-out window ({d.holdout_rows} rows): challenger PR-AUC "
            f"{_f(d.challenger_pr_auc)} / Brier {_f(d.challenger_brier)}, reference PR-AUC "
            f"{_f(d.reference_pr_auc)} / Brier {_f(d.reference_brier)} → "
            f"**{'promoted to champion' if d.promote else 'not promoted'}** ({d.reason}).",
        ]
    lines += [
        "",
        "## Data",
        "",
        f"- Rows (1 s grid, last tick per second): **{ts.n_rows}**, "
        f"products {', '.join(ts.info.get('products', []))}.",
        f"- Window: {window.get('first_event_time', '?')} → {window.get('last_event_time', '?')}.",
        f"- Ticks read: {ts.info.get('ticks', '?')}; segments (split at gaps > 15 s): "
        f"{ts.info.get('segments_total', '?')}, kept {ts.info.get('segments_kept', '?')} "
        f"(≥ {ts.info.get('min_segment_s', '?')} s), dropped {ts.info.get('segments_dropped_short', '?')} as "
        f"too short; kept duration {_f(ts.info.get('kept_seconds', float('nan')) / 3600, 2)} h.",
    ]
    if ts.info.get("source"):
        lines.append(f"- Source: {ts.info['source']}.")
    lines += [
        f"- Label: spike = forward {cfg.label.horizon_s} s realized vol / (rv_{cfg.label.trailing_s}s · "
        f"√({cfg.label.horizon_s}/{cfg.label.trailing_s})) ≥ the {cfg.label.quantile:.2f} quantile of that "
        f"ratio on each fold's training rows ({cfg.label.kind} label).",
        f"- Validation: purged walk-forward, {cfg.walk_forward.n_folds} {cfg.walk_forward.scheme} "
        "folds of equal "
        f"row count, embargo {cfg.walk_forward.embargo_s:.0f} s (≥ horizon) between fit/validation/test; "
        f"validation = last {cfg.walk_forward.val_fraction:.0%} of each training window (early stopping, "
        "calibration method, decision threshold, model choice). Test folds are never used for a choice.",
        "- Learned models: class-weighted logistic regression (standardised, train-median imputation) and "
        "XGBoost (`hist`, early stopping on the first half of validation), both on eight scale-free inputs "
        "derived inside the model from the shared features (log rv 30/60/300 s, log EWMA vol, rv30/rv300, "
        "spread in bps, tick rate, log |1 s return|); calibration (Platt or isotonic) by cross-fitted "
        "Brier on validation. The candidates for registration are the last fold's models; the kind with the "
        "best PR-AUC on the clean half of that fold's validation window (no fitting step used it) is "
        "registered: "
        + ", ".join(f"{k} {_f(v)}" for k, v in e.selection_pr_auc.items()) + ".",
        "",
        "## Every model and baseline (test folds)",
        "",
        f"Mean ± standard deviation over folds; `prec@alert` = precision of the top {cfg.alert_rate:.0%} "
        "scores; F1/precision/recall at the decision threshold chosen on validation "
        f"({'best F1' if cfg.target_alert_rate is None else f'alert rate {cfg.target_alert_rate}'}). "
        f"Mean test base rate: {_f(e.summary['base_rate_mean'].iloc[0])}.",
        "",
        *_model_table(result),
        "",
        "### Per fold",
        "",
        *_fold_table(result),
        "",
        "## Regression view: forecasting forward realized volatility",
        "",
        "Same folds; QLIKE on variances (lower is better; robust to a noisy volatility proxy) and MSE of the "
        "volatility in basis points². `persistence` forecasts rv_60s scaled to the horizon.",
        "",
        *_regression_table(result),
        "",
        "## Out-of-period check (later regime, never trained on)",
        "",
        "Short April-2026 recordings (BTC-USD only), labelled with the champion's stored spike threshold; "
        "baselines as fitted in the last fold. Segments here are short, so rows are few and the numbers "
        "noisy.",
        "",
        *_oop_table(result),
        "",
        "## Inference latency (registered model, in process)",
        "",
        f"- Batch: {_f(e.latency.get('latency_batch_us_per_row'), 1)} µs per row; one row at a time: p50 "
        f"{_f(e.latency.get('latency_single_row_ms_p50'), 2)} ms, "
        f"p99 {_f(e.latency.get('latency_single_row_ms_p99'), 2)} ms "
        "(2-core machine shared with other jobs).",
        "",
        "## Limits",
        "",
        "- A few hours of one product in one month: fold-to-fold spread is large and every difference "
        "between models should be read against it and the bootstrap interval above.",
        "- The promotion gate compares the challenger with the champion (or, for the first model, the best "
        "baseline) on ONE most-recent held-out window of a few minutes; one window can favour a baseline "
        "by chance (see the per-fold table): the price of never promoting on stale evidence.",
        "- The Dec-2025 recording has receive-time timestamps only (no exchange time); the Nov 30/Dec 1 "
        "block is converted from US Eastern time.",
        "- Labels are regime-relative (forward vol vs trailing 5 min), so a 'spike' means an unusually wild "
        "minute for the current regime, not an absolute volatility level.",
    ]
    if result.run_id:
        lines += ["", f"MLflow run: `{result.run_id}` (plots: `plots/pr_curve.png`, "
                  "`plots/calibration_curve.png`, "
                  "`plots/feature_importance.png`; per-fold table: `evaluation/folds.json`)."]
    return "\n".join(lines) + "\n"


def render_model_card(result: TrainResult, champion: dict[str, Any] | None = None) -> str:
    """Model card of the champion (`champion` = `LoadedSpikeModel.describe()`), or of the new
    challenger if there is no champion."""
    from cryptovol.models.training import model_metadata

    e = result.evaluation
    meta = champion or {**model_metadata(e), "version": result.version}
    kind = meta.get("model_kind", e.chosen_kind)
    version = meta.get("version", result.version)
    metrics = meta.get("metrics") or {}
    window = meta.get("trained_window") or {}
    calibration = e.chosen_predictor.calibrator.method if kind == e.chosen_kind else "see the MLflow run"
    lines = [
        f"# Model card: `{result.model_name}` v{version} ({kind})",
        "",
        f"_Generated by `cryptovol train` on {_now()}; "
        + ("describes the model the `champion` alias points at._" if champion else
           "**there is no champion**: the promotion gate did not promote this run's challenger, so this "
           "card describes the challenger (not served)._"),
        "",
        "## Intended use",
        "",
        "- Flags seconds after which the next 60 s of BTC-USD mid-price realized volatility is likely to be "
        "unusually high relative to the trailing 5 minutes (top decile of that ratio in training).",
        "- For quant/ML engineers as an alerting and risk-throttling signal and as a research baseline; "
        "not a trading signal and not a price-direction forecast.",
        "- Served as an MLflow pyfunc (`models:/<name>@champion`): input = the feature-set columns, output = "
        "`spike_probability` (calibrated) and `spike_flag` (at the stored decision threshold).",
        "",
        "## Model",
        "",
        f"- Kind: {kind}; calibration: {calibration}; "
        f"decision threshold: {_f(meta.get('decision_threshold', e.chosen_predictor.decision_threshold))}.",
        f"- Feature set: version {meta.get('feature_set_version', '?')} (`cryptovol/featureset.py`); "
        "the model "
        "derives log vols and vol ratios from it internally; price levels and time of day are not used.",
        f"- Trained on: {window.get('first_event_time', '?')} → {window.get('last_event_time', '?')}.",
        "",
        "## Metrics (most recent held-out window)",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key in ("pr_auc", "roc_auc", "brier", "f1", "precision", "recall", "precision_at_alert_rate",
                "base_rate", "n_rows"):
        if key in metrics:
            lines.append(f"| {key} | {_f(metrics[key])} |")
    lines += [
        "",
        f"Walk-forward summary of this run: {verdict(result)} See `docs/MODEL_REPORT.md`.",
        "",
        "## Data",
        "",
        f"- Source: {e.training_set.info.get('source', 'see the MLflow run')}; products "
        f"{', '.join(e.training_set.info.get('products', []))}; {e.training_set.n_rows} rows on a 1 s grid "
        f"({e.training_set.window().get('first_event_time', '?')} → "
        f"{e.training_set.window().get('last_event_time', '?')}), split at gaps > 15 s into segments; "
        "Coinbase Advanced Trade `ticker` updates (live, recorded or simulated in the same format).",
        "",
        "## Limits and risks",
        "",
        "- Trained on a few hours of a single month; regime changes (see the out-of-period check in the "
        "report) can degrade it. The drift monitor and the promotion gate exist for that reason.",
        "- PR-AUC is modest in absolute terms; most alerts are false positives at any useful recall.",
        "- Inputs must come from `cryptovol.features` (the same code online and offline); warm-up rows "
        "(NaN features) get a probability from imputed values and should not drive decisions.",
    ]
    return "\n".join(lines) + "\n"
