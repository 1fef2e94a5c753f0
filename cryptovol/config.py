"""Settings read from the environment, with defaults that work on one laptop.

Every process (ingestor, featurizer, scorer, Dagster, BentoML) reads the same variables, so
pointing the whole platform at Redpanda or a remote MLflow is a matter of exporting them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_PRODUCTS = ("BTC-USD", "ETH-USD")
COINBASE_WS_URL = "wss://advanced-trade-ws.coinbase.com"

TOPIC_RAW = "ticks.raw"
TOPIC_FEATURES = "ticks.features"
TOPIC_PREDICTIONS = "predictions"
TOPIC_DEADLETTER = "ticks.deadletter"
ALL_TOPICS = (TOPIC_RAW, TOPIC_FEATURES, TOPIC_PREDICTIONS, TOPIC_DEADLETTER)

#: `cryptovol compact` and the Dagster job merge parts this much older than a product's newest.
COMPACT_OLDER_THAN_S = 3600.0

#: A tick whose event time lies further than this ahead of its receive time (or of a consumer's
#: clock) is dead-lettered: one tick dated 2100 would otherwise move its product's watermark.
TICK_MAX_AHEAD_S = 60.0
#: ... or further than this behind its receive time (replayed history keeps its own receive time).
TICK_MAX_BEHIND_S = 86_400.0
#: Landing NDJSON and the spool cursor are fsynced at most this long after a write (power-loss window).
FSYNC_INTERVAL_S = 1.0


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def env_flag(name: str, default: bool) -> bool:
    """An on/off switch from the environment: 1/true/yes/on or 0/false/no/off (any case).

    Unset or empty keeps `default`. Anything else is an error naming the variable, so a typo such as
    `KAFKA_ENABLE_IDEMPOTENCE=ture` stops the process instead of silently meaning "off".
    """
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={os.environ[name]!r}: expected one of 1/true/yes/on or 0/false/no/off")


def parse_products(text: str) -> tuple[str, ...]:
    """`"BTC-USD, eth-usd"` -> `("BTC-USD", "ETH-USD")`; rejects an empty list."""
    products = tuple(p.strip().upper() for p in text.split(",") if p.strip())
    if not products:
        raise ValueError(f"no products in {text!r}; expected e.g. 'BTC-USD,ETH-USD'")
    return products


class LakeLayout:
    """Where the lake's three trees live under a data dir: one definition for `Settings` and
    `cryptovol.lake.LakePaths`, which both have a `data_dir`."""

    data_dir: Path

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def features_dir(self) -> Path:
        return self.data_dir / "features"

    @property
    def predictions_dir(self) -> Path:
        return self.data_dir / "predictions"


@dataclass(frozen=True)
class Settings(LakeLayout):
    """A snapshot of the environment; build one with `Settings.from_env()`."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    data_dir: Path = field(default_factory=lambda: Path("data"))
    products: tuple[str, ...] = DEFAULT_PRODUCTS
    topic_partitions: int = 3
    mlflow_tracking_uri: str = ""
    model_name: str = "cryptovol-spike"
    tick_max_ahead_s: float = TICK_MAX_AHEAD_S
    tick_max_behind_s: float = TICK_MAX_BEHIND_S
    fsync_interval_s: float = FSYNC_INTERVAL_S

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(_env("CRYPTOVOL_DATA_DIR", "data")).expanduser().resolve()
        tracking = _env("MLFLOW_TRACKING_URI", f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}")
        return cls(
            bootstrap_servers=_env("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP),
            data_dir=data_dir,
            products=parse_products(_env("CRYPTOVOL_PRODUCTS", ",".join(DEFAULT_PRODUCTS))),
            topic_partitions=int(_env("CRYPTOVOL_TOPIC_PARTITIONS", "3")),
            mlflow_tracking_uri=tracking,
            model_name=_env("CRYPTOVOL_MODEL_NAME", "cryptovol-spike"),
            tick_max_ahead_s=float(_env("CRYPTOVOL_TICK_MAX_AHEAD_S", str(TICK_MAX_AHEAD_S))),
            tick_max_behind_s=float(_env("CRYPTOVOL_TICK_MAX_BEHIND_S", str(TICK_MAX_BEHIND_S))),
            fsync_interval_s=float(_env("CRYPTOVOL_FSYNC_INTERVAL_S", str(FSYNC_INTERVAL_S))),
        )

    # The rest of the data dir (the lake's trees come from `LakeLayout`).
    @property
    def deadletter_dir(self) -> Path:
        return self.data_dir / "deadletter"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def run_dir(self) -> Path:
        """Pid files and logs of the processes the CLI starts."""
        return self.data_dir / "run"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.data_dir / "mlflow" / "artifacts"
