"""The demo status line's end-to-end p95, read from prediction parts (scored_at_ns - event_time_ns)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cryptovol.demo.status import StatusBoard


def _part(path: Path, latencies_ms: np.ndarray) -> None:
    event = np.arange(len(latencies_ms), dtype=np.int64) * 1_000_000_000 + 1_767_225_600_000_000_000
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"event_time_ns": event,
                             "scored_at_ns": event + (latencies_ms * 1e6).astype(np.int64)}), path)


def test_status_line_shows_the_end_to_end_p95_of_new_prediction_parts(tmp_path: Path):
    board = StatusBoard(tmp_path)
    assert board.sample()["e2e_p95_ms"] is None and "e2e p95" not in board.line()
    root = tmp_path / "predictions" / "product=BTC-USD" / "date=2026-01-01"
    _part(root / "part-1.parquet", np.arange(1, 101, dtype=np.float64))  # 1..100 ms
    assert abs(board.sample()["e2e_p95_ms"] - np.percentile(np.arange(1, 101), 95)) < 1e-6
    assert "e2e p95 95 ms" in board.line()
    _part(root / "part-2.parquet", np.full(100, 500.0))  # a slow stretch moves it; old parts are not re-read
    assert board.sample()["e2e_p95_ms"] == 500.0
