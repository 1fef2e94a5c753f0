"""Feature computation: ONE vectorized implementation for batch, stream and serving.

`compute_features(ticks, emit_from=k)` turns one product's ticks into feature rows for ticks
`[k, len)`, using rows `[0, k)` as context only. The batch featurizer passes a day plus the
previous day's tail, the streaming featurizer passes its per-product tail plus the new ticks, the
service passes a window of raw ticks and keeps the last row.

`RollingFeatures` is the same definitions in incremental form, for the streaming featurizer: per
product it keeps O(1)-per-second rolling state (exact whole-second sums) instead of re-running the
~320 s history with every tick, so a tick costs the same whatever the window lengths. It equals
`compute_feature_arrays` within 1e-9 relative (exactly for the whole-second sums and exact zeros),
which `tests/features/test_features_rolling.py` and the stream == batch tests check.

Exact definitions (t = event time of the row's tick in UTC ns, s = 1e9 ns, mid = (bid + ask) / 2,
lm = log(mid)):

Row causality
    A row uses ticks `0..i` only: every "as-of x" lookup below takes the last tick with
    `event_time <= x` where `x < t`, so later ticks that share the row's timestamp never leak in.

Segments and warm-up
    A gap of more than `MAX_GAP_S` between consecutive ticks starts a new segment. `seg_start` is
    the time of the first tick of the row's segment *within the supplied array* (the array's
    first tick counts as a segment start). A feature with lookback window `[t - W, t]` is NaN
    unless `seg_start <= t - W` ("the window fits inside the segment"). So a row whose windows fit
    inside the supplied history gets exactly the value it gets in any longer array: that is the
    history invariance the stream relies on (stream keeps >= `HISTORY_S` of tail).

As-of returns `ret_Ls` (L = 1, 5, 30, 60)
    `log(mid_i / mid_j)` with j the last tick at or before `t - L s`. Warm iff `seg_start <= t - L`.

1-second grid and realized vol `rv_Ws` (W = 30, 60, 300)
    `g(k)` = lm of the last tick at or before the whole UTC second `k * s`; `r_k = g(k) - g(k-1)`
    is the return over the second `(k-1, k]`. For a row let `K = ceil(t / s) - 1`, the last whole
    second strictly before t (so `g(K)` never sees the row's own or later ticks), and
    `p = lm_i - g(K)` the partial-second return over `(K, t]` (length in (0, 1] s).
    `rv_Ws = sqrt(r_{K-W+2}^2 + ... + r_K^2 + p^2)`: W-1 whole seconds plus the partial second,
    together covering `(K - W + 1, t]`, i.e. between W-1 and W seconds. Warm iff
    `seg_start <= (K - W + 1) s`. The whole-second sum is a strictly sequential (oldest first)
    sum of the W-1 squared grid returns, so it is bitwise identical however much history precedes.

`ewma_vol`
    RiskMetrics-style EWMA of the same 300 squared returns as rv_300s (partial second weight
    `lam^0`, then whole seconds `K, K-1, ..., K-298` with weights `lam^1 .. lam^299`,
    `lam = 0.5 ** (1/30)` i.e. half-life 30 s), normalised by the sum of the weights:
    `ewma_vol = sqrt(sum_j lam^j x_j / sum_j lam^j)`, a per-second volatility. Warm as rv_300s.

`vol_of_vol`
    `rv30g(k) = sqrt(r_{k-29}^2 + ... + r_k^2)` is the 30 s realized vol on whole seconds only;
    `vol_of_vol` = population standard deviation (ddof = 0, two-pass: mean, then mean squared
    deviation) of `rv30g(K-119) .. rv30g(K)` (120 values). Needs `g(K-149)`: warm iff
    `seg_start <= (K - 149) s`.

`tick_rate_Ws` (W = 30, 60)
    Number of ticks of rows `<= i` with time in `(t - W, t]`, divided by W. Warm iff
    `seg_start <= t - W`.

`book_imbalance`
    `(bid_qty - ask_qty) / (bid_qty + ask_qty)`; 0 when a size is unknown or both are 0.

`volume_24h_chg_60s`
    `volume_24h_i / volume_24h_j - 1` with j the as-of tick at or before `t - 60 s`; 0 when a
    volume is unknown or the old one is 0; NaN (warm-up) unless `seg_start <= t - 60 s`.

`tod_sin`, `tod_cos`
    `sin/cos(2 pi * d / 86400)` with d the UTC seconds of day (fractional) of t.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET, HISTORY_S, KEY_COLUMNS, MAX_GAP_S

SEC = 1_000_000_000
HISTORY_NS = int(HISTORY_S * SEC)
MAX_GAP_NS = int(MAX_GAP_S * SEC)

RETURN_LAGS_S = (1, 5, 30, 60)
RV_WINDOWS_S = (30, 60, 300)
TICK_RATE_WINDOWS_S = (30, 60)
EWMA_HALF_LIFE_S = 30.0
EWMA_SPAN_S = 300
VOV_RV_S = 30
VOV_WINDOW_S = 120
#: How many whole grid seconds before K the grid features reach back to (rv_300s / ewma).
GRID_REACH_S = max(max(RV_WINDOWS_S), EWMA_SPAN_S, VOV_RV_S + VOV_WINDOW_S) - 1

_LAMBDA = 0.5 ** (1.0 / EWMA_HALF_LIFE_S)
#: Weights of the whole seconds, oldest first: K-298 gets lam^299 ... K gets lam^1.
_EWMA_FULL_WEIGHTS = _LAMBDA ** np.arange(EWMA_SPAN_S - 1, 0, -1, dtype=np.float64)
_EWMA_WEIGHT_SUM = float(np.sum(_LAMBDA ** np.arange(EWMA_SPAN_S, dtype=np.float64)))

#: Below this many output rows a per-row cumsum beats the column loop; both are sequential sums.
_ROW_LOOP_MAX = 8
_CHUNK = 16_384
#: Up to this many emitted rows the output frame is built with pandas' array constructor.
_SMALL_FRAME = 64
_COLUMNS = pd.Index(FEATURE_SET.columns)

REQUIRED_TICK_COLUMNS = ("product_id", "event_time_ns", "sequence", "best_bid", "best_ask",
                         "best_bid_qty", "best_ask_qty", "volume_24h")


def _rolling_sum(
    x: np.ndarray,
    width: int,
    first_end: int,
    n_out: int,
    *,
    weights: np.ndarray | None = None,
    center: np.ndarray | None = None,
) -> np.ndarray:
    """`out[q] = sum_j term(x[first_end + q - width + 1 + j])` for j = 0..width-1, added strictly
    in order (oldest first), where term is `w_j * x` or `(x - center[q])**2`.

    A fixed summation order makes each value a function of the window's contents only, so a row
    computed from a 300 s tail equals the same row computed inside a whole day, bit for bit.
    """
    start = first_end - width + 1
    if start < 0 or first_end + n_out > len(x):
        raise IndexError("rolling window outside the grid")  # a bug, never bad input
    if n_out <= _ROW_LOOP_MAX:
        out = np.empty(n_out)
        for q in range(n_out):
            seg = x[start + q:start + q + width]
            if center is not None:
                seg = (seg - center[q]) ** 2
            if weights is not None:
                seg = seg * weights
            out[q] = np.cumsum(seg)[-1]
        return out
    out = np.empty(n_out)
    for c0 in range(0, n_out, _CHUNK):
        c1 = min(n_out, c0 + _CHUNK)
        acc = None
        cen = center[c0:c1] if center is not None else None
        for j in range(width):
            term = x[start + c0 + j:start + c1 + j]
            if cen is not None:
                term = (term - cen) ** 2
            if weights is not None:
                term = term * weights[j]
            if acc is None:
                acc = np.array(term, dtype=np.float64, copy=True)
            else:
                acc += term
        out[c0:c1] = acc
    return out


def _grid_features(
    t: np.ndarray, lm: np.ndarray, rows: np.ndarray, seg: np.ndarray, out: dict[str, np.ndarray],
    pos: np.ndarray,
) -> None:
    """Fill the 1-second-grid features for `rows` (indices into t, sorted) at output positions `pos`.

    The grid is built per cluster of rows whose windows overlap, so a sparse array spanning months
    never allocates a month-long grid.
    """
    if len(rows) == 0:
        return
    K = (t[rows] - 1) // SEC
    breaks = np.flatnonzero(np.diff(K) > GRID_REACH_S + 1) + 1
    bounds = np.concatenate(([0], breaks, [len(rows)]))
    for b0, b1 in zip(bounds[:-1], bounds[1:], strict=True):
        _grid_cluster(t, lm, rows[b0:b1], K[b0:b1], seg[b0:b1], out, pos[b0:b1])


def _grid_cluster(t, lm, rows, K, seg, out, pos) -> None:
    k_min, k_max = int(K[0]), int(K[-1])
    base = k_min - GRID_REACH_S
    ks = np.arange(base, k_max + 1, dtype=np.int64)
    gi = np.searchsorted(t, ks * SEC, side="right") - 1
    g = lm[np.maximum(gi, 0)]
    g[gi < 0] = np.nan
    r2 = np.diff(g) ** 2  # r2[m] is the squared return of second k = base + 1 + m
    n_out = k_max - k_min + 1
    first_end = k_min - base - 1  # index in r2 of second k_min
    at = K - k_min  # row -> position in the per-second outputs
    p2 = (lm[rows] - g[K - base]) ** 2
    for w in RV_WINDOWS_S:
        full = _rolling_sum(r2, w - 1, first_end, n_out)
        val = np.sqrt(full[at] + p2)
        val[seg > (K - w + 1) * SEC] = np.nan
        out[f"rv_{w}s"][pos] = val
    ew = _rolling_sum(r2, EWMA_SPAN_S - 1, first_end, n_out, weights=_EWMA_FULL_WEIGHTS)
    val = np.sqrt((ew[at] + p2) / _EWMA_WEIGHT_SUM)
    val[seg > (K - EWMA_SPAN_S + 1) * SEC] = np.nan
    out["ewma_vol"][pos] = val
    # per-second rv_30s on whole seconds for k in [k_min - 119, k_max]
    n_v = n_out + VOV_WINDOW_S - 1
    v = np.sqrt(_rolling_sum(r2, VOV_RV_S, first_end - (VOV_WINDOW_S - 1), n_v))
    mean = _rolling_sum(v, VOV_WINDOW_S, VOV_WINDOW_S - 1, n_out) / VOV_WINDOW_S
    var = _rolling_sum(v, VOV_WINDOW_S, VOV_WINDOW_S - 1, n_out, center=mean) / VOV_WINDOW_S
    val = np.sqrt(var)[at]
    val[seg > (K - VOV_RV_S - VOV_WINDOW_S + 1) * SEC] = np.nan
    out["vol_of_vol"][pos] = val


def compute_feature_arrays(
    event_time_ns: np.ndarray,
    best_bid: np.ndarray,
    best_ask: np.ndarray,
    best_bid_qty: np.ndarray,
    best_ask_qty: np.ndarray,
    volume_24h: np.ndarray,
    *,
    emit_from: int = 0,
) -> dict[str, np.ndarray]:
    """The array core of `compute_features`: feature name -> float64 array for rows
    `[emit_from, n)`. For callers that already hold numpy arrays (the streaming hot path)."""
    t = np.asarray(event_time_ns, dtype=np.int64)
    n = len(t)
    if not 0 <= emit_from <= n:
        raise ValueError(f"emit_from={emit_from} outside [0, {n}]")
    n_emit = n - emit_from
    if n_emit == 0:
        return {name: np.empty(0) for name in FEATURE_NAMES}
    if n > 1 and bool(np.any(t[1:] < t[:-1])):
        bad = int(np.flatnonzero(t[1:] < t[:-1])[0]) + 1
        raise ValueError(f"ticks are not sorted by event_time_ns (row {bad} is earlier than row {bad - 1})")
    bid = np.asarray(best_bid, dtype=np.float64)
    ask = np.asarray(best_ask, dtype=np.float64)
    bq = np.asarray(best_bid_qty, dtype=np.float64)
    aq = np.asarray(best_ask_qty, dtype=np.float64)
    vol = np.asarray(volume_24h, dtype=np.float64)
    if not len(bid) == len(ask) == len(bq) == len(aq) == len(vol) == n:
        raise ValueError("compute_feature_arrays: all input arrays must have the same length")
    # Only what the emitted rows can reach: the history before t[emit_from] - HISTORY_S is dropped.
    s0 = int(np.searchsorted(t[:emit_from], t[emit_from] - HISTORY_NS, side="left")) if emit_from else 0
    if s0:
        t, bid, ask, bq, aq, vol = t[s0:], bid[s0:], ask[s0:], bq[s0:], aq[s0:], vol[s0:]
        emit_from -= s0
        n = len(t)

    mid = 0.5 * (bid + ask)
    lm = np.log(mid)
    idx = np.arange(n)
    starts = np.zeros(n, dtype=np.int64)
    if n > 1:
        gap = np.flatnonzero(np.diff(t) > MAX_GAP_NS) + 1
        starts[gap] = gap
        np.maximum.accumulate(starts, out=starts)
    e = slice(emit_from, n)
    out: dict[str, np.ndarray] = {}
    te = t[e]
    seg = t[starts[e]]
    mid_e = mid[e]
    spread = ask[e] - bid[e]
    out["mid"] = mid_e
    out["spread"] = spread
    out["spread_bps"] = spread / mid_e * 1e4

    asof: dict[int, np.ndarray] = {}
    for lag in sorted(set(RETURN_LAGS_S) | set(TICK_RATE_WINDOWS_S)):
        asof[lag] = np.searchsorted(t, te - lag * SEC, side="right") - 1
    for lag in RETURN_LAGS_S:
        j = asof[lag]
        val = np.log(mid_e / mid[np.maximum(j, 0)])
        val[seg > te - lag * SEC] = np.nan
        out[f"ret_{lag}s"] = val
    for w in TICK_RATE_WINDOWS_S:
        val = (idx[e] - asof[w]).astype(np.float64) / w
        val[seg > te - w * SEC] = np.nan
        out[f"tick_rate_{w}s"] = val

    tot = bq[e] + aq[e]
    with np.errstate(invalid="ignore", divide="ignore"):
        bi = (bq[e] - aq[e]) / tot
        out["book_imbalance"] = np.where(np.isfinite(bi), bi, 0.0)
        v_now = vol[e]
        v_then = vol[np.maximum(asof[60], 0)]
        chg = v_now / v_then - 1.0
    chg = np.where(np.isfinite(chg) & (v_then > 0), chg, 0.0)
    chg[seg > te - 60 * SEC] = np.nan
    out["volume_24h_chg_60s"] = chg

    ang = (te % (86_400 * SEC)).astype(np.float64) / SEC * (2.0 * np.pi / 86_400.0)
    out["tod_sin"] = np.sin(ang)
    out["tod_cos"] = np.cos(ang)

    # Grid features only for rows where at least rv_30s can be warm; the rest stay NaN.
    for name in (*(f"rv_{w}s" for w in RV_WINDOWS_S), "ewma_vol", "vol_of_vol"):
        out[name] = np.full(n_emit, np.nan)
    K = (te - 1) // SEC
    need = np.flatnonzero(seg <= (K - min(RV_WINDOWS_S) + 1) * SEC)
    _grid_features(t, lm, need + emit_from, seg[need], out, need)
    return out


def _check_tick_frame(ticks: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_TICK_COLUMNS if c not in ticks.columns]
    if missing:
        raise ValueError(f"tick frame is missing columns {missing}; expected cryptovol.ticks.TICK_COLUMNS")


def compute_features(ticks: pd.DataFrame, *, emit_from: int = 0) -> pd.DataFrame:
    """One product's ticks (sorted by event time, then arrival) -> feature rows for `[emit_from, n)`.

    Rows before `emit_from` are context only. Returns `FEATURE_SET.columns` (keys, then float64
    features), one row per emitted tick in input order. See the module docstring for the math.
    A hot loop that already holds numpy arrays (the streaming featurizer) should call
    `compute_feature_arrays` directly: same numbers, without ~0.5 ms of pandas per call.
    """
    _check_tick_frame(ticks)
    n = len(ticks)
    arrays = compute_feature_arrays(
        ticks["event_time_ns"].to_numpy(dtype=np.int64),
        ticks["best_bid"].to_numpy(dtype=np.float64),
        ticks["best_ask"].to_numpy(dtype=np.float64),
        ticks["best_bid_qty"].to_numpy(dtype=np.float64, na_value=np.nan),
        ticks["best_ask_qty"].to_numpy(dtype=np.float64, na_value=np.nan),
        ticks["volume_24h"].to_numpy(dtype=np.float64, na_value=np.nan),
        emit_from=emit_from,
    )
    return _assemble(ticks, arrays, emit_from, n)


def _assemble(ticks: pd.DataFrame, arrays: Mapping[str, np.ndarray], emit_from: int, n: int) -> pd.DataFrame:
    products = ticks["product_id"].iloc[emit_from:n]
    if len(products) > 1:
        values = np.asarray(products.array, dtype=object)
        try:
            mixed = bool(np.any(values != values[0]))
        except TypeError as exc:  # pd.NA compares to NA, which has no truth value
            raise ValueError("product_id has missing values") from exc
        if mixed:
            raise ValueError(
                "compute_features takes one product at a time; use compute_features_multi for "
                f"{sorted(map(str, set(values)))}"
            )
    product_col = products.array
    if product_col.dtype != "string":
        product_col = pd.array(np.asarray(product_col, dtype=object), dtype="string")
    keys = [
        product_col,
        ticks["event_time_ns"].to_numpy(dtype=np.int64)[emit_from:n],
        ticks["sequence"].to_numpy(dtype=np.int64)[emit_from:n],
    ]
    columns = [*keys, *(arrays[name] for name in FEATURE_NAMES)]
    if len(products) <= _SMALL_FRAME and hasattr(pd.DataFrame, "_from_arrays"):
        # The serving/stream shape (a row or a few): ~4x less pandas overhead than the dict path.
        # It consolidates (copies) the float columns, which is why big batches take the dict path.
        return pd.DataFrame._from_arrays(columns, columns=_COLUMNS, index=pd.RangeIndex(len(products)),
                                         verify_integrity=False)
    # dict order == FEATURE_SET.columns; passing `columns=` would make pandas ~10x slower here
    return pd.DataFrame(dict(zip(FEATURE_SET.columns, columns, strict=True)), copy=False)


def empty_feature_frame() -> pd.DataFrame:
    """A zero-row frame with the feature-set columns and dtypes."""
    cols: dict[str, pd.Series] = {
        "product_id": pd.Series(dtype="string"),
        "event_time_ns": pd.Series(dtype=np.int64),
        "sequence": pd.Series(dtype=np.int64),
    }
    cols.update({name: pd.Series(dtype=np.float64) for name in FEATURE_NAMES})
    return pd.DataFrame(cols, columns=FEATURE_SET.columns)


def compute_features_multi(ticks: pd.DataFrame) -> pd.DataFrame:
    """All products at once: sorts stably by (product, event time) and computes each product alone.

    Rows come back grouped by product (sorted by name), each in event-time/arrival order.
    """
    _check_tick_frame(ticks)
    if len(ticks) == 0:
        return empty_feature_frame()
    parts = []
    for _, group in ticks.groupby("product_id", sort=True, observed=True):
        group = group.sort_values("event_time_ns", kind="stable")
        parts.append(compute_features(group))
    return pd.concat(parts, ignore_index=True)


__all__ = [
    "KEY_COLUMNS",
    "compute_feature_arrays",
    "compute_features",
    "compute_features_multi",
    "empty_feature_frame",
]


# -- the incremental form (streaming) -------------------------------------------------------------

#: Fixed-point window sums: values are held as integers in units of 2**-256 (`int(ldexp(x, 256))`,
#: exact for every value above ~4e-62, far below any squared return), so adding a second and
#: subtracting the one that leaves cancel exactly: nothing drifts over a long stream and a flat
#: price gives exactly 0. Converting a sum back rounds once.
_EXP = 256


def _fixed(x: float) -> int:
    return int(math.ldexp(x, _EXP))


def _unfixed(n: int, exp: int = _EXP) -> float:
    return math.ldexp(float(n), -exp)


@dataclass(frozen=True)
class Windows:
    """The look-back windows of the feature definitions (module docstring). `scaled(k)` multiplies
    every one by k: only the benchmarks use that, to show the incremental cost stays flat."""

    return_lags_s: tuple[int, ...] = RETURN_LAGS_S
    tick_rate_s: tuple[int, ...] = TICK_RATE_WINDOWS_S
    volume_lag_s: int = 60
    rv_s: tuple[int, ...] = RV_WINDOWS_S
    ewma_half_life_s: float = EWMA_HALF_LIFE_S
    ewma_span_s: int = EWMA_SPAN_S
    vov_rv_s: int = VOV_RV_S
    vov_window_s: int = VOV_WINDOW_S

    def scaled(self, k: int) -> Windows:
        return Windows(
            tuple(w * k for w in self.return_lags_s), tuple(w * k for w in self.tick_rate_s),
            self.volume_lag_s * k, tuple(w * k for w in self.rv_s), self.ewma_half_life_s * k,
            self.ewma_span_s * k, self.vov_rv_s * k, self.vov_window_s * k,
        )


class RollingFeatures:
    """The incremental form of `compute_feature_arrays` for one product's stream: `update(...)`
    takes the next ticks (event-time order) and returns their feature rows, the same definitions
    (module docstring) equal to the batch computation within 1e-9 relative.

    The per-tick cost does not depend on the window lengths: as-of lookups bisect a buffer of the
    last `max lag + MAX_GAP_S` seconds of ticks; the 1-second grid keeps, per closed second, exact
    running sums of the squared returns for every realized-vol window, the EWMA by its recurrence
    (re-summed in the batch's order once per span, and exactly 0 when its window is flat), and
    exact running first and second moments of the per-second rv_30s for vol_of_vol. Each closed
    second costs O(1); the whole-second sums are exact, so nothing drifts over a long stream.
    """

    def __init__(self, windows: Windows | None = None) -> None:
        w = self.w = windows or Windows()
        self._lam = 0.5 ** (1.0 / w.ewma_half_life_s)
        self._ew_weights = self._lam ** np.arange(w.ewma_span_s - 1, 0, -1, dtype=np.float64)
        self._ew_sum = float(np.sum(self._lam ** np.arange(w.ewma_span_s, dtype=np.float64)))
        self._lam_span = self._lam ** w.ewma_span_s
        self._sum_widths = sorted({r - 1 for r in w.rv_s} | {w.vov_rv_s, w.ewma_span_s - 1})
        self._ring = max(self._sum_widths) + 1
        self._keep_ns = int((max(*w.return_lags_s, *w.tick_rate_s, w.volume_lag_s) + MAX_GAP_S + 1) * SEC)
        cap = 1024
        self._bt = np.empty(cap, dtype=np.int64)
        self._bmid = np.empty(cap)
        self._bvol = np.empty(cap)
        self._b0 = self._b1 = 0
        self._count = 0  # ticks seen (the global index of the next one)
        self.last_ns: int | None = None
        self._seg_ns = 0
        self._last_lm = math.nan
        self._reset_grid(0)

    # -- per-second state ----------------------------------------------------------------------
    def _reset_grid(self, k: int) -> None:
        """A new segment whose first tick lies in second k + 1 (`(k, k + 1]`): no grid value yet."""
        self._kc = k  # last closed second
        self._g = math.nan  # g(kc)
        self._r2 = [0] * self._ring  # exact squared returns by second (k % ring); 0 before the segment
        self._r2f = np.zeros(self._ring)  # the same as floats, for the periodic EWMA re-sum
        self._sums = dict.fromkeys(self._sum_widths, 0)
        self._ew = 0.0
        self._since_resum = 0
        n = self.w.vov_window_s
        self._v = [0] * n
        self._sv = 0
        self._sv2 = 0
        self._cur = (math.nan,) * (len(self.w.rv_s) + 3)  # (g, rv sums..., ew, vov) at kc

    def _close(self, k: int, g: float) -> tuple[float, ...]:
        """Close second k with grid value g; returns (g, whole-second rv sums, ew sum, vov) at k."""
        w, ring = self.w, self._ring
        x = (g - self._g) ** 2 if not math.isnan(self._g) else 0.0  # first second of a segment: 0
        xe = _fixed(x)
        slot = k % ring
        r2 = self._r2
        for width in self._sum_widths:
            self._sums[width] += xe - r2[(k - width) % ring]
        r2[slot] = xe
        old = float(self._r2f[(k - w.ewma_span_s + 1) % ring])
        self._r2f[slot] = x
        span1 = w.ewma_span_s - 1
        self._since_resum += 1
        if self._sums[span1] == 0:
            self._ew = 0.0
        elif self._since_resum >= span1:
            # the batch's own order once per span: the recurrence's rounding never accumulates
            idx = np.arange(k - span1 + 1, k + 1) % ring
            self._ew = float(np.cumsum(self._r2f[idx] * self._ew_weights)[-1])
            self._since_resum = 0
        else:
            self._ew = self._lam * self._ew + self._lam * x - self._lam_span * old
        v = _fixed(math.sqrt(_unfixed(self._sums[w.vov_rv_s])))
        n = w.vov_window_s
        out_v = self._v[k % n]
        self._v[k % n] = v
        self._sv += v - out_v
        self._sv2 += v * v - out_v * out_v
        var = _unfixed(n * self._sv2 - self._sv * self._sv, 2 * _EXP) / (n * n)
        self._g = g
        self._kc = k
        return (g, *(_unfixed(self._sums[r - 1]) for r in w.rv_s), self._ew, math.sqrt(max(var, 0.0)))

    # -- tick buffer for as-of lookups --------------------------------------------------------
    def _append(self, t: np.ndarray, mid: np.ndarray, vol: np.ndarray) -> None:
        n = len(t)
        cutoff = int(t[0]) - self._keep_ns  # what the first of these rows can still look back to
        self._b0 += int(np.searchsorted(self._bt[self._b0:self._b1], cutoff, side="left"))
        if self._b1 + n > len(self._bt):
            live = self._b1 - self._b0
            cap = max(len(self._bt), 2 * (live + n))
            for name in ("_bt", "_bmid", "_bvol"):
                old = getattr(self, name)
                new = np.empty(cap, dtype=old.dtype)
                new[:live] = old[self._b0:self._b1]
                setattr(self, name, new)
            self._b0, self._b1 = 0, live
        self._bt[self._b1:self._b1 + n] = t
        self._bmid[self._b1:self._b1 + n] = mid
        self._bvol[self._b1:self._b1 + n] = vol
        self._b1 += n

    # -- the step ------------------------------------------------------------------------------
    def update(
        self,
        event_time_ns: np.ndarray,
        best_bid: np.ndarray,
        best_ask: np.ndarray,
        best_bid_qty: np.ndarray,
        best_ask_qty: np.ndarray,
        volume_24h: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Feature arrays (FEATURE_NAMES) for these ticks, which must follow the previous ones."""
        t = np.asarray(event_time_ns, dtype=np.int64)
        m = len(t)
        if m == 0:
            return {name: np.empty(0) for name in FEATURE_NAMES}
        prev = self.last_ns
        if (prev is not None and int(t[0]) < prev) or (m > 1 and bool(np.any(t[1:] < t[:-1]))):
            raise ValueError("RollingFeatures.update: ticks must come in event-time order")
        if m == 1:
            return self._one(int(t[0]), float(best_bid[0]), float(best_ask[0]), float(best_bid_qty[0]),
                             float(best_ask_qty[0]), float(volume_24h[0]))
        w = self.w
        bid = np.asarray(best_bid, dtype=np.float64)
        ask = np.asarray(best_ask, dtype=np.float64)
        bq = np.asarray(best_bid_qty, dtype=np.float64)
        aq = np.asarray(best_ask_qty, dtype=np.float64)
        vol = np.asarray(volume_24h, dtype=np.float64)
        mid = 0.5 * (bid + ask)
        lm = np.log(mid)
        out: dict[str, np.ndarray] = {}
        spread = ask - bid
        out["mid"] = mid
        out["spread"] = spread
        out["spread_bps"] = spread / mid * 1e4

        # segments: a gap > MAX_GAP_S (or the very first tick) starts one
        starts = np.flatnonzero(np.diff(t) > MAX_GAP_NS) + 1
        if prev is None or int(t[0]) - prev > MAX_GAP_NS:
            starts = np.concatenate(([0], starts))
        seg = np.full(m, self._seg_ns, dtype=np.int64)
        if len(starts):
            mark = np.full(m, -1, dtype=np.int64)
            mark[starts] = starts
            np.maximum.accumulate(mark, out=mark)
            seg = np.where(mark >= 0, t[np.maximum(mark, 0)], seg)

        # as-of lookups over the tick buffer (history + these ticks)
        first = self._count
        self._append(t, mid, vol)
        bt = self._bt[self._b0:self._b1]
        base = first - (len(bt) - m)  # global index of bt[0]
        idx = np.arange(first, first + m)
        asof: dict[int, np.ndarray] = {}
        for lag in sorted({*w.return_lags_s, *w.tick_rate_s, w.volume_lag_s}):
            asof[lag] = np.searchsorted(bt, t - lag * SEC, side="right") - 1  # into bt
        bmid = self._bmid[self._b0:self._b1]
        bvol = self._bvol[self._b0:self._b1]
        for name, lag in zip(("ret_1s", "ret_5s", "ret_30s", "ret_60s"), w.return_lags_s, strict=True):
            val = np.log(mid / bmid[np.maximum(asof[lag], 0)])
            val[seg > t - lag * SEC] = np.nan
            out[name] = val
        for name, win in zip(("tick_rate_30s", "tick_rate_60s"), w.tick_rate_s, strict=True):
            val = (idx - (asof[win] + base)).astype(np.float64) / win
            val[seg > t - win * SEC] = np.nan
            out[name] = val
        tot = bq + aq
        with np.errstate(invalid="ignore", divide="ignore"):
            bi = (bq - aq) / tot
            out["book_imbalance"] = np.where(np.isfinite(bi), bi, 0.0)
            v_then = bvol[np.maximum(asof[w.volume_lag_s], 0)]
            chg = vol / v_then - 1.0
        chg = np.where(np.isfinite(chg) & (v_then > 0), chg, 0.0)
        chg[seg > t - w.volume_lag_s * SEC] = np.nan
        out["volume_24h_chg_60s"] = chg
        ang = (t % (86_400 * SEC)).astype(np.float64) / SEC * (2.0 * np.pi / 86_400.0)
        out["tod_sin"] = np.sin(ang)
        out["tod_cos"] = np.cos(ang)

        # the 1-second grid, one segment chunk at a time
        K = (t - 1) // SEC
        grid = np.full((m, len(w.rv_s) + 3), np.nan)
        seg_starts = set(starts.tolist())
        cuts = sorted(seg_starts | {0})
        for a, b in zip(cuts, [*cuts[1:], m], strict=True):
            if a in seg_starts:
                self._reset_grid(int(K[a]))
                self._seg_ns = int(t[a])
                self._last_lm = math.nan
            self._grid_chunk(t[a:b], lm[a:b], K[a:b], grid[a:b])
        g = grid[:, 0]
        p2 = (lm - g) ** 2
        for j, r in enumerate(w.rv_s):
            val = np.sqrt(grid[:, 1 + j] + p2)
            val[seg > (K - r + 1) * SEC] = np.nan
            out[("rv_30s", "rv_60s", "rv_300s")[j]] = val
        ew = np.sqrt((grid[:, 1 + len(w.rv_s)] + p2) / self._ew_sum)
        ew[seg > (K - w.ewma_span_s + 1) * SEC] = np.nan
        out["ewma_vol"] = ew
        vov = grid[:, 2 + len(w.rv_s)].copy()
        vov[seg > (K - w.vov_rv_s - w.vov_window_s + 1) * SEC] = np.nan
        out["vol_of_vol"] = vov

        self._count += m
        self.last_ns = int(t[-1])
        self._last_lm = float(lm[-1])
        return out

    def _one(self, t: int, bid: float, ask: float, bq: float, aq: float, vol: float) -> dict[str, np.ndarray]:
        """`update` for a single tick (the live shape) in scalar arithmetic: the same definitions
        and masks as the array path, without ~80 NumPy calls on one-element arrays."""
        w = self.w
        nan = math.nan
        mid = 0.5 * (bid + ask)
        lm = math.log(mid)
        spread = ask - bid
        K = (t - 1) // SEC
        prev = self.last_ns
        if prev is None or t - prev > MAX_GAP_NS:
            self._reset_grid(K)
            self._seg_ns = t
            self._last_lm = nan
        seg = self._seg_ns
        cur_row = self._cur
        if self._kc < K:
            g_last = self._last_lm
            close = self._close
            for k in range(self._kc + 1, K + 1):
                cur_row = close(k, g_last)
            self._cur = cur_row
        i = self._count
        self._append(np.array([t], dtype=np.int64), np.array([mid]), np.array([vol]))
        bt = self._bt[self._b0:self._b1]
        base = i + 1 - len(bt)
        bmid = self._bmid
        bvol = self._bvol
        b0 = self._b0
        values: dict[str, float] = {"mid": mid, "spread": spread, "spread_bps": spread / mid * 1e4}
        asof: dict[int, int] = {}
        for lag in {*w.return_lags_s, *w.tick_rate_s, w.volume_lag_s}:
            asof[lag] = int(bt.searchsorted(t - lag * SEC, side="right")) - 1
        for name, lag in zip(("ret_1s", "ret_5s", "ret_30s", "ret_60s"), w.return_lags_s, strict=True):
            values[name] = nan if seg > t - lag * SEC else math.log(mid / float(bmid[b0 + max(asof[lag], 0)]))
        for name, win in zip(("tick_rate_30s", "tick_rate_60s"), w.tick_rate_s, strict=True):
            values[name] = nan if seg > t - win * SEC else (i - (asof[win] + base)) / win
        tot = bq + aq
        bi = (bq - aq) / tot if tot != 0 else nan
        values["book_imbalance"] = bi if math.isfinite(bi) else 0.0
        v_then = float(bvol[b0 + max(asof[w.volume_lag_s], 0)])
        if seg > t - w.volume_lag_s * SEC:
            values["volume_24h_chg_60s"] = nan
        else:
            chg = vol / v_then - 1.0 if v_then != 0 else nan
            values["volume_24h_chg_60s"] = chg if math.isfinite(chg) and v_then > 0 else 0.0
        ang = (t % (86_400 * SEC)) / SEC * (2.0 * math.pi / 86_400.0)
        values["tod_sin"] = math.sin(ang)
        values["tod_cos"] = math.cos(ang)
        cur = self._cur
        p2 = (lm - cur[0]) ** 2
        for j, r in enumerate(w.rv_s):
            name = ("rv_30s", "rv_60s", "rv_300s")[j]
            values[name] = nan if seg > (K - r + 1) * SEC else math.sqrt(cur[1 + j] + p2)
        n_rv = len(w.rv_s)
        values["ewma_vol"] = (nan if seg > (K - w.ewma_span_s + 1) * SEC
                              else math.sqrt((cur[1 + n_rv] + p2) / self._ew_sum))
        values["vol_of_vol"] = nan if seg > (K - w.vov_rv_s - w.vov_window_s + 1) * SEC else cur[2 + n_rv]
        self._count = i + 1
        self.last_ns = t
        self._last_lm = lm
        row = np.array([values[name] for name in FEATURE_NAMES])
        return {name: row[j:j + 1] for j, name in enumerate(FEATURE_NAMES)}

    def _grid_chunk(self, t: np.ndarray, lm: np.ndarray, K: np.ndarray, grid: np.ndarray) -> None:
        """Close the seconds these ticks pass and fill each row's per-second values at its K."""
        k_end = int(K[-1])
        k0 = self._kc
        rows = [self._cur]
        if k_end > k0:
            ks = np.arange(k0 + 1, k_end + 1, dtype=np.int64)
            pos = np.searchsorted(t, ks * SEC, side="right") - 1
            gs = np.where(pos >= 0, lm[np.maximum(pos, 0)], self._last_lm).tolist()
            close = self._close
            rows += [close(k, g) for k, g in zip(range(k0 + 1, k_end + 1), gs, strict=True)]
            self._cur = rows[-1]
        table = np.array(rows, dtype=np.float64)
        grid[:] = table[K - k0]
        self._last_lm = float(lm[-1])
