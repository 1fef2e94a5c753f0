"""Data validation suites for raw ticks and feature tables (Great Expectations 1.x).

Two suites, each a list of `Check`s (a GE expectation + a severity):

- `raw_ticks`: required fields present and non-null, positive prices, bid <= ask, non-negative
  sizes/volume, event time monotone per product within a tolerance, sequence gaps under a bound,
  unique (product, event_time_ns, sequence).
- `features`: the columns of the versioned feature set, the feature-set version, unique keys, no
  NaN once a row is past warm-up, and value ranges (spread >= 0, rv >= 0, |imbalance| <= 1, ...).

Checks that are not plain per-column rules (monotone per product, sequence gaps, warm-up) run on
helper columns derived here first (`_derive_*`), so GE still evaluates and reports them.

Severity: `ERROR` outcomes make `ValidationReport.success` false, so a Dagster asset check can
block downstream assets; `WARN` outcomes are reported but do not fail the report (e.g. a sequence
gap means the exchange conflated or we missed messages: worth knowing, not worth stopping for).

Great Expectations takes ~5 s to import, so it is imported inside `run_suite` only; an ephemeral
context is built per call (no files written, progress bars and analytics off).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.featureset import FEATURE_SET, KEY_COLUMNS, MAX_GAP_S, WARMUP_S
from cryptovol.ticks import TICK_COLUMNS

NS = 1_000_000_000
#: How many example rows a failed expectation carries.
MAX_EXAMPLES = 5
#: Default: an event time may step back this much within one product before it is an error
#: (the exchange conflates; recorders reorder slightly across reconnects).
MONOTONE_TOLERANCE_S = 2.0
#: Default: a per-product jump in `sequence_num` above this is reported (WARN). The sequence is
#: connection-wide (shared by products and heartbeats), so small gaps are normal.
MAX_SEQUENCE_GAP = 100
#: Rows this long after the start of their segment must have every feature (the grid features
#: round to whole seconds, hence the small margin over WARMUP_S).
WARM_AFTER_S = WARMUP_S + 2.0

#: Columns a feature table may carry besides `FEATURE_SET.columns` (lineage and partitioning).
FEATURE_EXTRA_COLUMNS = ("feature_set_version", "source_partition", "source_offset", "date", "source")


class Severity(StrEnum):
    ERROR = "error"
    WARN = "warn"


class DataValidationError(ValueError):
    """Raised by `ValidationReport.raise_for_errors`; the message names what failed and where."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.message())
        self.report = report


@dataclass(frozen=True)
class Check:
    """One expectation of a suite: the GE expectation class name, its kwargs, a severity, and a
    one-line description of the rule for humans."""

    expectation: str
    kwargs: dict[str, Any]
    severity: Severity
    description: str

    @property
    def column(self) -> str | None:
        kw = self.kwargs
        if "column" in kw:
            return kw["column"]
        if "column_A" in kw:
            return f"{kw['column_A']},{kw['column_B']}"
        if "column_list" in kw:
            return ",".join(kw["column_list"])
        return None


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    severity: Severity
    unexpected_count: int
    examples: list[dict[str, Any]]
    description: str = ""
    observed: Any = None

    def describe(self) -> str:
        where = f" on column '{self.column}'" if self.column else ""
        head = f"[{self.severity.value.upper()}] {self.expectation}{where} ({self.description})"
        if self.success:
            return head + ": ok"
        lines = [f"{head}: {self.unexpected_count} unexpected row(s)"]
        if self.observed is not None and not self.examples:
            lines.append(f"    observed: {self.observed}")
        lines += [f"    e.g. {row}" for row in self.examples]
        return "\n".join(lines)


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of one suite on one table. `success` is False iff an ERROR check failed."""

    suite: str
    row_count: int
    results: list[ExpectationOutcome] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and r.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and r.severity is Severity.WARN]

    def message(self) -> str:
        failed = self.errors + self.warnings
        status = "passed" if self.success else "FAILED"
        head = (
            f"suite '{self.suite}' {status} on {self.row_count} rows: {len(self.errors)} error(s), "
            f"{len(self.warnings)} warning(s) out of {len(self.results)} expectations"
        )
        return "\n".join([head, *(r.describe() for r in failed)])

    def raise_for_errors(self) -> None:
        if not self.success:
            raise DataValidationError(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "success": self.success,
            "row_count": self.row_count,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "results": [
                {
                    "expectation": r.expectation,
                    "column": r.column,
                    "success": r.success,
                    "severity": r.severity.value,
                    "unexpected_count": r.unexpected_count,
                    "examples": r.examples,
                    "description": r.description,
                }
                for r in self.results
            ],
        }


# --- derived helper columns ----------------------------------------------------------------------


def _by_product_time(frame: pd.DataFrame) -> pd.core.groupby.DataFrameGroupBy:
    return frame.groupby("product_id", sort=False, observed=True)


def _derive_raw(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds `event_time_backstep_s` (how far a tick's event time lies before the latest earlier
    event time of its product, in file/arrival order; 0 when in order) and `sequence_gap` (jump
    of `sequence` from the previous tick of the product; NaN on the first tick, on a restart of
    the sequence (reconnect), or when sequences are unknown (< 0))."""
    out = frame.copy()
    if not {"product_id", "event_time_ns", "sequence"} <= set(out.columns) or out.empty:
        out["event_time_backstep_s"] = 0.0
        out["sequence_gap"] = np.nan
        return out
    groups = _by_product_time(out)
    prev_max = groups["event_time_ns"].cummax()
    prev_max = prev_max.groupby(out["product_id"], sort=False, observed=True).shift(1)
    back = (prev_max - out["event_time_ns"]).astype("float64") / NS
    out["event_time_backstep_s"] = back.clip(lower=0.0).fillna(0.0)
    seq = out["sequence"].astype("float64")
    gap = seq - seq.groupby(out["product_id"], sort=False, observed=True).shift(1)
    unknown = (seq < 0) | (gap <= 0)
    out["sequence_gap"] = gap.mask(unknown)
    return out


def _derive_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds `is_warm`: the row lies at least WARM_AFTER_S after the start of its segment (first
    row of the product in this table, or the first row after a gap > MAX_GAP_S); then marks the
    warm-up NaN of windowed features as expected by filling them with 0 in this copy, so a plain
    (fast) not-null expectation flags exactly the NaN past warm-up. GE's `row_condition` would do
    the same but costs ~3x more per expectation."""
    out = frame.copy()
    if not {"product_id", "event_time_ns"} <= set(out.columns) or out.empty:
        out["is_warm"] = False
        return out
    out["is_warm"] = warm_mask(out)
    cold = ~out["is_warm"].to_numpy()
    for spec in FEATURE_SET.features:
        if spec.window_s and spec.name in out.columns:
            out.loc[cold, spec.name] = out.loc[cold, spec.name].fillna(0.0)
    return out


def warm_mask(frame: pd.DataFrame) -> pd.Series:
    """True for feature rows at least WARM_AFTER_S after the start of their segment."""
    work = pd.DataFrame({"p": frame["product_id"].astype("string").fillna("").to_numpy(),
                         "t": frame["event_time_ns"].to_numpy(dtype=np.int64)})
    order = work.sort_values(["p", "t"], kind="stable")
    t = order["t"]
    new_product = order["p"].ne(order["p"].shift(1))
    gap = t.diff().fillna(0) > MAX_GAP_S * NS
    seg_id = (new_product | gap).cumsum()
    seg_start = t.groupby(seg_id).transform("min")
    warm = ((t - seg_start) >= WARM_AFTER_S * NS).sort_index()
    return pd.Series(warm.to_numpy(dtype=bool), index=frame.index)


# --- suites ----------------------------------------------------------------------------------------


def raw_tick_checks(
    *,
    monotone_tolerance_s: float = MONOTONE_TOLERANCE_S,
    max_sequence_gap: float = MAX_SEQUENCE_GAP,
) -> list[Check]:
    E, W = Severity.ERROR, Severity.WARN
    checks = [
        Check("ExpectTableColumnsToMatchSet", {"column_set": list(TICK_COLUMNS), "exact_match": False}, E,
              "every tick column is present"),
    ]
    for col in ("product_id", "event_time_ns", "sequence", "price", "best_bid", "best_ask",
                "receive_time_ns"):
        checks.append(Check("ExpectColumnValuesToNotBeNull", {"column": col}, E, f"{col} is required"))
    for col in ("price", "best_bid", "best_ask"):
        checks.append(Check("ExpectColumnValuesToBeBetween",
                            {"column": col, "min_value": 0, "strict_min": True}, E, f"{col} > 0"))
    for col in ("best_bid_qty", "best_ask_qty", "volume_24h"):
        checks.append(Check("ExpectColumnValuesToBeBetween", {"column": col, "min_value": 0}, E,
                            f"{col} >= 0 when known"))
    checks += [
        Check("ExpectColumnPairValuesAToBeGreaterThanB",
              {"column_A": "best_ask", "column_B": "best_bid", "or_equal": True}, E, "best_bid <= best_ask"),
        Check("ExpectColumnValuesToBeBetween",
              {"column": "event_time_backstep_s", "max_value": monotone_tolerance_s}, E,
              f"event time monotone per product within {monotone_tolerance_s:g} s"),
        Check("ExpectColumnValuesToBeBetween", {"column": "sequence_gap", "max_value": max_sequence_gap}, W,
              f"sequence gaps per product <= {max_sequence_gap:g}"),
        Check("ExpectCompoundColumnsToBeUnique", {"column_list": list(KEY_COLUMNS)}, W,
              "(product_id, event_time_ns, sequence) unique"),
    ]
    return checks


def feature_checks(*, expected_version: str | None = FEATURE_SET.version) -> list[Check]:
    E, W = Severity.ERROR, Severity.WARN
    checks = [
        Check("ExpectTableColumnsToMatchSet", {"column_set": FEATURE_SET.columns, "exact_match": False}, E,
              f"the columns of feature set {FEATURE_SET.version}"),
        Check("ExpectCompoundColumnsToBeUnique", {"column_list": list(KEY_COLUMNS)}, E,
              "one row per (product_id, event_time_ns, sequence)"),
    ]
    for col in KEY_COLUMNS:
        checks.append(Check("ExpectColumnValuesToNotBeNull", {"column": col}, E, f"key {col} is required"))
    for spec in FEATURE_SET.features:
        text = (f"no NaN once {WARM_AFTER_S:g} s past a segment start (warm-up over)" if spec.window_s
                else "never NaN")
        checks.append(Check("ExpectColumnValuesToNotBeNull", {"column": spec.name}, E, text))
    ranges: list[tuple[str, dict[str, Any], Severity, str]] = [
        ("mid", {"min_value": 0, "strict_min": True}, E, "mid > 0"),
        ("spread", {"min_value": 0}, E, "spread >= 0"),
        ("spread_bps", {"min_value": 0}, E, "spread_bps >= 0"),
        ("spread_bps", {"max_value": 100}, W, "spread_bps <= 100 (1%: a wide, suspicious book)"),
        ("book_imbalance", {"min_value": -1, "max_value": 1}, E, "|book_imbalance| <= 1"),
        ("tod_sin", {"min_value": -1, "max_value": 1}, E, "tod_sin in [-1, 1]"),
        ("tod_cos", {"min_value": -1, "max_value": 1}, E, "tod_cos in [-1, 1]"),
        ("volume_24h_chg_60s", {"min_value": -1}, E, "volume_24h change >= -100%"),
    ]
    for name in ("rv_30s", "rv_60s", "rv_300s", "ewma_vol", "vol_of_vol", "tick_rate_30s", "tick_rate_60s"):
        ranges.append((name, {"min_value": 0}, E, f"{name} >= 0"))
    for name in ("ret_1s", "ret_5s", "ret_30s", "ret_60s"):
        ranges.append((name, {"min_value": -0.2, "max_value": 0.2}, W, f"|{name}| <= 0.2 (a 20% move)"))
    for col, bounds, sev, text in ranges:
        checks.append(Check("ExpectColumnValuesToBeBetween", {"column": col, **bounds}, sev, text))
    if expected_version is not None:
        checks.append(Check(
            "ExpectColumnValuesToBeInSet", {"column": "feature_set_version", "value_set": [expected_version]},
            E, f"rows computed by feature set {expected_version}",
        ))
    return checks


def validate_raw_ticks(
    ticks: pd.DataFrame,
    *,
    monotone_tolerance_s: float = MONOTONE_TOLERANCE_S,
    max_sequence_gap: float = MAX_SEQUENCE_GAP,
) -> ValidationReport:
    """Run the raw-tick suite on a tick table (`TICK_COLUMNS`, rows in arrival/file order).

    Example rows name their position in `ticks` as `row` (0-based), plus the key columns.
    """
    checks = raw_tick_checks(monotone_tolerance_s=monotone_tolerance_s, max_sequence_gap=max_sequence_gap)
    frame = _derive_raw(ticks.reset_index(drop=True))
    return run_suite("raw_ticks", frame, checks, example_columns=list(KEY_COLUMNS))


def validate_features(
    features: pd.DataFrame, *, expected_version: str | None = FEATURE_SET.version
) -> ValidationReport:
    """Run the feature suite on a feature table (`FEATURE_SET.columns`, optional lineage columns).

    The version check runs only when the table has a `feature_set_version` column.
    """
    if "feature_set_version" not in features.columns:
        expected_version = None
    checks = feature_checks(expected_version=expected_version)
    frame = _derive_features(features.reset_index(drop=True))
    return run_suite("features", frame, checks, example_columns=list(KEY_COLUMNS))


# --- running a suite -------------------------------------------------------------------------------


def _quiet_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations."):
            logging.getLogger(name).setLevel(logging.NOTSET)  # inherit WARNING from the root GE logger


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else str(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _examples(frame: pd.DataFrame, index: Sequence[Any], check: Check, key_columns: list[str]) -> list[dict]:
    cols = [c for c in key_columns if c in frame.columns]
    for c in (check.column or "").split(","):
        if c and c in frame.columns and c not in cols:
            cols.append(c)
    rows = []
    for idx in list(index)[:MAX_EXAMPLES]:
        if idx not in frame.index:
            continue
        row = frame.loc[idx, cols]
        rows.append({"row": _json_value(idx), **{c: _json_value(row[c]) for c in cols}})
    return rows


def run_suite(
    name: str, frame: pd.DataFrame, checks: list[Check], *, example_columns: list[str] | None = None
) -> ValidationReport:
    """Evaluate `checks` on `frame` with Great Expectations (whole-dataframe batch)."""
    _quiet_gx()
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    _quiet_gx()  # again: importing GE configures its loggers
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch_def = (
        context.data_sources.add_pandas(f"{name}_source")
        .add_dataframe_asset(f"{name}_frame")
        .add_batch_definition_whole_dataframe(f"{name}_batch")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    present = set(frame.columns)
    missing_column_outcomes: list[ExpectationOutcome] = []
    evaluated: list[Check] = []
    for check in checks:
        cols = [c for c in (check.column or "").split(",") if c]
        absent = [c for c in cols if c not in present]
        if absent:  # reported without asking GE (which would only say "exception")
            missing_column_outcomes.append(ExpectationOutcome(
                expectation=_snake(check.expectation), column=check.column, success=False,
                severity=check.severity, unexpected_count=len(frame), examples=[],
                description=check.description, observed=f"missing column(s) {absent}",
            ))
            continue
        # `meta.check` ties GE's result back to our check (GE normalises kwargs, reorders results).
        suite.add_expectation(getattr(gxe, check.expectation)(**check.kwargs, meta={"check": len(evaluated)}))
        evaluated.append(check)
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}_validation", data=batch_def, suite=suite)
    )
    result = validation.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES},
    )
    by_check = {int(res.expectation_config.meta["check"]): res for res in result.results}
    outcomes: list[ExpectationOutcome] = []
    keys = example_columns or []
    for number, check in enumerate(evaluated):
        res = by_check.get(number)
        if res is None:
            raise RuntimeError(f"Great Expectations returned no result for {check}")
        info = res.result or {}
        raised = bool(res.exception_info and _raised(res.exception_info))
        index = info.get("unexpected_index_list") or info.get("partial_unexpected_index_list") or []
        observed = info.get("observed_value")
        if raised:
            observed = f"exception: {_exception_message(res.exception_info)}"
        elif check.expectation == "ExpectTableColumnsToMatchSet" and not res.success:
            missing = (info.get("details") or {}).get("mismatched", {}).get("missing")
            observed = f"missing column(s) {missing}" if missing else info.get("details", observed)
        outcomes.append(ExpectationOutcome(
            expectation=_snake(check.expectation),
            column=check.column,
            success=bool(res.success) and not raised,
            severity=check.severity,
            unexpected_count=int(info.get("unexpected_count") or (0 if res.success else len(index))),
            examples=[] if res.success else _examples(frame, index, check, keys),
            description=check.description,
            observed=observed,
        ))
    return ValidationReport(suite=name, row_count=len(frame), results=missing_column_outcomes + outcomes)


def _raised(info: Any) -> bool:
    if isinstance(info, dict):
        if "raised_exception" in info:
            return bool(info["raised_exception"])
        return any(_raised(v) for v in info.values())
    return bool(getattr(info, "raised_exception", False))


def _exception_message(info: Any) -> str:
    if isinstance(info, dict):
        if info.get("exception_message"):
            return str(info["exception_message"])
        for v in info.values():
            msg = _exception_message(v)
            if msg:
                return msg
        return ""
    return str(getattr(info, "exception_message", "") or "")


def _snake(name: str) -> str:
    """`ExpectColumnValuesToBeBetween` -> `expect_column_values_to_be_between` (GE's type name)."""
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            prev = name[i - 1]
            if not prev.isupper() or (i + 1 < len(name) and name[i + 1].islower()):
                out.append("_")
        out.append(ch.lower())
    return "".join(out)


__all__ = [
    "Check",
    "DataValidationError",
    "ExpectationOutcome",
    "Severity",
    "ValidationReport",
    "feature_checks",
    "raw_tick_checks",
    "run_suite",
    "validate_features",
    "validate_raw_ticks",
]
