"""Reliability drill: kill the broker, the featurizer, the scorer and the service in turn during a
demo run, let the demo's watchdog restart them, then count what reached each stage.

    .venv/bin/python -m bench.fault_drill [--updates 1500] [--gap 30] [--kill broker,featurize,...]

Checks, for the live ticks only (the bootstrap history excluded):
- landing NDJSON vs the simulator's own record of every ticker frame it sent (by content);
- stream feature rows (Parquet part-stream files) vs the landed ticks, by (product, event time,
  sequence): missing, duplicated;
- predictions (Parquet) vs feature rows, the same way;
- every process alive at the end, with its restart count.
Prints a table and a JSON summary (the figures in docs/RELIABILITY.md come from it). Exits 0 even
when gaps are found: it measures, it does not assert.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _landing_keys(data_dir: Path, since_ns: int) -> tuple[set, set, int]:
    """(content keys, (product, time, sequence) keys, lines) of landed live ticks."""
    from cryptovol import lake

    content, keys, lines = set(), set(), 0
    for product, day in lake.list_landing_partitions(data_dir):
        frame = lake.read_landing_day(data_dir, product, day)
        frame = frame[frame["event_time_ns"] >= since_ns]
        lines += len(frame)
        for row in frame.itertuples(index=False):
            content.add((row.product_id, int(row.event_time_ns), float(row.best_bid), float(row.best_ask)))
            keys.add((row.product_id, int(row.event_time_ns), int(row.sequence)))
    return content, keys, lines


def _sent_content(record_path: Path) -> set:
    """Content keys of every valid ticker the simulator sent (its --record file)."""
    from cryptovol.ticks import parse_timestamp_ns

    sent = set()
    for line in record_path.read_text().splitlines():
        item = json.loads(line)
        if item.get("kind") != "ticker":
            continue
        frame = json.loads(item["frame"])
        t = parse_timestamp_ns(frame["timestamp"])
        for event in frame.get("events", []):
            for ticker in event.get("tickers", []):
                sent.add((ticker["product_id"], t, float(ticker["best_bid"]), float(ticker["best_ask"])))
    return sent


def _first_sent_ns(record_path: Path) -> int:
    """Event time of the first ticker the simulator sent: where the live data starts."""
    from cryptovol.ticks import parse_timestamp_ns

    for line in record_path.read_text().splitlines():
        item = json.loads(line)
        if item.get("kind") == "ticker":
            return parse_timestamp_ns(json.loads(item["frame"])["timestamp"])
    raise RuntimeError(f"the simulator sent no ticker ({record_path})")


def _parquet_keys(root: Path, pattern: str, since_ns: int) -> tuple[list, int]:
    """Keys of the rows of the Delta table at `root` with event time >= `since_ns` (`pattern`:
    "stream" = only rows the streaming featurizer wrote, anything else = every row)."""
    import pyarrow.dataset as ds

    from cryptovol.delta import open_table

    table = open_table(root)
    if table is None:
        return [], 0
    filt = ds.field("event_time_ns") >= since_ns
    if pattern == "stream":
        filt = filt & ds.field("source_partition").is_valid()
    frame = table.to_pyarrow_dataset().to_table(columns=["product_id", "event_time_ns", "sequence"],
                                                filter=filt).to_pandas()
    keys = list(zip(frame["product_id"].astype(str), frame["event_time_ns"].astype("int64"),
                    frame["sequence"].astype("int64"), strict=True))
    return keys, len(keys)


def _wait_stable(measure, *, quiet_s: float, timeout_s: float) -> Any:
    last, since, deadline = None, time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = measure()
        if value != last:
            last, since = value, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return value
        time.sleep(1.0)
    return last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1500, help="live ticker updates the simulator sends")
    parser.add_argument("--gap", type=float, default=30.0, help="seconds between two kills")
    parser.add_argument("--data-dir", type=Path, help="data dir (default: a new temporary one)")
    parser.add_argument(
        "--kill", default="broker,featurize,score,service",
        help="what to kill, in order (comma-separated; default broker,featurize,score,service)",
    )
    args = parser.parse_args(argv)

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="cryptovol-drill-")) / "data"
    os.environ["CRYPTOVOL_DATA_DIR"] = str(data_dir)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    from cryptovol.config import Settings
    from cryptovol.procs import wait_until
    from orchestration.demo.launcher import Demo, DemoOptions

    settings = Settings.from_env()
    record = data_dir.parent / "simulator-record.ndjson"
    options = DemoOptions(
        free_ports=True, with_dagster=False, with_mlflow_ui=False, regime_change_at_s=None,
        status_every_s=10.0, history_minutes=60.0, drift_every_s=3600.0,
        simulator_args=("--max-updates", str(args.updates), "--record", str(record)),
    )
    demo = Demo(settings, options, out=lambda text: print(text, flush=True))
    kills: list[dict[str, Any]] = []
    alive: dict[str, Any] = {}
    loop = threading.Thread(target=demo.run_loop, daemon=True)
    try:
        demo.start()
        loop.start()
        pieces = {p.name: p for p in demo.pieces}
        for name in [n.strip() for n in args.kill.split(",") if n.strip()]:
            time.sleep(args.gap)
            started = time.monotonic()
            if name == "broker":
                status = demo.broker.status()
                os.kill(status.pid, signal.SIGKILL)
                wait_until(lambda: demo.broker.status().running, timeout_s=120, interval_s=0.5,
                           what="the broker to be restarted")
            else:
                piece = pieces.get(name)
                if piece is None:
                    print(f"drill: {name} is not running in this demo; skipped", flush=True)
                    continue
                before = piece.restarts
                piece.process.kill()
                # Back = restarted by the watchdog *and* answering its readiness probe again.
                wait_until(
                    lambda p=piece, b=before: p.restarts > b and p.process.alive()
                    and (p.process.ready is None or p.process.ready()),
                    timeout_s=300, interval_s=0.5, what=f"{name} to be restarted and ready",
                )
            kills.append({"killed": name, "recovered_in_s": round(time.monotonic() - started, 1)})
            print(f"drill: killed {name}; back in {kills[-1]['recovered_in_s']}s", flush=True)

        sent = _wait_stable(lambda: len(_sent_content(record)) if record.exists() else 0,
                            quiet_s=10, timeout_s=900)
        live_start_ns = _first_sent_ns(record)
        print(f"drill: simulator done ({sent} tickers sent); waiting for the pipeline to drain", flush=True)
        _wait_stable(
            lambda: (_parquet_keys(settings.features_dir, "stream", live_start_ns)[1],
                     _parquet_keys(settings.predictions_dir, "all", live_start_ns)[1]),
            quiet_s=20, timeout_s=600,
        )
        alive = {p.name: {"alive": p.process.alive(), "restarts": p.restarts} for p in demo.pieces}
        alive["broker"] = {"alive": demo.broker.status().running}
    finally:
        demo.request_stop()
        if loop.is_alive():
            loop.join(timeout=30)
        demo.stop()

    sent_content = _sent_content(record)
    landed_content, landed_keys, landed_lines = _landing_keys(data_dir, live_start_ns)
    feature_keys, feature_rows = _parquet_keys(settings.features_dir, "stream", live_start_ns)
    prediction_keys, prediction_rows = _parquet_keys(settings.predictions_dir, "all", live_start_ns)
    features, predictions = set(feature_keys), set(prediction_keys)
    summary = {
        "data_dir": str(data_dir),
        "kills": kills,
        "processes_at_end": alive,
        "sent_tickers": len(sent_content),
        "landed_lines": landed_lines,
        "landing_missing_vs_sent": len(sent_content - landed_content),
        "landing_duplicate_lines": landed_lines - len(landed_content),
        "feature_rows": feature_rows,
        "feature_missing_vs_landed": len(landed_keys - features),
        "feature_duplicates": feature_rows - len(features),
        "prediction_rows": prediction_rows,
        "prediction_missing_vs_features": len(features - predictions),
        "prediction_duplicates": prediction_rows - len(predictions),
    }
    print("\nfault drill summary:")
    for key, value in summary.items():
        print(f"  {key:<32} {value}")
    print("fault drill json: " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
