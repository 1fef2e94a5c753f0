"""Typed request/response shapes of the prediction API, generated from the feature-set definition.

Validation happens here, per request and before any batching, so every bad input becomes a 4xx
whose message names the field (pydantic `loc`, e.g. `rows.3.rv_30s: Input should be a finite
number`): wrong types (strict floats: no strings, booleans or nulls), missing or unknown features,
NaN/inf, integers outside int64, malformed product ids, an empty batch and a batch over
`CRYPTOVOL_MAX_BATCH` rows.
"""

from __future__ import annotations

import math
from operator import attrgetter
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, Strict, create_model, model_validator

from cryptovol.config import PRODUCT_ID_PATTERN, load_env
from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET, KEY_COLUMNS
from cryptovol.ticks import TICK_COLUMNS, TICK_DTYPES, TickError, parse_timestamp_ns

DEFAULT_MAX_BATCH = 10_000
#: /predict_ticks accepts at most this many ticks (a busy product does ~30 ticks/s; 300 s fits).
DEFAULT_MAX_TICKS = 50_000


def max_batch_from_env() -> int:
    """CRYPTOVOL_MAX_BATCH: the most feature rows one /predict request may carry."""
    return load_env().max_batch


def max_ticks_from_env() -> int:
    """CRYPTOVOL_MAX_TICKS: the most ticks one /predict_ticks request may carry."""
    return load_env().max_ticks


#: Integers the service accepts fit an int64 column (event times, sequence numbers): a larger one
#: is a 4xx naming the field, not an overflow deep in pandas.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EventTimeNs = Annotated[int, Strict(), Field(ge=0, le=INT64_MAX, description="UTC ns since the epoch")]
Sequence = Annotated[int, Strict(), Field(ge=-1, le=INT64_MAX)]
#: A product id: the platform's one rule (cryptovol.config.valid_product_id), e.g. BTC-USD. The
#: pattern alone bounds the length (<= PRODUCT_ID_MAX_LEN); schemathesis cannot generate strings for
#: a pattern combined with min/max lengths.
ProductId = Annotated[str, Field(pattern=PRODUCT_ID_PATTERN)]


#: A feature value: a real, finite JSON number (ints accepted, strings/bools/null/NaN/inf refused).
FiniteFloat = Annotated[float, Strict(), AllowInfNan(False)]

_FORBID = ConfigDict(extra="forbid")

#: One feature row: every feature of the current feature set, plus optional identity keys.
FeatureRow: type[BaseModel] = create_model(
    "FeatureRow",
    __config__=_FORBID,
    __doc__=f"One row of feature set {FEATURE_SET.version}; see cryptovol.featureset for units.",
    product_id=(ProductId | None, Field(None, description="optional, echoed back")),
    event_time_ns=(EventTimeNs | None, Field(None, description="optional, UTC ns, echoed back")),
    sequence=(Sequence | None, Field(None, description="optional")),
    **{
        spec.name: (FiniteFloat, Field(..., description=f"{spec.description} [{spec.unit}]"))
        for spec in FEATURE_SET.features
    },
)

_features_of = attrgetter(*FEATURE_NAMES)


def feature_rows_to_matrix(rows: list[Any]) -> np.ndarray:
    """Validated `FeatureRow`s -> a float64 matrix, one column per FEATURE_NAMES entry, in order."""
    return np.array([_features_of(r) for r in rows], dtype=np.float64).reshape(len(rows), -1)


def feature_rows_to_frame(rows: list[Any]) -> pd.DataFrame:
    """Validated `FeatureRow`s -> a float64 DataFrame with FEATURE_NAMES columns, in order."""
    return pd.DataFrame(feature_rows_to_matrix(rows), columns=FEATURE_NAMES)


class Prediction(BaseModel):
    """The answer for one row: probability, flag at the model's threshold, and which model said so."""

    spike_probability: float
    spike_flag: bool
    model_name: str
    model_version: str
    model_alias: str
    product_id: str | None = None
    event_time_ns: int | None = None




def _openapi30_exclusive_minimum(schema: dict[str, Any]) -> None:
    """`exclusiveMinimum: 0` (JSON Schema 2020) in the OpenAPI 3.0 form BentoML publishes
    (`minimum: 0, exclusiveMinimum: true`), so generators and clients read the spec right."""
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        schema["minimum"] = schema["exclusiveMinimum"]
        schema["exclusiveMinimum"] = True


PositivePrice = Annotated[
    float, Strict(), AllowInfNan(False), Field(gt=0, json_schema_extra=_openapi30_exclusive_minimum)
]
Size = Annotated[float, Strict(), AllowInfNan(False), Field(ge=0)]


class TickIn(BaseModel):
    """One raw tick as the service accepts it (names as in `cryptovol.ticks.Tick`)."""

    model_config = _FORBID

    event_time_ns: EventTimeNs | None = Field(None, description="exchange event time, UTC ns")
    event_time: str | None = Field(
        None, max_length=64, description="or ISO-8601, e.g. 2025-12-06T01:12:47.761914Z")
    price: PositivePrice
    best_bid: PositivePrice
    best_ask: PositivePrice
    best_bid_qty: Size | None = None
    best_ask_qty: Size | None = None
    volume_24h: Size | None = None
    sequence: Sequence = -1

    @model_validator(mode="after")
    def _check(self) -> TickIn:
        if self.event_time_ns is None and self.event_time is None:
            raise ValueError("event_time_ns or event_time is required")
        if self.event_time_ns is None:
            try:
                ns = parse_timestamp_ns(self.event_time or "")
            except TickError as exc:
                raise ValueError(f"event_time: {exc}") from exc
            except (ArithmeticError, ValueError):  # e.g. year 1: outside pandas' ns range
                ns = -1
            if not 0 <= ns <= INT64_MAX:
                raise ValueError(f"event_time: {self.event_time!r} is before 1970 or past 2262")
            self.event_time_ns = ns
        if self.best_bid > self.best_ask:
            raise ValueError(f"crossed book: best_bid={self.best_bid} > best_ask={self.best_ask}")
        return self


def ticks_to_frame(product_id: str, ticks: list[TickIn]) -> pd.DataFrame:
    """Request ticks -> one product's tick frame (TICK_COLUMNS), in event-time order."""
    nan = math.nan
    frame = pd.DataFrame.from_records(
        [
            (product_id, t.event_time_ns, t.sequence, t.price, t.best_bid, t.best_ask,
             nan if t.best_bid_qty is None else t.best_bid_qty,
             nan if t.best_ask_qty is None else t.best_ask_qty,
             nan if t.volume_24h is None else t.volume_24h,
             t.event_time_ns)
            for t in ticks
        ],
        columns=list(TICK_COLUMNS),
    ).astype(TICK_DTYPES)
    return frame.sort_values(["event_time_ns"], kind="stable").reset_index(drop=True)


class TickPrediction(Prediction):
    """/predict_ticks answer: the prediction for the last tick and the features it was made from."""

    features: dict[str, float]
    ticks_used: int


__all__ = [
    "KEY_COLUMNS",
    "FeatureRow",
    "Prediction",
    "TickIn",
    "TickPrediction",
    "feature_rows_to_frame",
    "feature_rows_to_matrix",
    "max_batch_from_env",
    "max_ticks_from_env",
    "ticks_to_frame",
]
