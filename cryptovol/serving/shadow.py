"""Shadow mode: score the same rows with the challenger in the background, never in the answer.

The request path only does a non-blocking `put` onto a small bounded queue; one worker thread runs
the challenger, records agreement and the challenger's score distribution, and appends one JSON
line per request to `<data>/serving/shadow.jsonl`. When the queue is full the rows are dropped and
counted rather than slowing the champion down.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.featureset import FEATURE_NAMES
from cryptovol.serving.champion import ChampionLoader, ServedModel
from cryptovol.serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

#: Per-row probabilities written to the shadow log for at most this many rows per request.
LOG_ROWS = 200


class ShadowScorer:
    def __init__(
        self,
        challenger: ChampionLoader,
        *,
        metrics: ServingMetrics | None = None,
        log_path: Path | None = None,
        max_pending: int = 8,
    ) -> None:
        self.challenger = challenger
        self.metrics = metrics
        self.log_path = Path(log_path) if log_path else None
        self._queue: queue.Queue[tuple[pd.DataFrame, ServedModel, pd.DataFrame] | None] = queue.Queue(
            maxsize=max_pending
        )
        self._thread = threading.Thread(target=self._work, name="shadow-scorer", daemon=True)
        self._thread.start()
        self.scored = 0
        self.dropped = 0
        self.failed = 0

    @property
    def active(self) -> bool:
        """A challenger is loaded: only then is there anything to submit."""
        return self.challenger.current is not None

    def submit_matrix(self, features: np.ndarray, champion: ServedModel, probability: np.ndarray,
                      flag: np.ndarray) -> bool:
        """`submit` for the service's matrix path (FEATURE_NAMES columns, in order)."""
        if not self.active:
            return False
        frame = pd.DataFrame(features, columns=FEATURE_NAMES)
        out = pd.DataFrame({"spike_probability": probability, "spike_flag": flag})
        return self.submit(frame, champion, out)

    def submit(self, features: pd.DataFrame, champion: ServedModel, champion_out: pd.DataFrame) -> bool:
        """Queue rows for the challenger if one exists; never blocks. True when queued."""
        if self.challenger.current is None:
            return False
        try:
            self._queue.put_nowait((features, champion, champion_out))
            return True
        except queue.Full:
            self.dropped += len(features)
            if self.metrics:
                self.metrics.observe_shadow_skip("dropped", len(features))
            return False

    def drain(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued request has been scored (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._score(*item)
            except Exception:
                self.failed += 1
                log.exception("shadow scoring failed")
                if self.metrics and item is not None:
                    self.metrics.observe_shadow_skip("failed", len(item[0]))
            finally:
                self._queue.task_done()

    def _score(self, features: pd.DataFrame, champion: ServedModel, champion_out: pd.DataFrame) -> None:
        challenger = self.challenger.current
        if challenger is None:
            return
        out = challenger.predict(features)
        ch_prob = out["spike_probability"].to_numpy()
        ch_flag = out["spike_flag"].to_numpy()
        cp_prob = champion_out["spike_probability"].to_numpy()
        cp_flag = champion_out["spike_flag"].to_numpy()
        agreement = float(np.mean(ch_flag == cp_flag)) if len(ch_flag) else 1.0
        if self.metrics:
            self.metrics.observe_shadow(cp_flag, ch_prob, ch_flag)
        self.scored += len(features)
        if self.log_path is not None:
            self._append({
                "time": time.time(),
                "rows": len(features),
                "champion": {"version": champion.version, "mean_probability": _mean(cp_prob),
                             "spikes": int(cp_flag.sum())},
                "challenger": {"version": challenger.version, "mean_probability": _mean(ch_prob),
                               "spikes": int(ch_flag.sum())},
                "agreement": agreement,
                "champion_probability": np.round(cp_prob[:LOG_ROWS], 6).tolist(),
                "challenger_probability": np.round(ch_prob[:LOG_ROWS], 6).tolist(),
            })

    def _append(self, record: dict[str, Any]) -> None:
        assert self.log_path is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None
