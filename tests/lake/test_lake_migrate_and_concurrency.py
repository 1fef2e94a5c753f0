"""The Delta tables under stress a user relies on: an old Parquet lake migrated without losing or
duplicating a row (and re-running the migration changes nothing), two writers committing the same
flush at the same moment, and a second engine reading what cryptovol reads."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from cryptovol import delta, lake
from cryptovol.cli import main
from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET
from cryptovol.scoring.sink import PREDICTION_COLUMNS, write_prediction_parts

NS = 1_000_000_000
T0 = 1_767_308_400 * NS  # 2026-01-01T23:00Z: an hour before midnight
KEY = ["product_id", "event_time_ns", "sequence"]


def _features(n: int, product: str = "BTC-USD", t0: int = T0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"product_id": product, "event_time_ns": t0 + np.arange(n, dtype=np.int64) * NS,
                          "sequence": np.arange(n, dtype=np.int64)})
    for name in FEATURE_NAMES:
        frame[name] = rng.random(n)
    return frame


def _legacy_part(path: Path, frame: pd.DataFrame, offsets: np.ndarray | None = None,
                 version: str = FEATURE_SET.version) -> None:
    """A part file as the pre-Delta writers left it (hive dirs product=/date=, file metadata)."""
    table = pa.Table.from_pandas(frame.assign(feature_set_version=version), preserve_index=False)
    if offsets is not None:
        table = table.append_column("source_partition", pa.array(np.zeros(len(frame), np.int32)))
        table = table.append_column("source_offset", pa.array(offsets.astype(np.int64)))
    meta = {b"cryptovol.feature_set_version": version.encode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), path)


def test_migrate_converts_an_old_parquet_lake_row_for_row_and_is_idempotent(data_dir, capsys):
    feats = _features(7200)  # 23:00 -> 01:00: two dates
    day1 = feats["event_time_ns"] < T0 + 3600 * NS
    old = data_dir / "features" / "product=BTC-USD"
    # day 1: a batch part for the first 3000 rows + overlapping stream parts (rows 2500..3599)
    _legacy_part(old / "date=2026-01-01" / "part-batch.parquet", feats.iloc[:3000])
    _legacy_part(old / "date=2026-01-01" / "part-stream-a.parquet", feats.iloc[2500:3300],
                 np.arange(2500, 3300))
    _legacy_part(old / "date=2026-01-01" / "part-stream-b.parquet", feats.iloc[3200:3600],
                 np.arange(3200, 3600))
    # day 2: stream parts only, one part written twice (a pre-Delta restart)
    day2 = feats.loc[~day1]
    _legacy_part(old / "date=2026-01-02" / "part-stream-c.parquet", day2.iloc[:2000], np.arange(3600, 5600))
    _legacy_part(old / "date=2026-01-02" / "part-stream-d.parquet", day2.iloc[1500:], np.arange(5100, 7200))
    preds = feats.iloc[::100][KEY].assign(
        spike_probability=0.5, spike_flag=False, model_name="m", model_version="1", model_alias="champion",
        feature_set_version=FEATURE_SET.version, scored_at_ns=1, scoring_latency_s=0.01)
    old_preds = data_dir / "predictions" / "product=BTC-USD" / "date=2026-01-01"
    old_preds.mkdir(parents=True)
    first = preds[preds["event_time_ns"] < T0 + 3600 * NS]
    pq.write_table(pa.Table.from_pandas(first.loc[:, list(PREDICTION_COLUMNS)], preserve_index=False),
                   old_preds / "part-1.parquet")
    rescored = first.iloc[:5].assign(scored_at_ns=2, model_version="2")  # re-scored after a restart
    pq.write_table(pa.Table.from_pandas(rescored.loc[:, list(PREDICTION_COLUMNS)], preserve_index=False),
                   old_preds / "part-2.parquet")

    from cryptovol.delta_migrate import read_legacy_features

    expected = read_legacy_features(data_dir / "features")
    assert len(expected) == len(feats)  # the old readers' rules: every key once

    assert main(["lake", "migrate"]) == 0
    out = capsys.readouterr().out
    assert f"{len(feats):,} rows committed" in out, out

    got = lake.read_features(data_dir)
    pd.testing.assert_frame_equal(got[FEATURE_SET.columns].astype({"product_id": object}),
                                  feats[FEATURE_SET.columns], check_exact=True)
    assert lake.list_feature_partitions(data_dir) == [("BTC-USD", "2026-01-01"), ("BTC-USD", "2026-01-02")]
    assert not list((data_dir / "features").glob("product=*"))  # old files moved away, kept
    assert len(list((data_dir / "pre-delta" / "features").rglob("*.parquet"))) == 5
    predictions = lake.read_predictions(data_dir)
    assert len(predictions) == len(first)
    latest = predictions.set_index("sequence").loc[rescored["sequence"], "model_version"]
    assert set(latest) == {"2"}  # the latest score per key, as drift read the old layout
    # the batch build survives the migration: stream rows it covers are not appended again
    assert DeltaTable(str(data_dir / "features")).transaction_version(
        delta.batch_app_id("BTC-USD", "2026-01-01")) == int(feats["event_time_ns"].iloc[2999])

    version = lake.feature_table_version(data_dir)
    assert main(["lake", "migrate"]) == 0  # nothing left to migrate: no change
    assert "0 partition(s) migrated" in capsys.readouterr().out
    assert lake.feature_table_version(data_dir) == version


def test_two_writers_committing_the_same_flush_at_once_write_it_once(tmp_path):
    """Two group members (or a member and its zombie after a rebalance) flush the same source
    offsets at the same moment: the Delta log lets one commit win, the other re-reads and skips."""
    from cryptovol.lake import feature_table

    root = tmp_path / "features"
    feats = _features(400)
    base = feature_table(feats)
    rows = base.set_column(base.schema.get_field_index("source_partition"), "source_partition",
                           pa.array(np.zeros(len(feats), np.int32)))
    rows = rows.set_column(rows.schema.get_field_index("source_offset"), "source_offset",
                           pa.array(np.arange(len(feats), dtype=np.int64)))
    delta.ensure_table(root, "features")
    for round_ in range(4):
        chunk = rows.slice(round_ * 100, 100)
        barrier = threading.Barrier(3)
        results = []

        def flush(chunk=chunk, barrier=barrier, results=results) -> None:
            barrier.wait()
            results.append(delta.append_exactly_once(root, "features", chunk, "g:ticks.raw"))

        threads = [threading.Thread(target=flush) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(r.rows for r in results) == [0, 0, 100], results
    table = DeltaTable(str(root))
    assert table.transaction_version("g:ticks.raw:0") == 400
    other = table.to_pyarrow_dataset().to_table(columns=KEY).to_pandas()  # pyarrow alone
    assert len(other) == 400 and not other.duplicated(KEY).any()


def test_scorer_flushes_of_one_product_in_parallel_keep_one_prediction_per_key(tmp_path):
    root = tmp_path / "predictions"
    rows = _features(300)[KEY].assign(
        spike_probability=0.3, spike_flag=False, model_name="m", model_version="1", model_alias="champion",
        feature_set_version=FEATURE_SET.version, scored_at_ns=5, scoring_latency_s=0.001)
    barrier = threading.Barrier(2)

    def flush() -> None:
        barrier.wait()
        write_prediction_parts(rows, root)

    threads = [threading.Thread(target=flush) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    got = DeltaTable(str(root)).to_pyarrow_table().to_pandas()
    assert len(got) == 300 and not got.duplicated(KEY).any()
