"""Classification and volatility-forecast metrics, computed the same way for every model and baseline.

Why a module of our own: the report compares learned models with baselines fold by fold, so every
number must come from one implementation with one convention (positives = spikes, scores = higher
means more likely a spike).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

#: Fraction of rows a desk would accept as alerts; precision is reported at this rate.
DEFAULT_ALERT_RATE = 0.10


def _clean(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=bool)
    score = np.asarray(score, dtype=float)
    if y.shape != score.shape:
        raise ValueError(f"labels {y.shape} and scores {score.shape} differ in shape")
    return y, score


def pr_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve); NaN when one class is absent.

    Same definition as `sklearn.metrics.average_precision_score` (sum over distinct thresholds of
    recall increment x precision), vectorised without its input validation: the bootstrap calls
    it thousands of times.
    """
    y, score = _clean(y, score)
    if y.all() or not y.any():
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], y[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    tp = np.cumsum(t)[last_of_tie]
    k = np.arange(1, s.size + 1)[last_of_tie]
    precision = tp / k
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    y, score = _clean(y, score)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, score))


def brier(y: np.ndarray, probability: np.ndarray) -> float:
    y, probability = _clean(y, probability)
    return float(np.mean((probability - y) ** 2)) if y.size else float("nan")


def precision_recall_f1(y: np.ndarray, flag: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall, F1 of boolean alerts (0 where undefined, like sklearn's zero_division=0)."""
    y = np.asarray(y, dtype=bool)
    flag = np.asarray(flag, dtype=bool)
    tp = float(np.sum(y & flag))
    precision = tp / flag.sum() if flag.any() else 0.0
    recall = tp / y.sum() if y.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def precision_at_alert_rate(y: np.ndarray, score: np.ndarray, rate: float = DEFAULT_ALERT_RATE) -> float:
    """Precision among the top `rate` fraction of rows by score (the alerts a desk would see)."""
    y, score = _clean(y, score)
    if not y.size:
        return float("nan")
    k = max(1, int(round(rate * y.size)))
    top = np.argsort(-score, kind="stable")[:k]
    return float(y[top].mean())


def threshold_for_alert_rate(score: np.ndarray, rate: float) -> float:
    """The score above which `rate` of the rows fall (chosen on validation, applied later)."""
    score = np.asarray(score, dtype=float)
    return float(np.quantile(score, 1.0 - rate))


def best_f1_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """The score threshold maximising F1 (flag = score >= threshold)."""
    y, score = _clean(y, score)
    if not y.any():
        return float(np.max(score)) + 1e-12 if score.size else 0.5
    order = np.argsort(-score, kind="stable")
    s, t = score[order], y[order]
    tp = np.cumsum(t)
    k = np.arange(1, s.size + 1)
    precision = tp / k
    recall = tp / t.sum()
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    # Only cut between distinct scores: a threshold cannot separate tied rows.
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    f1 = np.where(last_of_tie, f1, -1.0)
    return float(s[int(np.argmax(f1))])


def classification_metrics(
    y: np.ndarray,
    probability: np.ndarray,
    flag: np.ndarray | None = None,
    *,
    alert_rate: float = DEFAULT_ALERT_RATE,
) -> dict[str, float]:
    """Every classification number the report shows, for one model on one window."""
    y, probability = _clean(y, probability)
    precision, recall, f1 = (
        precision_recall_f1(y, flag) if flag is not None else (float("nan"),) * 3
    )
    return {
        "pr_auc": pr_auc(y, probability),
        "roc_auc": roc_auc(y, probability),
        "brier": brier(y, probability),
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "precision_at_alert_rate": precision_at_alert_rate(y, probability, alert_rate),
        "base_rate": float(y.mean()) if y.size else float("nan"),
        "n_rows": float(y.size),
    }


# --- regression view: forward realized volatility -------------------------------------------

#: Variance floor so a 60 s window without a price change does not make QLIKE infinite.
VARIANCE_FLOOR = 1e-12


def qlike(realized_vol: np.ndarray, forecast_vol: np.ndarray) -> float:
    """QLIKE loss on variances: mean(r/h - log(r/h) - 1); robust to noisy volatility proxies."""
    r = np.maximum(np.asarray(realized_vol, float) ** 2, VARIANCE_FLOOR)
    h = np.maximum(np.asarray(forecast_vol, float) ** 2, VARIANCE_FLOOR)
    ratio = r / h
    return float(np.mean(ratio - np.log(ratio) - 1.0))


def mse_vol(realized_vol: np.ndarray, forecast_vol: np.ndarray) -> float:
    """Mean squared error of the volatility forecast, in (basis points)^2 for readability."""
    diff = (np.asarray(realized_vol, float) - np.asarray(forecast_vol, float)) * 1e4
    return float(np.mean(diff**2))


# --- uncertainty -----------------------------------------------------------------------------


def paired_block_bootstrap(
    y: np.ndarray,
    score_a: np.ndarray,
    score_b: np.ndarray,
    *,
    metric: Callable[[np.ndarray, np.ndarray], float] = pr_auc,
    block: int = 60,
    n_boot: int = 500,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """CI of metric(a) - metric(b) on the same rows, resampling contiguous blocks of rows.

    Blocks (default 60 rows = 60 s on the 1 s grid) keep the autocorrelation of overlapping
    label windows inside a resample, so the interval is not falsely narrow.
    """
    y = np.asarray(y, dtype=bool)
    a = np.asarray(score_a, float)
    b = np.asarray(score_b, float)
    n = y.size
    rng = np.random.default_rng(seed)
    block = max(1, min(block, n))
    n_blocks = int(np.ceil(n / block))
    diffs = []
    for _ in range(n_boot):
        starts = rng.integers(0, n - block + 1, size=n_blocks)
        idx = (starts[:, None] + np.arange(block)[None, :]).ravel()[:n]
        d = metric(y[idx], a[idx]) - metric(y[idx], b[idx])
        if np.isfinite(d):
            diffs.append(d)
    point = metric(y, a) - metric(y, b)
    if not diffs:
        return {"diff": point, "low": float("nan"), "high": float("nan"), "n_boot": 0.0}
    alpha = (1 - level) / 2
    return {
        "diff": float(point),
        "low": float(np.quantile(diffs, alpha)),
        "high": float(np.quantile(diffs, 1 - alpha)),
        "n_boot": float(len(diffs)),
    }
