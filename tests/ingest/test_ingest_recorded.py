"""Recorded-data readers on the real recordings in ../shared/data, landing round trips, replay."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cryptovol.broker import EmbeddedBroker
from cryptovol.kafka_io import read_topic
from cryptovol.recorded import (
    KNOWN_LOCAL_TIMEZONES,
    ReadReport,
    RecordedFormatError,
    detect_format,
    load_ticks,
    read_recorded,
    read_recorded_records,
)
from cryptovol.replay import Pacer, load_records, parse_speed, replay_to_landing
from cryptovol.ticks import TICK_COLUMNS, Tick, parse_timestamp_ns

REPO_ROOT = Path(__file__).resolve().parents[2]
SLICES = "coinbase_advtrade_ticker_2026-04_slices"
DEC = "coinbase_advtrade_ticker_btcusd_2025-12"

#: one file per recorded format, and the format it must be detected as
RECORDINGS = {
    f"{SLICES}/guhankesav/BTC_USD.ndjson.gz": "envelope_ingest",
    f"{SLICES}/streakh/raw_10min_slice.ndjson.gz": "flat_ws",
    f"{SLICES}/eshitaraj24/sample_raw.ndjson.gz": "flat_receive_ts",
    f"{SLICES}/rrpichardo/raw_slice.ndjson.gz": "flat_exchange_ts",
    f"{DEC}/commit_e8e0fb4/ticks_BTCUSD_20251206_070910.ndjson.gz": "recorder_raw",
    f"{DEC}/commit_6109133/ticks_BTCUSD_20251130_235611.ndjson.gz": "recorder_raw",
}


def canon(ticks) -> list[bytes]:
    """Comparable form of a bag of ticks (NaN-safe: missing sizes are NaN)."""
    return sorted(t.to_json() for t in ticks)


def raw_lines(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.mark.parametrize("relpath", sorted(RECORDINGS))
def test_every_recorded_format_is_detected_and_every_line_parses(shared_data: Path, relpath: str):
    path = shared_data / relpath
    assert detect_format(path) == RECORDINGS[relpath]
    report = ReadReport()
    ticks = list(read_recorded(path, report=report))
    lines = raw_lines(path)
    non_ticker = sum(1 for obj in lines if obj.get("payload", {}).get("channel", "ticker") != "ticker")
    assert report.bad_lines == 0
    assert len(ticks) == len(lines) - non_ticker == report.ticks
    assert all(t.best_bid <= t.best_ask and t.price > 0 for t in ticks)
    assert {t.product_id for t in ticks} <= {"BTC-USD", "ETH-USD"}


def test_exchange_time_is_used_where_the_recording_has_it(shared_data: Path):
    path = shared_data / SLICES / "guhankesav" / "BTC_USD.ndjson.gz"
    first_ticker = raw_lines(path)[0]
    tick = next(iter(read_recorded(path)))
    assert tick.event_time_ns == parse_timestamp_ns(first_ticker["payload"]["timestamp"])
    assert tick.sequence == first_ticker["payload"]["sequence_num"]
    assert tick.receive_time_ns == parse_timestamp_ns(first_ticker["ingest_time"])
    streakh = shared_data / SLICES / "streakh" / "raw_10min_slice.ndjson.gz"
    first = raw_lines(streakh)[0]
    tick = next(iter(read_recorded(streakh)))
    assert tick.event_time_ns == parse_timestamp_ns(first["ws_timestamp"])
    assert tick.best_bid_qty == float(first["best_bid_qty"])


def test_recordings_without_exchange_time_or_sequence_use_receive_time_and_running_index(shared_data: Path):
    path = shared_data / SLICES / "eshitaraj24" / "sample_raw.ndjson.gz"
    lines = raw_lines(path)
    ticks = list(read_recorded(path))
    assert [t.sequence for t in ticks[:5]] == [0, 1, 2, 3, 4]
    assert ticks[0].event_time_ns == ticks[0].receive_time_ns == parse_timestamp_ns(lines[0]["ts"])
    # its volume_24h is always 0.0 (recorder bug): not trusted, left missing
    assert all(t.volume_24h != t.volume_24h for t in ticks)


def test_dec_2025_timezones_follow_the_folder(shared_data: Path):
    """commit_6109133 wrote US Eastern local time without an offset; commit_e8e0fb4 wrote UTC."""
    eastern = shared_data / DEC / "commit_6109133" / "ticks_BTCUSD_20251130_235611.ndjson.gz"
    assert "commit_6109133" in KNOWN_LOCAL_TIMEZONES
    first = raw_lines(eastern)[0]["timestamp"]
    assert first.startswith("2025-11-30T23:56:11")
    tick = next(iter(read_recorded(eastern)))
    assert tick.event_time_ns == parse_timestamp_ns(first) + 5 * 3600 * 10**9  # EST = UTC-5
    assert next(iter(read_recorded(eastern, assume_tz="UTC"))).event_time_ns == parse_timestamp_ns(first)
    utc = shared_data / DEC / "commit_e8e0fb4" / "ticks_BTCUSD_20251206_070910.ndjson.gz"
    assert next(iter(read_recorded(utc))).event_time_ns == parse_timestamp_ns(raw_lines(utc)[0]["timestamp"])


def test_load_ticks_reads_whole_folders_sorted(shared_data: Path):
    report = ReadReport()
    frame = load_ticks(shared_data / SLICES, report=report)
    assert list(frame.columns) == list(TICK_COLUMNS)
    assert report.files == 4 and report.bad_lines == 0 and len(frame) == report.ticks
    assert set(frame["product_id"]) == {"BTC-USD", "ETH-USD"}
    for _, group in frame.groupby("product_id"):
        assert group["event_time_ns"].is_monotonic_increasing
    assert frame["product_id"].is_monotonic_increasing
    only_eth = load_ticks(shared_data / SLICES, products=["eth-usd"])
    assert len(only_eth) == (frame["product_id"] == "ETH-USD").sum()


def test_formats_that_are_not_ticks_get_a_clear_error(shared_data: Path, tmp_path: Path):
    csv = shared_data / "coinbase_exchange_ticker_trades_btcusd_2025-11-17" / "btcusd_ticks_10min.csv"
    with pytest.raises(RecordedFormatError, match="best bid"):
        list(read_recorded(csv))
    odd = tmp_path / "odd.ndjson"
    odd.write_text('{"foo": 1, "bar": 2}\n')
    with pytest.raises(RecordedFormatError, match="unknown recording format.*foo"):
        detect_format(odd)


def test_a_bad_line_raises_with_its_location_or_is_skipped_and_counted(tmp_path: Path):
    path = tmp_path / "mixed.ndjson"
    good = {"product_id": "BTC-USD", "price": "1", "best_bid": "1", "best_ask": "2"}
    good["timestamp"] = "2026-01-01T00:00:00Z"
    crossed = {**good, "best_bid": "3"}
    path.write_text("\n".join(json.dumps(o) for o in (good, crossed, good)) + "\n{truncated")
    with pytest.raises(ValueError, match=r"mixed.ndjson:2.*crossed_book"):
        list(read_recorded(path))
    report = ReadReport()
    assert len(list(read_recorded(path, on_error="skip", report=report))) == 2
    assert report.errors == {"crossed_book": 1, "bad_json": 1}


@pytest.mark.parametrize("relpath", sorted(RECORDINGS))
def test_recordings_round_trip_through_landing_files(shared_data: Path, tmp_path: Path, relpath: str):
    """Landing files written from a recording read back as exactly the same ticks; a second run adds
    nothing (ticks already in a day file are skipped)."""
    records = load_records([shared_data / relpath])
    stats = replay_to_landing(records, tmp_path / "raw")
    assert stats.landed == len(records) > 0
    again = load_records([tmp_path / "raw"])
    assert canon(r.tick for r in again) == canon(r.tick for r in records)
    assert replay_to_landing(records, tmp_path / "raw").already_landed == len(records)
    assert {detect_format(p) for p in (tmp_path / "raw").rglob("*.ndjson")} == {"landing"}


def test_replay_orders_by_event_time_and_paces_by_speed():
    assert parse_speed("max") is None and parse_speed("10") == 10.0 and parse_speed("2x") == 2.0
    with pytest.raises(ValueError):
        parse_speed("fast")
    now = [0.0]
    slept: list[float] = []
    pacer = Pacer(speed=10, clock=lambda: now[0])
    import cryptovol.replay as replay_module

    original = replay_module.time.sleep
    replay_module.time.sleep = lambda s: slept.append(round(s, 6))
    try:
        pacer.wait(0)
        pacer.wait(5_000_000_000)  # 5 s of event time at 10x: due 0.5 s after the start
    finally:
        replay_module.time.sleep = original
    assert slept == [0.5]


def test_replay_cli_publishes_a_real_recording_in_event_time_order(
    broker: EmbeddedBroker, data_dir: Path, shared_data: Path
):
    path = shared_data / SLICES / "streakh" / "raw_10min_slice.ndjson.gz"
    result = subprocess.run(
        [sys.executable, "-m", "cryptovol.cli", "replay", str(path), "--speed", "max", "--no-progress"],
        capture_output=True, text=True, timeout=180, cwd=REPO_ROOT, check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.split("replay summary: ", 1)[1])
    expected = list(read_recorded(path))
    assert summary["published"] == len(expected) and summary["bad_lines"] == 0
    got = [Tick.from_json(r.value) for r in read_topic(broker.bootstrap, "ticks.raw")]
    assert canon(got) == canon(expected)
    for product in ("BTC-USD", "ETH-USD"):
        times = [t.event_time_ns for t in got if t.product_id == product]
        assert times and times == sorted(times)


def test_replay_cli_writes_landing_files_from_recordings(data_dir: Path, shared_data: Path):
    source = shared_data / SLICES / "rrpichardo"
    cmd = [sys.executable, "-m", "cryptovol.cli", "replay", str(source), "--to-landing", "--no-progress"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO_ROOT, check=False)
    assert result.returncode == 0, result.stderr
    files = sorted((data_dir / "raw").rglob("*.ndjson"))
    assert [f.relative_to(data_dir / "raw").as_posix() for f in files] == ["BTC-USD/2026-04-06.ndjson"]
    assert canon(read_recorded(files[0])) == canon(read_recorded(next(source.glob("*.gz"))))
    records = list(read_recorded_records(files[0]))
    assert records[0].event_type == "update" and records[0].ticker["product_id"] == "BTC-USD"


def test_a_lake_is_replayed_day_by_day_in_event_time_order(tmp_path: Path):
    from cryptovol.replay import iter_records, plan_batches

    raw = tmp_path / "raw"
    for product, day, times in (
        ("ETH-USD", "2026-01-02", ["2026-01-02T00:00:01Z", "2026-01-02T00:00:03Z"]),
        ("BTC-USD", "2026-01-01", ["2026-01-01T23:59:59Z"]),
        ("BTC-USD", "2026-01-02", ["2026-01-02T00:00:02Z"]),
    ):
        (raw / product).mkdir(parents=True, exist_ok=True)
        lines = [
            json.dumps({"ticker": {"product_id": product, "price": "1", "best_bid": "1", "best_ask": "2"},
                        "timestamp": t, "sequence_num": i, "event_type": "update", "received_at": t})
            for i, t in enumerate(times)
        ]
        (raw / product / f"{day}.ndjson").write_text("\n".join(lines) + "\n")
    files = sorted(raw.rglob("*.ndjson"))
    assert [[p.name for p in batch] for batch in plan_batches(files)] == [
        ["2026-01-01.ndjson"], ["2026-01-02.ndjson", "2026-01-02.ndjson"]
    ]
    order = [(r.tick.product_id, r.tick.event_time_ns) for r in iter_records([raw])]
    assert [p for p, _ in order] == ["BTC-USD", "ETH-USD", "BTC-USD", "ETH-USD"]
    assert [t for _, t in order] == sorted(t for _, t in order)
    other = tmp_path / "recording.ndjson"
    other.write_text("")
    assert len(plan_batches([*files, other])) == 1  # any non-day file: one ordered batch
