"""`cryptovol compact` / `cryptovol.delta.maintain`: the Delta tables' small files compacted, a
checkpoint written and unreferenced files vacuumed, with the same rows, the same restart state,
and a featurizer SIGKILLed after a compaction still exactly once."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd

from cryptovol import lake
from cryptovol.cli import main
from cryptovol.delta import maintain, open_table
from cryptovol.featureset import FEATURE_NAMES
from cryptovol.stream.sink import load_durable_state, read_stream_features, stream_row_count


def test_maintenance_compacts_checkpoints_vacuums_keeps_rows_and_restart_state(data_dir, stream_parts_dir):
    features_dir = data_dir / "features"
    shutil.copytree(stream_parts_dir, features_dir)
    before_rows = read_stream_features(features_dir)
    before_read = lake.read_features(data_dir)
    before_state = load_durable_state(features_dir)
    version_before = open_table(features_dir).version()
    assert len(before_rows) > 1000 and before_state

    result = maintain(features_dir, "features", retention_hours=0)

    assert result.files_before > 100 and result.files_after == 4  # 2 products x 2 dates
    assert result.files_removed_by_vacuum >= result.files_before  # unreferenced files deleted
    assert result.version_after > version_before == result.version_before
    assert list((features_dir / "_delta_log").glob(f"{result.version_after:020d}.checkpoint.parquet"))
    pd.testing.assert_frame_equal(read_stream_features(features_dir), before_rows)
    pd.testing.assert_frame_equal(lake.read_features(data_dir), before_read)
    assert load_durable_state(features_dir) == before_state  # a restarted featurizer resumes the same
    on_disk = sorted(features_dir.glob("product_id=*/date=*/*.parquet"))
    assert len(on_disk) == 4  # only what the table references is left

    again = maintain(features_dir, "features", retention_hours=0)
    assert again.files_before == again.files_after == 4


def test_cli_compact_reports_each_table_and_rejects_a_negative_retention(data_dir, stream_parts_dir, capsys):
    shutil.copytree(stream_parts_dir, data_dir / "features")
    assert main(["compact", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "features:" in out and "predictions: no table yet" in out
    assert len(open_table(data_dir / "features").file_uris()) > 100  # dry run changed nothing
    assert main(["compact", "--only", "features", "--retention-hours", "0"]) == 0
    assert "-> 4 data files" in capsys.readouterr().out
    assert main(["compact", "--retention-hours", "-1"]) == 2
    assert "retention" in capsys.readouterr().out


def test_compacting_under_a_running_featurizer_keeps_a_restart_exactly_once(data_dir, broker,
                                                                             featurizer_factory):
    """A real `cryptovol featurize` writes two hours of ticks in small commits; maintenance runs while
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
        return stream_row_count(data_dir / "features")

    first = featurizer_factory("--lateness-s", "0", "--flush-every-s", "0.05")
    for start in range(0, cut, 200):  # chunk by chunk, so the featurizer writes many parts
        done = min(start + 200, cut)
        produce(ticks[start:done])
        wait_until(lambda done=done: rows_written() >= done, timeout_s=60, interval_s=0.05,
                   what=f"{done} rows in the feature table")
    result = maintain(data_dir / "features", "features", retention_hours=0)  # featurizer still up
    assert result.files_before > 20 and result.files_after < result.files_before, result.summary()
    first.process.kill()

    produce(ticks[cut:])
    producer.close()
    second = featurizer_factory("--lateness-s", "0", "--flush-every-s", "0.2")
    wait_until(lambda: len(rows()) >= len(ticks), timeout_s=120, interval_s=0.3, what="every row")
    assert second.process.stop(timeout_s=20) == 0
    assert second.summary()["rewarmed"] > 0

    got = lake.read_features(data_dir)
    assert len(rows()) == len(got) == len(ticks)  # no row twice in the table, none missing
    want = compute_features_multi(frame)
    keys = ["product_id", "event_time_ns", "sequence"]
    got = got.sort_values(keys, kind="stable").reset_index(drop=True)
    want = want.sort_values(keys, kind="stable").reset_index(drop=True)
    for name in ("event_time_ns", "sequence"):
        np.testing.assert_array_equal(got[name].to_numpy(), want[name].to_numpy())
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(got[name].to_numpy(), want[name].to_numpy(), rtol=1e-9, atol=0,
                                   equal_nan=True, err_msg=name)
