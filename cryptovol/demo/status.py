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


END_TO_END_METRIC = "cryptovol_end_to_end_latency_seconds"


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Quantile of cumulative (upper bound, count) buckets, interpolated within the bucket as
    Prometheus' `histogram_quantile` does; None when the buckets hold no observation."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            inside = count - below
            return lower + (upper - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = upper, count
    return lower


class ScorerLatency:
    """End-to-end p95 (ms) of the predictions scored since the last sample, from the scorer's own
    histogram (`since=received`: the ingestor received the tick -> prediction produced;
    `since=event`: the exchange's event time -> prediction produced).

    Reading the scorer's metrics rather than the lake keeps `cryptovol.lake` the only lake reader
    and measures every prediction, not only the flushed ones. In the demo the live market continues
    the history's clock, so `since=event` also holds however long the first champion took: the
    status line shows both, received first.
    """

    def __init__(self, metrics_url: str | None, quantile: float = 0.95) -> None:
        self.metrics_url = metrics_url
        self.quantile = quantile
        self._last: dict[str, dict[float, float]] = {}
        self.p95_ms: dict[str, float] = {}

    def _scrape(self) -> dict[str, dict[float, float]]:
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(self.metrics_url, timeout=2.0) as resp:
            text = resp.read().decode("utf-8", "replace")
        out: dict[str, dict[float, float]] = {}
        for family in text_string_to_metric_families(text):
            if family.name != END_TO_END_METRIC:
                continue
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    since = sample.labels.get("since", "")
                    le = float(sample.labels["le"])
                    out.setdefault(since, {})[le] = out.get(since, {}).get(le, 0.0) + sample.value
        return out

    def update(self) -> dict[str, float]:
        """{since: p95 ms} over the new observations; a quiet interval keeps the last figure."""
        if not self.metrics_url:
            return self.p95_ms
        try:
            current = self._scrape()
        except (OSError, ValueError):
            return self.p95_ms
        for since, buckets in current.items():
            last = self._last.get(since, {})
            delta = [(le, n - last.get(le, 0.0)) for le, n in buckets.items()]
            if any(d < 0 for _, d in delta):  # the scorer restarted: its counters began again
                delta = list(buckets.items())
            p95 = histogram_quantile(self.quantile, delta)
            if p95 is not None:
                top = max((le for le in buckets if le != float("inf")), default=float("inf"))
                # beyond the top finite bucket the histogram only knows "more than": say so
                self.p95_ms[since] = float("inf") if p95 >= top else p95 * 1000.0
        self._last = current
        return self.p95_ms


class StatusBoard:
    """Collects ticks/s, features/s, predictions/s, the champion, last drift and alerts."""

    def __init__(
        self,
        data_dir: Path,
        *,
        service_url: str | None = None,
        mlflow_url: str | None = None,
        scorer_metrics_url: str | None = None,
        model_name: str = "cryptovol-spike",
    ) -> None:
        data_dir = Path(data_dir)
        self.data_dir = data_dir
        self.ticks = LineCounter(data_dir / "raw", "*/*.ndjson")
        self.features = TableRowCounter(data_dir / "features", stream_only=True)
        self.predictions = TableRowCounter(data_dir / "predictions")
        self.latency = ScorerLatency(scorer_metrics_url)
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
            "e2e_p95_ms": dict(self.latency.update()),
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
            + _latency_text(s.get("e2e_p95_ms") or {})
        )


def _latency_text(p95_ms: dict[str, float]) -> str:
    parts = [f"{label} {_ms(p95_ms[since])}" for since, label in (("received", "recv->pred"),
                                                                   ("event", "event->pred"))
             if since in p95_ms]
    return ("  e2e p95 " + ", ".join(parts)) if parts else ""


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value != float("inf") else "beyond the top bucket"
