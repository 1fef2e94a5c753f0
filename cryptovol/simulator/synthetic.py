"""Offline synthetic market data: the project's own fixtures, made by the simulator's process.

`generate_landing_files` writes what `cryptovol ingest` would have landed had it been connected to
`cryptovol simulate` with one connection subscribed to all products (snapshots first, then
updates); `generate_ticks_frame` returns the same ticks as a DataFrame with `TICK_COLUMNS`,
vectorized so millions of ticks take seconds. Same seed -> same ticks, and the same ticks the
WebSocket server streams for that seed and rate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from cryptovol.simulator.frames import format_timestamp, ticker_object
from cryptovol.simulator.price_process import BLOCK_S, ProductParams, ProductPath, ProductState
from cryptovol.ticks import TICK_COLUMNS, TICK_DTYPES, landing_record

_NS = 1_000_000_000


@dataclass
class _Columns:
    """Merged, time-ordered ticks of all products (snapshot rows first)."""

    products: tuple[str, ...]
    initial: dict[str, ProductState]
    product_idx: np.ndarray
    event_time_ns: np.ndarray
    sequence: np.ndarray
    event_type_snapshot: np.ndarray  # bool
    price_c: np.ndarray
    bid_c: np.ndarray
    ask_c: np.ndarray
    bid_qty: np.ndarray
    ask_qty: np.ndarray
    volume_24h: np.ndarray
    low_c: np.ndarray
    high_c: np.ndarray
    open_c: np.ndarray
    receive_time_ns: np.ndarray


def _start_ns(start: datetime) -> int:
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return int(pd.Timestamp(start).tz_convert("UTC").value)


def _simulate(
    products: Sequence[str],
    start: datetime,
    duration_s: float,
    seed: int,
    rate_hz: float,
    regime_change_at_s: float | None,
    regime_vol_mult: float,
) -> _Columns:
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    if rate_hz <= 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
    products = tuple(products)
    if not products:
        raise ValueError("no products given")
    n_blocks = int(np.ceil(duration_s / BLOCK_S))
    initial: dict[str, ProductState] = {}
    parts: dict[str, list[np.ndarray]] = {}
    fields = (
        "t", "price_c", "bid_c", "ask_c", "bid_qty", "ask_qty", "volume_24h", "low_c", "high_c", "open_c"
    )
    idx_parts: list[np.ndarray] = []
    for k, product in enumerate(products):
        path = ProductPath(
            ProductParams.for_product(product), seed, rate_hz=rate_hz,
            regime_change_at_s=regime_change_at_s, regime_vol_mult=regime_vol_mult,
        )
        initial[product] = replace(path.state)
        blocks = [path.next_block() for _ in range(n_blocks)]
        # Snapshot row (t = 0, the initial quote) then the updates before duration_s.
        s = path_state_row(initial[product])
        for name in fields:
            if name == "open_c":  # one value per block
                chunk = [np.asarray([s[name]])] + [np.full(len(b), b.open_c, np.int64) for b in blocks]
            else:
                chunk = [np.asarray([s[name]])] + [getattr(b, name) for b in blocks]
            parts.setdefault(name, []).append(np.concatenate(chunk))
        idx_parts.append(np.full(len(parts["t"][-1]), k, dtype=np.int64))
    cols = {name: np.concatenate(v) for name, v in parts.items()}
    product_idx = np.concatenate(idx_parts)
    snapshot = np.zeros(len(product_idx), dtype=bool)
    offsets = np.cumsum([0] + [len(p) for p in parts["t"][:-1]])
    snapshot[offsets] = True
    keep = snapshot | (cols["t"] < duration_s)
    # Time order; snapshots (t = 0) first, ties broken by product order.
    order = np.lexsort((product_idx, ~snapshot, cols["t"]))
    order = order[keep[order]]
    t = cols["t"][order]
    start_ns = _start_ns(start)
    event_ns = start_ns + np.rint(t * _NS).astype(np.int64)
    n_snap = len(products)
    # One connection: snapshots get 0..P-1, the subscriptions ack P, updates P+1...
    sequence = np.arange(len(order), dtype=np.int64)
    sequence[n_snap:] += 1
    latency_rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x1A7E])
    latency_ns = (20e6 + latency_rng.exponential(15e6, len(order))).astype(np.int64)
    return _Columns(
        products=products,
        initial=initial,
        product_idx=product_idx[order],
        event_time_ns=event_ns,
        sequence=sequence,
        event_type_snapshot=snapshot[order],
        price_c=cols["price_c"][order].astype(np.int64),
        bid_c=cols["bid_c"][order].astype(np.int64),
        ask_c=cols["ask_c"][order].astype(np.int64),
        bid_qty=cols["bid_qty"][order],
        ask_qty=cols["ask_qty"][order],
        volume_24h=cols["volume_24h"][order],
        low_c=cols["low_c"][order].astype(np.int64),
        high_c=cols["high_c"][order].astype(np.int64),
        open_c=cols["open_c"][order].astype(np.int64),
        receive_time_ns=event_ns + latency_ns,
    )


def path_state_row(state: ProductState) -> dict[str, float]:
    return {
        "t": 0.0,
        "price_c": state.price_c,
        "bid_c": state.bid_c,
        "ask_c": state.ask_c,
        "bid_qty": state.bid_qty,
        "ask_qty": state.ask_qty,
        "volume_24h": state.volume_24h,
        "low_c": state.low_c,
        "high_c": state.high_c,
        "open_c": state.open_c,
    }


def generate_ticks_frame(
    products: Sequence[str] = ("BTC-USD", "ETH-USD"),
    start: datetime | None = None,
    duration_s: float = 3600.0,
    seed: int = 0,
    rate_hz: float = 4.0,
    regime_change_at_s: float | None = None,
    regime_vol_mult: float = 4.0,
) -> pd.DataFrame:
    """Synthetic ticks as a DataFrame with `TICK_COLUMNS` (time-ordered, all products merged).

    About `duration_s * rate_hz * len(products)` rows (a bit more: the rate rises with volatility).
    `start` defaults to 2026-01-01T00:00Z so that results do not depend on the day they are run.
    """
    cols = _simulate(
        products, start or datetime(2026, 1, 1, tzinfo=UTC), duration_s, seed, rate_hz,
        regime_change_at_s, regime_vol_mult,
    )
    frame = pd.DataFrame(
        {
            "product_id": pd.Categorical.from_codes(cols.product_idx, categories=list(cols.products)),
            "event_time_ns": cols.event_time_ns,
            "sequence": cols.sequence,
            "price": cols.price_c / 100.0,
            "best_bid": cols.bid_c / 100.0,
            "best_ask": cols.ask_c / 100.0,
            "best_bid_qty": cols.bid_qty,
            "best_ask_qty": cols.ask_qty,
            "volume_24h": cols.volume_24h,
            "receive_time_ns": cols.receive_time_ns,
        },
        columns=list(TICK_COLUMNS),
    )
    return frame.astype(TICK_DTYPES)


def generate_landing_files(
    out_dir: Path,
    products: Sequence[str] = ("BTC-USD", "ETH-USD"),
    start: datetime | None = None,
    duration_s: float = 3600.0,
    seed: int = 0,
    rate_hz: float = 4.0,
    regime_change_at_s: float | None = None,
    regime_vol_mult: float = 4.0,
) -> list[Path]:
    """Write `out_dir/raw/<product>/<YYYY-MM-DD>.ndjson` landing files; returns the paths written.

    Each line is `cryptovol.ticks.landing_record(...)` of one ticker (verbatim exchange ticker
    object, envelope timestamp, sequence_num, snapshot/update, receive time), the UTC day of the
    event time choosing the file. Files are appended to, like the ingestor does.
    """
    cols = _simulate(
        products, start or datetime(2026, 1, 1, tzinfo=UTC), duration_s, seed, rate_hz,
        regime_change_at_s, regime_vol_mult,
    )
    raw = Path(out_dir) / "raw"
    day_index = cols.event_time_ns // (86_400 * _NS)
    handles: dict[tuple[int, int], object] = {}
    paths: dict[tuple[int, int], Path] = {}
    try:
        for i in range(len(cols.event_time_ns)):
            k = int(cols.product_idx[i])
            product = cols.products[k]
            init = cols.initial[product]
            state = ProductState(
                int(cols.price_c[i]), int(cols.bid_c[i]), int(cols.ask_c[i]),
                float(cols.bid_qty[i]), float(cols.ask_qty[i]), float(cols.volume_24h[i]),
                int(cols.low_c[i]), int(cols.high_c[i]),
                int(cols.open_c[i]), init.low_52w_c, init.high_52w_c,
            )
            key = (k, int(day_index[i]))
            handle = handles.get(key)
            if handle is None:
                day = datetime.fromtimestamp(key[1] * 86_400, UTC).strftime("%Y-%m-%d")
                path = raw / product / f"{day}.ndjson"
                path.parent.mkdir(parents=True, exist_ok=True)
                handle = handles[key] = open(path, "a", encoding="utf-8")  # noqa: SIM115
                paths[key] = path
            record = landing_record(
                ticker_object(product, state),
                envelope_timestamp=format_timestamp(int(cols.event_time_ns[i])),
                sequence_num=int(cols.sequence[i]),
                event_type="snapshot" if cols.event_type_snapshot[i] else "update",
                receive_time_ns=int(cols.receive_time_ns[i]),
            )
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    finally:
        for handle in handles.values():
            handle.close()
    return sorted(paths.values())
