"""Great Expectations suites for raw ticks and feature tables: pass on good synthetic and recorded
data, fail on corrupted data naming the expectation, the column and example rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptovol.features import compute_features_multi
from cryptovol.featureset import FEATURE_SET
from cryptovol.recorded import load_ticks
from cryptovol.simulator.synthetic import generate_ticks_frame
from cryptovol.validation import DataValidationError, Severity, validate_features, validate_raw_ticks


@pytest.fixture(scope="module")
def ticks() -> pd.DataFrame:
    return generate_ticks_frame(("BTC-USD", "ETH-USD"), duration_s=480, seed=3)


@pytest.fixture(scope="module")
def features(ticks: pd.DataFrame) -> pd.DataFrame:
    frame = compute_features_multi(ticks)
    frame["feature_set_version"] = FEATURE_SET.version
    return frame


def _failed(report, expectation: str, column: str | None):
    hits = [r for r in report.results
            if not r.success and r.expectation == expectation and r.column == column]
    assert hits, f"expected {expectation} on {column} to fail:\n{report.message()}"
    return hits[0]


def test_good_synthetic_ticks_and_features_pass(ticks, features):
    raw = validate_raw_ticks(ticks)
    assert raw.success and not raw.warnings, raw.message()
    assert len(raw.results) >= 15 and all(r.success for r in raw.results)
    feats = validate_features(features)
    assert feats.success and not feats.warnings, feats.message()
    assert features["rv_300s"].notna().sum() > 500  # the no-NaN-after-warm-up rule had rows to check
    feats.raise_for_errors()  # no exception


def test_corrupted_ticks_fail_naming_expectation_column_and_rows(ticks):
    bad = ticks.copy()
    bad.loc[10, "best_bid"] = bad.loc[10, "best_ask"] + 5.0  # crossed book
    bad.loc[20, "price"] = -1.0
    bad.loc[30, "event_time_ns"] -= 60 * 1_000_000_000  # a minute back in time
    bad.loc[40, "product_id"] = pd.NA
    report = validate_raw_ticks(bad)
    assert not report.success
    crossed = _failed(report, "expect_column_pair_values_a_to_be_greater_than_b", "best_ask,best_bid")
    assert crossed.severity is Severity.ERROR and crossed.unexpected_count == 1
    assert crossed.examples[0]["row"] == 10
    assert crossed.examples[0]["event_time_ns"] == int(ticks.loc[10, "event_time_ns"])
    price = _failed(report, "expect_column_values_to_be_between", "price")
    assert [e["row"] for e in price.examples] == [20] and price.examples[0]["price"] == -1.0
    back = _failed(report, "expect_column_values_to_be_between", "event_time_backstep_s")
    assert 30 in [e["row"] for e in back.examples]
    assert _failed(report, "expect_column_values_to_not_be_null", "product_id").unexpected_count == 1
    text = report.message()
    assert "best_ask,best_bid" in text and "event_time_backstep_s" in text and "'row': 20" in text
    with pytest.raises(DataValidationError, match="expect_column_values_to_be_between"):
        report.raise_for_errors()


def test_sequence_gaps_are_a_warning_not_an_error(ticks):
    gappy = ticks.copy()
    btc = gappy.index[gappy["product_id"] == "BTC-USD"]
    gappy.loc[btc[200:], "sequence"] += 5_000
    report = validate_raw_ticks(gappy, max_sequence_gap=100)
    assert report.success, report.message()
    warn = _failed(report, "expect_column_values_to_be_between", "sequence_gap")
    assert warn.severity is Severity.WARN and warn.examples[0]["row"] == btc[200]


def test_corrupted_features_fail_naming_expectation_column_and_rows(features):
    bad = features.copy()
    warm_row = int(np.flatnonzero(bad["rv_300s"].notna().to_numpy())[200])  # well past warm-up
    bad.loc[warm_row, "rv_60s"] = np.nan
    bad.loc[3, "book_imbalance"] = 1.5
    bad.loc[4, "spread"] = -0.01
    bad = pd.concat([bad, bad.iloc[[7]]], ignore_index=True)  # a duplicated key
    bad.loc[len(bad) - 1, "feature_set_version"] = "0.9.0"
    report = validate_features(bad.drop(columns=["tod_cos"]))
    assert not report.success
    nan = _failed(report, "expect_column_values_to_not_be_null", "rv_60s")
    assert [e["row"] for e in nan.examples] == [warm_row] and nan.examples[0]["rv_60s"] is None
    imb = _failed(report, "expect_column_values_to_be_between", "book_imbalance")
    assert imb.examples[0]["book_imbalance"] == 1.5
    assert _failed(report, "expect_column_values_to_be_between", "spread").examples[0]["row"] == 4
    assert _failed(report, "expect_compound_columns_to_be_unique", "product_id,event_time_ns,sequence")
    assert _failed(report, "expect_column_values_to_be_in_set", "feature_set_version").unexpected_count == 1
    schema = _failed(report, "expect_table_columns_to_match_set", None)
    assert "tod_cos" in str(schema.observed)
    assert "tod_cos" in report.message()


def _recorded(shared: Path) -> list[list[Path]]:
    dec = shared / "coinbase_advtrade_ticker_btcusd_2025-12" / "commit_e8e0fb4"
    apr = shared / "coinbase_advtrade_ticker_2026-04_slices"
    return [
        [dec / "ticks_BTCUSD_20251206_011247.ndjson.gz", dec / "ticks_BTCUSD_20251206_013105.ndjson.gz"],
        [apr / "streakh" / "raw_10min_slice.ndjson.gz"],  # BTC-USD and ETH-USD interleaved
    ]


def test_suites_pass_on_recorded_coinbase_data(shared_data: Path):
    for paths in _recorded(shared_data):
        ticks = load_ticks(paths)
        raw = validate_raw_ticks(ticks)
        assert raw.success, f"{[p.name for p in paths]}: {raw.message()}"
        features = compute_features_multi(ticks)
        report = validate_features(features)
        assert report.success, f"{[p.name for p in paths]}: {report.message()}"
        assert features["rv_300s"].notna().any()  # rows past warm-up were checked for NaN
