"""Helpers for the feature tests: tiny tick frames and a slow, obviously-correct reference.

`reference_features` recomputes every feature for one row straight from the definitions in the
`cryptovol.features` docstring, with plain Python loops over ticks `0..i` (bisect for as-of
lookups, `math.fsum` for sums). The vectorized implementation must agree with it.
"""

from __future__ import annotations

import bisect
import math
import statistics

import numpy as np
import pandas as pd

from cryptovol.featureset import MAX_GAP_S
from cryptovol.ticks import TICK_COLUMNS, TICK_DTYPES

S = 1_000_000_000
#: 2026-01-01T00:00:00Z: whole-second (and whole-day) aligned, so hand-computed cases are easy.
T0 = 1_767_225_600 * S


def tick_frame(
    times_s,
    mids,
    *,
    spread: float = 0.02,
    bid_qty=None,
    ask_qty=None,
    volume=None,
    product: str = "BTC-USD",
    t0: int = T0,
) -> pd.DataFrame:
    """Ticks at `t0 + times_s` seconds (exact ns) with the given mids."""
    times = t0 + np.round(np.asarray(times_s, dtype=np.float64) * S).astype(np.int64)
    mids = np.asarray(mids, dtype=np.float64)
    n = len(times)
    frame = pd.DataFrame({
        "product_id": [product] * n,
        "event_time_ns": times,
        "sequence": np.arange(n, dtype=np.int64),
        "price": mids,
        "best_bid": mids - spread / 2,
        "best_ask": mids + spread / 2,
        "best_bid_qty": np.ones(n) if bid_qty is None else np.asarray(bid_qty, dtype=np.float64),
        "best_ask_qty": np.ones(n) if ask_qty is None else np.asarray(ask_qty, dtype=np.float64),
        "volume_24h": np.full(n, 1000.0) if volume is None else np.asarray(volume, dtype=np.float64),
        "receive_time_ns": times + 1000,
    }, columns=list(TICK_COLUMNS))
    return frame.astype(TICK_DTYPES)


def random_ticks(
    duration_s: float,
    *,
    seed: int = 0,
    rate_hz: float = 3.0,
    gaps: tuple[tuple[float, float], ...] = (),
    t0: int = T0 + 12_345_678_901,
    product: str = "BTC-USD",
    dup_share: float = 0.05,
    on_second_share: float = 0.03,
) -> pd.DataFrame:
    """Random ticks: Poisson arrivals, random-walk mid, some shared timestamps, some ticks exactly
    on whole seconds, missing sizes/volumes; `gaps` = (at_s, length_s) silences inserted."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * rate_hz * 1.2) + 10
    dt = rng.exponential(1.0 / rate_hz, n)
    dt[rng.random(n) < dup_share] = 0.0
    t = np.cumsum(dt)
    for at, length in gaps:
        t[t >= at] += length
    t = t[t <= duration_s + sum(g[1] for g in gaps)]
    times = t0 + np.round(t * S).astype(np.int64)
    snap = rng.random(len(times)) < on_second_share
    times[snap] = (times[snap] // S) * S
    times = np.maximum.accumulate(times)
    m = len(times)
    mids = 90_000 * np.exp(np.cumsum(rng.normal(0, 3e-5, m)))
    mids = np.round(mids, 3)
    bq = rng.exponential(1.0, m)
    aq = rng.exponential(1.0, m)
    bq[rng.random(m) < 0.05] = np.nan
    aq[rng.random(m) < 0.02] = 0.0
    vol = 5000 + np.cumsum(rng.normal(0, 0.5, m))
    vol[rng.random(m) < 0.03] = np.nan
    frame = tick_frame((times - t0) / S, mids, bid_qty=bq, ask_qty=aq, volume=vol, product=product, t0=t0)
    frame["event_time_ns"] = times  # exact, not re-rounded
    frame["receive_time_ns"] = times + 5000
    spreads = np.round(rng.exponential(0.5, m), 2) + 0.01
    frame["best_bid"] = mids - spreads / 2
    frame["best_ask"] = mids + spreads / 2
    return frame


def reference_features(ticks: pd.DataFrame, rows) -> pd.DataFrame:
    """The definitions, row by row, using ticks 0..i only."""
    t = [int(x) for x in ticks["event_time_ns"]]
    bid = ticks["best_bid"].to_numpy(dtype=float)
    ask = ticks["best_ask"].to_numpy(dtype=float)
    mid = 0.5 * (bid + ask)
    lm = [math.log(x) for x in mid]
    bq = ticks["best_bid_qty"].to_numpy(dtype=float)
    aq = ticks["best_ask_qty"].to_numpy(dtype=float)
    vol = ticks["volume_24h"].to_numpy(dtype=float)
    gap_ns = int(MAX_GAP_S * S)
    nan = math.nan
    out = []
    for i in rows:
        ti = t[i]
        s = i
        while s > 0 and t[s] - t[s - 1] <= gap_ns:
            s -= 1
        seg = t[s]

        def asof(x: int, i: int = i) -> int:
            return bisect.bisect_right(t, x, 0, i + 1) - 1

        row: dict[str, float] = {
            "mid": mid[i], "spread": ask[i] - bid[i], "spread_bps": (ask[i] - bid[i]) / mid[i] * 1e4,
        }
        for lag in (1, 5, 30, 60):
            x = ti - lag * S
            row[f"ret_{lag}s"] = math.log(mid[i] / mid[asof(x)]) if seg <= x else nan
        K = (ti - 1) // S

        def g(k: int) -> float:
            return lm[asof(k * S)]

        def r2(k: int) -> float:
            return (g(k) - g(k - 1)) ** 2

        p2 = (lm[i] - g(K)) ** 2
        for w in (30, 60, 300):
            ok = seg <= (K - w + 1) * S
            full = math.fsum([r2(k) for k in range(K - w + 2, K + 1)]) if ok else nan
            row[f"rv_{w}s"] = math.sqrt(full + p2) if ok else nan
        lam = 0.5 ** (1 / 30)
        if seg <= (K - 299) * S:
            num = math.fsum([lam ** (K - k + 1) * r2(k) for k in range(K - 298, K + 1)]) + p2
            den = math.fsum([lam**j for j in range(300)])
            row["ewma_vol"] = math.sqrt(num / den)
        else:
            row["ewma_vol"] = nan
        if seg <= (K - 149) * S:
            rv30 = [math.sqrt(math.fsum([r2(j) for j in range(k - 29, k + 1)]))
                    for k in range(K - 119, K + 1)]
            row["vol_of_vol"] = statistics.pstdev(rv30)
        else:
            row["vol_of_vol"] = nan
        for w in (30, 60):
            x = ti - w * S
            count = sum(1 for j in range(i + 1) if t[j] > x)
            row[f"tick_rate_{w}s"] = count / w if seg <= x else nan
        tot = bq[i] + aq[i]
        row["book_imbalance"] = (bq[i] - aq[i]) / tot if math.isfinite(tot) and tot > 0 else 0.0
        x = ti - 60 * S
        if seg <= x:
            old = vol[asof(x)]
            ok = math.isfinite(vol[i]) and math.isfinite(old) and old > 0
            row["volume_24h_chg_60s"] = vol[i] / old - 1 if ok else 0.0
        else:
            row["volume_24h_chg_60s"] = nan
        sod = (ti % (86_400 * S)) / S
        row["tod_sin"] = math.sin(2 * math.pi * sod / 86_400)
        row["tod_cos"] = math.cos(2 * math.pi * sod / 86_400)
        out.append(row)
    return pd.DataFrame(out, index=list(rows))
