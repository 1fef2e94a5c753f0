"""The streaming featurizer: `ticks.raw` -> per-product event-time reordering and history tails ->
the one feature implementation -> `ticks.features` + feature Parquet, exactly once in Parquet.

- `engine`: the Kafka-free state machine (watermarks, late/duplicate ticks, re-warming).
- `sink`: atomic Parquet part files and the durable state a restart resumes from.
- `featurizer`: the consumer-group process (flush/commit order, rebalances, signals, counters).
"""
