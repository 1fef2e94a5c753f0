"""docs/BACKTEST.md and its charts, generated from a `BacktestResult` (never hand-edited)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from cryptovol.backtest.metrics import drawdown, equity_curve
from cryptovol.backtest.run import BUY_AND_HOLD, RULES, BacktestResult, Section

COLUMNS = (
    ("val_sharpe", "val Sharpe"), ("sharpe", "Sharpe"), ("sharpe_gross", "Sharpe before costs"),
    ("sortino", "Sortino"), ("calmar", "Calmar"), ("realized_vol", "realized vol (ann.)"),
    ("max_drawdown", "max drawdown"), ("total_return", "total return"), ("turnover", "turnover"),
    ("cost_paid", "cost paid"), ("mean_exposure", "mean exposure"),
)
PERCENT = {"max_drawdown", "total_return", "cost_paid", "realized_vol"}


def _f(x: Any, key: str = "") -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "n/a"
    if key in PERCENT:
        return f"{100 * v:.2f}%"
    return f"{v:.2f}"


def write_charts(result: BacktestResult, out_dir: Path, prefix: str = "backtest_") -> list[Path]:
    """Equity and drawdown per section, one panel per rule (buy-and-hold in every panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for section in result.sections:
        for what, series in (("equity", equity_curve), ("drawdown", drawdown)):
            fig, axes = plt.subplots(1, len(RULES), figsize=(11, 4), sharey=True)
            for ax, rule in zip(np.atleast_1d(axes), RULES, strict=True):
                for name, run in section.strategies.items():
                    if name != BUY_AND_HOLD and run.rule != rule:
                        continue
                    hours = np.arange(run.net.size) * result.config.grid_s / 3600.0
                    style = {"color": "black", "linewidth": 1.6} if name == BUY_AND_HOLD else {"linewidth": 1}
                    ax.plot(hours, series(run.net), label=run.driver or "buy & hold", **style)
                ax.set_title(f"{rule} ({section.title.split(':')[0]})", fontsize=9)
                ax.set_xlabel("hours of data (gaps removed)")
                ax.grid(alpha=0.3)
            np.atleast_1d(axes)[0].set_ylabel("equity (start = 1)" if what == "equity" else "drawdown")
            np.atleast_1d(axes)[0].legend(fontsize=8)
            fig.tight_layout()
            path = out_dir / f"{prefix}{what}_{section.name}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            written.append(path)
    return written


def _table(section: Section) -> list[str]:
    head = ["strategy", *(label for _, label in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, run in section.strategies.items():
        values = {**run.metrics, "val_sharpe": run.val_sharpe}
        bold = name in section.best_baseline.values() or name.endswith(":champion")
        label = f"**{name}**" if bold else name
        lines.append("| " + " | ".join([label, *(_f(values.get(k), k) for k, _ in COLUMNS)]) + " |")
    return lines


def _bootstrap(section: Section, config: Any) -> list[str]:
    if not section.comparison:
        return ["(no comparison: too few rows)"]
    lines = ["| rule | champion vs | Sharpe diff [95% CI] | Sharpe before costs diff | "
             "realized vol diff | max drawdown diff | Sharpe diff vs buy-and-hold |", "|" + "---|" * 7]
    for rule, stats in section.comparison.items():
        cells = [rule, section.best_baseline[rule]]
        for stat in ("sharpe", "sharpe_gross", "realized_vol", "max_drawdown", "sharpe_vs_buy_and_hold"):
            ci = stats[stat]
            key = stat if stat in PERCENT else ""
            cells.append(f"{_f(ci['diff'], key)} [{_f(ci['low'], key)}, {_f(ci['high'], key)}]")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Paired moving-block bootstrap ({config.n_boot} resamples, blocks of {config.block} rows = "
                 f"{config.block * config.grid_s / 60:.0f} min), champion minus best baseline (last column: "
                 "champion minus buy-and-hold), same rows. Realized vol is before costs (the risk carried).")
    return lines


def _side(ci: dict[str, float]) -> str:
    if not (np.isfinite(ci["low"]) and np.isfinite(ci["high"])) or ci["low"] <= 0.0 <= ci["high"]:
        return "not separable"
    return "better" if ci["diff"] > 0 else "worse"


def _headline(result: BacktestResult) -> str:
    """One plain sentence from the intervals: does the champion's signal pay after costs?"""
    comparisons = [stats for s in result.sections for stats in s.comparison.values()]
    vs_hold = [_side(stats["sharpe_vs_buy_and_hold"]) for stats in comparisons]
    vs_base = [_side(stats["sharpe"]) for stats in comparisons]
    hours = sum(s.hours for s in result.sections)
    count = (lambda xs, v: sum(x == v for x in xs))  # noqa: E731
    pays = count(vs_hold, "better") > 0
    return (f"**In short:** over {hours:.1f} h of out-of-sample rows ({len(vs_hold)} champion-driven "
            f"rule/period pairs), net of costs the champion's rule beats buy-and-hold in "
            f"{count(vs_hold, 'better')}, loses in {count(vs_hold, 'worse')} and cannot be told apart in "
            f"{count(vs_hold, 'not separable')}; against the best baseline's rule it is better in "
            f"{count(vs_base, 'better')}, worse in {count(vs_base, 'worse')}, not separable in "
            f"{count(vs_base, 'not separable')}. "
            + ("Where it beats buy-and-hold the signal pays on these rows; the intervals below say how "
               "firmly."
               if pays else
               "**The spike signal does not pay as a risk overlay at these costs on this data.**"))


def render_report(result: BacktestResult, *, command: str, images: dict[str, Path], doc_dir: Path) -> str:
    c = result.config
    out = [
        "# Backtest: does the spike signal pay?", "",
        f"_Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        "Do not edit by hand; rerun the command._", "",
        "## Verdict", "",
        _headline(result), "",
    ]
    for section in result.sections:
        for line in section.verdict.values():
            out.append(f"- **{section.title}** — {line}")
    bh = result.sections[0].strategies[BUY_AND_HOLD].metrics
    out += [
        f"- Every overlay is compared with buy-and-hold too: on the test folds buy-and-hold has Sharpe "
        f"{_f(bh['sharpe'])} and max drawdown {_f(bh['max_drawdown'], 'max_drawdown')} over "
        f"{bh['hours']:.1f} h. At {c.costs.fee_bps:g} bps fee + {c.costs.slippage_bps:g} bps slippage + half "
        "the quoted spread per unit traded, cutting exposure on a one-minute signal costs far more than "
        "the volatility it avoids; the 'Sharpe before costs' column shows what the signal alone earns.",
        "- Annualised figures extrapolate hours of 1-second returns to a year (convention, not a forecast): "
        "compare strategies with each other on the same rows, not with other assets.",
        "",
        "## Set-up", "",
        f"- Data: {result.info.get('rows', '?')} rows (1 s grid) from "
        f"{result.info.get('first_event_time', '?')} "
        f"to {result.info.get('last_event_time', '?')}; {result.info.get('folds', '?')} purged walk-forward "
        "folds (the models' own `evaluate_walk_forward`). Champion on the test folds: "
        f"{result.champion_label}"
        + (f"; on the 2026-04 slices: registered champion v{result.info['out_of_period_champion']}."
           if result.info.get("out_of_period_champion") else
           "; on the 2026-04 slices: the last fold's chosen model (no registered champion loaded).")
        + (f" The model lifecycle's candidate for the registry on this evaluation: "
           f"{result.info['lifecycle_candidate']}." if result.info.get("lifecycle_candidate") else ""),
        "- Strategy: a long position of 1 (buy-and-hold) with a risk overlay. `overlay`: cut to "
        f"{c.cut_to:g} when the spike probability reaches the threshold, for "
        f"{'the label horizon' if c.hold_s is None else f'{c.hold_s:g} s'} after the last alert; "
        "`voltarget`: exposure = min(1, target vol / "
        "predicted vol), predicted vol = trailing rv_300s (scaled to the horizon) x "
        "E[vol ratio | probability] (isotonic, fitted on validation), rebalanced only when the target is "
        "more than 0.1 away from the position.",
        "- No look-ahead: the target from row t is executed at row t+1's quote and first earns row t+2's "
        "return; no return is earned across a gap; each block starts at exposure 1.",
        f"- Costs per unit of exposure traded: {c.costs.fee_bps:g} bps fee + {c.costs.slippage_bps:g} bps "
        "slippage + half the recorded bid/ask spread of the execution row.",
        "- Choices on validation rows only: the overlay threshold (the model's own decision threshold or "
        "the 5/10/20/30% alert-rate quantile, best net validation Sharpe), the vol-target map and target, "
        "and which baseline is 'best' (best mean validation Sharpe of that rule). Test folds and the "
        "2026-04 slices only report.", "",
    ]
    for section in result.sections:
        out += [f"## {section.title}", "", f"{section.hours:.2f} h of rows.", ""]
        out += _table(section)
        out += ["", "### Champion vs the best baseline", ""]
        out += _bootstrap(section, c)
        out += [""]
        for what in ("equity", "drawdown"):
            path = images.get(f"{what}_{section.name}")
            if path is not None:
                rel = os.path.relpath(path, doc_dir)
                out += [f"![{what} — {section.title}]({rel})", ""]
    out += ["## Thresholds and rule parameters (chosen on validation)", "",
            "| period | strategy | per fold / slice |", "|---|---|---|"]
    for section in result.sections:
        for name, run in section.strategies.items():
            if run.params:
                shown = {}
                for p in run.params:
                    where = p.get("fold", p.get("set"))
                    value = p.get("threshold", p.get("target_vol"))
                    shown[str(where)] = f"{value:.4g}"
                out.append(f"| {section.name} | {name} | "
                           + ", ".join(f"{k}: {v}" for k, v in shown.items()) + " |")
    out.append("")
    return "\n".join(out)


def write_report(result: BacktestResult, report: Path, *, command: str,
                 images_dir: Path | None = None) -> list[Path]:
    """Write the charts (next to the report, under `images/` unless given) and the Markdown."""
    images_dir = images_dir or report.parent / "images"
    charts = write_charts(result, images_dir)
    images = {p.stem.removeprefix("backtest_"): p for p in charts}
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render_report(result, command=command, images=images, doc_dir=report.parent))
    return [report, *charts]
