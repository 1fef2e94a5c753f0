"""Ingest counters: one small dataclass that the log line, the summary and Prometheus all read.

Each counter has exactly one writer thread (the socket loop or the publisher), so plain ints are
safe under the GIL; readers may see a value one update old, which is fine for progress output.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class IngestStats:
    """What the ingestor has seen and done since it started.

    Invariant once the ingestor has stopped: `received == landed + duplicates + deadlettered`
    (every ticker, and every frame that could not be read at all, ends in exactly one of those).
    """

    frames: int = 0  # WebSocket messages of any kind
    received: int = 0  # tickers, plus unreadable frames (each counts as one)
    landed: int = 0  # lines appended to data/raw/<product>/<day>.ndjson
    published: int = 0  # ticks acknowledged by the broker on ticks.raw
    deadlettered: int = 0  # tickers (or unreadable frames) dead-lettered
    deadletter_records: int = 0  # records written to the dead-letter file (one per frame at most)
    rejected_by_broker: int = 0  # records the broker refused for what they are (kept on disk instead)
    deadletter_published: int = 0  # dead-letter records acknowledged on ticks.deadletter
    deadletter_reasons: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0  # tickers dropped because their content was seen recently
    gaps: int = 0  # times sequence_num jumped forward by more than one
    missing_messages: int = 0  # sum of the sizes of those jumps
    reconnects: int = 0  # successful connections after the first
    connect_failures: int = 0  # connection attempts that failed
    heartbeats: int = 0
    server_errors: int = 0  # {"type": "error"} frames from the exchange
    spooled: int = 0  # records written to the local spool because the broker was unavailable
    spool_pending: int = 0  # records in the spool not yet acknowledged by the broker (gauge)
    broker_outages: int = 0  # times the publisher lost the broker
    publish_errors: int = 0  # individual send failures (the records went to the spool)

    def count_deadletter(self, reason: str) -> None:
        self.deadlettered += 1
        self.deadletter_reasons[reason] = self.deadletter_reasons.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["deadletter_reasons"] = dict(sorted(self.deadletter_reasons.items()))
        return data

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"))

    @classmethod
    def from_summary_line(cls, line: str) -> IngestStats:
        """Parse the `ingest summary: {...}` line the CLI prints (for scripts and tests)."""
        _, _, payload = line.partition("ingest summary:")
        return cls(**json.loads(payload))
