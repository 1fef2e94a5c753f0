"""Drift detection quality and cost: false alarms on calm data, detection of a regime change.

For several simulator seeds: reference = the first 30 min (calm); current windows of 3 and 15 min
either after the reference in the same calm regime, or starting 2 min after a x4 volatility regime
change. Each window is scored by cryptovol's configuration (decimation + `wasserstein_mad` >= 2,
dataset drift at share >= 0.5) and, side by side, by Evidently's default `DataDriftPreset` (its
auto-chosen per-column tests) on the same decimated rows. Prints the dataset-drift rate per case
(a calm window flagged is a false alarm; a regime window not flagged is a miss) and the time per
report.

    .venv/bin/python -m bench.bench_drift [--seeds 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

REFERENCE_S = 1800
DURATION_S = 4200
CHANGE_AT_S = 2700


def _windows(features: pd.DataFrame, regime: bool, length_s: int) -> list[pd.DataFrame]:
    t0 = int(features["event_time_ns"].min())
    start = CHANGE_AT_S + 120 if regime else REFERENCE_S
    out = []
    for a in range(start, DURATION_S - length_s + 1, length_s):
        lo, hi = t0 + a * 1_000_000_000, t0 + (a + length_s) * 1_000_000_000
        out.append(features[(features["event_time_ns"] >= lo) & (features["event_time_ns"] < hi)])
    return out


def _evidently_default(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> bool:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=columns)
    snapshot = Report([DataDriftPreset(columns=columns)]).run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    for metric in snapshot.dict()["metrics"]:
        if str(metric["config"].get("type", "")).endswith("DriftedColumnsCount"):
            return float(metric["value"]["share"]) >= 0.5
    raise RuntimeError("no DriftedColumnsCount in the Evidently snapshot")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args(argv)

    from cryptovol.drift import DriftConfig, drift_report, prepare
    from cryptovol.features import compute_features_multi
    from cryptovol.simulator.synthetic import generate_ticks_frame

    config = DriftConfig()
    columns = list(config.columns)
    flagged: dict[tuple[str, str, int], list[bool]] = {}
    seconds: dict[str, list[float]] = {"cryptovol": [], "evidently-default": []}
    drift_report(*([compute_features_multi(generate_ticks_frame(duration_s=900, seed=0))] * 2))  # import
    for seed in range(1, args.seeds + 1):
        for regime in (False, True):
            ticks = generate_ticks_frame(
                duration_s=DURATION_S, seed=seed, rate_hz=4.0,
                regime_change_at_s=CHANGE_AT_S if regime else None,
            )
            features = compute_features_multi(ticks)
            t0 = int(features["event_time_ns"].min())
            reference = features[features["event_time_ns"] < t0 + REFERENCE_S * 1_000_000_000]
            ref_prepared = prepare(reference, config)
            case = "regime x4" if regime else "calm"
            for length in (180, 900):
                for window in _windows(features, regime, length):
                    started = time.perf_counter()
                    ours = drift_report(reference, window, config).summary["dataset_drift"]
                    seconds["cryptovol"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    theirs = _evidently_default(ref_prepared, prepare(window, config), columns)
                    seconds["evidently-default"].append(time.perf_counter() - started)
                    flagged.setdefault(("cryptovol", case, length), []).append(bool(ours))
                    flagged.setdefault(("evidently-default", case, length), []).append(bool(theirs))

    print(f"seeds 1..{args.seeds}; reference 30 min calm; dataset drift = share of drifted columns >= 0.5")
    print(f"{'detector':<18} {'case':<10} {'window':>7} {'windows':>8} {'flagged':>8}  meaning")
    for (detector, case, length), values in sorted(flagged.items()):
        rate = float(np.mean(values))
        meaning = "false-alarm rate" if case == "calm" else "detection rate"
        print(f"{detector:<18} {case:<10} {length // 60:>5}min {len(values):>8} {rate:>8.2f}  {meaning}")
    for detector, values in seconds.items():
        print(f"{detector:<18} time per report: median {np.median(values) * 1000:.0f} ms")
    def calm_rate(detector: str) -> float:
        return float(np.mean([v for (d, c, _), vs in flagged.items() if d == detector and c == "calm"
                              for v in vs]))

    calm_ours, calm_theirs = calm_rate("cryptovol"), calm_rate("evidently-default")
    print(f"false alarms on calm windows: cryptovol {calm_ours:.2f} vs Evidently default {calm_theirs:.2f}")


if __name__ == "__main__":
    main()
