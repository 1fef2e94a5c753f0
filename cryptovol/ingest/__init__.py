"""The live ingestor: Coinbase Advanced Trade WebSocket -> landing NDJSON + Kafka `ticks.raw`.

Pieces (each usable alone): `FrameProcessor` (frame -> landing line, Kafka record or dead letter),
`LandingWriter` / `DeadLetterWriter` (append-only NDJSON), `RecentKeys` (content de-dup), `Spool`
(durable queue while the broker is away), `Publisher` (the Kafka thread), `Ingestor` (the session
loop), `IngestStats` (counters). `run_ingest(IngestConfig(...))` runs it all.
"""

from cryptovol.ingest.client import IngestConfig, IngestFailed, Ingestor, landing_files, run_ingest
from cryptovol.ingest.dedup import RecentKeys, seed_from_landing
from cryptovol.ingest.processor import FrameProcessor, deadletter_record
from cryptovol.ingest.publisher import Backoff, Publisher
from cryptovol.ingest.spool import Spool, SpoolBusyError, SpoolRecord
from cryptovol.ingest.stats import IngestStats
from cryptovol.ingest.writers import DeadLetterWriter, LandingWriter, landing_path, utc_day

__all__ = [
    "Backoff",
    "DeadLetterWriter",
    "FrameProcessor",
    "IngestConfig",
    "IngestFailed",
    "IngestStats",
    "Ingestor",
    "LandingWriter",
    "Publisher",
    "RecentKeys",
    "Spool",
    "SpoolBusyError",
    "SpoolRecord",
    "deadletter_record",
    "landing_files",
    "landing_path",
    "run_ingest",
    "seed_from_landing",
    "utc_day",
]
