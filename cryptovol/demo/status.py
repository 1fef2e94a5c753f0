"""The demo's live status line, measured from what the pipeline leaves on disk and serves.

Counting from the lake (landing lines, feature and prediction Parquet rows) rather than from each
process's metrics keeps the status line honest: it shows what was *durably* produced, and it works
whichever processes are running. Every probe is incremental and cheap (new bytes / new files only).
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class LineCounter:
    """Counts newline-terminated lines in files matching a glob, reading only the new bytes."""

    def __init__(self, root: Path, pattern: str) -> None:
        self.root = Path(root)
        self.pattern = pattern
        self._offsets: dict[Path, int] = {}
        self.total = 0

    def update(self) -> int:
        for path in sorted(self.root.glob(self.pattern)):
            offset = self._offsets.get(path, 0)
            try:
                size = path.stat().st_size
                if size < offset:  # truncated/rotated: start again
                    offset = 0
                if size == offset:
                    continue
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read(size - offset)
            except OSError:
                continue
            # Only whole lines count; a partial last line is counted once it is complete.
            complete = chunk.rfind(b"\n") + 1
            self.total += chunk.count(b"\n", 0, complete)
            self._offsets[path] = offset + complete
        return self.total


class TableRowCounter:
    """Rows of a Delta table (`cryptovol.delta`): the record counts its log keeps per file, so no
    data is read; 0 until the table exists."""

    def __init__(self, root: Path, stream_only: bool = False) -> None:
        self.root = Path(root)
        self.stream_only = stream_only

    def update(self) -> int:
        import pyarrow as pa
        import pyarrow.compute as pc

        from cryptovol.delta import open_table

        try:
            table = open_table(self.root)
            if table is None:
                return 0
            if self.stream_only:  # the featurizer's rows (a batch rebuild writes lineage-free rows)
                import pyarrow.dataset as ds

                return table.to_pyarrow_dataset().count_rows(filter=ds.field("source_partition").is_valid())
            return int(pc.sum(pa.table(table.get_add_actions(flatten=True))["num_records"]).as_py() or 0)
        except Exception:  # noqa: BLE001 (a commit in flight; the status line must never crash)
            return 0


class ParquetRowCounter:
    """Sum of rows over Parquet files matching a glob (footer reads only, each file once)."""

    def __init__(self, root: Path, pattern: str = "**/*.parquet") -> None:
        self.root = Path(root)
        self.pattern = pattern
        self._rows: dict[Path, int] = {}

    def update(self) -> int:
        import pyarrow.parquet as pq

        for path in self.root.glob(self.pattern):
            if path in self._rows or path.name.startswith("."):
                continue
            try:
                self._rows[path] = pq.read_metadata(path).num_rows
            except Exception:  # noqa: BLE001 (a file being renamed in; counted next time)
                continue
        return sum(self._rows.values())


def http_json(url: str, timeout_s: float = 1.0) -> Any:
    """GET `url` and decode JSON; None on any failure (the status line must never crash)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (loopback)
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


@dataclass
class Rate:
    """Events per second between consecutive samples of a monotone counter."""

    last_value: int = 0
    last_time: float = field(default_factory=time.monotonic)
    per_s: float = 0.0

    def sample(self, value: int) -> float:
        now = time.monotonic()
        elapsed = now - self.last_time
        if elapsed > 0:
            self.per_s = max(0, value - self.last_value) / elapsed
        self.last_value, self.last_time = value, now
        return self.per_s


class LatencyWindow:
    """End-to-end p95 (ms) over the newest prediction rows: `scored_at_ns - event_time_ns` (exchange
    tick -> prediction produced), read from prediction parts not seen before (two columns each)."""

    def __init__(self, root: Path, keep: int = 2000) -> None:
        from collections import deque

        self.root = Path(root)
        self._seen: set[Path] = set()
        self._ms: deque[float] = deque(maxlen=keep)

    def update(self) -> float | None:
        import numpy as np
        import pyarrow.parquet as pq

        for path in sorted(self.root.glob("**/*.parquet")):
            if path in self._seen or path.name.startswith(".") or "_delta_log" in path.parts:
                continue
            self._seen.add(path)
            try:
                table = pq.read_table(path, columns=["event_time_ns", "scored_at_ns"])
            except (OSError, ValueError, KeyError):
                continue
            lat = table.column("scored_at_ns").to_numpy() - table.column("event_time_ns").to_numpy()
            self._ms.extend((lat / 1e6).tolist())
        return float(np.percentile(list(self._ms), 95)) if self._ms else None


class StatusBoard:
    """Collects ticks/s, features/s, predictions/s, the champion, last drift and alerts."""

    def __init__(
        self,
        data_dir: Path,
        *,
        service_url: str | None = None,
        mlflow_url: str | None = None,
        model_name: str = "cryptovol-spike",
    ) -> None:
        data_dir = Path(data_dir)
        self.data_dir = data_dir
        self.ticks = LineCounter(data_dir / "raw", "*/*.ndjson")
        self.features = TableRowCounter(data_dir / "features", stream_only=True)
        self.predictions = TableRowCounter(data_dir / "predictions")
        self.latency = LatencyWindow(data_dir / "predictions")
        self.alerts = LineCounter(data_dir / "alerts", "alerts.jsonl")
        self.rates = {"ticks": Rate(), "features": Rate(), "predictions": Rate()}
        self.service_url = service_url
        self.mlflow_url = mlflow_url
        self.model_name = model_name
        self.snapshot: dict[str, Any] = {}

    def champion(self) -> str:
        """The version the service reports serving (what users get), else the registry alias."""
        if self.service_url:
            info = http_json(f"{self.service_url}/version")
            if isinstance(info, dict):
                version = info.get("model_version", info.get("version"))
                if version is not None:
                    return f"v{version} (service)"
        if self.mlflow_url:
            info = http_json(
                f"{self.mlflow_url}/api/2.0/mlflow/registered-models/alias"
                f"?name={self.model_name}&alias=champion"
            )
            if isinstance(info, dict) and "model_version" in info:
                return f"v{info['model_version'].get('version')} (registry)"
        return "none"

    def last_drift(self) -> tuple[str, dict[str, Any] | None]:
        try:
            summary = json.loads((self.data_dir / "reports" / "drift" / "latest.json").read_text())
        except (OSError, ValueError):
            # The first report needs a warm current window (rv_300s: 5 min of live data).
            return "none yet", None
        share = summary.get("drift_share")
        flag = " DRIFT" if summary.get("dataset_drift") else ""
        return (f"{share:.2f}{flag}" if isinstance(share, (int, float)) else "n/a"), summary

    def last_alert(self) -> str:
        path = self.data_dir / "alerts" / "alerts.jsonl"
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, path.stat().st_size - 4096))
                lines = fh.read().splitlines()
            return str(json.loads(lines[-1]).get("title", ""))[:60]
        except (OSError, ValueError, IndexError):
            return ""

    def sample(self) -> dict[str, Any]:
        counts = {
            "ticks": self.ticks.update(),
            "features": self.features.update(),
            "predictions": self.predictions.update(),
        }
        drift_text, drift = self.last_drift()
        self.snapshot = {
            **{f"{k}_total": v for k, v in counts.items()},
            **{f"{k}_per_s": self.rates[k].sample(v) for k, v in counts.items()},
            "champion": self.champion(),
            "drift": drift_text,
            "drift_summary": drift,
            "alerts": self.alerts.update(),
            "last_alert": self.last_alert(),
            "e2e_p95_ms": self.latency.update(),
        }
        return self.snapshot

    def line(self) -> str:
        s = self.snapshot or self.sample()
        alert = f" ({s['last_alert']})" if s["last_alert"] else ""
        return (
            f"ticks {s['ticks_per_s']:6.1f}/s [{s['ticks_total']}]  "
            f"features {s['features_per_s']:6.1f}/s [{s['features_total']}]  "
            f"predictions {s['predictions_per_s']:6.1f}/s [{s['predictions_total']}]  "
            f"champion {s['champion']}  drift {s['drift']}  alerts {s['alerts']}{alert}"
            + (f"  e2e p95 {s['e2e_p95_ms']:.0f} ms" if s.get("e2e_p95_ms") is not None else "")
        )
