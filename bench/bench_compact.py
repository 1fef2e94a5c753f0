"""Stream part compaction: what the featurizer's one-part-per-second layout costs readers, and
what `cryptovol compact` gives back.

Writes the parts the streaming featurizer would write for `--hours` of two products' synthetic
ticks (`--rate` per second per product, one flush per second of event time, through the real
`StreamEngine` and sink), then measures, before and after one compaction run, side by side:
  - `lake.read_features` of the whole lake (training, drift and the Dagster assets read this way),
  - a DuckDB aggregate over the `features` view (`cryptovol sql`),
and the compaction itself (files, MB, seconds). Everything lives in a temporary directory.

    .venv/bin/python -m bench.bench_compact [--hours 2] [--rate 4] [--older-than 900]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

QUERY = "SELECT product_id, count(*) AS n, avg(rv_30s) AS rv FROM features GROUP BY ALL ORDER BY ALL"


def _write_parts(features_dir: Path, hours: float, rate: float) -> tuple[int, float]:
    from cryptovol.simulator.synthetic import generate_ticks_frame
    from cryptovol.stream.engine import SourceRecord, StreamEngine
    from cryptovol.stream.sink import write_batches
    from cryptovol.ticks import Tick

    frame = generate_ticks_frame(("BTC-USD", "ETH-USD"), duration_s=hours * 3600, seed=7, rate_hz=rate)
    engine = StreamEngine(lateness_s=0.0)
    started = time.perf_counter()
    second = None
    for offset, row in enumerate(frame.itertuples(index=False)):
        tick = Tick(*row)
        this_second = tick.event_time_ns // 1_000_000_000
        if second is not None and this_second != second:  # the featurizer flushes every second
            write_batches(features_dir, engine.release(force=True))
        second = this_second
        engine.offer(SourceRecord(tick, 0, offset))
    write_batches(features_dir, engine.release(force=True))
    return len(frame), time.perf_counter() - started


def _best_of(fn, repeat: int = 3) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value


def _readers(data_dir: Path) -> dict[str, tuple[float, object]]:
    from cryptovol import lake

    def query():
        with lake.connect(data_dir) as con:
            return con.execute(QUERY).fetchall()

    return {
        "read_features": _best_of(lambda: len(lake.read_features(data_dir))),
        "duckdb": _best_of(query),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="event-time span of the parts")
    parser.add_argument("--rate", type=float, default=4.0, help="ticks per second per product")
    parser.add_argument("--older-than", type=float, default=900.0, help="compaction age, seconds")
    args = parser.parse_args(argv)

    from cryptovol.compaction import compact_feature_parts
    from cryptovol.stream.sink import stream_files

    with tempfile.TemporaryDirectory(prefix="cryptovol-bench-compact-") as tmp:
        data_dir = Path(tmp)
        features_dir = data_dir / "features"
        ticks, write_s = _write_parts(features_dir, args.hours, args.rate)
        files_before = len(stream_files(features_dir))
        print(f"{ticks:,} ticks ({args.hours:g} h, 2 products, ~{args.rate:g}/s each) -> {files_before:,} "
              f"stream parts, one per product per second of event time (written in {write_s:.1f} s)")
        before = _readers(data_dir)
        result = compact_feature_parts(features_dir, args.older_than)
        files_after = len(stream_files(features_dir))
        print(f"compaction (parts older than {args.older_than:g} s behind the newest): {result.summary()}; "
              f"{files_before:,} -> {files_after:,} files")
        after = _readers(data_dir)

    assert before["read_features"][1] == after["read_features"][1], "compaction changed the row count"
    for (product, n, rv), (product_after, n_after, rv_after) in zip(before["duckdb"][1], after["duckdb"][1],
                                                                    strict=True):
        # Same rows; the average may differ in the last bits (another summation order).
        assert (product, n) == (product_after, n_after) and math.isclose(rv, rv_after, rel_tol=1e-9), \
            "compaction changed the query result"
    print()
    print("| reader (best of 3) | before | after | before / after |")
    print("| --- | --- | --- | --- |")
    labels = {"read_features": "`lake.read_features`, whole lake", "duckdb": f"DuckDB `{QUERY}`"}
    for key, label in labels.items():
        b, a = before[key][0], after[key][0]
        print(f"| {label} | {b * 1000:,.0f} ms | {a * 1000:,.0f} ms | {b / a:.1f}x |")
    print(f"| files | {files_before:,} | {files_after:,} | {files_before / files_after:.1f}x |")
    print("same row count and the same query result before and after: checked")


if __name__ == "__main__":
    main()
