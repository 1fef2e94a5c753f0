"""Small helpers that turn core results into Dagster metadata (no domain logic here)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from cryptovol.ticks import format_timestamp_ns


def path_value(path: Path | str) -> dg.MetadataValue:
    return dg.MetadataValue.path(str(Path(path).resolve()))


def time_value(ns: int | None) -> str:
    return format_timestamp_ns(int(ns)) if ns is not None else "n/a"


def preview(frame: pd.DataFrame, rows: int = 5, max_columns: int = 12) -> dg.MetadataValue:
    """The first rows as a markdown table (numbers rounded so the table stays readable)."""
    head = frame.iloc[:rows, :max_columns].copy()
    for column in head.columns:
        if pd.api.types.is_float_dtype(head[column]):
            head[column] = head[column].map(lambda v: "NaN" if v is None or math.isnan(v) else f"{v:.6g}")
    return dg.MetadataValue.md(head.to_markdown(index=False))


def numbers(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Finite numeric entries of `values` as float metadata (NaN/None dropped)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[f"{prefix}{key}"] = dg.MetadataValue.float(float(value))
    return out
