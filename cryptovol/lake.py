"""The data lake on disk: where things live, fast readers, and DuckDB views over it.

Layout under the data dir (see also `cryptovol.config.Settings`):

    raw/<product>/<YYYY-MM-DD>.ndjson     landing files (system of record)
    features/                             Delta table: feature rows, partitioned by product_id, date
    predictions/                          Delta table: scored rows, partitioned by product_id, date
    lake_state/batch-built/<P>/<D>.json   when the batch featurizer last replaced (P, D)

Both tables are written only through `cryptovol.delta` (one transaction per flush or rebuild,
each row exactly once) and read only through this module: `read_features` / `read_features_at`
(optionally at an older table version: time travel), `read_predictions`, and `connect` (DuckDB
views over the tables' Arrow datasets). Any other Delta reader sees the same rows.

Landing files are parsed in bulk by DuckDB's JSON functions; any line the fast path rejects is
re-parsed by `cryptovol.ticks.tick_from_landing`, so values and verdicts are exactly the ones the
stream would get, and invalid lines are skipped and counted by reason, never fatal.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cryptovol.config import LakeLayout, Settings
from cryptovol.featureset import FEATURE_SET, MAX_GAP_S, FeatureSchemaError  # noqa: F401 - re-exported
from cryptovol.ticks import (
    TICK_COLUMNS,
    TICK_DTYPES,
    TickError,
    empty_tick_frame,
    tick_from_landing,
    valid_product_id,
)

if TYPE_CHECKING:
    import duckdb

DataDir = Settings | str | os.PathLike
DayLike = str | dt.date | dt.datetime | pd.Timestamp

BATCH_PART = "batch"
VERSION_COLUMN = "feature_set_version"
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NS_PER_DAY = 86_400 * 1_000_000_000


def data_dir_of(where: DataDir) -> Path:
    """A `Settings` or a path -> the data dir."""
    return Path(where.data_dir if isinstance(where, Settings) else where)


def day_str(day: DayLike) -> str:
    """`"2026-01-01"`, a date, a datetime or a Timestamp -> `"YYYY-MM-DD"` (UTC day)."""
    if isinstance(day, str):
        if _DAY_RE.match(day):
            return dt.date.fromisoformat(day).isoformat()  # rejects 2026-13-45
        day = pd.Timestamp(day)
    if isinstance(day, pd.Timestamp | dt.datetime):
        ts = pd.Timestamp(day)
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC")
        return ts.strftime("%Y-%m-%d")
    if isinstance(day, dt.date):
        return day.isoformat()
    raise TypeError(f"not a day: {day!r}")


def day_bounds_ns(day: DayLike) -> tuple[int, int]:
    """[start, end) of a UTC day in ns."""
    start = int(pd.Timestamp(day_str(day), tz="UTC").value)
    return start, start + _NS_PER_DAY


def previous_day(day: DayLike) -> str:
    return (dt.date.fromisoformat(day_str(day)) - dt.timedelta(days=1)).isoformat()


def _path_safe(product: str) -> str:
    """`product` if it may become a path (`cryptovol.ticks.valid_product_id`), else ValueError."""
    if not valid_product_id(product):
        raise ValueError(f"not a valid product id (e.g. BTC-USD): {str(product)[:80]!r}")
    return product


@dataclass(frozen=True)
class LakePaths(LakeLayout):
    """Every path of the lake, from one data dir (the three trees as `Settings` has them)."""

    data_dir: Path

    @classmethod
    def of(cls, where: DataDir) -> LakePaths:
        return cls(data_dir_of(where))

    def landing_file(self, product: str, day: DayLike) -> Path:
        return self.raw_dir / _path_safe(product) / f"{day_str(day)}.ndjson"

    def feature_partition(self, product: str, day: DayLike) -> Path:
        return self.features_dir / f"product={_path_safe(product)}" / f"date={day_str(day)}"

    def feature_part(self, product: str, day: DayLike, part: str = BATCH_PART) -> Path:
        """The record of the last batch build of (product, day): table version and rows (JSON).
        Outside the table; its mtime is what `batch.stale_partitions` compares."""
        return self.data_dir / "lake_state" / f"{part}-built" / _path_safe(product) / f"{day_str(day)}.json"


def landing_path(where: DataDir, product: str, day: DayLike) -> Path:
    return LakePaths.of(where).landing_file(product, day)


def features_partition_dir(where: DataDir, product: str, day: DayLike) -> Path:
    return LakePaths.of(where).feature_partition(product, day)


def list_landing_partitions(where: DataDir) -> list[tuple[str, str]]:
    """`[(product, day)]` of every landing file, sorted by (day, product)."""
    raw = LakePaths.of(where).raw_dir
    found = []
    for path in raw.glob("*/*.ndjson"):
        if _DAY_RE.match(path.stem) and valid_product_id(path.parent.name):
            found.append((path.parent.name, path.stem))
    return sorted(found, key=lambda pd_: (pd_[1], pd_[0]))


# --- landing files ---------------------------------------------------------------------------------

_PATHS = (
    "$.ticker.product_id", "$.ticker.best_bid", "$.ticker.best_ask", "$.ticker.price",
    "$.ticker.best_bid_quantity", "$.ticker.best_ask_quantity", "$.ticker.volume_24_h",
    "$.timestamp", "$.sequence_num", "$.received_at",
)
_TYPES = ("$.ticker", "$.ticker.product_id", "$.timestamp", "$.sequence_num", "$.received_at")

_NAT = "(-9223372036854775807 - 1)"  # pandas' NaT as int64: "not parsed here"
_CANONICAL_TS = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z"


def _ts_ns_sql(col: str) -> str:
    """SQL: the exchange's canonical `YYYY-MM-DDTHH:MM:SS.fffffffffZ` -> UTC ns; anything else NULL
    (those rows are parsed by pandas, like `parse_timestamp_ns`)."""
    return (
        f"coalesce(CASE WHEN regexp_full_match({col}, '{_CANONICAL_TS}') THEN "
        f"epoch_ns(try_strptime(left({col}, 19), '%Y-%m-%dT%H:%M:%S')) "
        f"+ try_cast(substr({col}, 21, 9) AS BIGINT) END, {_NAT})"
    )


# One pass of DuckDB's JSON reader over all lines. `ok` is conservative: a line it rejects goes to
# the exact Python parser, so the fast path may only ever accept what `tick_from_landing` accepts.
_PARSE_SQL = f"""
WITH j AS (SELECT line_no, try_cast(line AS JSON) AS j FROM lines),
x AS (
  SELECT line_no, j IS NOT NULL AS valid,
         json_extract_string(j, {list(_PATHS)!r}) AS v,
         json_type(j, {list(_TYPES)!r}) AS ty
  FROM j
),
y AS (
  SELECT line_no, valid, ty,
         v[1] AS product_id,
         try_cast(v[2] AS DOUBLE) AS best_bid, try_cast(v[3] AS DOUBLE) AS best_ask,
         try_cast(v[4] AS DOUBLE) AS price,
         v[5] AS bq_t, try_cast(v[5] AS DOUBLE) AS best_bid_qty,
         v[6] AS aq_t, try_cast(v[6] AS DOUBLE) AS best_ask_qty,
         v[7] AS vol_t, try_cast(v[7] AS DOUBLE) AS volume_24h,
         v[8] AS ts, try_cast(v[9] AS BIGINT) AS sequence, v[10] AS recv
  FROM x
)
SELECT line_no, product_id, best_bid, best_ask, price, best_bid_qty, best_ask_qty, volume_24h,
       ts, coalesce(sequence, -1) AS sequence, recv,
       {_ts_ns_sql("ts")} AS ev_ns, {_ts_ns_sql("coalesce(nullif(recv, ''), ts)")} AS rv_ns,
       coalesce(
         valid AND ty[1] = 'OBJECT' AND ty[2] = 'VARCHAR' AND length(product_id) > 0
         AND ty[3] = 'VARCHAR'
         AND (ty[4] IS NULL OR ty[4] IN ('UBIGINT', 'BIGINT'))
         AND (ty[5] IS NULL OR ty[5] IN ('VARCHAR', 'NULL'))
         AND isfinite(best_bid) AND isfinite(best_ask) AND isfinite(price)
         AND best_bid > 0 AND best_ask > 0 AND price > 0 AND best_bid <= best_ask
         AND (bq_t IS NULL OR bq_t = '' OR (isfinite(best_bid_qty) AND best_bid_qty >= 0))
         AND (aq_t IS NULL OR aq_t = '' OR (isfinite(best_ask_qty) AND best_ask_qty >= 0))
         AND (vol_t IS NULL OR vol_t = '' OR (isfinite(volume_24h) AND volume_24h >= 0)),
         false) AS ok
FROM y ORDER BY line_no
"""


# Whole-file fast path: DuckDB's typed NDJSON reader. Used only when every non-empty line comes out
# as a row that passes the strict checks below; otherwise the file goes through the line-by-line
# path (`parse_landing_lines`), which knows which line failed and why.
_FAST_SQL = """
WITH r AS (
  SELECT ticker.product_id AS product_id,
         try_cast(ticker.best_bid AS DOUBLE) AS best_bid, try_cast(ticker.best_ask AS DOUBLE) AS best_ask,
         try_cast(ticker.price AS DOUBLE) AS price,
         ticker.best_bid_quantity AS bq_t, try_cast(ticker.best_bid_quantity AS DOUBLE) AS best_bid_qty,
         ticker.best_ask_quantity AS aq_t, try_cast(ticker.best_ask_quantity AS DOUBLE) AS best_ask_qty,
         ticker.volume_24_h AS vol_t, try_cast(ticker.volume_24_h AS DOUBLE) AS volume_24h,
         "timestamp" AS ts, received_at AS recv,
         CASE WHEN regexp_full_match(sequence_num, '-?[0-9]{{1,18}}')
              THEN try_cast(sequence_num AS BIGINT) END AS sequence
  FROM read_json({path}, format = 'newline_delimited', ignore_errors = true,
       columns = {{ticker: 'STRUCT(product_id VARCHAR, price VARCHAR, best_bid VARCHAR,
                                   best_ask VARCHAR, best_bid_quantity VARCHAR,
                                   best_ask_quantity VARCHAR, volume_24_h VARCHAR)',
                  "timestamp": 'VARCHAR', sequence_num: 'VARCHAR', received_at: 'VARCHAR'}})
)
SELECT product_id, best_bid, best_ask, price, best_bid_qty, best_ask_qty, volume_24h,
       {ev} AS event_time_ns, sequence, {rv} AS receive_time_ns,
       coalesce(
         length(product_id) > 0 AND sequence IS NOT NULL AND recv IS NOT NULL AND recv <> ''
         AND isfinite(best_bid) AND isfinite(best_ask) AND isfinite(price)
         AND best_bid > 0 AND best_ask > 0 AND price > 0 AND best_bid <= best_ask
         AND (bq_t IS NULL OR bq_t = '' OR (isfinite(best_bid_qty) AND best_bid_qty >= 0))
         AND (aq_t IS NULL OR aq_t = '' OR (isfinite(best_ask_qty) AND best_ask_qty >= 0))
         AND (vol_t IS NULL OR vol_t = '' OR (isfinite(volume_24h) AND volume_24h >= 0)),
         false) AS ok,
       ts, recv
FROM r
""".format(path="{path}", ev=_ts_ns_sql("ts"), rv=_ts_ns_sql("recv"))


@dataclass
class LandingRead:
    """Ticks parsed from landing lines, in file order, plus what was skipped and why."""

    ticks: pd.DataFrame
    lines: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    path: Path | None = None

    @property
    def invalid_count(self) -> int:
        return int(sum(self.invalid.values()))


def _to_ns(text: pd.Series) -> np.ndarray:
    """ISO-8601 strings -> UTC ns (offset-less = UTC, like `parse_timestamp_ns`); unparsable -> NaT."""
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    return pd.DatetimeIndex(parsed).as_unit("ns").asi8.copy()


def _optional(values: pd.Series) -> np.ndarray:
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _times(got: pd.DataFrame, ok: np.ndarray, ev_col: str, rv_col: str) -> tuple[np.ndarray, np.ndarray]:
    """Event/receive ns from the SQL columns; rows SQL could not parse go through pandas."""
    nat = np.iinfo(np.int64).min
    ev = got[ev_col].to_numpy(dtype=np.int64)
    rv = got[rv_col].to_numpy(dtype=np.int64)
    todo = ok & ((ev == nat) | (rv == nat))
    if todo.any():
        ts = got["ts"].where(todo)
        recv = got["recv"].where(todo & got["recv"].notna() & (got["recv"] != ""), ts)
        ev = np.where(todo, _to_ns(ts), ev)
        rv = np.where(todo, _to_ns(recv), rv)
    return ev, rv


def _frame(got: pd.DataFrame, event_ns: np.ndarray, recv_ns: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "product_id": got["product_id"],
        "event_time_ns": event_ns,
        "sequence": got["sequence"].fillna(-1).to_numpy(dtype=np.int64),
        "price": got["price"].to_numpy(dtype=np.float64, na_value=np.nan),
        "best_bid": got["best_bid"].to_numpy(dtype=np.float64, na_value=np.nan),
        "best_ask": got["best_ask"].to_numpy(dtype=np.float64, na_value=np.nan),
        "best_bid_qty": _optional(got["best_bid_qty"]),
        "best_ask_qty": _optional(got["best_ask_qty"]),
        "volume_24h": _optional(got["volume_24h"]),
        "receive_time_ns": recv_ns,
    })


def _finish(frame: pd.DataFrame, ok: np.ndarray, product: str | None, invalid: Counter[str]) -> pd.DataFrame:
    frame = frame.loc[ok]
    if product is not None:
        other = (frame["product_id"] != product).to_numpy()
        if other.any():
            invalid["other_product"] += int(other.sum())
            frame = frame.loc[~other]
    return frame.reset_index(drop=True).astype(TICK_DTYPES)


def parse_landing_lines(lines: list[str], *, product: str | None = None) -> LandingRead:
    """Landing-file lines -> ticks (file order); bad lines skipped and counted by reason.

    `product`, if given, keeps only that product's ticks; others are counted as `other_product`.
    Empty lines are ignored.
    """
    import duckdb
    import pyarrow as pa

    lines = [line for line in lines if line and not line.isspace()]
    invalid: Counter[str] = Counter()
    garbled = [line for line in lines if "\ufffd" in line]
    if garbled:
        invalid["bad_encoding"] = len(garbled)
        lines = [line for line in lines if "\ufffd" not in line]
    n = len(lines)
    if n == 0:
        return LandingRead(empty_tick_frame(), len(garbled), dict(invalid))
    table = pa.table({"line_no": pa.array(np.arange(n, dtype=np.int64)),
                      "line": pa.array(lines, pa.string())})
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        con.register("lines", table)
        got = con.sql(_PARSE_SQL).df()
    finally:
        con.close()
    ok = got["ok"].to_numpy(dtype=bool).copy()
    event_ns, recv_ns = _times(got, ok, "ev_ns", "rv_ns")
    nat = np.iinfo(np.int64).min
    ok &= (event_ns != nat) & (recv_ns != nat)
    frame = _frame(got, event_ns, recv_ns)
    bad = np.flatnonzero(~ok)
    if len(bad):
        rescued: dict[int, list[Any]] = {}
        for i in bad:
            try:
                tick = tick_from_landing(json.loads(lines[i]))
            except TickError as exc:
                invalid[exc.reason] += 1
            except ValueError:
                invalid["bad_json"] += 1
            except Exception:  # noqa: BLE001 - any other malformed shape is a bad line, not a crash
                invalid["bad_landing_line"] += 1
            else:
                rescued[int(i)] = [getattr(tick, c) for c in TICK_COLUMNS]
        if rescued:
            idx = np.fromiter(rescued, dtype=np.int64)
            frame.loc[idx, list(TICK_COLUMNS)] = pd.DataFrame(
                list(rescued.values()), columns=list(TICK_COLUMNS), index=idx
            )
            ok[idx] = True
    return LandingRead(_finish(frame, ok, product, invalid), n + len(garbled), dict(invalid))


def _count_lines(path: Path) -> int:
    """Non-empty lines of a file (streamed in blocks)."""
    count = 0
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                count += 1
    return count


def _fast_read(path: Path, product: str | None) -> LandingRead | None:
    """The whole-file fast path, or None when any line needs the exact line-by-line parser."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        got = con.sql(_FAST_SQL.replace("{path}", _sql_list([path]))).df()
    except duckdb.Error:
        return None
    finally:
        con.close()
    ok = got["ok"].to_numpy(dtype=bool)
    if not ok.all() or len(got) != _count_lines(path):
        return None
    event_ns, recv_ns = _times(got.rename(columns={"event_time_ns": "ev", "receive_time_ns": "rv"}),
                               ok, "ev", "rv")
    nat = np.iinfo(np.int64).min
    if bool(((event_ns == nat) | (recv_ns == nat)).any()):
        return None
    invalid: Counter[str] = Counter()
    frame = _finish(_frame(got, event_ns, recv_ns), ok, product, invalid)
    return LandingRead(frame, len(got), dict(invalid), path)


def _read_text(path: Path, offset: int = 0) -> list[str]:
    with open(path, "rb") as handle:
        if offset:
            handle.seek(offset)
        data = handle.read()
    if offset:  # drop the partial first line
        cut = data.find(b"\n")
        data = data[cut + 1:] if cut >= 0 else b""
    # Undecodable bytes become U+FFFD, which json.dumps never writes raw (it escapes non-ASCII):
    # parse_landing_lines counts such lines as `bad_encoding`.
    lines = data.decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_landing_file(path: str | Path, *, product: str | None = None) -> LandingRead:
    """All valid ticks of one landing file, in file order (see `parse_landing_lines`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no landing file at {path}")
    if path.stat().st_size == 0:
        return LandingRead(empty_tick_frame(), 0, {}, path)
    fast = _fast_read(path, product)
    if fast is not None:
        return fast
    result = parse_landing_lines(_read_text(path), product=product)
    result.path = path
    return result


def read_landing_tail(path: str | Path, since_ns: int, *, product: str | None = None,
                      slack_s: float = 60.0, chunk_bytes: int = 1 << 20) -> pd.DataFrame:
    """The ticks of a landing file with event time >= `since_ns`, reading only the end of the file.

    Lines are in arrival order, which is event order up to small disorder, so the reader grows a
    window from the end until its first tick is `slack_s` before `since_ns` (or it has the file).
    Used for the previous day's context of the batch featurizer.
    """
    path = Path(path)
    size = path.stat().st_size
    chunk = max(1024, int(chunk_bytes))
    while True:
        offset = max(0, size - chunk)
        got = parse_landing_lines(_read_text(path, offset), product=product).ticks
        enough = len(got) and int(got["event_time_ns"].min()) <= since_ns - int(slack_s * 1e9)
        if offset == 0 or enough:
            return got.loc[got["event_time_ns"] >= since_ns].reset_index(drop=True)
        chunk *= 4


def read_landing_day(where: DataDir, product: str, day: DayLike) -> pd.DataFrame:
    """The valid ticks of `raw/<product>/<day>.ndjson` in file (arrival) order.

    `frame.attrs["invalid"]` holds the skipped-line counts by reason, `attrs["lines"]` the total.
    """
    result = read_landing_file(landing_path(where, product, day), product=product)
    frame = result.ticks
    frame.attrs["invalid"] = dict(result.invalid)
    frame.attrs["lines"] = result.lines
    return frame


@dataclass(frozen=True)
class LandingSummary:
    """What a landing file holds: rows, invalid (dead-lettered) lines by reason, span and gaps."""

    rows: int
    lines: int
    dead_lettered: int
    dead_letter_reasons: dict[str, int]
    first_event_ns: int | None
    last_event_ns: int | None
    gaps: int
    largest_gap_s: float


def landing_summary(where: DataDir, product: str, day: DayLike) -> LandingSummary:
    result = read_landing_file(landing_path(where, product, day), product=product)
    times = np.sort(result.ticks["event_time_ns"].to_numpy(dtype=np.int64))
    diffs = np.diff(times) / 1e9 if len(times) > 1 else np.zeros(0)
    return LandingSummary(
        rows=len(times),
        lines=result.lines,
        dead_lettered=result.invalid_count,
        dead_letter_reasons=dict(result.invalid),
        first_event_ns=int(times[0]) if len(times) else None,
        last_event_ns=int(times[-1]) if len(times) else None,
        gaps=int((diffs > MAX_GAP_S).sum()),
        largest_gap_s=float(diffs.max()) if len(diffs) else 0.0,
    )


# --- the feature and prediction tables (Delta Lake, see `cryptovol.delta`) -----------------------


def feature_table(frame: pd.DataFrame):
    """Batch feature rows -> an Arrow table with the feature table's schema (lineage columns null)."""
    import pyarrow as pa

    from cryptovol import delta

    FEATURE_SET.validate_columns(list(frame.columns))
    times = frame["event_time_ns"].to_numpy(dtype=np.int64)
    n = len(frame)
    cols = {
        "product_id": pa.array(frame["product_id"].astype(str).to_numpy(dtype=object), pa.string()),
        "date": delta.day_of_ns(times),
        "event_time_ns": pa.array(times, pa.int64()),
        "sequence": pa.array(frame["sequence"].to_numpy(dtype=np.int64), pa.int64()),
    }
    for name in FEATURE_SET.names:
        # NaN (warm-up) is stored as NULL, so SQL aggregates skip it; pandas reads it back as NaN.
        cols[name] = pa.array(frame[name].to_numpy(dtype=np.float64), pa.float64(), from_pandas=True)
    cols[VERSION_COLUMN] = pa.array([FEATURE_SET.version] * n, pa.string())
    cols["source_partition"] = pa.nulls(n, pa.int32())
    cols["source_offset"] = pa.nulls(n, pa.int64())
    return pa.Table.from_pydict(cols, schema=delta.FEATURE_SCHEMA)


def write_feature_part(frame: pd.DataFrame, where: DataDir, product: str, day: DayLike,
                       part: str = BATCH_PART) -> Path:
    """Replace the (product, day) feature rows with `frame` in one Delta transaction (predicate
    overwrite up to the newest row; stream rows after it stay), then record the build
    (`LakePaths.feature_part`, what `batch.stale_partitions` compares with the landing file)."""
    from cryptovol import delta
    from cryptovol.atomic import write_text_atomic

    if part != BATCH_PART:
        raise ValueError("only the batch featurizer replaces partitions; stream rows are appended "
                         "by cryptovol.stream.sink.write_batches")
    paths = LakePaths.of(where)
    day = day_str(day)
    table = feature_table(frame)
    days = set(table["date"].to_pylist())
    if days - {day}:
        raise ValueError(f"rows of {sorted(days - {day})} given for the partition {product} {day}")
    commit = delta.replace_partition(paths.features_dir, table, _path_safe(product), day)
    marker = paths.feature_part(product, day)
    write_text_atomic(marker, json.dumps({"table_version": commit.version, "rows": commit.rows}))
    return marker


def _open_features(where: DataDir, version: int | None = None, check_version: bool = True):
    from cryptovol import delta

    table = delta.open_table(LakePaths.of(where).features_dir, version)
    if table is not None and check_version:
        delta.check_feature_version(table, LakePaths.of(where).features_dir)
    return table


def list_feature_partitions(where: DataDir) -> list[tuple[str, str]]:
    """`[(product, day)]` of every partition of the feature table holding rows."""
    table = _open_features(where, check_version=False)
    if table is None:
        return []
    found = {(p["product_id"], p["date"]) for p in table.partitions()
             if p.get("product_id") and p.get("date") and valid_product_id(p["product_id"])}
    return sorted(found, key=lambda pd_: (pd_[1], pd_[0]))


def _empty_features() -> pd.DataFrame:
    out = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in FEATURE_SET.columns})
    out["product_id"] = out["product_id"].astype("string")
    out["event_time_ns"] = out["event_time_ns"].astype(np.int64)
    out["sequence"] = out["sequence"].astype(np.int64)
    out[VERSION_COLUMN] = pd.Series(dtype="string")
    return out


@dataclass(frozen=True)
class FeatureRead:
    """Feature rows and the feature table version they were read at (None: no table yet).
    `read_features(..., as_of_version=version)` returns exactly these rows again (time travel)."""

    frame: pd.DataFrame
    version: int | None


def _day_filter(start: DayLike | None, end: DayLike | None):
    import pyarrow.dataset as ds

    expr = None
    if start is not None:
        expr = ds.field("date") >= day_str(start)
    if end is not None:
        hi = ds.field("date") <= day_str(end)
        expr = hi if expr is None else expr & hi
    return expr


def read_features_at(
    where: DataDir,
    products: Iterable[str] | None = None,
    start: DayLike | None = None,
    end: DayLike | None = None,
    *,
    check_version: bool = True,
    as_of_version: int | None = None,
    event_window_ns: tuple[int, int] | None = None,
    columns: Iterable[str] | None = None,
) -> FeatureRead:
    """Feature rows for `products` and UTC days `start..end` (inclusive), at table version
    `as_of_version` (default: the newest), and that version.

    Sorted by (product, event time, sequence); one row per key because the writers commit each
    key once (no reader-side precedence). `event_window_ns` = [start, end) narrows by event time.
    Raises `FeatureSchemaError` for a table of another feature-set version unless
    `check_version=False`.
    """
    import pyarrow.dataset as ds

    table = _open_features(where, as_of_version, check_version)
    if table is None:
        return FeatureRead(_empty_features(), None)
    wanted = None
    if products is not None:
        wanted = sorted({str(p).upper() for p in products})
    expr = _day_filter(start, end)
    if event_window_ns is not None:
        win = (ds.field("event_time_ns") >= int(event_window_ns[0])) & (
            ds.field("event_time_ns") < int(event_window_ns[1]))
        expr = win if expr is None else expr & win
    data = table.to_pyarrow_dataset(partitions=[("product_id", "in", wanted)] if wanted else None)
    names = list(columns) if columns is not None else [*FEATURE_SET.columns, VERSION_COLUMN]
    got = data.to_table(columns=names, filter=expr)
    if got.num_rows == 0:
        empty = _empty_features()
        return FeatureRead(empty[[c for c in names if c in empty.columns]], table.version())
    frame = got.to_pandas()
    for name in ("product_id", VERSION_COLUMN):
        if name in frame.columns:
            frame[name] = frame[name].astype("string")
    order = [c for c in ("product_id", "event_time_ns", "sequence") if c in frame.columns]
    frame = frame.sort_values(order, kind="stable") if order else frame
    return FeatureRead(frame.reset_index(drop=True), table.version())


def read_features(
    where: DataDir,
    products: Iterable[str] | None = None,
    start: DayLike | None = None,
    end: DayLike | None = None,
    *,
    check_version: bool = True,
    as_of_version: int | None = None,
) -> pd.DataFrame:
    """`read_features_at(...).frame`; the table version read is in `frame.attrs["lake_version"]`."""
    got = read_features_at(where, products, start, end, check_version=check_version,
                           as_of_version=as_of_version)
    got.frame.attrs["lake_version"] = got.version
    return got.frame


def feature_table_version(where: DataDir) -> int | None:
    """The newest version of the feature table (None if there is none)."""
    table = _open_features(where, check_version=False)
    return None if table is None else table.version()


def latest_feature_time_ns(where: DataDir, products: Iterable[str] | None = None) -> int | None:
    """The newest feature event time in the table (from the newest day of each product)."""
    latest = None
    by_product: dict[str, str] = {}
    for product, day in list_feature_partitions(where):
        if products is None or product.upper() in {p.upper() for p in products}:
            by_product[product] = max(day, by_product.get(product, day))
    for product, day in by_product.items():
        got = read_features_at(where, [product], day, day, check_version=False,
                               columns=["event_time_ns"]).frame
        if len(got):
            value = int(got["event_time_ns"].max())
            latest = value if latest is None else max(latest, value)
    return latest


def read_predictions(where: DataDir, event_window_ns: tuple[int, int] | None = None,
                     *, as_of_version: int | None = None) -> pd.DataFrame:
    """Scored rows of the prediction table (event time in [start, end) if given); empty frame if
    there is no table."""
    import pyarrow.dataset as ds

    from cryptovol import delta

    expr = None
    if event_window_ns is not None:
        expr = (ds.field("event_time_ns") >= int(event_window_ns[0])) & (
            ds.field("event_time_ns") < int(event_window_ns[1]))
    got, _ = delta.scan(LakePaths.of(where).predictions_dir, filter=expr, version=as_of_version)
    if got is None:
        return pd.DataFrame()
    return got.to_pandas()


# --- DuckDB views ----------------------------------------------------------------------------------

_EMPTY_FEATURES = ", ".join(
    ["NULL::VARCHAR AS product_id", "NULL::BIGINT AS event_time_ns", "NULL::BIGINT AS sequence"]
    + [f"NULL::DOUBLE AS {name}" for name in FEATURE_SET.names]
    + [f"NULL::VARCHAR AS {VERSION_COLUMN}", "NULL::VARCHAR AS product", "NULL::VARCHAR AS date"]
)

_RAW_VIEW = """
CREATE OR REPLACE VIEW raw_ticks AS
SELECT * FROM (
SELECT ticker->>'product_id' AS product_id,
       epoch_ns(try_cast("timestamp" AS TIMESTAMPTZ)) AS event_time_ns,
       try_cast("timestamp" AS TIMESTAMPTZ) AS event_time,
       sequence_num AS sequence,
       try_cast(ticker->>'price' AS DOUBLE) AS price,
       try_cast(ticker->>'best_bid' AS DOUBLE) AS best_bid,
       try_cast(ticker->>'best_ask' AS DOUBLE) AS best_ask,
       try_cast(ticker->>'best_bid_quantity' AS DOUBLE) AS best_bid_qty,
       try_cast(ticker->>'best_ask_quantity' AS DOUBLE) AS best_ask_qty,
       try_cast(ticker->>'volume_24_h' AS DOUBLE) AS volume_24h,
       epoch_ns(try_cast(received_at AS TIMESTAMPTZ)) AS receive_time_ns,
       event_type,
       filename
FROM read_json({glob}, format = 'newline_delimited', ignore_errors = true, filename = true,
               columns = {{ticker: 'JSON', "timestamp": 'VARCHAR', sequence_num: 'BIGINT',
                           event_type: 'VARCHAR', received_at: 'VARCHAR'}})
) WHERE product_id IS NOT NULL AND event_time_ns IS NOT NULL AND best_bid IS NOT NULL
  AND best_ask IS NOT NULL
"""

_EMPTY_RAW = (
    "CREATE OR REPLACE VIEW raw_ticks AS SELECT NULL::VARCHAR AS product_id, NULL::BIGINT AS event_time_ns, "
    "NULL::TIMESTAMPTZ AS event_time, NULL::BIGINT AS sequence, NULL::DOUBLE AS price, "
    "NULL::DOUBLE AS best_bid, NULL::DOUBLE AS best_ask, NULL::DOUBLE AS best_bid_qty, "
    "NULL::DOUBLE AS best_ask_qty, NULL::DOUBLE AS volume_24h, NULL::BIGINT AS receive_time_ns, "
    "NULL::VARCHAR AS event_type, NULL::VARCHAR AS filename WHERE false"
)


def _sql_list(paths: Iterable[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _delta_scan(con: duckdb.DuckDBPyConnection, table, name: str) -> str:
    """SQL source for one Delta table snapshot: DuckDB's own Parquet reader over exactly the
    files the snapshot lists (partition values from the hive-style paths delta-rs writes, cast to
    the table's types) when the table uses no reader feature that needs more (deletion vectors,
    column mapping); otherwise the table's Arrow dataset, registered as `name`."""
    protocol = table.protocol()
    features = set(protocol.reader_features or [])
    files = table.file_uris()
    if protocol.min_reader_version > 1 and features - {"timestampNtz"} or not files:
        con.register(name, table.to_pyarrow_dataset())
        return name
    types = {"product_id": "VARCHAR", "date": "VARCHAR"}
    listed = _sql_list(f.removeprefix("file://") for f in files)
    return (f"read_parquet({listed}, hive_partitioning = true, hive_types = {types!r}, "
            "union_by_name = true)")


def connect(where: DataDir, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views over the lake.

    - `raw_ticks`: landing lines with a product, a timestamp and a quote (lenient: unparsable
      lines are left out, no other validation; timestamps at microsecond precision; use
      `read_landing_day` for exact ns values, the stream's validation and reason counts).
    - `features`: the feature Delta table at its newest version when connecting (columns as
      stored, plus `product` = `product_id`), every row once.
    - `predictions`: the prediction Delta table (empty view if there is none yet).

    Both views read exactly the files of the table's snapshot when connecting (`_delta_scan`;
    DuckDB's own delta extension downloads at first use): reconnect to see commits made since.
    """
    import duckdb

    from cryptovol import delta

    paths = LakePaths.of(where)
    con = duckdb.connect(database)
    con.execute("SET enable_progress_bar = false")  # no terminal noise in pipelines and logs
    raw_files = sorted(paths.raw_dir.glob("*/*.ndjson"))
    raw_files = [p for p in raw_files if valid_product_id(p.parent.name) and p.stat().st_size > 0]
    con.execute(_RAW_VIEW.format(glob=_sql_list(raw_files)) if raw_files else _EMPTY_RAW)
    features = delta.open_table(paths.features_dir)
    if features is not None:
        con.execute(f"CREATE OR REPLACE VIEW features AS SELECT *, product_id AS product "
                    f"FROM {_delta_scan(con, features, '_features_delta')}")
    else:
        con.execute(f"CREATE OR REPLACE VIEW features AS SELECT {_EMPTY_FEATURES} WHERE false")
    predictions = delta.open_table(paths.predictions_dir)
    if predictions is not None:
        con.execute("CREATE OR REPLACE VIEW predictions AS SELECT *, product_id AS product "
                    f"FROM {_delta_scan(con, predictions, '_predictions_delta')}")
    else:
        con.execute(
            "CREATE OR REPLACE VIEW predictions AS SELECT NULL::VARCHAR AS product_id, "
            "NULL::BIGINT AS event_time_ns, NULL::DOUBLE AS spike_probability WHERE false"
        )
    return con


__all__ = [
    "FeatureRead",
    "LakePaths",
    "LandingRead",
    "LandingSummary",
    "connect",
    "day_str",
    "feature_table_version",
    "features_partition_dir",
    "landing_path",
    "landing_summary",
    "latest_feature_time_ns",
    "list_feature_partitions",
    "list_landing_partitions",
    "parse_landing_lines",
    "read_features",
    "read_features_at",
    "read_landing_day",
    "read_landing_file",
    "read_landing_tail",
    "read_predictions",
    "write_feature_part",
]
