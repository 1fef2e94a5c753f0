"""A small labelled training set from the project's own tick generator (no real data needed)."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptovol.models.dataset import TrainingSet, build_training_set
from cryptovol.simulator.synthetic import generate_ticks_frame


def synthetic_training_set(seconds: float = 3600.0, seed: int = 5, products: tuple[str, ...] = ("BTC-USD",),
                           start: datetime | None = None) -> TrainingSet:
    """~`seconds` rows on the 1 s grid with a volatility regime change half-way (spikes exist)."""
    ticks = generate_ticks_frame(products, start=start or datetime(2025, 12, 1, 10, tzinfo=UTC),
                                 duration_s=seconds, seed=seed, rate_hz=2.0,
                                 regime_change_at_s=seconds / 2, regime_vol_mult=3.0)
    return build_training_set(ticks, min_segment_s=0.0)
