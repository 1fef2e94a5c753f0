"""The lake before and after Delta Lake, side by side in one run, on the same two hours of stream data.

Feeds `--hours` of two products' synthetic ticks (`--rate` per second per product) through the real
`StreamEngine`, flushing once per second of event time (the live featurizer's cadence), into
  - before: the pre-Delta layout (one Parquet part per product and date per flush, temp file +
    fsync + rename: what `cryptovol.stream.sink` wrote until the Delta switch), read by the old
    readers' rules (`cryptovol.delta_migrate.read_legacy_features`, and a DuckDB view over the part
    files de-duplicating keys, as `lake.connect` did);
  - after: the feature Delta table (`cryptovol.stream.sink.write_batches`: one transaction per
    flush with application transactions), read by `lake.read_features` and `lake.connect`, then
    again after `cryptovol compact` (optimize + vacuum + checkpoint).
Prints the sink's throughput (rows/s of engine + sink) and per-flush cost, `read_features` and a
DuckDB aggregate (best of 3), and files on disk. Everything lives in a temporary directory.

    .venv/bin/python -m bench.bench_lake [--hours 2] [--rate 4] [--replay-rows 5000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

META = {b"cryptovol.feature_set_version": b"", b"cryptovol.feature_names": b""}  # set in main()
QUERY = "SELECT product_id, count(*) AS n, avg(rv_30s) AS rv FROM features GROUP BY ALL ORDER BY ALL"


def _legacy_write(features_dir: Path, batches) -> None:
    """The pre-Delta stream sink: one Parquet part per (product, date) per flush, atomically."""
    import pyarrow.compute as pc

    from cryptovol.atomic import write_parquet_atomic
    from cryptovol.stream.sink import batches_table

    table = batches_table(batches)
    if table.num_rows == 0:
        return
    for product in pc.unique(table["product_id"]).to_pylist():
        mine = table.filter(pc.equal(table["product_id"], product))
        for day in pc.unique(mine["date"]).to_pylist():
            rows = mine.filter(pc.equal(mine["date"], day)).drop_columns(["date"])
            rows = rows.replace_schema_metadata(META)
            offsets = rows["source_offset"]
            name = (f"part-stream-t{rows['event_time_ns'][0].as_py():019d}-p0-o{pc.min(offsets).as_py()}-"
                    f"{pc.max(offsets).as_py()}.parquet")
            write_parquet_atomic(rows, features_dir / f"product={product}" / f"date={day}" / name)



def _feed(frame, write, every_rows: int | None = None) -> tuple[int, float, int]:
    """Engine + sink over every tick, flushing each event second (live cadence) or every
    `every_rows` ticks (replay: one flush per poll of up to 5,000 records): (rows, seconds, flushes)."""
    from cryptovol.stream.engine import SourceRecord, StreamEngine
    from cryptovol.ticks import Tick

    engine = StreamEngine(lateness_s=0.0)
    started = time.perf_counter()
    second = None
    flushes = 0
    for offset, row in enumerate(frame.itertuples(index=False)):
        tick = Tick(*row)
        this_second = tick.event_time_ns // 1_000_000_000 if every_rows is None else offset // every_rows
        if second is not None and this_second != second:
            write(engine.release(force=True))
            flushes += 1
        second = this_second
        engine.offer(SourceRecord(tick, 0, offset))
    write(engine.release(force=True))
    return len(frame), time.perf_counter() - started, flushes + 1


def _best_of(fn, repeat: int = 3) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value


def _legacy_duckdb(features_dir: Path):
    import duckdb

    files = sorted(str(p) for p in features_dir.glob("product=*/date=*/part-*.parquet"))
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    listed = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    con.execute(f"CREATE VIEW features AS SELECT * FROM read_parquet({listed}, hive_partitioning = true) "
                "QUALIFY row_number() OVER (PARTITION BY product_id, event_time_ns, sequence) = 1")
    try:
        return con.execute(QUERY).fetchall()
    finally:
        con.close()


def _files(root: Path) -> tuple[int, float]:
    paths = [p for p in root.rglob("*") if p.is_file()]
    return len(paths), sum(p.stat().st_size for p in paths) / 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="event-time span of the stream data")
    parser.add_argument("--rate", type=float, default=4.0, help="ticks per second per product")
    parser.add_argument("--replay-rows", type=int, default=5000, help="rows per flush in the replay run")
    args = parser.parse_args(argv)

    import json

    from cryptovol import lake
    from cryptovol.delta import maintain
    from cryptovol.featureset import FEATURE_SET

    META.update({b"cryptovol.feature_set_version": FEATURE_SET.version.encode(),
                 b"cryptovol.feature_names": json.dumps(FEATURE_SET.names).encode()})
    from cryptovol.delta_migrate import read_legacy_features
    from cryptovol.simulator.synthetic import generate_ticks_frame
    from cryptovol.stream.sink import write_batches

    frame = generate_ticks_frame(("BTC-USD", "ETH-USD"), duration_s=args.hours * 3600, seed=7,
                                 rate_hz=args.rate)
    with tempfile.TemporaryDirectory(prefix="bench-lake-") as tmp:
        old_dir = Path(tmp) / "old" / "features"
        data_dir = Path(tmp) / "new"
        new_dir = data_dir / "features"
        rows, old_s, flushes = _feed(frame, lambda b: _legacy_write(old_dir, b))
        _, new_s, _ = _feed(frame, lambda b: write_batches(new_dir, b, app_prefix="bench:ticks.raw"))
        print(f"{rows:,} ticks, {args.hours:g} h of two products, {flushes:,} flushes (one per event second)")
        print(f"{'':<34} {'before (Parquet parts)':>24} {'after (Delta table)':>22} {'after/before':>13}")
        old_rate, new_rate = rows / old_s, rows / new_s
        print(f"{'featurizer engine + sink, rows/s':<34} {old_rate:>24,.0f} {new_rate:>22,.0f} "
              f"{new_rate / old_rate:>12.2f}x")
        print(f"{'  per flush (engine + sink), ms':<34} {1e3 * old_s / flushes:>24.2f} "
              f"{1e3 * new_s / flushes:>22.2f}")
        _, old_r, n = _feed(frame, lambda b: _legacy_write(Path(tmp) / "old-replay", b), args.replay_rows)
        _, new_r, _ = _feed(frame, lambda b: write_batches(Path(tmp) / "new-replay", b, app_prefix="r:t"),
                            args.replay_rows)
        print(f"{f'replay ({n} flushes of {args.replay_rows:,}), rows/s':<34} {rows / old_r:>24,.0f} "
              f"{rows / new_r:>22,.0f} {old_r / new_r:>12.2f}x")
        old_read = _best_of(lambda: len(read_legacy_features(old_dir)))
        new_read = _best_of(lambda: len(lake.read_features(data_dir)))
        assert old_read[1] == new_read[1] == rows, (old_read[1], new_read[1], rows)

        def new_query():
            with lake.connect(data_dir) as con:
                return con.execute(QUERY).fetchall()

        old_q = _best_of(lambda: _legacy_duckdb(old_dir))
        new_q = _best_of(new_query)
        assert [r[:2] for r in old_q[1]] == [r[:2] for r in new_q[1]], "the two layouts disagree"
        old_files, old_mb = _files(old_dir)
        new_files, new_mb = _files(new_dir)
        print(f"{'lake.read_features, ms':<34} {1e3 * old_read[0]:>24,.0f} {1e3 * new_read[0]:>22,.0f} "
              f"{new_read[0] / old_read[0]:>12.2f}x")
        print(f"{'DuckDB aggregate, ms':<34} {1e3 * old_q[0]:>24,.0f} {1e3 * new_q[0]:>22,.0f} "
              f"{new_q[0] / old_q[0]:>12.2f}x")
        print(f"{'files / MB on disk':<34} {f'{old_files:,} / {old_mb:.1f}':>24} "
              f"{f'{new_files:,} / {new_mb:.1f}':>22}")
        result = maintain(new_dir, "features", retention_hours=0)
        print(f"cryptovol compact (optimize + vacuum + checkpoint): {result.summary()}")
        after_read = _best_of(lambda: len(lake.read_features(data_dir)))
        after_q = _best_of(new_query)
        assert after_read[1] == rows and [r[:2] for r in after_q[1]] == [r[:2] for r in new_q[1]], \
            "maintenance changed the rows"
        files, mb = _files(new_dir)
        print(f"{'after compact: read_features, ms':<34} {'':>24} {1e3 * after_read[0]:>22,.0f} "
              f"{after_read[0] / old_read[0]:>12.2f}x")
        print(f"{'after compact: DuckDB aggregate, ms':<34} {'':>24} {1e3 * after_q[0]:>22,.0f} "
              f"{after_q[0] / old_q[0]:>12.2f}x")
        print(f"{'after compact: files / MB':<34} {'':>24} {f'{files:,} / {mb:.1f}':>22}")
        print(f"(cpu count {os.cpu_count()}; best of 3 for every read)")


if __name__ == "__main__":
    main()
