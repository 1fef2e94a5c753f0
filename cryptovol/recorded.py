"""Readers for recorded ticker data: our own landing files and the third-party recordings we test on.

`read_recorded(path)` auto-detects the format from the first JSON object in the file and yields one
`Tick` per ticker, validated by the same `tick_from_ticker` as the live ingestor, so a recording
replays into `ticks.raw` exactly like live data would. Supported formats (see `FORMATS`):

| name               | recorded by                                      | event time   | sequence      |
|--------------------|--------------------------------------------------|--------------|---------------|
| `landing`          | `cryptovol ingest`, `replay --to-landing`        | envelope     | envelope      |
| `envelope`         | verbatim Advanced Trade frames, one per line     | envelope     | envelope      |
| `simulator_record` | `cryptovol simulate --record` (`frame`, `kind`)  | envelope     | envelope      |
| `envelope_ingest`  | 2026-04 guhankesav: `{ingest_time, payload}`     | envelope     | envelope      |
| `recorder_raw`     | Dec-2025 recorder: `{timestamp, ..., raw}`       | receive (!)  | running index |
| `flat_ws`          | 2026-04 streakh: flattened, `ws_timestamp`       | envelope     | envelope      |
| `flat_receive_ts`  | 2026-04 eshitaraj24: floats, `ts`                | receive (!)  | running index |
| `flat_exchange_ts` | 2026-04 rrpichardo: strings, `timestamp` (`Z`)   | envelope     | running index |

Rules the table encodes:
- Where a recording has no exchange time, event time = its receive-time field. Where it has no
  receive time, receive time = event time. Where it has no sequence, sequence = running index of
  the tick within the file (0, 1, 2, ...).
- Timestamps without an offset are read in `assume_tz`. By default that is UTC, except for the
  recordings listed in `KNOWN_LOCAL_TIMEZONES` (matched on a path component): the Dec-2025 files
  from `commit_6109133` were written in US Eastern local time (see that folder's SOURCE.md).
- Fields a recording lacks (sizes, 24 h volume) become NaN. eshitaraj24's `volume_24h` is always 0.0
  (the recorder read the wrong key), so it is ignored.
- Frames of other channels (subscriptions, heartbeats) are skipped, not errors.
- CSV trade lists and kline bars have no best bid/ask, so they cannot become ticks: clear error.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from cryptovol.ticks import (
    TICK_COLUMNS,
    TICK_DTYPES,
    Tick,
    TickError,
    empty_tick_frame,
    format_timestamp_ns,
    parse_timestamp_ns,
    tick_from_ticker,
)

log = logging.getLogger(__name__)

#: Path components of recordings whose offset-less timestamps are local time, and that zone.
KNOWN_LOCAL_TIMEZONES: dict[str, str] = {
    # mel-hsw/cryptoproject-final @6109133: recorded on a laptop in US Eastern (SOURCE.md).
    "commit_6109133": "America/New_York",
}

#: File names a directory walk picks up (other files, e.g. SOURCE.md or CSVs, are left alone).
RECORDING_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz", ".json", ".json.gz")


class RecordedFormatError(ValueError):
    """A file whose format is not one we can read ticks from (the message says why)."""


@dataclass(frozen=True, slots=True)
class RecordedTick:
    """A tick plus what a landing line needs: the ticker object and the envelope it came in."""

    tick: Tick
    ticker: dict[str, Any]
    envelope_timestamp: str
    event_type: str


@dataclass
class ReadReport:
    """What one or more reads saw: ticks, skipped non-ticker lines, bad lines by reason."""

    files: int = 0
    ticks: int = 0
    skipped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)

    @property
    def bad_lines(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "ticks": self.ticks,
            "skipped": self.skipped,
            "bad_lines": self.bad_lines,
            "errors": dict(self.errors),
            "formats": dict(self.formats),
        }


# --- Low-level helpers --------------------------------------------------------------------------


def open_text(path: Path) -> io.TextIOBase:
    """Open a text file, transparently gunzipping it (by magic bytes, not by name)."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")  # noqa: SIM115 (caller closes)


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, plus every recording file (`RECORDING_SUFFIXES`) under given directories."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(RECORDING_SUFFIXES))
            )
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
    return found


def default_timezone(path: Path) -> str:
    """Zone for offset-less timestamps in `path`: a known local-time recording, else UTC."""
    for part in Path(path).resolve().parts:
        if part in KNOWN_LOCAL_TIMEZONES:
            return KNOWN_LOCAL_TIMEZONES[part]
    return "UTC"


def _ts(text: Any, tz: str) -> int:
    if not isinstance(text, str):
        raise TickError("bad_timestamp", repr(text))
    return parse_timestamp_ns(text, assume_tz=tz)


def _number_text(value: Any) -> Any:
    """Floats in a flattened recording -> the string form the exchange uses (repr round-trips)."""
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return value


# --- Per-format parsers: (obj, index, tz) -> list of RecordedTick -------------------------------
# `index` is the running count of ticks already read from the file (the fallback sequence).

Parser = Callable[[dict[str, Any], int, str], list[RecordedTick]]


def _from_envelope(frame: dict[str, Any], receive_ns: int | None, tz: str) -> list[RecordedTick]:
    if frame.get("channel") != "ticker":
        return []
    timestamp = frame.get("timestamp")
    event_ns = _ts(timestamp, tz)
    sequence = frame.get("sequence_num", -1)
    out = []
    for event in frame.get("events") or []:
        event_type = event.get("type", "update")
        for ticker in event.get("tickers") or []:
            tick = tick_from_ticker(
                ticker,
                event_time_ns=event_ns,
                sequence=sequence,
                receive_time_ns=event_ns if receive_ns is None else receive_ns,
            )
            out.append(RecordedTick(tick, ticker, timestamp, event_type))
    return out


def _parse_landing(obj: dict[str, Any], index: int, tz: str) -> list[RecordedTick]:
    try:
        ticker = obj["ticker"]
        timestamp = obj["timestamp"]
    except KeyError as exc:
        raise TickError("bad_landing_line", f"missing {exc}") from exc
    received = obj.get("received_at") or timestamp
    tick = tick_from_ticker(
        ticker,
        event_time_ns=_ts(timestamp, tz),
        sequence=obj.get("sequence_num", -1),
        receive_time_ns=_ts(received, tz),
    )
    return [RecordedTick(tick, ticker, timestamp, obj.get("event_type", "update"))]


def _parse_envelope(obj: dict[str, Any], index: int, tz: str) -> list[RecordedTick]:
    return _from_envelope(obj, None, tz)


def _parse_simulator_record(obj: dict[str, Any], index: int, tz: str) -> list[RecordedTick]:
    if obj.get("kind") not in ("ticker", "malformed"):
        return []
    try:
        frame = json.loads(obj["frame"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TickError("bad_json", str(exc)) from exc
    if not isinstance(frame, dict):
        raise TickError("bad_frame", "frame is not a JSON object")
    return _from_envelope(frame, None, tz)


def _parse_envelope_ingest(obj: dict[str, Any], index: int, tz: str) -> list[RecordedTick]:
    payload = obj.get("payload")
    if not isinstance(payload, dict):
        raise TickError("bad_frame", "payload is not an object")
    ingest = obj.get("ingest_time")
    return _from_envelope(payload, _ts(ingest, tz) if ingest else None, tz)


def _parse_recorder_raw(obj: dict[str, Any], index: int, tz: str) -> list[RecordedTick]:
    ticker = obj.get("raw")
    if not isinstance(ticker, dict):  # fall back to the top-level copies of the fields
        ticker = {k: obj.get(k) for k in ("product_id", "price", "best_bid", "best_ask")}
        ticker["volume_24_h"] = obj.get("volume_24h")
    receive_ns = _ts(obj.get("timestamp"), tz)
    tick = tick_from_ticker(ticker, event_time_ns=receive_ns, sequence=index, receive_time_ns=receive_ns)
    return [RecordedTick(tick, ticker, format_timestamp_ns(receive_ns), "update")]


#: streakh's flattened field names -> Advanced Trade ticker field names.
_FLAT_WS_FIELDS = {
    "product_id": "product_id",
    "price": "price",
    "volume_24h": "volume_24_h",
    "low_24h": "low_24_h",
    "high_24h": "high_24_h",
    "price_pct_chg_24h": "price_percent_chg_24_h",
    "best_bid": "best_bid",
    "best_ask": "best_ask",
    "best_bid_qty": "best_bid_quantity",
    "best_ask_qty": "best_ask_quantity",
}


def _parse_flat_ws(obj: dict[str, Any], index: int, tz: str) -> list[RecordedTick]:
    ticker = {"type": "ticker"}
    ticker.update({ours: obj[theirs] for theirs, ours in _FLAT_WS_FIELDS.items() if theirs in obj})
    timestamp = obj.get("ws_timestamp")
    event_ns = _ts(timestamp, tz)
    received = obj.get("received_at")
    tick = tick_from_ticker(
        ticker,
        event_time_ns=event_ns,
        sequence=obj.get("sequence_num", index),
        receive_time_ns=_ts(received, tz) if received else event_ns,
    )
    return [RecordedTick(tick, ticker, timestamp, obj.get("event_type", "update"))]


def _parse_flat_receive_ts(obj: dict[str, Any], index: int, tz: str) -> list[RecordedTick]:
    # volume_24h is deliberately dropped: always 0.0 in this recording (wrong key upstream).
    fields = ("product_id", "price", "best_bid", "best_ask")
    ticker = {"type": "ticker", **{k: _number_text(obj.get(k)) for k in fields}}
    receive_ns = _ts(obj.get("ts"), tz)
    tick = tick_from_ticker(ticker, event_time_ns=receive_ns, sequence=index, receive_time_ns=receive_ns)
    return [RecordedTick(tick, ticker, format_timestamp_ns(receive_ns), "update")]


def _parse_flat_exchange_ts(obj: dict[str, Any], index: int, tz: str) -> list[RecordedTick]:
    fields = ("product_id", "price", "best_bid", "best_ask", "volume_24_h")
    ticker = {"type": "ticker", **{k: _number_text(obj[k]) for k in fields if k in obj}}
    timestamp = obj.get("timestamp")
    event_ns = _ts(timestamp, tz)
    tick = tick_from_ticker(ticker, event_time_ns=event_ns, sequence=index, receive_time_ns=event_ns)
    return [RecordedTick(tick, ticker, timestamp, "update")]


@dataclass(frozen=True)
class RecordedFormat:
    name: str
    description: str
    parse: Parser


_FORMAT_LIST = (
    RecordedFormat("landing", "cryptovol landing lines {ticker, timestamp, ...}", _parse_landing),
    RecordedFormat("envelope", "verbatim Advanced Trade frames {channel, events}", _parse_envelope),
    RecordedFormat("simulator_record", "cryptovol simulate --record {frame, kind}", _parse_simulator_record),
    RecordedFormat("envelope_ingest", "{ingest_time, payload: frame} (guhankesav)", _parse_envelope_ingest),
    RecordedFormat("recorder_raw", "{timestamp (receive, no offset), raw} (Dec 2025)", _parse_recorder_raw),
    RecordedFormat("flat_ws", "flattened, ws_timestamp/received_at (streakh)", _parse_flat_ws),
    RecordedFormat("flat_receive_ts", "flat floats, receive time ts (eshitaraj24)", _parse_flat_receive_ts),
    RecordedFormat("flat_exchange_ts", "flat strings, exchange time (rrpichardo)", _parse_flat_exchange_ts),
)
FORMATS: dict[str, RecordedFormat] = {f.name: f for f in _FORMAT_LIST}


def detect_object_format(obj: Any) -> str | None:
    """The format name for one decoded JSON line, or None if it matches none."""
    if not isinstance(obj, dict):
        return None
    keys = obj.keys()
    if "ticker" in keys and "timestamp" in keys:
        return "landing"
    if "frame" in keys and "kind" in keys:
        return "simulator_record"
    if "payload" in keys and "ingest_time" in keys:
        return "envelope_ingest"
    if "channel" in keys and ("events" in keys or "timestamp" in keys):
        return "envelope"
    if "raw" in keys and "timestamp" in keys:
        return "recorder_raw"
    if "ws_timestamp" in keys and "best_bid" in keys:
        return "flat_ws"
    if "ts" in keys and "best_bid" in keys:
        return "flat_receive_ts"
    if "timestamp" in keys and "best_bid" in keys:
        return "flat_exchange_ts"
    return None


def detect_format(path: Path, max_lines: int = 20) -> str:
    """Format name of `path` from its first JSON lines; `RecordedFormatError` with the reason if none."""
    with open_text(Path(path)) as fh:
        head = [line for _, line in zip(range(max_lines), fh, strict=False)]
    lines = [line.strip() for line in head if line.strip()]
    if not lines:
        raise RecordedFormatError(f"{path}: empty file, nothing to detect")
    first = lines[0]
    if not first.startswith(("{", "[")):
        header = first[:200]
        if "," in first and not any(c in first for c in "{}"):
            raise RecordedFormatError(
                f"{path}: CSV with header {header!r} is not a ticker recording: ticks need best bid "
                "and best ask, which trade lists and kline bars do not have"
            )
        raise RecordedFormatError(f"{path}: not NDJSON (first line starts {header[:60]!r})")
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        name = detect_object_format(obj)
        if name:
            return name
    try:
        keys = sorted(json.loads(lines[0]).keys())
    except (ValueError, AttributeError):
        keys = []
    raise RecordedFormatError(
        f"{path}: unknown recording format (first object keys: {keys}); known formats: "
        + ", ".join(f"{f.name} ({f.description})" for f in FORMATS.values())
    )


# --- Public API ---------------------------------------------------------------------------------


def read_recorded_records(
    path: str | Path,
    *,
    fmt: str | None = None,
    assume_tz: str | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    report: ReadReport | None = None,
) -> Iterator[RecordedTick]:
    """Like `read_recorded`, but each item keeps its ticker object and envelope (for landing files)."""
    path = Path(path)
    name = fmt or detect_format(path)
    if name not in FORMATS:
        raise RecordedFormatError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    parse = FORMATS[name].parse
    tz = assume_tz or default_timezone(path)
    report = report if report is not None else ReadReport()
    report.files += 1
    report.formats[name] = report.formats.get(name, 0) + 1
    index = 0
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise TickError("bad_line", "not a JSON object")
                records = parse(obj, index, tz)
            except (TickError, ValueError, TypeError, KeyError, AttributeError) as exc:
                reason = exc.reason if isinstance(exc, TickError) else (
                    "bad_json" if isinstance(exc, ValueError) else "bad_line"
                )
                if on_error == "raise":
                    raise TickError(reason, f"{path}:{lineno}: {exc}") from exc
                report.errors[reason] = report.errors.get(reason, 0) + 1
                continue
            if not records:
                report.skipped += 1
                continue
            index += len(records)
            report.ticks += len(records)
            yield from records


def read_recorded(
    path: str | Path,
    *,
    fmt: str | None = None,
    assume_tz: str | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    report: ReadReport | None = None,
) -> Iterator[Tick]:
    """Yield the ticks of one recording file (format auto-detected, `.gz` transparent), in file order.

    `assume_tz` overrides the zone of offset-less timestamps (default: `default_timezone(path)`).
    `on_error="skip"` skips bad lines, counting them by reason in `report`, instead of raising
    `TickError` with file and line number.
    """
    for record in read_recorded_records(path, fmt=fmt, assume_tz=assume_tz, on_error=on_error, report=report):
        yield record.tick


_TICK_ROW = attrgetter(*TICK_COLUMNS)


def frame_from_ticks(ticks: Iterable[Tick]) -> pd.DataFrame:
    """Ticks -> DataFrame with `TICK_COLUMNS` (faster than `ticks_to_frame` for large inputs)."""
    rows = [_TICK_ROW(t) for t in ticks]
    if not rows:
        return empty_tick_frame()
    return pd.DataFrame.from_records(rows, columns=list(TICK_COLUMNS)).astype(TICK_DTYPES)


def load_ticks(
    paths: str | Path | Iterable[str | Path],
    *,
    products: Iterable[str] | None = None,
    assume_tz: str | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    report: ReadReport | None = None,
) -> pd.DataFrame:
    """Every tick in `paths` (files or directories) as one frame sorted by product, event time.

    The sort is stable, so ticks with equal event time keep their file order. `products` filters.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    wanted = {p.upper() for p in products} if products else None
    ticks: list[Tick] = []
    for path in expand_paths(paths):
        for tick in read_recorded(path, assume_tz=assume_tz, on_error=on_error, report=report):
            if wanted is None or tick.product_id in wanted:
                ticks.append(tick)
    frame = frame_from_ticks(ticks)
    return frame.sort_values(["product_id", "event_time_ns"], kind="stable").reset_index(drop=True)
