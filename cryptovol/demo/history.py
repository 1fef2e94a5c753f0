"""The demo's history: the first minutes of the very market the live simulator then continues.

The first champion needs training data, and the drift report compares the live stream with that
data. If the history came from another market (another seed, a price that restarts at the
simulator's start price), every calm report would already flag drift: a false alarm. So the
history is the market process of `cryptovol.simulator` with the live simulator's seed, rate and
regime parameters, simulated for its first `seconds`; the simulator is started with
`--resume-after seconds` and continues the same path tick for tick (price, volatility state,
bursts). The regime change, counted from the simulator's start, lies after the history.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptovol.config import Settings


def history_regime_change_s(seconds: float, live_regime_change_at_s: float | None) -> float | None:
    """The regime change on the market clock (which starts at the history's first tick)."""
    return None if live_regime_change_at_s is None else seconds + live_regime_change_at_s


def write_history(
    settings: Settings,
    products: tuple[str, ...],
    *,
    seconds: float,
    seed: int,
    rate_hz: float,
    regime_change_at_s: float | None,
    regime_vol_mult: float,
    end: datetime | None = None,
) -> list[Path]:
    """Landing files with the market's first `seconds`, ending at `end` (default: now).

    `regime_change_at_s` is the live simulator's option (seconds after its start): it is passed to
    the process so that the history is bit-identical to the first `seconds` the simulator skips.
    """
    from cryptovol.simulator.synthetic import generate_landing_files

    end = end or datetime.now(UTC)
    return generate_landing_files(
        settings.data_dir, products, start=end - timedelta(seconds=seconds), duration_s=seconds,
        seed=seed, rate_hz=rate_hz,
        regime_change_at_s=history_regime_change_s(seconds, regime_change_at_s),
        regime_vol_mult=regime_vol_mult,
    )


def has_landing_files(settings: Settings) -> bool:
    return any(settings.raw_dir.glob("*/*.ndjson"))
