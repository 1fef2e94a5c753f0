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
    from cryptovol.models.lifecycle import LifecycleResult as TrainResult

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
                                                                                         "recent PR-AUC",
                                                                                         "mean val PR-AUC"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind in s.index:
        role = "baseline" if kind in e.config.baseline_kinds else "learned"
        if kind == e.chosen_kind:
            role = "learned challenger"
        if kind == e.best_baseline:
            role = "best baseline"
        if result.choice and kind == result.choice.candidate_kind:
            role = f"**{role}, candidate**"
        cells = [kind, role]
        for m in METRIC_LABELS:
            cells.append(f"{_f(s.loc[kind, f'{m}_mean'])} ± {_f(s.loc[kind, f'{m}_std'])}")
        cells += [_f(s.loc[kind, "pr_auc_pooled"]), _f(s.loc[kind, "pr_auc_recent"]),
                  _f(e.selection_pr_auc.get(kind))]
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


def _aim(result: TrainResult) -> str:
    """Each learned model against the 0.30 / 1.25x aim of issue 13, stated plainly."""
    e = result.evaluation
    s = e.summary
    b = e.best_baseline
    if not e.learned or not b:
        return ""
    base, recent_b = float(s.loc[b, "pr_auc_mean"]), float(s.loc[b, "pr_auc_recent"])
    parts = []
    for k in e.learned:
        mean, recent = float(s.loc[k, "pr_auc_mean"]), float(s.loc[k, "pr_auc_recent"])
        ratio = mean / base if base > 0 else float("nan")
        y, p = e.pooled(k)
        low = e.bootstrap.get("low") if k == e.chosen_kind else None
        if low is None:
            from cryptovol.models import metrics as M

            _, p_base = e.pooled(b)
            g = e.config.gate
            low = M.paired_block_bootstrap(y, p, p_base, block=g.block, n_boot=g.n_boot, seed=g.seed)["low"]
        role = "learned challenger" if k == e.chosen_kind else "not chosen on validation"
        meets = "meets" if mean >= 0.30 else "misses"
        meets_ratio = "meets" if ratio >= 1.25 else "misses"
        above = "above" if low > 0 else "not above"
        collapse = "collapse" if recent < recent_b - e.config.gate.recent_margin else "no collapse"
        parts.append(
            f"{k} ({role}): mean walk-forward PR-AUC {_f(mean)} ({meets} 0.30), "
            f"{_f(ratio, 2)}x the best baseline's {_f(base)} ({meets_ratio} 1.25x), "
            f"bootstrap lower bound of the pooled gain {_f(low)} ({above} zero), "
            f"most recent fold {_f(recent)} vs {_f(recent_b)} for {b} ({collapse})")
    return "Aim (PR-AUC ≥ 0.30 and ≥ 1.25x the best baseline, CI of the gain > 0, no recent collapse): " + \
        "; ".join(parts) + "."


def verdict(result: TrainResult) -> str:
    e = result.evaluation
    choice = result.choice
    if choice is None or not e.chosen_kind or not e.best_baseline:
        return "Only one kind of model was evaluated; no comparison with baselines."
    s = e.summary
    chosen, base = e.chosen_kind, e.best_baseline
    text = (f"The learned challenger ({chosen}, chosen on validation folds) has pooled out-of-sample PR-AUC "
            f"{_f(s.loc[chosen, 'pr_auc_pooled'])} (mean over folds {_f(s.loc[chosen, 'pr_auc_mean'])}) "
            f"against {_f(s.loc[base, 'pr_auc_pooled'])} ({_f(s.loc[base, 'pr_auc_mean'])}) for the best "
            f"baseline ({base}). ")
    if choice.learned_won:
        text += f"It clears the promotion gate against that baseline: {choice.reason}."
    else:
        text += (f"It does **not** clear the promotion gate against that baseline ({choice.reason}), so the "
                 f"candidate for champion is the baseline **{base}**.")
    return text


def _decision_lines(result: TrainResult) -> list[str]:
    d = result.decision
    if d is None:
        return ["- Registry: not registered (`--no-register`)."]
    versions = ", ".join(f"v{v} ({k})" for k, v in result.versions.items())
    return [
        f"- Registry: `{result.model_name}` {versions} registered (the learned challenger and the best "
        f"baseline are both servable); candidate **{d.challenger_kind}** v{d.challenger_version}, "
        f"reference {d.reference} → **{'promoted to champion' if d.promote else 'not promoted'}**: "
        f"{d.reason}.",
        f"- Champion after this run: {_v(result.champion_after)} (before: {_v(result.champion_before)}).",
    ]


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


def _images(image_paths: dict[str, str]) -> list[str]:
    titles = {"pr_curve": "Precision-recall, pooled walk-forward test folds",
              "calibration_curve": "Calibration, pooled test folds",
              "per_fold": "PR-AUC per walk-forward fold",
              "feature_importance": "Feature importance (learned challenger, last fold)"}
    lines = []
    for key, title in titles.items():
        if key in image_paths:
            lines += [f"![{title}]({image_paths[key]})", ""]
    return lines


def render_report(result: TrainResult, *, command: str = "", images: dict[str, str] | None = None) -> str:
    """The model report; `images` maps plot names (pr_curve, calibration_curve, per_fold,
    feature_importance) to paths relative to the report."""
    e = result.evaluation
    ts = e.training_set
    window = ts.window()
    cfg = e.config
    g = cfg.gate
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
        *_decision_lines(result),
        f"- {_aim(result)}",
        f"- Paired block bootstrap (blocks of {g.block} rows, {g.n_boot} resamples) of "
        f"PR-AUC({e.chosen_kind}) − PR-AUC({e.best_baseline}) on the pooled test folds: "
        f"{_f(e.bootstrap.get('diff'))} [95% CI {_f(e.bootstrap.get('low'))}, "
        f"{_f(e.bootstrap.get('high'))}].",
        "- Sanity: a PR-AUC near 1 on 60 s spike labels would indicate leakage; the leakage tests in "
        "`tests/models/` (shuffled future labels, truncated-data feature recomputation) guard against it.",
        "",
        "## The promotion gate",
        "",
        "A candidate replaces the reference (the champion; on first training the best baseline) only if, on "
        "the same out-of-sample rows (pooled walk-forward test folds; against a champion, only the rows "
        "after its training window):",
        "",
        f"1. the lower end of the paired block-bootstrap 95% CI of the PR-AUC gain is above the margin "
        f"**{g.min_pr_auc_gain}**;",
        "2. on the most recent test block its PR-AUC trails the reference's by at most "
        f"**{g.recent_margin}** (non-inferiority: no recent collapse);",
        f"3. its pooled Brier score is no worse (tolerance {g.brier_tolerance}).",
        "",
        "On first training, if no learned model clears this bar against the best baseline, the best "
        "baseline becomes champion: the service always serves the best model there is. Margins are never "
        "loosened to get a learned champion.",
        "",
        "## Data",
        "",
        f"- Rows (1 s grid, last tick per second): **{ts.n_rows}**, "
        f"products {', '.join(ts.info.get('products', []))}.",
        f"- Window: {window.get('first_event_time', '?')} → {window.get('last_event_time', '?')}.",
        f"- Ticks read: {ts.info.get('ticks', '?')}; segments (split at gaps > 15 s): "
        f"{ts.info.get('segments_total', '?')}, kept {ts.info.get('segments_kept', '?')} "
        f"(≥ {ts.info.get('min_segment_s', '?')} s), dropped {ts.info.get('segments_dropped_short', '?')} as "
        f"too short; kept duration {_f(float(ts.info.get('kept_seconds', float('nan'))) / 3600, 2)} h.",
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
        "calibration method, decision threshold, model choice). Test folds are never used for a choice; "
        "they report, and the gate judges on them.",
        "- Learned challenger: the learned kind with the best mean PR-AUC on the clean half of the "
        "validation windows (no fitting step used it): "
        + ", ".join(f"{k} {_f(e.selection_pr_auc.get(k))}" for k in e.learned) + ".",
        *_model_notes(result),
        "",
        "## Every model and baseline (test folds)",
        "",
        f"Mean ± standard deviation over folds; pooled = all test folds together; recent = the most recent "
        f"test block; `prec@alert` = precision of the top {cfg.alert_rate:.0%} scores; F1/precision/recall "
        "at the decision threshold chosen on validation "
        f"({'best F1' if cfg.target_alert_rate is None else f'alert rate {cfg.target_alert_rate}'}); last "
        f"column: mean validation PR-AUC (selection). Mean test base rate: "
        f"{_f(e.summary['base_rate_mean'].iloc[0])}.",
        "",
        *_model_table(result),
        "",
        *_images(images or {}),
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
        "## Inference latency (candidate model, in process)",
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
        "- The gate judges pooled out-of-sample evidence, so one lucky recent window cannot decide alone; "
        "the recent-window rule still keeps out a model that has stopped working on the newest data.",
        "- The Dec-2025 recording has receive-time timestamps only (no exchange time); the Nov 30/Dec 1 "
        "block is converted from US Eastern time.",
        "- Labels are regime-relative (forward vol vs trailing 5 min), so a 'spike' means an unusually wild "
        "minute for the current regime, not an absolute volatility level.",
    ]
    if result.run_id:
        lines += ["", f"MLflow run: `{result.run_id}` (plots under `plots/`, per-fold table "
                  "`evaluation/folds.json`, the training rows as the run's dataset input)."]
    return "\n".join(lines) + "\n"


def _model_notes(result: TrainResult) -> list[str]:
    e = result.evaluation
    notes = []
    for kind in e.learned:
        params = e.predictor(kind).scorer.params()
        shown = ", ".join(f"{k}={v}" for k, v in params.items() if k != "columns")
        notes.append(f"- {kind} (last fold): {shown}; inputs: {params.get('columns', 'all')}.")
        grid = e.config.params_for(kind).get("grid")
        if grid:
            picks = [int(f.val_metrics[kind].get("search_choice", -1)) for f in e.folds]
            listed = "; ".join(f"#{i}: " + ", ".join(f"{k}={_short(v)}" for k, v in c.items())
                               for i, c in enumerate(grid))
            notes.append(f"  - {kind} candidates, chosen per fold by PR-AUC on the first half of that fold's "
                         f"validation rows (never on test): {listed}. Chosen per fold: "
                         + ", ".join(f"fold {f.index} → " + (f"#{p}" if p >= 0 else "defaults (one class in "
                                                                   "the first half)")
                                     for f, p in zip(e.folds, picks, strict=True))
                         + ".")
    return notes


def _short(value: Any) -> str:
    from cryptovol.models.classifiers import COMPACT_INPUTS
    from cryptovol.models.fitting import VOL_INPUTS

    if isinstance(value, tuple | list):
        return {tuple(COMPACT_INPUTS): "compact 8 inputs", tuple(VOL_INPUTS): "6 volatility inputs"}.get(
            tuple(value), ",".join(map(str, value)))
    return str(value)


def render_model_card(result: TrainResult, kind: str | None = None) -> str:
    """Model card of the registered version of `kind` (default: this run's candidate); it is the
    version's description in MLflow and `docs/model_card.md`."""
    from cryptovol.models.training import model_metadata

    e = result.evaluation
    kind = kind or (result.choice.candidate_kind if result.choice else e.chosen_kind) or e.kinds[0]
    meta = model_metadata(e, kind)
    version = result.versions.get(kind, "?")
    metrics = meta.get("metrics") or {}
    window = meta.get("trained_window") or {}
    s = e.summary.loc[kind]
    d = result.decision
    is_champion = result.champion_after is not None and result.champion_after == version
    role = "best baseline" if kind == e.best_baseline else "learned challenger"
    if d is not None and d.challenger_version == version:
        status = (f"Candidate of this run; gate vs {d.reference}: "
                  f"**{'promoted' if d.promote else 'not promoted'}** ({d.reason}).")
    elif result.choice is not None:
        status = f"Not this run's candidate ({result.choice.reason})."
    else:
        status = "Not gated."
    lines = [
        f"# Model card: `{result.model_name}` v{version} ({kind}, {role})",
        "",
        f"_Generated by the cryptovol lifecycle on {_now()}. "
        + ("This version is the **champion** (what the service serves)._" if is_champion else
           "This version is **not** the champion._"),
        "",
        status,
        "",
        "## Intended use",
        "",
        "- Flags seconds after which the next 60 s of mid-price realized volatility is likely to be "
        "unusually high relative to the trailing 5 minutes (top decile of that ratio in training).",
        "- For quant/ML engineers as an alerting and risk-throttling signal and as a research baseline; "
        "not a trading signal and not a price-direction forecast.",
        "- Served as an MLflow pyfunc (`models:/<name>@champion`): input = the feature-set columns, output = "
        "`spike_probability` (calibrated) and `spike_flag` (at the stored decision threshold).",
        "",
        "## Model",
        "",
        f"- Kind: {kind}; calibration: {meta.get('calibration')}; decision threshold: "
        f"{_f(meta.get('decision_threshold'))}.",
        f"- Feature set: version {meta.get('feature_set_version', '?')} (`cryptovol/featureset.py`); price "
        "levels and time of day are not used.",
        f"- Trained on: {window.get('first_event_time', '?')} → {window.get('last_event_time', '?')} "
        "(the last walk-forward fold's training window).",
        "",
        "## Evidence (walk-forward test folds, never used for a choice)",
        "",
        "| metric | mean ± sd over folds | pooled | most recent block |",
        "|---|---|---|---|",
        f"| PR-AUC | {_f(s['pr_auc_mean'])} ± {_f(s['pr_auc_std'])} | {_f(s['pr_auc_pooled'])} | "
        f"{_f(s['pr_auc_recent'])} |",
        f"| ROC-AUC | {_f(s['roc_auc_mean'])} ± {_f(s['roc_auc_std'])} | {_f(s['roc_auc_pooled'])} | "
        f"{_f(metrics.get('roc_auc'))} |",
        f"| Brier | {_f(s['brier_mean'])} ± {_f(s['brier_std'])} | {_f(s['brier_pooled'])} | "
        f"{_f(s['brier_recent'])} |",
        f"| base rate | {_f(s['base_rate_mean'])} | {_f(s['base_rate_pooled'])} | "
        f"{_f(metrics.get('base_rate'))} |",
        "",
        verdict(result),
        "",
        "## Data",
        "",
        f"- Source: {e.training_set.info.get('source', 'the feature lake')}; products "
        f"{', '.join(e.training_set.info.get('products', []))}; {e.training_set.n_rows} rows on a 1 s grid "
        f"({e.training_set.window().get('first_event_time', '?')} → "
        f"{e.training_set.window().get('last_event_time', '?')}), split at gaps > 15 s into segments.",
        "",
        "## Limits and risks",
        "",
        "- Trained on hours, not months; regime changes can degrade it. The drift monitor and the promotion "
        "gate exist for that reason.",
        "- PR-AUC is modest in absolute terms; most alerts are false positives at any useful recall.",
        "- Inputs must come from `cryptovol.features` (the same code online and offline); warm-up rows "
        "(NaN features) get a probability from imputed values and should not drive decisions.",
    ]
    return "\n".join(lines) + "\n"
