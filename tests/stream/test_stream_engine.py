"""The featurizer's Kafka-free engine and Parquet sink: ordering, late/duplicate ticks, commit bounds,
and resuming from what the sink already holds (the exactly-once mechanism)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from cryptovol.features import compute_features
from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET, KEY_COLUMNS
from cryptovol.simulator.synthetic import generate_ticks_frame
from cryptovol.stream.engine import FeatureBatch, SourceRecord, StreamEngine
from cryptovol.stream.sink import load_durable_state, read_stream_features, write_batches
from cryptovol.ticks import Tick

NS = 1_000_000_000


@pytest.fixture(scope="module")
def btc() -> list[Tick]:
    frame = generate_ticks_frame(("BTC-USD",), duration_s=600, seed=5, rate_hz=2)
    return [Tick(*row) for row in frame.itertuples(index=False)]


def _records(ticks: list[Tick], partition: int = 0, first_offset: int = 0) -> list[SourceRecord]:
    return [SourceRecord(t, partition, first_offset + i) for i, t in enumerate(ticks)]


def _frame(batches: list[FeatureBatch]) -> pd.DataFrame:
    return pd.concat([b.frame() for b in batches], ignore_index=True)


def _expected(ticks: list[Tick]) -> pd.DataFrame:
    from cryptovol.ticks import ticks_to_frame

    frame = ticks_to_frame(sorted(ticks, key=lambda t: t.event_time_ns))
    return compute_features(frame)


def _assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert len(got) == len(want)
    np.testing.assert_array_equal(got["event_time_ns"].to_numpy(), want["event_time_ns"].to_numpy())
    np.testing.assert_array_equal(got["sequence"].to_numpy(), want["sequence"].to_numpy())
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(got[name].to_numpy(), want[name].to_numpy(), rtol=1e-9, atol=0,
                                   equal_nan=True, err_msg=name)


def test_one_tick_at_a_time_equals_the_batch_computation(btc):
    engine = StreamEngine(lateness_s=0.0)
    batches = []
    for rec in _records(btc):
        assert engine.offer(rec) is None
        out = engine.release()
        assert len(out) == 1 and len(out[0]) == 1  # lateness 0: an in-order tick leaves at once
        batches += out
    _assert_same(_frame(batches), _expected(btc))
    assert _frame(batches)["rv_300s"].notna().any()


def test_reordering_within_lateness_emits_in_event_time_order(btc):
    arrival = list(btc)
    for i in range(0, len(arrival) - 1, 7):  # swap neighbours less than 1 s apart
        if arrival[i + 1].event_time_ns - arrival[i].event_time_ns < NS:
            arrival[i], arrival[i + 1] = arrival[i + 1], arrival[i]
    assert arrival != btc
    engine = StreamEngine(lateness_s=1.0)
    batches = []
    for rec in _records(arrival):
        assert engine.offer(rec) is None
        batches += engine.release()
    batches += engine.release(force=True)
    _assert_same(_frame(batches), _expected(btc))


def test_late_tick_is_rejected_and_counted_and_duplicates_are_dropped(btc):
    engine = StreamEngine(lateness_s=0.5)
    for rec in _records(btc[:200]):
        engine.offer(rec)
    engine.release()
    late = SourceRecord(msgspec.structs.replace(btc[50], sequence=-7), 0, 999)
    rejected = engine.offer(late)
    assert rejected is not None and rejected.reason == "late_tick" and "BTC-USD" in rejected.detail
    assert engine.offer(SourceRecord(btc[199], 0, 1000)) is None  # same identity again: duplicate
    assert engine.offer(SourceRecord(btc[150], 0, 1001)) is None  # emitted long ago: duplicate
    assert (engine.counters.late, engine.counters.duplicates) == (1, 2)
    emitted = engine.counters.emitted + sum(len(b) for b in engine.release(force=True))
    assert emitted == 200


def test_commit_bound_never_passes_a_buffered_tick(btc):
    engine = StreamEngine(lateness_s=5.0)
    for rec in _records(btc[:50], partition=2, first_offset=100):
        engine.offer(rec)
    released = sum(len(b) for b in engine.release())
    assert 0 < released < 50
    first_waiting = 100 + released  # in-order input: the buffer holds the newest ticks
    assert engine.commit_bounds() == {2: first_waiting}
    engine.release(force=True)
    assert engine.commit_bounds() == {}


def test_resume_from_durable_parquet_rewarms_and_never_repeats(tmp_path: Path, btc):
    """Crash after writing part of the rows: a fresh engine fed the same records from the seek-back
    point emits exactly the missing rows, with features equal to an uninterrupted run."""
    records = _records(btc)
    cut = int(len(records) * 0.7)
    first = StreamEngine(lateness_s=0.0)
    for rec in records[:cut]:
        first.offer(rec)
    write_batches(tmp_path, first.release())

    durable = load_durable_state(tmp_path)
    state = durable["BTC-USD"]
    assert state.last_event_time_ns == btc[cut - 1].event_time_ns
    seek = state.warm_offsets[0]
    assert 0 < seek < cut  # only the history window is re-read, not the whole partition
    second = StreamEngine(lateness_s=0.0, durable=durable, resume_offsets={0: cut})
    for rec in records[seek:]:
        assert second.offer(rec) is None
    write_batches(tmp_path, second.release())
    assert second.counters.rewarmed == cut - seek
    assert second.counters.emitted == len(records) - cut

    rows = read_stream_features(tmp_path)
    assert not rows.duplicated(list(KEY_COLUMNS)).any()
    _assert_same(rows, _expected(btc))


def test_a_flush_is_one_delta_transaction_with_lineage_and_the_feature_set_version(tmp_path: Path, btc):
    from deltalake import DeltaTable

    engine = StreamEngine(lateness_s=0.0)
    for rec in _records(btc[:30], partition=1, first_offset=40):
        engine.offer(rec)
    commits = write_batches(tmp_path, engine.release(), app_prefix="g:ticks.raw")
    assert len(commits) == 1 and commits[0].rows == 30
    table = DeltaTable(str(tmp_path))
    assert table.version() == commits[0].version == 1  # 0 = creation, 1 = this flush
    assert table.transaction_version("g:ticks.raw:1") == 70  # next offset of partition 1
    assert table.metadata().partition_columns == ["product_id", "date"]
    assert table.metadata().configuration["cryptovol.feature_set_version"] == FEATURE_SET.version
    rows = table.to_pyarrow_table()
    assert rows.column_names == ["product_id", "date", "event_time_ns", "sequence", *FEATURE_NAMES,
                                 "feature_set_version", "source_partition", "source_offset"]
    assert sorted(rows.column("source_offset").to_pylist()) == list(range(40, 70))
    assert set(rows.column("feature_set_version").to_pylist()) == {FEATURE_SET.version}


def _arrival_with_stragglers(ticks: list[Tick], every: int = 9, back: int = 3) -> list[Tick]:
    """Arrival order where every `every`-th tick arrives `back` places late (behind newer ticks)."""
    arrival = list(ticks)
    for i in range(every, len(arrival) - back, every):
        arrival.insert(i + back, arrival.pop(i))
    return arrival


@pytest.mark.parametrize("lateness_s", [0.0, 1.0])
def test_out_of_order_arrivals_follow_the_one_rule_the_batch_path_applies(btc, lateness_s):
    """Stream == batch for the same arrival order: rows equal, and the ticks the engine dead-letters
    as late are exactly those the batch featurizer skips."""
    from cryptovol.batch import featurize_frames
    from cryptovol.ticks import ticks_to_frame

    arrival = _arrival_with_stragglers(btc)
    assert arrival != btc
    engine = StreamEngine(lateness_s=lateness_s, idle_release_s=1e9)
    batches, late = [], []
    for rec in _records(arrival):
        rejected = engine.offer(rec)
        if rejected is not None:
            assert rejected.reason == "late_tick"
            late.append(rejected.record.tick)
        batches += engine.release()
    batches += engine.release(force=True)
    got = _frame(batches)
    want = featurize_frames(ticks_to_frame(arrival), lateness_s=lateness_s)
    _assert_same(got, want)
    assert len(got) + len(late) == len(btc)
    if lateness_s == 0:
        assert late, "stragglers must be late with lateness 0"
        assert all(len(b) == 1 for b in batches)  # nothing waits: each tick is its own release
    emitted = set(zip(want["event_time_ns"], want["sequence"], strict=True))
    skipped = {(t.event_time_ns, t.sequence) for t in btc} - emitted
    assert {(t.event_time_ns, t.sequence) for t in late} == skipped
