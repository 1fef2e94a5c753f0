"""The training matrix: ticks -> segments -> features -> labels -> one row per second.

Two entry points, one path: `build_training_set` starts from raw ticks (the CLI, the demo) and
computes features per segment; `training_set_from_features` starts from feature rows (the Dagster
asset reads them from the feature lake) and does the rest. The first calls the second.

Why each step:
- Segments: a gap longer than `MAX_GAP_S` (reconnects, missing files) ends a segment; features
  warm up again after it and labels never reach across it. Segments shorter than
  `min_segment_s` are dropped: after the 300 s warm-up and the 60 s label horizon they would
  contribute a handful of rows dominated by warm-up effects.
- Features come from `cryptovol.features.compute_features` (the one implementation shared with
  the stream and the service) on every tick; labels from `cryptovol.labels.make_labels` (forward
  realized vol strictly after t, on the same ticks).
- One row per second (the last tick of each whole second): ticks arrive irregularly, so training
  on every tick would overweight busy periods and multiply autocorrelated near-duplicate rows.
- The spike label itself (`spike`) is NOT set here: its threshold is a quantile fitted on each
  fold's training rows only (see `cryptovol.models.walkforward`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET, MAX_GAP_S
from cryptovol.labels import LabelConfig, make_labels
from cryptovol.ticks import format_timestamp_ns

log = logging.getLogger(__name__)

SEC = 1_000_000_000
#: The main real series and the later-regime slices (folder names under the shared data dir).
MAIN_REAL_SERIES = "coinbase_advtrade_ticker_btcusd_2025-12"
OUT_OF_PERIOD_SERIES = "coinbase_advtrade_ticker_2026-04_slices"
#: Recording files left out by default, with the reason (see that folder's SOURCE.md).
DEFAULT_EXCLUDES: dict[str, str] = {
    "ticks_BTCUSD_20251130_235646": "second recorder running in parallel with ..._235611 "
                                    "(overlapping, partly different records)",
}
LABEL_COLUMNS = ("fwd_rv", "vol_ratio")


@dataclass
class TrainingSet:
    """Rows on the 1 s grid with keys, `segment`, FEATURE_NAMES, `fwd_rv`, `vol_ratio`."""

    frame: pd.DataFrame
    label_config: LabelConfig
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return len(self.frame)

    def window(self) -> dict[str, Any]:
        t = self.frame["event_time_ns"]
        if t.empty:
            return {}
        return {
            "first_event_time": format_timestamp_ns(int(t.min())),
            "last_event_time": format_timestamp_ns(int(t.max())),
            "first_event_time_ns": int(t.min()),
            "last_event_time_ns": int(t.max()),
        }


@dataclass
class LabelledFeatures:
    """Feature rows of a window and their forward labels: what the Dagster `labels` asset hands to
    `training_dataset`. `labels` = `make_labels(features)` (keys, `fwd_rv`, `vol_ratio`; rows
    without a full horizon dropped); the training matrix is built from `features` by
    `training_set_from_features`, the same path as `cryptovol train`."""

    features: pd.DataFrame
    labels: pd.DataFrame
    label_config: LabelConfig
    start: str | None = None
    end: str | None = None

    def training_set(self, *, grid_s: int = 1, min_segment_s: float = 900.0) -> TrainingSet:
        return training_set_from_features(self.features, self.label_config, grid_s=grid_s,
                                          min_segment_s=min_segment_s)


def split_segments(event_time_ns: np.ndarray, max_gap_s: float = MAX_GAP_S) -> np.ndarray:
    """Segment number per tick of one product's time-sorted ticks (new segment after a long gap)."""
    t = np.asarray(event_time_ns, dtype=np.int64)
    if t.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.r_[0, np.cumsum(np.diff(t) > int(max_gap_s * SEC))].astype(np.int64)


def sample_last_per_second(frame: pd.DataFrame, grid_s: int = 1) -> pd.DataFrame:
    """Keep the last row of each whole `grid_s` second per (product, segment)."""
    bucket = frame["event_time_ns"].to_numpy(np.int64) // (grid_s * SEC)
    keys = pd.DataFrame({"p": frame["product_id"].to_numpy(), "s": frame["segment"].to_numpy(),
                         "b": bucket})
    last = ~keys.duplicated(keep="last").to_numpy()
    return frame.loc[last].reset_index(drop=True)


def build_training_set(
    ticks: pd.DataFrame,
    label_config: LabelConfig | None = None,
    *,
    grid_s: int = 1,
    min_segment_s: float = 900.0,
    max_gap_s: float = MAX_GAP_S,
) -> TrainingSet:
    """Tick frame (any products) -> `TrainingSet` (see the module docstring for the steps).

    Features are computed per gap-free segment of ticks (warm-up restarts after every gap, and
    short segments are skipped before paying for their features); the rows are then built by
    `training_set_from_features`, the same path the Dagster asset takes from the feature lake.
    """
    from cryptovol.features import compute_features, empty_feature_frame

    ticks = ticks.drop_duplicates(
        subset=["product_id", "event_time_ns", "best_bid", "best_ask", "best_bid_qty", "best_ask_qty"]
    )
    parts: list[pd.DataFrame] = []
    counts = {"segments_total": 0, "segments_dropped_short": 0}
    segment_offset = 0
    for product, group in ticks.groupby("product_id", sort=True, observed=True):
        group = group.sort_values("event_time_ns", kind="stable").reset_index(drop=True)
        seg = split_segments(group["event_time_ns"].to_numpy(), max_gap_s)
        for seg_id in np.unique(seg):
            seg_ticks = group.loc[seg == seg_id].reset_index(drop=True)
            t = seg_ticks["event_time_ns"].to_numpy()
            counts["segments_total"] += 1
            if (t[-1] - t[0]) / SEC < min_segment_s:
                counts["segments_dropped_short"] += 1
                continue
            features = compute_features(seg_ticks)
            features["segment"] = segment_offset + int(seg_id)
            parts.append(features)
        segment_offset += int(seg.max()) + 1 if seg.size else 0
        log.info("%s: %d ticks in %d segments", product, len(group), int(seg.max()) + 1 if seg.size else 0)
    features = (pd.concat(parts, ignore_index=True) if parts
                else empty_feature_frame().assign(segment=pd.Series(dtype=np.int64)))
    training_set = training_set_from_features(
        features, label_config, grid_s=grid_s, min_segment_s=min_segment_s, max_gap_s=max_gap_s
    )
    # segment counts of the ticks: the short segments never reached the feature frame
    training_set.info = {"ticks": int(len(ticks)), **training_set.info, **counts}
    return training_set


def training_set_from_features(
    features: pd.DataFrame,
    label_config: LabelConfig | None = None,
    *,
    grid_s: int = 1,
    min_segment_s: float = 900.0,
    max_gap_s: float = MAX_GAP_S,
) -> TrainingSet:
    """Feature rows (any products, e.g. read from the feature lake) -> `TrainingSet`.

    Per product: split into gap-free segments (a gap > `max_gap_s`; a `segment` column already
    present is used as is), drop segments shorter than `min_segment_s`, label every row with
    `make_labels` and keep the last row of each `grid_s` second that has a label
    (`_labelled_grid`: which rows are on the grid never depends on later data). Extra columns are
    kept.
    """
    config = label_config or LabelConfig()
    parts: list[pd.DataFrame] = []
    info: dict[str, Any] = {"feature_rows": int(len(features)), "segments_total": 0, "segments_kept": 0,
                            "segments_dropped_short": 0, "kept_seconds": 0.0}
    segment_offset = 0
    for _, group in features.groupby("product_id", sort=True, observed=True):
        group = group.sort_values("event_time_ns", kind="stable").reset_index(drop=True)
        t_all = group["event_time_ns"].to_numpy(np.int64)
        if "segment" in group.columns:
            seg = group["segment"].to_numpy(np.int64)
        else:
            seg = split_segments(t_all, max_gap_s) + segment_offset
            segment_offset = int(seg.max()) + 1 if seg.size else segment_offset
        for seg_id in pd.unique(seg):
            rows = group.loc[seg == seg_id].reset_index(drop=True)
            t = rows["event_time_ns"].to_numpy(np.int64)
            duration = (t[-1] - t[0]) / SEC
            info["segments_total"] += 1
            if duration < min_segment_s:
                info["segments_dropped_short"] += 1
                continue
            info["segments_kept"] += 1
            info["kept_seconds"] += float(duration)
            parts.append(_labelled_grid(rows.assign(segment=int(seg_id)), config, grid_s))
    if parts:
        frame = pd.concat(parts, ignore_index=True)
        frame = frame.sort_values(["event_time_ns", "product_id"], kind="stable").reset_index(drop=True)
    else:
        frame = pd.DataFrame(columns=[*FEATURE_SET.columns, *LABEL_COLUMNS, "segment"])
    frame["product_id"] = frame["product_id"].astype(str)
    info.update({"rows": int(len(frame)), "grid_s": grid_s, "min_segment_s": min_segment_s,
                 "products": sorted(frame["product_id"].unique().tolist())})
    return TrainingSet(frame=frame, label_config=config, info=info)


def _labelled_grid(features: pd.DataFrame, config: LabelConfig, grid_s: int) -> pd.DataFrame:
    """Grid rows (last tick of each second, chosen from ticks alone) with their labels.

    Labels are computed on every tick (the forward path needs them all) and joined by row
    position, so repeated keys in recordings without sequence numbers cannot mismatch, and a grid
    row never depends on whether later data exists to label a neighbouring tick.
    """
    positional = features.assign(sequence=np.arange(len(features), dtype=np.int64))
    labels = make_labels(positional, config)
    fwd = np.full(len(features), np.nan)
    ratio = np.full(len(features), np.nan)
    pos = labels["sequence"].to_numpy(np.int64)
    fwd[pos] = labels["fwd_rv"].to_numpy(float)
    ratio[pos] = labels["vol_ratio"].to_numpy(float)
    out = features.assign(fwd_rv=fwd, vol_ratio=ratio)
    out = sample_last_per_second(out, grid_s)
    return out[np.isfinite(out[config.value_column].to_numpy(float))].reset_index(drop=True)


def load_recorded_ticks(
    paths: Iterable[str | Path],
    *,
    products: Iterable[str] | None = ("BTC-USD",),
    exclude: Iterable[str] = tuple(DEFAULT_EXCLUDES),
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Ticks of the recordings under `paths` (via `cryptovol.recorded`), minus excluded files."""
    from cryptovol.recorded import ReadReport, expand_paths, load_ticks

    files = [p for p in expand_paths(paths) if not any(x in p.name for x in exclude)]
    report = ReadReport()
    ticks = load_ticks(files, products=products, on_error="skip", report=report) if files else None
    if ticks is None:
        raise FileNotFoundError(f"no recording files under {list(map(str, paths))}")
    return ticks, {"files": len(files), "read": report.as_dict()}


def real_series_paths(root: str | Path) -> list[Path]:
    """The recording files of the main real series under `root` (the shared data dir, or the series
    folder itself), minus `DEFAULT_EXCLUDES`: exactly what `cryptovol train --real-data` trains on."""
    from cryptovol.recorded import expand_paths

    root = Path(root)
    main = root / MAIN_REAL_SERIES
    base = main if main.is_dir() else root
    if not base.exists():
        raise FileNotFoundError(f"{base} does not exist")
    return [p for p in expand_paths([base]) if not any(x in p.name for x in DEFAULT_EXCLUDES)
            and p.suffix != ".md" and not p.name.endswith(".md")]


def land_real_series(
    root: str | Path, data_dir: str | Path, *, products: Iterable[str] = ("BTC-USD",)
) -> Any:
    """Write the main real series as landing files under `data_dir/raw` (the files
    `real_series_paths` selects; ticks already landed are skipped), so the Dagster graph can
    featurize and train on it. Returns the replay stats."""
    from cryptovol.replay import load_records, replay_to_landing

    records = load_records(real_series_paths(root), products=products)
    if not records:
        raise FileNotFoundError(f"no {', '.join(products)} ticks in the recordings under {root}")
    return replay_to_landing(records, Path(data_dir) / "raw")


def feature_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """Just the feature columns (what a model sees), in contract order."""
    return frame.loc[:, FEATURE_NAMES]
