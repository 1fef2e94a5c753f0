"""`cryptovol sql`: DuckDB over the lake's views, in table, csv and json formats."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from cryptovol.cli import main
from cryptovol.simulator.synthetic import generate_landing_files
from cryptovol.stream.engine import SourceRecord, StreamEngine
from cryptovol.stream.sink import write_batches
from cryptovol.ticks import tick_from_landing


def _lake(data_dir) -> dict[str, int]:
    """Landing files plus stream feature Parquet for them; returns ticks per product."""
    paths = generate_landing_files(data_dir, ("BTC-USD", "ETH-USD"), start=datetime(2026, 2, 1, tzinfo=UTC),
                                   duration_s=60, seed=4)
    ticks = [tick_from_landing(json.loads(line)) for p in paths for line in p.read_text().splitlines()]
    engine = StreamEngine(lateness_s=0.0)
    for i, t in enumerate(ticks):
        engine.offer(SourceRecord(t, 0, i))
    write_batches(data_dir / "features", engine.release(force=True))
    counts: dict[str, int] = {}
    for t in ticks:
        counts[t.product_id] = counts.get(t.product_id, 0) + 1
    return counts


def test_sql_prints_query_results_in_each_format(data_dir, capsys):
    counts = _lake(data_dir)
    query = "SELECT product_id, count(*) AS n FROM features GROUP BY product_id ORDER BY product_id"

    assert main(["sql", query, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["product_id"]: int(r["n"]) for r in rows} == counts

    raw_query = "SELECT product_id, count(*) AS n FROM raw_ticks GROUP BY ALL"
    assert main(["sql", raw_query, "--format", "json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {r["product_id"]: r["n"] for r in lines} == counts

    assert main(["sql", "SELECT min(rv_30s) AS first_rv FROM features"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].strip() == "first_rv" and out[-1] == "(1 row)"


def test_sql_reports_a_bad_query_without_a_traceback(data_dir, capsys):
    assert main(["sql", "SELECT * FROM no_such_view"]) == 1
    err = capsys.readouterr().err
    assert "no_such_view" in err and "Traceback" not in err
