"""Benchmarks of the feature path: batch featurization, a naive per-row pandas peer, memory, the
streaming call shape, and reading landing files.

Run: `.venv/bin/python -m bench.bench_features` (`--ticks N` for the batch size, default 5,000,000;
`--naive-rows N` for the naive subset). Figures go to the `## features` section of
docs/BENCHMARKS.md. The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from cryptovol import batch, lake
from cryptovol.features import compute_feature_arrays, compute_features
from cryptovol.featureset import FEATURE_NAMES, HISTORY_S, MAX_GAP_S
from cryptovol.simulator import generate_landing_files, generate_ticks_frame
from cryptovol.ticks import tick_from_landing

S = 1_000_000_000


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load avg {one:.1f}/{five:.1f} on {os.cpu_count()} cores"


def synthetic_ticks(n_ticks: int, rate_hz: float, seed: int = 0) -> pd.DataFrame:
    duration = n_ticks / rate_hz  # the rate rises with volatility: this yields a few % more, then cut
    frame = generate_ticks_frame(products=("BTC-USD",), duration_s=duration, seed=seed, rate_hz=rate_hz)
    return frame.iloc[:n_ticks].reset_index(drop=True)


# --- the naive peer: what a per-row pandas implementation of the same definitions looks like -----


def naive_features(ticks: pd.DataFrame, rows: range) -> pd.DataFrame:
    """Per row: slice the history with boolean masks, resample to a 1 s grid with pandas."""
    t = ticks["event_time_ns"]
    mid = (ticks["best_bid"] + ticks["best_ask"]) / 2
    out = []
    for i in rows:
        ti = int(t.iloc[i])
        hist = ticks.iloc[: i + 1]
        ht = t.iloc[: i + 1]
        recent = hist[ht > ti - int(HISTORY_S * S)]
        rt = recent["event_time_ns"]
        gaps = rt.diff() > MAX_GAP_S * S
        seg = int(rt[gaps].iloc[-1]) if gaps.any() else int(rt.iloc[0])
        rmid = mid.iloc[recent.index]
        row = {"mid": mid.iloc[i], "spread": hist["best_ask"].iloc[-1] - hist["best_bid"].iloc[-1]}
        row["spread_bps"] = row["spread"] / row["mid"] * 1e4
        for lag in (1, 5, 30, 60):
            before = rmid[rt <= ti - lag * S]
            row[f"ret_{lag}s"] = math.log(row["mid"] / before.iloc[-1]) if seg <= ti - lag * S else math.nan
        k_last = (ti - 1) // S
        grid_idx = pd.to_datetime(np.arange(k_last - 299, k_last + 1) * S)
        series = pd.Series(np.log(rmid.to_numpy()), index=pd.to_datetime(rt.to_numpy()))
        series = series[series.index < pd.Timestamp(ti)]
        grid = series.groupby(series.index.ceil("1s")).last().reindex(grid_idx, method="ffill")
        r2 = grid.diff() ** 2
        p2 = (math.log(row["mid"]) - grid.iloc[-1]) ** 2
        for w in (30, 60, 300):
            ok = seg <= (k_last - w + 1) * S
            row[f"rv_{w}s"] = math.sqrt(r2.iloc[-(w - 1):].sum() + p2) if ok else math.nan
        lam = 0.5 ** (1 / 30)
        weights = lam ** np.arange(299, 0, -1)
        ok = seg <= (k_last - 299) * S
        num = float((r2.iloc[-299:].to_numpy() * weights).sum()) + p2
        row["ewma_vol"] = math.sqrt(num / (lam ** np.arange(300)).sum()) if ok else math.nan
        rv30 = np.sqrt(r2.rolling(30).sum().iloc[-120:])
        row["vol_of_vol"] = float(rv30.std(ddof=0)) if seg <= (k_last - 149) * S else math.nan
        for w in (30, 60):
            row[f"tick_rate_{w}s"] = (rt > ti - w * S).sum() / w if seg <= ti - w * S else math.nan
        bq, aq = hist["best_bid_qty"].iloc[-1], hist["best_ask_qty"].iloc[-1]
        row["book_imbalance"] = (bq - aq) / (bq + aq) if (bq + aq) > 0 else 0.0
        old = recent.loc[rt <= ti - 60 * S, "volume_24h"]
        if seg <= ti - 60 * S:
            row["volume_24h_chg_60s"] = hist["volume_24h"].iloc[-1] / old.iloc[-1] - 1
        else:
            row["volume_24h_chg_60s"] = math.nan
        ts = pd.Timestamp(ti, tz="UTC")
        sod = (ti - int(ts.normalize().value)) / S
        row["tod_sin"] = math.sin(2 * math.pi * sod / 86400)
        row["tod_cos"] = math.cos(2 * math.pi * sod / 86400)
        out.append(row)
    return pd.DataFrame(out)[FEATURE_NAMES]


# --- benchmarks -----------------------------------------------------------------------------------


def bench_batch(n_ticks: int, naive_rows: int) -> None:
    t0 = time.perf_counter()
    ticks = synthetic_ticks(n_ticks, rate_hz=20.0)
    span_h = (ticks["event_time_ns"].iloc[-1] - ticks["event_time_ns"].iloc[0]) / S / 3600
    print(f"synthetic ticks: {len(ticks):,} (one product, ~20/s, {span_h:.1f} h) generated in "
          f"{time.perf_counter() - t0:.1f} s; {_load()}")
    compute_features(ticks.iloc[:50_000])  # warm caches / imports
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    best = best_cpu = math.inf
    for _ in range(2):
        started, cpu0 = time.perf_counter(), time.process_time()
        feats = compute_features(ticks)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - cpu0)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fast_rate = len(ticks) / best
    warm = int(feats["rv_300s"].notna().sum())
    print(f"batch compute_features: {len(ticks):,} ticks in {best:.2f} s wall = {fast_rate:,.0f} ticks/s; "
          f"{best_cpu:.2f} s CPU = {len(ticks) / best_cpu:,.0f} ticks per CPU-second "
          f"(best of 2; {warm:,} rows warm)")
    tracemalloc.start()
    compute_features(ticks)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    input_bytes = int(ticks.memory_usage(deep=False).sum())
    print(f"peak traced memory during compute_features: {peak / 2**20:,.0f} MiB "
          f"({peak / len(ticks):.0f} B/tick; input frame {input_bytes / 2**20:,.0f} MiB); "
          f"process max RSS {rss1 / 1024:,.0f} MiB (+{(rss1 - rss0) / 1024:,.0f} MiB during the timed runs)")

    start = int(np.searchsorted(ticks["event_time_ns"].to_numpy(),
                                ticks["event_time_ns"].iloc[0] + int(400 * S)))
    sub = ticks.iloc[: start + naive_rows].reset_index(drop=True)
    rows = range(start, start + naive_rows)
    started = time.perf_counter()
    slow = naive_features(sub, rows)
    naive_s = time.perf_counter() - started
    naive_rate = naive_rows / naive_s
    fast = compute_features(sub).iloc[start:].reset_index(drop=True)[FEATURE_NAMES]
    rel = np.nanmax(np.abs(fast.to_numpy() - slow.to_numpy()) / np.maximum(np.abs(fast.to_numpy()), 1e-300))
    same_nan = bool((fast.isna().to_numpy() == slow.isna().to_numpy()).all())
    print(f"naive per-row pandas: {naive_rows:,} rows in {naive_s:.2f} s = {naive_rate:,.0f} rows/s "
          f"(max rel diff vs vectorized {rel:.1e}, same NaN pattern: {same_nan})")
    print(f"vectorized / naive: {fast_rate / naive_rate:,.0f}x")


def bench_stream(rate_hz: float, calls: int = 2000) -> None:
    n = int((HISTORY_S + calls / rate_hz + 60) * rate_hz * 1.2)
    ticks = synthetic_ticks(n, rate_hz=rate_hz, seed=3)
    t = ticks["event_time_ns"].to_numpy()
    names = ("best_bid", "best_ask", "best_bid_qty", "best_ask_qty", "volume_24h")
    cols = [ticks[c].to_numpy() for c in names]
    first = int(np.searchsorted(t, t[0] + int(HISTORY_S * S))) + 10
    arrays_ms, arrays_cpu_ms, frame_ms, tail_rows = [], [], [], []
    for i in range(first, min(first + calls, len(t))):
        lo = int(np.searchsorted(t, t[i] - int(HISTORY_S * S)))
        tail_rows.append(i - lo)
        started, cpu0 = time.perf_counter(), time.process_time()
        compute_feature_arrays(t[lo: i + 1], *(c[lo: i + 1] for c in cols), emit_from=i - lo)
        arrays_ms.append((time.perf_counter() - started) * 1e3)
        arrays_cpu_ms.append((time.process_time() - cpu0) * 1e3)
        window = ticks.iloc[lo: i + 1]
        started = time.perf_counter()
        compute_features(window, emit_from=i - lo)
        frame_ms.append((time.perf_counter() - started) * 1e3)
    print(f"stream shape (tail {HISTORY_S:.0f} s ~ {np.mean(tail_rows):,.0f} rows + 1 new tick, "
          f"{len(arrays_ms)} calls, {rate_hz:g} ticks/s): compute_feature_arrays "
          f"p50 {np.percentile(arrays_ms, 50):.3f} ms p99 {np.percentile(arrays_ms, 99):.3f} ms wall "
          f"(CPU time p50 {np.percentile(arrays_cpu_ms, 50):.3f} ms "
          f"p99 {np.percentile(arrays_cpu_ms, 99):.3f} ms); "
          f"compute_features (DataFrame in/out) "
          f"p50 {np.percentile(frame_ms, 50):.3f} ms p99 {np.percentile(frame_ms, 99):.3f} ms; {_load()}")


def bench_landing(hours: float) -> None:
    with tempfile.TemporaryDirectory(prefix="cryptovol-bench-") as tmp:
        root = Path(tmp)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        generate_landing_files(root, products=("BTC-USD",), start=start, duration_s=hours * 3600,
                               seed=5, rate_hz=5.0)
        path = lake.landing_path(root, "BTC-USD", "2026-01-01")
        lines = path.read_text().splitlines()
        mib = path.stat().st_size / 2**20
        started = time.perf_counter()
        fast = lake.read_landing_file(path, product="BTC-USD")
        fast_s = time.perf_counter() - started
        started = time.perf_counter()
        line_path = lake.parse_landing_lines(lines, product="BTC-USD")
        line_s = time.perf_counter() - started
        sample = lines[:20_000]
        started = time.perf_counter()
        for line in sample:
            tick_from_landing(json.loads(line))
        naive_rate = len(sample) / (time.perf_counter() - started)
        assert fast.ticks.equals(line_path.ticks)
        started = time.perf_counter()
        result = batch.featurize_day(root, "BTC-USD", "2026-01-01")
        day_s = time.perf_counter() - started
        print(f"landing file {len(lines):,} lines ({mib:.0f} MiB): whole-file DuckDB reader "
              f"{len(lines) / fast_s:,.0f} lines/s; line-by-line DuckDB path "
              f"{len(lines) / line_s:,.0f} lines/s; "
              f"json.loads + tick_from_landing per line {naive_rate:,.0f} lines/s "
              f"(reader / per-line Python: {len(lines) / fast_s / naive_rate:.1f}x)")
        print(f"featurize_day end to end (read + compute + Parquet): {result.rows:,} rows in {day_s:.2f} s "
              f"= {result.rows / day_s:,.0f} ticks/s; {_load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=5_000_000)
    parser.add_argument("--naive-rows", type=int, default=400)
    args = parser.parse_args()
    print("== cryptovol feature benchmarks ==")
    bench_batch(args.ticks, args.naive_rows)
    bench_stream(4.0)
    bench_stream(20.0, calls=1000)
    bench_landing(6.0)


if __name__ == "__main__":
    main()
