"""Labels: forward realized volatility and the volatility-spike label (batch only).

Labels look forward; features never do. A row's label uses ticks strictly after its own time, up
to `t + horizon`, and a row whose horizon runs past the end of the data or across a gap longer
than `MAX_GAP_S` is dropped, never filled.

Why the default label is regime-relative: volatility clusters by regime, so an absolute threshold
fitted on one window mostly measures which regime a later window is in. Measured with this module
on the recorded Dec-6-2025 BTC-USD ticks (threshold = 0.90 quantile fitted on the first hour,
H = 60 s), the absolute label's spike rate per later hour ranged from 3 % to 28 %. Dividing the
forward vol by the trailing vol (`rv_300s`, scaled to the horizon) asks "is the next minute much
wilder than the last five?", a question whose answer rate does not hinge on the regime. The
threshold is a quantile of that ratio fitted on the TRAINING window only
(`fit_spike_threshold`) and stored with the model, so evaluation never peeks at its own rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from cryptovol.features import _rolling_sum
from cryptovol.featureset import KEY_COLUMNS, MAX_GAP_S

SEC = 1_000_000_000
MAX_GAP_NS = int(MAX_GAP_S * SEC)


@dataclass(frozen=True)
class LabelConfig:
    """How a spike is defined.

    kind: "relative" (default) thresholds `vol_ratio = fwd_rv / (rv_trailing * sqrt(H / trailing))`;
    "absolute" thresholds `fwd_rv` itself. The threshold is the `quantile` of that value on the
    training rows (`fit_spike_threshold`).
    """

    kind: Literal["relative", "absolute"] = "relative"
    horizon_s: int = 60
    trailing_s: int = 300
    quantile: float = 0.9

    def __post_init__(self) -> None:
        if self.kind not in ("relative", "absolute"):
            raise ValueError(f"LabelConfig.kind must be 'relative' or 'absolute', not {self.kind!r}")
        if self.horizon_s <= 0 or int(self.horizon_s) != self.horizon_s:
            raise ValueError(f"horizon_s must be a positive whole number of seconds, not {self.horizon_s}")
        if self.trailing_s not in (30, 60, 300):
            raise ValueError(f"trailing_s must be one of the rv windows 30, 60, 300; got {self.trailing_s}")
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), not {self.quantile}")

    @property
    def trailing_column(self) -> str:
        return f"rv_{self.trailing_s}s"

    @property
    def value_column(self) -> str:
        """The column the spike threshold applies to."""
        return "vol_ratio" if self.kind == "relative" else "fwd_rv"


def _forward_rv_one(t: np.ndarray, lm: np.ndarray, horizon_s: int) -> np.ndarray:
    """Forward realized vol for one product's sorted ticks (times `t` in ns, log mids `lm`).

    The path is sampled at t, at every whole UTC second strictly inside (t, t + H), and at t + H
    (each value = log mid of the last tick at or before that instant, so ticks sharing t count);
    fwd_rv = sqrt(sum of squared consecutive log differences). With t on a whole second that is
    exactly H one-second grid returns; otherwise a head partial second, H - 1 whole seconds and a
    tail partial second: the same grid convention as `rv_*` in `cryptovol.features`, mirrored.
    NaN when the horizon passes the last tick or the segment (no gap > MAX_GAP_S may lie in
    [t, t + H]).
    """
    n = len(t)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    h = int(horizon_s) * SEC
    # segment end time per tick: the last tick before the next gap
    ends = np.full(n, n - 1, dtype=np.int64)
    gap_after = np.flatnonzero(np.diff(t) > MAX_GAP_NS)  # tick index before each gap
    if len(gap_after):
        seg_id = np.searchsorted(gap_after, np.arange(n), side="left")
        last = np.append(gap_after, n - 1)
        ends = last[seg_id]
    valid = t[ends] >= t + h
    if not valid.any():
        return out
    k0 = int(t[0] // SEC)
    k1 = int((t[-1]) // SEC) + 1
    ks = np.arange(k0, k1 + 1, dtype=np.int64)
    gi = np.searchsorted(t, ks * SEC, side="right") - 1
    g = lm[np.maximum(gi, 0)]
    g[gi < 0] = np.nan
    r2 = np.zeros(len(ks))
    r2[1:] = np.diff(g) ** 2  # r2[m]: squared return of second (k0+m-1, k0+m]
    r2[np.isnan(r2)] = 0.0  # only before the first tick; never inside a valid horizon

    rows = np.flatnonzero(valid)
    tv = t[rows]
    a = lm[np.searchsorted(t, tv, side="right") - 1]
    b = lm[np.searchsorted(t, tv + h, side="right") - 1]
    first = tv // SEC + 1  # first whole second > t
    last = (tv + h - 1) // SEC  # last whole second < t + H
    g_first = g[first - k0]
    g_last = g[last - k0]
    head = (g_first - a) ** 2
    tail = (b - g_last) ** 2
    # whole seconds first+1 .. last: H-1 of them (H-2 when t is on a whole second), summed in a
    # fixed order over the window only, so a row's label never depends on where the array starts
    width = last - first
    inner = np.zeros(len(rows))
    for w in np.unique(width):
        if w <= 0:
            continue
        sel = width == w
        sums = _rolling_sum(r2, int(w), int(w) - 1, len(r2) - int(w) + 1)
        inner[sel] = sums[last[sel] - k0 - (int(w) - 1)]
    total = head + inner + tail
    # no whole second strictly inside (t, t + H) (only H = 1 with t on a whole second): one return
    direct = last < first
    total[direct] = (b[direct] - a[direct]) ** 2
    out[rows] = np.sqrt(total)
    return out


def _mid_of(frame: pd.DataFrame) -> np.ndarray:
    if "mid" in frame.columns:
        return frame["mid"].to_numpy(dtype=np.float64)
    if {"best_bid", "best_ask"} <= set(frame.columns):
        bid = frame["best_bid"].to_numpy(dtype=np.float64)
        return 0.5 * (bid + frame["best_ask"].to_numpy(dtype=np.float64))
    raise ValueError("forward_realized_vol needs a `mid` column (features) or best_bid/best_ask (ticks)")


def forward_realized_vol(frame: pd.DataFrame, horizon_s: int = 60) -> pd.Series:
    """Forward realized vol over (t, t + horizon] for each row of a feature or tick frame.

    Works per product (stable sort by event time inside each product); the result is aligned to
    `frame.index`. NaN where the horizon is incomplete (end of data or a gap); see
    `_forward_rv_one` for the exact sampling.
    """
    for col in ("product_id", "event_time_ns"):
        if col not in frame.columns:
            raise ValueError(f"forward_realized_vol needs column {col!r}")
    mid = _mid_of(frame)
    if np.any(~(mid > 0)):
        raise ValueError("forward_realized_vol: mid must be positive and not NaN")
    lm = np.log(mid)
    t_all = frame["event_time_ns"].to_numpy(dtype=np.int64)
    result = np.full(len(frame), np.nan)
    codes, _ = pd.factorize(frame["product_id"], sort=True)
    order = np.lexsort((np.arange(len(frame)), t_all, codes))  # product, time, original order
    sc = codes[order]
    bounds = np.flatnonzero(np.diff(sc)) + 1
    for part in np.split(order, bounds):
        if len(part):
            result[part] = _forward_rv_one(t_all[part], lm[part], horizon_s)
    return pd.Series(result, index=frame.index, name="fwd_rv")


def fit_spike_threshold(values: pd.Series | np.ndarray, q: float = 0.9) -> float:
    """The q-quantile of the label value on the TRAINING rows only (NaN/inf ignored)."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if len(arr) == 0:
        raise ValueError("cannot fit a spike threshold on zero finite values")
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), not {q}")
    return float(np.quantile(arr, q))


def make_labels(
    features: pd.DataFrame,
    config: LabelConfig | None = None,
    *,
    threshold: float | None = None,
) -> pd.DataFrame:
    """Feature rows -> keys + `fwd_rv` + `vol_ratio` (+ `spike` when `threshold` is given).

    Rows without a full horizon (or, for the relative label, without a finite `vol_ratio`, e.g.
    during rv warm-up) are dropped. Row order follows the input.
    """
    config = config or LabelConfig()
    missing = [c for c in (*KEY_COLUMNS, "mid", config.trailing_column) if c not in features.columns]
    if missing:
        raise ValueError(f"make_labels needs feature columns {missing}")
    fwd = forward_realized_vol(features, config.horizon_s).to_numpy()
    trailing = features[config.trailing_column].to_numpy(dtype=np.float64)
    scale = math.sqrt(config.horizon_s / config.trailing_s)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = fwd / (trailing * scale)
    labels = features.loc[:, list(KEY_COLUMNS)].copy()
    labels["fwd_rv"] = fwd
    labels["vol_ratio"] = np.where(np.isfinite(ratio), ratio, np.nan)
    keep = np.isfinite(labels[config.value_column].to_numpy())
    labels = labels.loc[keep].reset_index(drop=True)
    if threshold is not None:
        labels = apply_spike_threshold(labels, threshold, config)
    return labels


def apply_spike_threshold(
    labels: pd.DataFrame, threshold: float, config: LabelConfig | None = None
) -> pd.DataFrame:
    """Add the boolean `spike` column: label value >= threshold."""
    config = config or LabelConfig()
    out = labels.copy()
    out["spike"] = out[config.value_column].to_numpy(dtype=np.float64) >= float(threshold)
    return out


__all__ = [
    "LabelConfig",
    "apply_spike_threshold",
    "fit_spike_threshold",
    "forward_realized_vol",
    "make_labels",
]
