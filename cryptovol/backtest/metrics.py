"""Performance of a net-return series on the 1 s grid, and a paired block bootstrap.

Annualised figures use 365 x 24 x 3600 / grid_s periods per year (crypto trades around the
clock). On hours of data an annualised return (and so Calmar) is an extrapolation, reported
because it is the convention, never as a forecast; Sharpe and Sortino are ratios and less so.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SECONDS_PER_YEAR = 365 * 24 * 3600


def periods_per_year(grid_s: float = 1.0) -> float:
    return SECONDS_PER_YEAR / grid_s


def equity_curve(net: np.ndarray) -> np.ndarray:
    return np.cumprod(1.0 + np.asarray(net, float))


def drawdown(net: np.ndarray) -> np.ndarray:
    """Drawdown from the running peak of the equity curve (<= 0), starting from equity 1."""
    equity = equity_curve(net)
    peak = np.maximum.accumulate(np.r_[1.0, equity])[1:]
    return equity / peak - 1.0


def sharpe(net: np.ndarray, ppy: float) -> float:
    net = np.asarray(net, float)
    sd = net.std(ddof=1) if net.size > 1 else 0.0
    return float(net.mean() / sd * np.sqrt(ppy)) if sd > 0 else float("nan")


def sortino(net: np.ndarray, ppy: float) -> float:
    net = np.asarray(net, float)
    downside = np.sqrt(np.mean(np.minimum(net, 0.0) ** 2)) if net.size else 0.0
    return float(net.mean() / downside * np.sqrt(ppy)) if downside > 0 else float("nan")


def performance(net: np.ndarray, cost: np.ndarray, traded: np.ndarray, position: np.ndarray,
                *, grid_s: float = 1.0) -> dict[str, float]:
    """Every figure the report shows, for one strategy's pooled rows. `realized_vol` and
    `sharpe_gross` are before costs (the risk the exposure carried, what the signal alone earns);
    everything else is net of costs."""
    net = np.asarray(net, float)
    gross = net + np.asarray(cost, float)
    ppy = periods_per_year(grid_s)
    hours = net.size * grid_s / 3600.0
    max_dd = float(drawdown(net).min()) if net.size else float("nan")
    ann_return = float(net.mean() * ppy) if net.size else float("nan")
    return {
        "rows": float(net.size),
        "hours": hours,
        "total_return": float(equity_curve(net)[-1] - 1.0) if net.size else float("nan"),
        "ann_return": ann_return,
        # market risk carried: the volatility of the exposure's returns before costs
        "realized_vol": float(gross.std(ddof=1) * np.sqrt(ppy)) if net.size > 1 else float("nan"),
        "max_drawdown": max_dd,
        "sharpe": sharpe(net, ppy),
        "sortino": sortino(net, ppy),
        "sharpe_gross": sharpe(gross, ppy),
        "calmar": ann_return / abs(max_dd) if max_dd < 0 else float("nan"),
        "turnover": float(np.sum(traded)),
        "turnover_per_hour": float(np.sum(traded)) / hours if hours > 0 else float("nan"),
        "cost_paid": float(np.sum(cost)),
        "mean_exposure": float(np.mean(position)) if net.size else float("nan"),
    }


def paired_block_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    *,
    block: int = 300,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """CI of statistic(a) - statistic(b), resampling the SAME contiguous row blocks of both
    series (moving blocks keep the volatility clustering inside a resample)."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    if a.size != b.size:
        raise ValueError(f"paired series differ in length: {a.size} vs {b.size}")
    n = a.size
    point = statistic(a) - statistic(b)
    if n < 2:
        return {"diff": point, "low": float("nan"), "high": float("nan"), "n_boot": 0, "block": block}
    rng = np.random.default_rng(seed)
    block = max(1, min(block, n))
    n_blocks = int(np.ceil(n / block))
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        starts = rng.integers(0, n - block + 1, size=n_blocks)
        idx = (starts[:, None] + np.arange(block)[None, :]).ravel()[:n]
        diffs[i] = statistic(a[idx]) - statistic(b[idx])
    diffs = diffs[np.isfinite(diffs)]
    tail = (1.0 - level) / 2.0
    low, high = (np.quantile(diffs, [tail, 1.0 - tail]) if diffs.size else (np.nan, np.nan))
    return {"diff": float(point), "low": float(low), "high": float(high), "n_boot": int(diffs.size),
            "block": int(block), "level": level}
