"""`cryptovol sql "SELECT ..."`: ad-hoc DuckDB SQL over the lake (views raw_ticks, features,
predictions; see `cryptovol.lake.connect`)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from typing import Any

HELP = "run SQL on the lake with DuckDB (views: raw_ticks, features, predictions)"

EPILOG = """examples:
  cryptovol sql "SELECT product_id, count(*) AS n FROM features GROUP BY ALL"
  cryptovol sql "SELECT * FROM raw_ticks ORDER BY event_time_ns DESC LIMIT 5" --format json
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("query", help="SQL text (use - to read it from stdin)")
    parser.add_argument("--format", choices=["table", "csv", "json"], default="table",
                        help="output format (default: table)")
    parser.add_argument("--max-rows", type=int, default=1000,
                        help="table format only: print at most this many rows (default 1000)")


def _cell(value: Any) -> Any:
    """JSON/CSV-friendly value: NaN -> null, timestamps/decimals -> text."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def format_table(columns: list[str], rows: list[tuple], max_rows: int) -> str:
    shown = rows[:max_rows]
    text = [["" if v is None else str(_cell(v)) for v in row] for row in shown]
    widths = [max([len(c)] + [len(r[i]) for r in text]) for i, c in enumerate(columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in text]
    more = f", showing {len(shown)}" if len(rows) > len(shown) else ""
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{more})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import duckdb

    from cryptovol.config import Settings
    from cryptovol.lake import connect

    query = sys.stdin.read() if args.query == "-" else args.query
    settings = Settings.from_env()
    con = connect(settings)
    try:
        cursor = con.execute(query)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        rows = cursor.fetchall() if columns else []
    except duckdb.Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        con.close()
    if args.format == "json":
        for row in rows:
            print(json.dumps({c: _cell(v) for c, v in zip(columns, row, strict=True)}, default=str))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if _cell(v) is None else _cell(v) for v in row])
    elif columns:
        print(format_table(columns, rows, args.max_rows))
    else:
        print("ok")
    return 0
