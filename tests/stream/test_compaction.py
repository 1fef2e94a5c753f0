"""`cryptovol compact`: old feature parts merged into one per (product, date, partition) and old
prediction parts into one per (product, date), with the same rows, the same restart state, and
readers never seeing a row twice or losing one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cryptovol import compaction, lake
from cryptovol.cli import main
from cryptovol.compaction import CompactionBusyError, compact_feature_parts, compact_prediction_parts
from cryptovol.featureset import FEATURE_NAMES, HISTORY_S
from cryptovol.stream.sink import (
    load_durable_state,
    parse_part_name,
    read_stream_features,
    stream_files,
)

NS = 1_000_000_000


def _newest_first_ns(features_dir: Path, product: str) -> int:
    return max(parse_part_name(f.name)[0] for f in stream_files(features_dir, product))


def test_old_parts_merge_into_one_per_date_with_the_same_rows_and_restart_state(data_dir, stream_parts_dir):
    features_dir = data_dir / "features"
    shutil.copytree(stream_parts_dir, features_dir)
    before_files = stream_files(features_dir)
    before_rows = read_stream_features(features_dir)
    before_lake = lake.read_features(data_dir)
    before_state = load_durable_state(features_dir)
    rows_of = {f: pq.ParquetFile(f).metadata.num_rows for f in before_files}

    result = compact_feature_parts(features_dir, older_than_s=3600)

    after_files = stream_files(features_dir)
    # Two products x two dates were old enough to merge; the last hour of each product is untouched.
    assert {(g.product, g.date) for g in result.groups} == {
        (p, d) for p in ("BTC-USD", "ETH-USD") for d in ("2026-01-01", "2026-01-02")}
    assert result.files_before > 100 and result.files_after == 4
    assert len(after_files) == len(before_files) - result.files_before + result.files_after
    for product in ("BTC-USD", "ETH-USD"):
        cutoff = _newest_first_ns(features_dir, product) - 3600 * NS
        untouched = [f for f in before_files if f.parent.parent.name == f"product={product}"
                     and parse_part_name(f.name)[0] >= cutoff]
        assert untouched and all(f.exists() for f in untouched)
    merged_away = [f for f in before_files if not f.exists()]
    assert len(merged_away) == result.files_before
    assert result.rows == sum(rows_of[f] for f in merged_away)  # no row dropped (none duplicated)

    pd.testing.assert_frame_equal(read_stream_features(features_dir), before_rows)
    pd.testing.assert_frame_equal(lake.read_features(data_dir), before_lake)
    with lake.connect(data_dir) as con:
        assert con.execute("SELECT count(*) FROM features").fetchone()[0] == len(before_lake)
    assert load_durable_state(features_dir) == before_state  # a restarted featurizer resumes the same
    assert not list(features_dir.glob("**/*.tmp"))

    again = compact_feature_parts(features_dir, older_than_s=3600)
    assert again.groups == [] and stream_files(features_dir) == after_files


def test_leftovers_of_a_crashed_run_are_read_once_and_folded_in_next_time(data_dir, stream_parts_dir):
    features_dir = data_dir / "features"
    shutil.copytree(stream_parts_dir, features_dir)
    before = lake.read_features(data_dir)
    saved = data_dir / "saved"
    shutil.copytree(features_dir, saved)
    compact_feature_parts(features_dir, older_than_s=3600)
    merged_count = len(stream_files(features_dir))
    # The crash: the merged parts were renamed into place, but the sources were not all deleted yet.
    for source in stream_files(saved)[::3]:
        target = features_dir / source.relative_to(saved)
        if not target.exists():
            shutil.copy2(source, target)
    assert len(stream_files(features_dir)) > merged_count

    pd.testing.assert_frame_equal(lake.read_features(data_dir), before)  # each row once meanwhile
    compact_feature_parts(features_dir, older_than_s=3600)
    assert len(stream_files(features_dir)) == merged_count
    pd.testing.assert_frame_equal(lake.read_features(data_dir), before)


def test_a_reader_that_listed_parts_before_a_merge_lists_again(data_dir, stream_parts_dir, monkeypatch):
    features_dir = data_dir / "features"
    shutil.copytree(stream_parts_dir, features_dir)
    before = lake.read_features(data_dir)
    stale = {key: lake.partition_files(data_dir, *key) for key in lake.list_feature_partitions(data_dir)}
    compact_feature_parts(features_dir, older_than_s=3600)

    real = lake.partition_files
    calls: list[tuple[str, str]] = []

    def listed_before_the_merge_then_now(where, product, day):
        calls.append((product, day))
        return stale[(product, day)] if calls.count((product, day)) == 1 else real(where, product, day)

    monkeypatch.setattr(lake, "partition_files", listed_before_the_merge_then_now)
    pd.testing.assert_frame_equal(lake.read_features(data_dir), before)
    assert len(calls) > len(stale)  # the merged partitions were listed a second time


def test_parts_inside_the_rewarm_window_are_never_merged(data_dir):
    with pytest.raises(ValueError, match="re-warm window"):
        compact_feature_parts(data_dir / "features", older_than_s=HISTORY_S)


def test_one_compaction_at_a_time(data_dir, stream_parts_dir):
    features_dir = data_dir / "features"
    shutil.copytree(stream_parts_dir, features_dir)
    with compaction._exclusive(features_dir), pytest.raises(CompactionBusyError, match="another compaction"):
        compact_feature_parts(features_dir)


def test_cli_dry_run_changes_nothing_then_compacts(data_dir, stream_parts_dir, capsys):
    features_dir = data_dir / "features"
    shutil.copytree(stream_parts_dir, features_dir)
    files = stream_files(features_dir)

    assert main(["compact", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "features     BTC-USD    2026-01-01 partition 0:" in out and "features: would merge" in out
    assert "predictions: nothing to compact" in out
    assert stream_files(features_dir) == files

    assert main(["compact", "--only", "features"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("features: merged ") and " rows, " in out and "predictions" not in out
    assert len(stream_files(features_dir)) < len(files)

    assert main(["compact", "--older-than", "60"]) == 2
    assert "re-warm window" in capsys.readouterr().out


def test_compacting_under_a_running_featurizer_keeps_a_restart_exactly_once(data_dir, broker,
                                                                             featurizer_factory):
    """A real `cryptovol featurize` writes two hours of ticks as small parts; compaction runs while
    it is up; it is SIGKILLed and restarted on more ticks: every row once, equal to the batch."""
    import os

    from cryptovol.config import TOPIC_RAW
    from cryptovol.features import compute_features_multi
    from cryptovol.kafka_io import ensure_topics, make_producer
    from cryptovol.procs import wait_until
    from cryptovol.simulator.synthetic import generate_ticks_frame
    from cryptovol.ticks import Tick

    frame = generate_ticks_frame(("BTC-USD", "ETH-USD"), duration_s=2 * 3600, seed=3, rate_hz=0.5)
    ticks = [Tick(*row) for row in frame.itertuples(index=False)]
    cut = int(len(ticks) * 0.8)

    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    ensure_topics(bootstrap)
    producer = make_producer(bootstrap, linger_ms=5)

    def produce(batch: list[Tick]) -> None:
        for t in batch:
            producer.send(TOPIC_RAW, key=t.product_id.encode(), value=t.to_json())
        producer.flush()

    def rows() -> pd.DataFrame:
        return read_stream_features(data_dir / "features")

    def rows_written() -> int:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in stream_files(data_dir / "features"))

    first = featurizer_factory("--lateness-s", "0", "--flush-every-s", "0.05")
    for start in range(0, cut, 200):  # chunk by chunk, so the featurizer writes many parts
        done = min(start + 200, cut)
        produce(ticks[start:done])
        wait_until(lambda done=done: rows_written() >= done, timeout_s=60, interval_s=0.05,
                   what=f"{done} rows in Parquet")
    files_before = len(stream_files(data_dir / "features"))
    result = compact_feature_parts(data_dir / "features", older_than_s=1800)  # featurizer still up
    assert result.files_before > 20, result.summary()
    assert len(stream_files(data_dir / "features")) == files_before - result.files_before + result.files_after
    first.process.kill()

    produce(ticks[cut:])
    producer.close()
    second = featurizer_factory("--lateness-s", "0", "--flush-every-s", "0.2")
    wait_until(lambda: len(rows()) >= len(ticks), timeout_s=120, interval_s=0.3, what="every row")
    assert second.process.stop(timeout_s=20) == 0
    assert second.summary()["rewarmed"] > 0

    got = lake.read_features(data_dir)
    assert len(rows()) == len(got) == len(ticks)  # no row twice in the files, none missing
    want = compute_features_multi(frame)
    keys = ["product_id", "event_time_ns", "sequence"]
    got = got.sort_values(keys, kind="stable").reset_index(drop=True)
    want = want.sort_values(keys, kind="stable").reset_index(drop=True)
    for name in ("event_time_ns", "sequence"):
        np.testing.assert_array_equal(got[name].to_numpy(), want[name].to_numpy())
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(got[name].to_numpy(), want[name].to_numpy(), rtol=1e-9, atol=0,
                                   equal_nan=True, err_msg=name)


def _scorer_parts(predictions_dir: Path, features_dir: Path) -> None:
    """What the scorer leaves: one prediction part per product and date per flush (here, one per
    feature part), scored ~5 ms after each row's event time by model version 1."""
    from cryptovol.featureset import FEATURE_SET
    from cryptovol.scoring.sink import write_prediction_parts

    for part in stream_files(features_dir):
        rows = pq.read_table(part, columns=["product_id", "event_time_ns", "sequence"]).to_pandas()
        probability = (rows["sequence"] % 100) / 100.0
        write_prediction_parts(pd.DataFrame({
            "product_id": rows["product_id"].astype(str), "event_time_ns": rows["event_time_ns"],
            "sequence": rows["sequence"], "spike_probability": probability, "spike_flag": probability > 0.5,
            "model_name": "cryptovol-spike", "model_version": "1", "model_alias": "champion",
            "feature_set_version": FEATURE_SET.version, "scored_at_ns": rows["event_time_ns"] + 5_000_000,
            "scoring_latency_s": 0.001,
        }), predictions_dir)


def _prediction_files(predictions_dir: Path) -> list[Path]:
    return sorted(predictions_dir.glob("product=*/date=*/part-*.parquet"))


def test_old_prediction_parts_merge_keeping_every_score(data_dir, stream_parts_dir):
    from cryptovol.config import Settings
    from cryptovol.drift import Window, read_prediction_window
    from cryptovol.scoring.sink import write_prediction_parts

    predictions_dir = data_dir / "predictions"
    _scorer_parts(predictions_dir, stream_parts_dir)
    # A scorer restarted after a crash scored an old part's rows again, later and with version 2.
    rescored = pq.read_table(_prediction_files(predictions_dir)[3]).to_pandas()
    rescored["model_version"] = "2"
    rescored["scored_at_ns"] += 60 * NS
    write_prediction_parts(rescored, predictions_dir)
    files = _prediction_files(predictions_dir)
    rows_of = {f: pq.ParquetFile(f).metadata.num_rows for f in files}
    everything = Window(0, 2**62)

    def counts() -> tuple[int, int]:
        with lake.connect(data_dir) as con:
            return con.execute("SELECT count(*), count(DISTINCT (product_id, event_time_ns, sequence)) "
                               "FROM predictions").fetchone()

    before_counts = counts()
    assert before_counts[0] == before_counts[1] + len(rescored)
    settings = Settings.from_env()
    before_drift = read_prediction_window(settings, everything)
    assert set(before_drift.loc[before_drift["sequence"].isin(rescored["sequence"])
                                & before_drift["product_id"].eq(rescored["product_id"].iloc[0]),
                                "model_version"]) == {"2"}

    result = compact_prediction_parts(predictions_dir, older_than_s=3600)

    assert {(g.product, g.date) for g in result.groups} == {
        (p, d) for p in ("BTC-USD", "ETH-USD") for d in ("2026-01-01", "2026-01-02")}
    assert result.files_after == 4
    assert result.rows == sum(rows_of[f] for f in files if not f.exists())  # every score kept
    assert len(_prediction_files(predictions_dir)) == len(files) - result.files_before + 4
    assert counts() == before_counts  # every score kept, the re-score included
    pd.testing.assert_frame_equal(read_prediction_window(settings, everything), before_drift)

    # A crash between the rename and the deletions leaves sources beside the merged part (exact
    # copies of its rows); readers keep their answers and the next run drops the copies.
    again = data_dir / "again"
    _scorer_parts(again, stream_parts_dir)
    for source in [f for f in _prediction_files(again) if f.parent.name == "date=2026-01-01"][:50]:
        shutil.copy2(source, predictions_dir / source.relative_to(again))
    assert counts()[0] > before_counts[0]
    pd.testing.assert_frame_equal(read_prediction_window(settings, everything), before_drift)
    compact_prediction_parts(predictions_dir, older_than_s=3600)
    assert counts() == before_counts
    assert len(_prediction_files(predictions_dir)) == len(files) - result.files_before + 4
