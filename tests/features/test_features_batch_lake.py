"""Batch featurizer and lake: landing files in, the same rows compute_features gives out."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake
from featkit import S, random_ticks

from cryptovol import batch, cli, delta, lake
from cryptovol.features import compute_features
from cryptovol.featureset import FEATURE_SET, FeatureSchemaError
from cryptovol.ticks import format_timestamp_ns, landing_record, tick_from_landing, ticks_to_frame

DAY1, DAY2 = "2026-01-01", "2026-01-02"
MIDNIGHT = int(pd.Timestamp(DAY2, tz="UTC").value)


def _num(x: float) -> str:
    return "" if not np.isfinite(x) else repr(float(x))


def landing_lines(ticks: pd.DataFrame, *, timestamp=format_timestamp_ns) -> list[str]:
    """One landing line per tick, built with `landing_record` like the ingestor does."""
    lines = []
    for row in ticks.itertuples(index=False):
        ticker = {
            "type": "ticker", "product_id": row.product_id, "price": _num(row.price),
            "volume_24_h": _num(row.volume_24h), "best_bid": _num(row.best_bid),
            "best_ask": _num(row.best_ask), "best_bid_quantity": _num(row.best_bid_qty),
            "best_ask_quantity": _num(row.best_ask_qty),
        }
        record = landing_record(ticker, envelope_timestamp=timestamp(row.event_time_ns),
                                sequence_num=row.sequence, event_type="update",
                                receive_time_ns=row.receive_time_ns)
        lines.append(json.dumps(record, separators=(",", ":")))
    return lines


BAD_LINES = [
    ('{"ticker": {"product_id": "BTC-USD"', "bad_json"),
    ('{"ticker": {"type": "ticker", "product_id": "BTC-USD", "price": "1", "best_bid": "2", '
     '"best_ask": "1"}, "timestamp": "2026-01-01T12:00:00.000000000Z", "sequence_num": 1}', "crossed_book"),
    ('{"ticker": {"type": "ticker", "product_id": "BTC-USD", "price": "1", "best_ask": "1"}, '
     '"timestamp": "2026-01-01T12:00:00.000000000Z", "sequence_num": 2}', "missing_field"),
    ('{"ticker": {"type": "ticker", "product_id": "BTC-USD", "price": "x1", "best_bid": "1", '
     '"best_ask": "1"}, "timestamp": "2026-01-01T12:00:00.000000000Z", "sequence_num": 3}', "non_numeric"),
    ('{"ticker": {"type": "ticker", "product_id": "BTC-USD", "price": "1", "best_bid": "1", '
     '"best_ask": "1"}, "timestamp": "yesterday-ish", "sequence_num": 4}', "bad_timestamp"),
]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def reference_ticks(lines: list[str], product: str = "BTC-USD") -> pd.DataFrame:
    """What the stream would get: `tick_from_landing` line by line, bad lines skipped."""
    ticks = []
    for line in lines:
        if not line.strip():
            continue
        try:
            tick = tick_from_landing(json.loads(line))
        except ValueError:
            continue
        if tick.product_id == product:
            ticks.append(tick)
    return ticks_to_frame(ticks)


def day_ticks(seed: int = 0, start_s: float = 12 * 3600.0, duration_s: float = 900.0) -> pd.DataFrame:
    return random_ticks(duration_s, seed=seed, rate_hz=3.0, t0=int(pd.Timestamp(DAY1, tz="UTC").value)
                        + int(start_s * S))


def test_landing_reader_equals_tick_from_landing_and_counts_bad_lines(data_dir: Path):
    ticks = day_ticks(seed=1, duration_s=300)
    lines = landing_lines(ticks)
    other = landing_lines(ticks.iloc[:2].assign(product_id="ETH-USD"))
    mixed = lines[:100] + [b for b, _ in BAD_LINES] + [""] + other + lines[100:]
    path = write_lines(lake.landing_path(data_dir, "BTC-USD", DAY1), mixed)
    got = lake.read_landing_file(path, product="BTC-USD")
    pd.testing.assert_frame_equal(got.ticks, reference_ticks(mixed))
    expected = Counter(reason for _, reason in BAD_LINES)
    expected["other_product"] = 2
    assert got.invalid == dict(expected)
    assert got.lines == len(mixed) - 1  # the empty line is not a line of data
    # a clean file takes the whole-file fast path; it must give the same frame as the line path
    clean = write_lines(data_dir / "clean.ndjson", lines)
    assert lake._fast_read(clean, None) is not None, "a clean file must take the fast path"
    fast = lake.read_landing_file(clean)
    pd.testing.assert_frame_equal(fast.ticks, lake.parse_landing_lines(lines).ticks)
    pd.testing.assert_frame_equal(fast.ticks, reference_ticks(lines))
    assert fast.invalid == {}


def test_non_canonical_timestamps_parse_like_parse_timestamp_ns(data_dir: Path):
    ticks = day_ticks(seed=2, duration_s=30)

    def offset_style(ns: int) -> str:  # "+00:00" offset and microseconds, no "Z"
        return pd.Timestamp(int(ns), tz="UTC").isoformat(timespec="microseconds")

    lines = landing_lines(ticks, timestamp=offset_style)
    got = lake.read_landing_file(write_lines(data_dir / "x.ndjson", lines))
    pd.testing.assert_frame_equal(got.ticks, reference_ticks(lines))
    assert (got.ticks["event_time_ns"] % 1000 == 0).all()


def test_featurize_day_equals_compute_features_and_writes_contract_parquet(settings):
    ticks = day_ticks(seed=3)
    lines = landing_lines(ticks)
    mixed = lines[:500] + [b for b, _ in BAD_LINES] + lines[500:]
    write_lines(lake.landing_path(settings, "BTC-USD", DAY1), mixed)
    result = batch.featurize_day(settings, "BTC-USD", DAY1)
    expect = compute_features(reference_ticks(mixed))
    assert result.rows == len(expect) == len(ticks)
    assert result.invalid_count == len(BAD_LINES) and result.context_rows == 0
    assert result.path == lake.LakePaths.of(settings).feature_part("BTC-USD", DAY1)
    built = json.loads(result.path.read_text())
    read = lake.read_features_at(settings)
    assert built == {"table_version": read.version, "rows": len(ticks)}
    table = DeltaTable(str(settings.features_dir))
    assert table.metadata().configuration["cryptovol.feature_set_version"] == FEATURE_SET.version
    frame = read.frame
    assert set(frame["feature_set_version"]) == {FEATURE_SET.version}
    FEATURE_SET.validate_columns(list(frame.columns))
    got = frame[FEATURE_SET.columns].astype({"product_id": "string"})
    pd.testing.assert_frame_equal(got, expect, check_exact=True)
    assert result.warm_rows == int(expect[FEATURE_SET.names].notna().all(axis=1).sum()) > 0
    # a rebuild replaces the partition in one transaction: same rows, one version later
    batch.featurize_day(settings, "BTC-USD", DAY1)
    again = lake.read_features_at(settings)
    assert again.version == read.version + 1
    pd.testing.assert_frame_equal(again.frame, read.frame)


def test_day_boundary_uses_previous_day_tail_as_context(settings):
    # 20 minutes straddling midnight, one product, split into the two day files by event time
    ticks = random_ticks(1200, seed=4, rate_hz=3.0, t0=MIDNIGHT - 600 * S)
    is_day2 = ticks["event_time_ns"].to_numpy() >= MIDNIGHT
    write_lines(lake.landing_path(settings, "BTC-USD", DAY1), landing_lines(ticks.loc[~is_day2]))
    write_lines(lake.landing_path(settings, "BTC-USD", DAY2), landing_lines(ticks.loc[is_day2]))
    whole = compute_features(reference_ticks(landing_lines(ticks)))
    result = batch.featurize_day(settings, "BTC-USD", DAY2)
    assert result.context_rows > 0
    got = lake.read_features(settings, products=["BTC-USD"], start=DAY2, end=DAY2)
    expect = whole.loc[is_day2].reset_index(drop=True)
    pd.testing.assert_frame_equal(got[FEATURE_SET.columns], expect, check_exact=True)
    assert got["rv_300s"].notna().all()  # warm from the first tick after midnight
    # without the previous day the same rows start cold
    os.remove(lake.landing_path(settings, "BTC-USD", DAY1))
    batch.featurize_day(settings, "BTC-USD", DAY2)
    cold = lake.read_features(settings, start=DAY2, end=DAY2)
    assert cold["rv_300s"].isna().sum() > 0 and len(cold) == len(expect)


def test_read_landing_tail_reads_back_from_the_end_until_it_has_the_window(data_dir: Path):
    ticks = day_ticks(seed=11, duration_s=600)
    path = write_lines(data_dir / "day.ndjson", landing_lines(ticks))
    since = int(ticks["event_time_ns"].iloc[-1]) - 320 * S
    expect = reference_ticks(landing_lines(ticks.loc[ticks["event_time_ns"] >= since]))
    for chunk in (4096, 1 << 20):  # a few lines per chunk (grows 4x a time), and the whole file
        got = lake.read_landing_tail(path, since, chunk_bytes=chunk)
        pd.testing.assert_frame_equal(got, expect)


def _stream_rows(feats: pd.DataFrame, first_offset: int):
    """Feature rows as the streaming featurizer commits them (partition 0, consecutive offsets)."""
    import pyarrow as pa

    table = lake.feature_table(feats)
    offsets = pa.array(np.arange(first_offset, first_offset + len(feats), dtype=np.int64))
    table = table.set_column(table.schema.get_field_index("source_partition"), "source_partition",
                             pa.array(np.zeros(len(feats), dtype=np.int32)))
    return table.set_column(table.schema.get_field_index("source_offset"), "source_offset", offsets)


def test_stream_appends_and_a_batch_rebuild_leave_each_key_once_for_every_reader(settings):
    ticks = day_ticks(seed=5, duration_s=200)
    feats = compute_features(ticks)
    root = settings.features_dir
    # two stream flushes that overlap (rows 300..399 in both, e.g. a restart): each key once
    first = delta.append_exactly_once(root, "features", _stream_rows(feats.iloc[:400], 0), "g:t")
    second = delta.append_exactly_once(root, "features", _stream_rows(feats.iloc[300:], 300), "g:t")
    assert (first.rows, second.rows, second.skipped) == (400, len(feats) - 400, 100)
    got = lake.read_features(settings)
    pd.testing.assert_frame_equal(got[FEATURE_SET.columns], feats, check_exact=True)
    # a batch rebuild covering the first 100 rows replaces those rows; newer stream rows stay
    marked = feats.iloc[:100].assign(spread=-1.0)
    lake.write_feature_part(marked, settings, "BTC-USD", DAY1)
    got = lake.read_features(settings)
    assert len(got) == len(feats)
    assert (got["spread"].iloc[:100] == -1.0).all() and (got["spread"].iloc[100:] >= 0).all()
    # a late stream flush of rows the rebuild covers is dropped (the batch's app transaction)
    late = delta.append_exactly_once(root, "features", _stream_rows(feats.iloc[50:100], 50), "other:t",
                                     batch_guard=True)
    assert (late.rows, late.skipped) == (0, 50)
    con = lake.connect(settings)
    try:
        assert con.sql("SELECT count(*), count(*) FILTER (spread = -1) FROM features").fetchall() == [
            (len(feats), 100)
        ]
    finally:
        con.close()
    # a second engine (pyarrow on the Delta table's files, no cryptovol code) reads the same rows
    other = DeltaTable(str(root)).to_pyarrow_dataset().to_table().to_pandas()
    other = other.sort_values(["product_id", "event_time_ns", "sequence"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(other[FEATURE_SET.columns].astype({"product_id": "string"}),
                                  got[FEATURE_SET.columns], check_exact=True)
    assert lake.read_features(settings, products=["ETH-USD"]).empty
    assert lake.read_features(settings, start=DAY2).empty
    empty = lake.read_features(settings, end="2025-12-31")
    assert list(empty.columns)[:3] == ["product_id", "event_time_ns", "sequence"]


def test_time_travel_reads_exactly_the_rows_of_a_recorded_version(settings):
    feats = compute_features(day_ticks(seed=12, duration_s=120))
    root = settings.features_dir
    delta.append_exactly_once(root, "features", _stream_rows(feats.iloc[:200], 0), "g:t")
    recorded = lake.read_features_at(settings)
    delta.append_exactly_once(root, "features", _stream_rows(feats.iloc[200:], 200), "g:t")
    lake.write_feature_part(feats.iloc[:50].assign(spread=-1.0), settings, "BTC-USD", DAY1)
    delta.maintain(root, "features")  # compaction + vacuum (files kept for the retention) keep it
    now = lake.read_features(settings)
    assert len(now) == len(feats) and now.attrs["lake_version"] > recorded.version
    back = lake.read_features(settings, as_of_version=recorded.version)
    assert back.attrs["lake_version"] == recorded.version
    pd.testing.assert_frame_equal(back, recorded.frame, check_exact=True)


def test_another_feature_set_version_is_refused_not_merged_or_relabelled(settings):
    import pyarrow as pa
    from deltalake.exceptions import SchemaMismatchError

    feats = compute_features(day_ticks(seed=6, duration_s=20))
    lake.write_feature_part(feats, settings, "BTC-USD", DAY1)
    table = DeltaTable(str(settings.features_dir))
    table.alter.set_table_properties({"cryptovol.feature_set_version": "0.0.1"}, raise_if_not_exists=False)
    with pytest.raises(FeatureSchemaError, match="0.0.1"):
        lake.read_features(settings)
    with pytest.raises(FeatureSchemaError, match="archive-features"):  # no write of another version
        lake.write_feature_part(feats, settings, "BTC-USD", DAY1)
    assert len(lake.read_features(settings, check_version=False)) == len(feats)
    # the table's schema is enforced: rows with another column set never go in
    extra = lake.feature_table(feats).append_column("new_feature", pa.array(np.zeros(len(feats))))
    with pytest.raises(SchemaMismatchError):
        write_deltalake(table, extra, mode="append")
    # the explicit migration: archive the old table, rebuild under the current version
    assert cli.main(["lake", "archive-features"]) == 0
    lake.write_feature_part(feats, settings, "BTC-USD", DAY1)
    assert len(lake.read_features(settings)) == len(feats)
    [archived] = (settings.data_dir / "archive").glob("features-0.0.1-v*")
    assert len(DeltaTable(str(archived)).to_pyarrow_table()) == len(feats)


def test_duckdb_views_over_landing_and_features(settings):
    ticks = day_ticks(seed=7, duration_s=400)
    write_lines(lake.landing_path(settings, "BTC-USD", DAY1), landing_lines(ticks))
    result = batch.featurize_day(settings, "BTC-USD", DAY1)
    con = lake.connect(settings)
    try:
        raw = con.sql("SELECT count(*), min(event_time_ns), max(best_ask) FROM raw_ticks").fetchall()[0]
        assert raw[0] == len(ticks)
        assert raw[1] // 1000 == int(ticks["event_time_ns"].min()) // 1000  # microsecond timestamps
        assert raw[2] == pytest.approx(ticks["best_ask"].max())
        rows, warm, product, day = con.sql(
            "SELECT count(*), count(rv_300s), any_value(product), any_value(date)::VARCHAR FROM features"
        ).fetchall()[0]
        assert rows == result.rows and warm == result.warm_rows  # warm-up NaN is stored as NULL
        assert (product, day) == ("BTC-USD", DAY1)
        assert con.sql("SELECT count(*) FROM predictions").fetchall() == [(0,)]
    finally:
        con.close()
    empty = lake.connect(settings.data_dir / "nothing-here")
    assert empty.sql("SELECT count(*) FROM features").fetchall() == [(0,)]
    empty.close()


def test_cli_build_only_stale_then_explicit_and_list(settings, capsys):
    for seed, product in ((8, "BTC-USD"), (9, "ETH-USD")):
        ticks = day_ticks(seed=seed, duration_s=120).assign(product_id=product)
        write_lines(lake.landing_path(settings, product, DAY1), landing_lines(ticks))
    assert cli.main(["features", "build"]) == 0
    out = capsys.readouterr().out
    assert "built 2 partition(s)" in out and "BTC-USD 2026-01-01" in out
    assert cli.main(["features", "build"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert cli.main(["features", "build", "--product", "eth-usd", "--date", DAY1]) == 0
    assert "built 1 partition(s)" in capsys.readouterr().out
    assert cli.main(["features", "build", "--date", "2020-01-01"]) == 1
    capsys.readouterr()
    assert cli.main(["features", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ETH-USD" in listing and "batch" in listing
    # an appended landing file makes its partition (and the next day's) stale again
    path = lake.landing_path(settings, "BTC-USD", DAY1)
    later = lake.LakePaths.of(settings).feature_part("BTC-USD", DAY1).stat().st_mtime_ns + 10**9
    os.utime(path, ns=(later, later))
    assert batch.stale_partitions(settings) == [("BTC-USD", DAY1)]


def test_landing_summary_counts_rows_gaps_and_bad_lines(settings):
    ticks = random_ticks(200, seed=10, rate_hz=2.0, gaps=((100.0, 40.0),),
                         t0=int(pd.Timestamp(DAY1, tz="UTC").value) + 3600 * S)
    lines = landing_lines(ticks) + [BAD_LINES[0][0]]
    write_lines(lake.landing_path(settings, "BTC-USD", DAY1), lines)
    summary = lake.landing_summary(settings, "BTC-USD", DAY1)
    assert summary.rows == len(ticks) and summary.dead_lettered == 1
    assert summary.dead_letter_reasons == {"bad_json": 1}
    assert summary.gaps == 1 and summary.largest_gap_s > 40
    assert summary.first_event_ns == int(ticks["event_time_ns"].min())
    assert lake.list_landing_partitions(settings) == [("BTC-USD", DAY1)]
    frame = lake.read_landing_day(settings, "BTC-USD", DAY1)
    assert len(frame) == len(ticks) and frame.attrs["invalid"] == {"bad_json": 1}
