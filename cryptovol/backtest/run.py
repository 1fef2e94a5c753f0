"""The comparison: buy-and-hold vs the overlay (and vol-target) driven by each baseline and by the
champion, on the pooled out-of-sample test folds and on later-regime recordings.

`run_backtest` is the one entry point (the CLI and the Dagster asset call it). Choices (rule
thresholds, vol-target map, which baseline is "best") use validation rows only; test rows and the
2026-04 slices only report. The headline comparison is the champion's overlay against the best
baseline's overlay with a paired block-bootstrap interval; when the interval straddles zero the
verdict says the data cannot separate them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.backtest import metrics as BM
from cryptovol.backtest.engine import CostModel
from cryptovol.backtest.policy import Overlay, VolTarget, choose_overlay, run_rule, sort_rows
from cryptovol.backtest.signals import CHAMPION, fold_signals, out_of_period_probabilities
from cryptovol.models.dataset import TrainingSet
from cryptovol.models.training import Evaluation, TrainConfig, evaluate_walk_forward

log = logging.getLogger(__name__)

BUY_AND_HOLD = "buy_and_hold"
RULES = ("overlay", "voltarget")
TEST_FOLDS = "test_folds"
OUT_OF_PERIOD_TITLE = "Later regime: 2026-04 recordings (never trained on)"
#: Statistics the bootstrap compares (champion overlay minus best baseline overlay).
#: name -> (series compared, statistic): realized vol is the market risk carried (before costs).
BOOTSTRAP_STATS = {"sharpe": ("net", "sharpe"), "sharpe_gross": ("gross", "sharpe"),
                   "realized_vol": ("gross", "realized_vol"), "max_drawdown": ("net", "max_drawdown")}


@dataclass(frozen=True)
class BacktestConfig:
    costs: CostModel = field(default_factory=CostModel)
    #: Exposure while the overlay's alert is on (0 = flat).
    cut_to: float = 0.0
    #: How long the overlay stays cut after the last alert (None: the label horizon).
    hold_s: float | None = None
    grid_s: float = 1.0
    #: Bootstrap: 300 rows = 5 minutes per block keeps volatility clusters together.
    block: int = 300
    n_boot: int = 1000
    seed: int = 0

    def as_params(self) -> dict[str, Any]:
        return {"fee_bps": self.costs.fee_bps, "slippage_bps": self.costs.slippage_bps,
                "half_spread": self.costs.spread, "cut_to": self.cut_to, "hold_s": self.hold_s,
                "grid_s": self.grid_s,
                "bootstrap_block": self.block, "n_boot": self.n_boot, "seed": self.seed}


@dataclass
class StrategyRun:
    """One strategy's pooled rows (concatenated in fold/slice order)."""

    name: str
    rule: str
    driver: str | None
    net: np.ndarray
    gross: np.ndarray
    cost: np.ndarray
    traded: np.ndarray
    position: np.ndarray
    event_time_ns: np.ndarray
    params: list[dict[str, Any]] = field(default_factory=list)
    val_sharpe: float = float("nan")
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Section:
    """One evaluation period: every strategy, the best baseline per rule, the bootstrap."""

    name: str
    title: str
    strategies: dict[str, StrategyRun]
    best_baseline: dict[str, str]
    comparison: dict[str, dict[str, dict[str, float]]]
    verdict: dict[str, str]

    @property
    def hours(self) -> float:
        return self.strategies[BUY_AND_HOLD].metrics.get("hours", 0.0)


@dataclass
class BacktestResult:
    config: BacktestConfig
    sections: list[Section]
    champion_label: str
    info: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)

    def metrics_flat(self) -> dict[str, float]:
        """`<section>.<strategy>.<metric>` for MLflow / Dagster metadata (finite values only)."""
        out = {}
        for s in self.sections:
            for name, run in s.strategies.items():
                out.update({f"{s.name}.{name.replace(':', '_')}.{k}": v for k, v in run.metrics.items()})
            for rule, stats in s.comparison.items():
                for stat, ci in stats.items():
                    out.update({f"{s.name}.{rule}.diff_{stat}.{k}": v for k, v in ci.items()
                                if k in ("diff", "low", "high")})
        return {k: float(v) for k, v in out.items() if np.isfinite(v)}


def _accumulate(runs: dict[str, dict[str, list]], name: str, result: Any, times: np.ndarray) -> None:
    slot = runs.setdefault(name, {k: [] for k in ("net", "gross", "cost", "traded", "position", "t")})
    for key in ("net", "gross", "cost", "traded", "position"):
        slot[key].append(getattr(result, key))
    slot["t"].append(times)


def _fit_rules(probability: np.ndarray, frame: pd.DataFrame, threshold: float, config: BacktestConfig,
               horizon_s: float) -> dict[str, tuple[Any, float]]:
    """Each rule fitted on validation rows, with its validation net Sharpe."""
    ppy = BM.periods_per_year(config.grid_s)
    order = sort_rows(frame)
    frame, probability = frame.iloc[order].reset_index(drop=True), probability[order]
    hold_s = config.hold_s if config.hold_s is not None else horizon_s
    overlay, _ = choose_overlay(probability, frame, config.costs, decision_threshold=threshold,
                                cut_to=config.cut_to, grid_s=config.grid_s,
                                hold_rows=max(1, int(round(hold_s / config.grid_s))))
    vt = VolTarget(horizon_s=horizon_s).fit(probability, frame, frame["vol_ratio"].to_numpy(float))
    return {rule: (r, BM.sharpe(run_rule(r, probability, frame, config.costs).net, ppy))
            for rule, r in (("overlay", overlay), ("voltarget", vt))}


def _finish(name: str, title: str, runs: dict[str, dict[str, list]], params: dict[str, list],
            val_sharpe: dict[str, list[float]], drivers: list[str], config: BacktestConfig) -> Section:
    strategies: dict[str, StrategyRun] = {}
    for key, slot in runs.items():
        rule, _, driver = key.partition(":")
        run = StrategyRun(name=key, rule=rule, driver=driver or None,
                          **{k: np.concatenate(slot[k])
                             for k in ("net", "gross", "cost", "traded", "position")},
                          event_time_ns=np.concatenate(slot["t"]), params=params.get(key, []),
                          val_sharpe=float(np.nanmean(val_sharpe[key])) if val_sharpe.get(key) else np.nan)
        run.metrics = BM.performance(run.net, run.cost, run.traded, run.position, grid_s=config.grid_s)
        strategies[key] = run
    best: dict[str, str] = {}
    comparison: dict[str, dict[str, dict[str, float]]] = {}
    verdict: dict[str, str] = {}
    baselines = [d for d in drivers if d != CHAMPION]
    ppy = BM.periods_per_year(config.grid_s)
    stat_fns = {
        "sharpe": lambda x: BM.sharpe(x, ppy),
        "realized_vol": lambda x: float(np.std(x, ddof=1) * np.sqrt(ppy)),
        "max_drawdown": lambda x: float(BM.drawdown(x).min()),
    }
    for rule in RULES:
        keyed = [f"{rule}:{d}" for d in baselines if f"{rule}:{d}" in strategies]
        champ = f"{rule}:{CHAMPION}"
        if not keyed or champ not in strategies:
            continue
        # the best baseline is the one whose rule did best on VALIDATION rows
        best_key = max(keyed, key=lambda k: _nan_low(strategies[k].val_sharpe))
        best[rule] = best_key
        champ_run, best_run = strategies[champ], strategies[best_key]
        comparison[rule] = {
            stat: BM.paired_block_bootstrap(getattr(champ_run, series), getattr(best_run, series),
                                            stat_fns[fn], block=config.block, n_boot=config.n_boot,
                                            seed=config.seed)
            for stat, (series, fn) in BOOTSTRAP_STATS.items()
        }
        # and does the overlay pay at all, against simply holding?
        comparison[rule]["sharpe_vs_buy_and_hold"] = BM.paired_block_bootstrap(
            champ_run.net, strategies[BUY_AND_HOLD].net, stat_fns["sharpe"], block=config.block,
            n_boot=config.n_boot, seed=config.seed)
        verdict[rule] = (_verdict(rule, champ, best_key, comparison[rule]["sharpe"],
                                  strategies[BUY_AND_HOLD].metrics["hours"])
                         + " " + _versus_hold(comparison[rule]["sharpe_vs_buy_and_hold"]))
    return Section(name=name, title=title, strategies=strategies, best_baseline=best,
                   comparison=comparison, verdict=verdict)


def _verdict(rule: str, champ: str, best: str, ci: dict[str, float], hours: float) -> str:
    low, high, diff = ci["low"], ci["high"], ci["diff"]
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{rule}: too few rows for an interval; no conclusion."
    span = f"Sharpe difference {diff:+.2f} [95% CI {low:+.2f}, {high:+.2f}]"
    if low <= 0.0 <= high:
        return (f"{rule}: {hours:.1f} h of data cannot separate {champ} from {best} ({span}); "
                "no evidence that the champion's signal pays more than the best baseline's.")
    better = "better" if diff > 0 else "worse"
    return f"{rule}: {champ} does {better} than {best} ({span}) on {hours:.1f} h of data."


def _versus_hold(ci: dict[str, float]) -> str:
    low, high, diff = ci["low"], ci["high"], ci["diff"]
    if not (np.isfinite(low) and np.isfinite(high)):
        return "Against buy-and-hold: no interval."
    span = f"Sharpe difference {diff:+.2f} [95% CI {low:+.2f}, {high:+.2f}]"
    if low <= 0.0 <= high:
        return f"Against buy-and-hold: not separable ({span})."
    return f"Against buy-and-hold: {'better' if diff > 0 else 'worse'} ({span})."


def _lifecycle_candidate(evaluation: Evaluation) -> str:
    """What the model lifecycle would register as candidate (the learned challenger only if it
    clears the gate against the best baseline on the pooled test folds), for the report."""
    try:
        from cryptovol.models.lifecycle import judge_candidates

        choice = judge_candidates(evaluation)
    except Exception as exc:  # noqa: BLE001 - informational only
        log.info("no lifecycle candidate: %s", exc)
        return ""
    return f"{choice.candidate_kind} ({choice.reason})"


def _nan_low(x: float) -> float:
    return x if x == x else -np.inf


def backtest_folds(evaluation: Evaluation, config: BacktestConfig,
                   drivers: dict[str, str]) -> tuple[Section, dict[str, dict[str, Any]]]:
    """The pooled test-fold section; also returns the last fold's fitted rules per strategy."""
    horizon = float(evaluation.config.label.horizon_s)
    signals = fold_signals(evaluation, drivers)
    runs: dict[str, dict[str, list]] = {}
    params: dict[str, list] = {}
    val_sharpe: dict[str, list[float]] = {}
    last_rules: dict[str, dict[str, Any]] = {}
    n_folds = len(evaluation.folds)
    for i in range(n_folds):
        any_driver = next(iter(signals.values()))[i]
        order = sort_rows(any_driver.test_frame)
        test = any_driver.test_frame.iloc[order].reset_index(drop=True)
        times = test["event_time_ns"].to_numpy(np.int64)
        bh = run_rule(Overlay(threshold=np.inf), np.zeros(len(test)), test, config.costs)
        _accumulate(runs, BUY_AND_HOLD, bh, times)
        for driver, per_fold in signals.items():
            sig = per_fold[i]
            rules = _fit_rules(sig.val_probability, sig.val_frame, sig.decision_threshold, config, horizon)
            p = sig.test_probability[order]
            for rule, (r, vs) in rules.items():
                key = f"{rule}:{driver}"
                _accumulate(runs, key, run_rule(r, p, test, config.costs), times)
                params.setdefault(key, []).append({"fold": sig.fold, **r.describe()})
                val_sharpe.setdefault(key, []).append(vs)
                if i == n_folds - 1:
                    last_rules.setdefault(driver, {})[rule] = (r, vs)
    section = _finish(TEST_FOLDS, "Out-of-sample walk-forward test folds (pooled)", runs, params,
                      val_sharpe, list(drivers), config)
    return section, last_rules


def backtest_out_of_period(
    name: str, title: str, sets: dict[str, TrainingSet], models: dict[str, Any],
    rules: dict[str, dict[str, Any]], config: BacktestConfig,
) -> Section | None:
    """Later-regime recordings: each driver with the rules fitted on the last fold's validation."""
    probabilities = out_of_period_probabilities(sets, models)
    if not probabilities:
        return None
    runs: dict[str, dict[str, list]] = {}
    params: dict[str, list] = {}
    val_sharpe: dict[str, list[float]] = {}
    for set_name, per_driver in probabilities.items():
        frame = sets[set_name].frame
        order = sort_rows(frame)
        rows = frame.iloc[order].reset_index(drop=True)
        times = rows["event_time_ns"].to_numpy(np.int64)
        _accumulate(runs, BUY_AND_HOLD, run_rule(Overlay(threshold=np.inf), np.zeros(len(rows)), rows,
                                                 config.costs), times)
        for driver, p in per_driver.items():
            for rule, (r, vs) in rules[driver].items():
                key = f"{rule}:{driver}"
                _accumulate(runs, key, run_rule(r, p[order], rows, config.costs), times)
                params.setdefault(key, []).append({"set": set_name, **r.describe()})
                val_sharpe[key] = [vs]
    return _finish(name, title, runs, params, val_sharpe, list(models), config)


def run_backtest(
    training_set: TrainingSet,
    *,
    train_config: TrainConfig | None = None,
    evaluation: Evaluation | None = None,
    out_of_period: dict[str, TrainingSet] | None = None,
    registered_champion: Any | None = None,
    config: BacktestConfig = BacktestConfig(),
) -> BacktestResult:
    """Walk-forward evaluation (unless given) -> the test-fold section, then the later-regime one.

    `registered_champion`: a loaded registry model (anything with `.predict(frame)`) used as the
    champion on `out_of_period` data; None uses the last fold's chosen predictor.
    """
    if evaluation is None:
        train_config = train_config or TrainConfig(regression_view=False, latency_repeats=1)
        evaluation = evaluate_walk_forward(training_set, train_config)
    fitted = evaluation.folds[0].predictors
    baselines = tuple(k for k in evaluation.config.baseline_kinds if k in fitted)
    if not baselines or evaluation.chosen_kind not in fitted:
        raise ValueError("the evaluation must hold the baselines and the chosen kind; "
                         f"it holds {sorted(fitted)}")
    drivers = {**{k: k for k in baselines}, CHAMPION: evaluation.chosen_kind}
    folds_section, last_rules = backtest_folds(evaluation, config, drivers)
    sections = [folds_section]
    champion_label = (f"{evaluation.chosen_kind} (the learned challenger chosen on validation, "
                      "re-fitted per fold)")
    info: dict[str, Any] = {"chosen_kind": evaluation.chosen_kind, "folds": len(evaluation.folds),
                            "rows": int(len(evaluation.training_set.frame)),
                            **{k: v for k, v in evaluation.training_set.window().items()
                               if not k.endswith("_ns")}}
    info["lifecycle_candidate"] = _lifecycle_candidate(evaluation)
    if out_of_period:
        last = evaluation.last_fold
        models: dict[str, Any] = {k: last.predictors[k] for k in baselines}
        models[CHAMPION] = registered_champion or last.predictors[evaluation.chosen_kind]
        rules = dict(last_rules)
        if registered_champion is not None:
            # the registry model's own probabilities on the last fold's validation rows choose its rules
            sig = fold_signals(evaluation, {CHAMPION: evaluation.chosen_kind})[CHAMPION][-1]
            p_val = np.asarray(registered_champion.predict(sig.val_frame)["spike_probability"], float)
            threshold = float(getattr(registered_champion, "decision_threshold", np.nan))
            rules[CHAMPION] = _fit_rules(p_val, sig.val_frame, threshold if np.isfinite(threshold) else None,
                                         config, float(evaluation.config.label.horizon_s))
            info["out_of_period_champion"] = str(getattr(registered_champion, "version", "registered"))
        section = backtest_out_of_period("out_of_period", OUT_OF_PERIOD_TITLE, out_of_period, models, rules,
                                         config)
        if section is not None:
            sections.append(section)
    return BacktestResult(config=config, sections=sections, champion_label=champion_label, info=info)
