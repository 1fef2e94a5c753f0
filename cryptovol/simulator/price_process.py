"""A seeded market process for ticker updates: stochastic volatility, bursts, jumps, a quoted book.

Why not a constant-vol random walk: the platform predicts volatility *spikes*, so the synthetic
market must have what real BTC/ETH tickers have: volatility that clusters (log-vol AR(1) on a
1-second grid), occasional regime bursts (vol x3-x8 for tens of seconds to minutes), rare jumps, a
spread that widens and a message rate that rises with volatility, and a last-trade price that only
changes on ~30% of messages.

The process is simulated per product in fixed blocks of `BLOCK_S` simulated seconds with numpy, so
the same seed yields the same ticks whether they are streamed one by one by the WebSocket server
or generated in bulk by `cryptovol.simulator.synthetic`. Each product has its own random stream
(seeded by the seed and the product name), so BTC's path does not change when ETH is added.
Prices are kept as integer ticks (cents) so that formatting is exact.
"""

from __future__ import annotations

import heapq
import math
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

#: Simulated seconds per block. Part of the determinism contract: changing it changes the paths.
BLOCK_S = 600

#: Seconds in the rolling window of `volume_24_h` (exponential approximation of the window).
DAY_S = 86_400.0
#: low/high_24_h and the 24 h change are kept per block over a rolling day of blocks.
BLOCKS_PER_DAY = int(DAY_S // BLOCK_S)

DEFAULT_START_PRICES: dict[str, float] = {
    "BTC-USD": 90_000.0,
    "ETH-USD": 3_000.0,
    "SOL-USD": 150.0,
}


@dataclass(frozen=True)
class ProductParams:
    """Per-product parameters of the process; `for_product` picks realistic defaults."""

    product_id: str
    start_price: float
    tick: float = 0.01
    #: Calm volatility of log mid returns per sqrt(second) (~1e-4 is ~55% annualized).
    base_vol: float = 1.0e-4
    #: Persistence of log-volatility per second (half-life = ln 2 / (1 - phi) ~ 140 s).
    vol_persistence: float = 0.995
    #: Stationary standard deviation of log-volatility.
    vol_of_vol: float = 0.35
    #: Regime bursts: expected number per hour, mean duration (s), multiplier range.
    bursts_per_hour: float = 2.0
    burst_mean_s: float = 60.0
    burst_min_s: float = 10.0
    burst_mult: tuple[float, float] = (3.0, 8.0)
    #: Jumps of the mid (compound Poisson): expected number per hour and log-size std.
    jumps_per_hour: float = 1.0
    jump_std: float = 0.002
    #: Median spread in ticks when calm (scaled by (vol / base_vol) ** spread_vol_power).
    spread_calm_ticks: float = 2.0
    spread_vol_power: float = 1.5
    #: Fraction of messages that carry a new last trade.
    trade_fraction: float = 0.3
    #: Median resting quantity at the best bid/ask, and the starting 24 h volume (base units).
    qty_median: float = 0.05
    volume_24h_start: float = 3_000.0

    def __post_init__(self) -> None:
        if not 0.0 < self.vol_persistence < 1.0:
            raise ValueError(f"vol_persistence must be within (0, 1), got {self.vol_persistence}")
        if self.start_price <= 0 or self.base_vol <= 0 or self.tick <= 0:
            raise ValueError(f"{self.product_id}: start_price, base_vol and tick must be > 0")

    @classmethod
    def for_product(cls, product_id: str, start_price: float | None = None) -> ProductParams:
        price = float(start_price or DEFAULT_START_PRICES.get(product_id, 100.0))
        # Cheaper coins trade bigger sizes and have tighter spreads in ticks.
        scale = 90_000.0 / price
        return cls(
            product_id=product_id,
            start_price=price,
            spread_calm_ticks=max(1.0, 2.0 * price / 90_000.0 * 1.5),
            qty_median=0.05 * scale ** 0.9,
            volume_24h_start=3_000.0 * scale ** 0.9,
            base_vol=1.0e-4 if price >= 10_000 else 1.3e-4,
        )


@dataclass
class TickBlock:
    """Columnar ticks of one product over one block (times in seconds since the market start)."""

    t: np.ndarray  # float64 seconds since start
    vol: np.ndarray  # float64 instantaneous vol per sqrt(s) of the message's second
    price_c: np.ndarray  # int64 ticks
    bid_c: np.ndarray
    ask_c: np.ndarray
    bid_qty: np.ndarray  # float64, rounded to 1e-8
    ask_qty: np.ndarray
    volume_24h: np.ndarray  # float64, rounded to 1e-8
    low_c: np.ndarray
    high_c: np.ndarray
    open_c: int = 0  # the price 24 h before this block (for price_percent_chg_24_h)

    def __len__(self) -> int:
        return len(self.t)


@dataclass(slots=True)
class ProductState:
    """The last quoted state of one product (what a snapshot repeats)."""

    price_c: int
    bid_c: int
    ask_c: int
    bid_qty: float
    ask_qty: float
    volume_24h: float
    low_c: int
    high_c: int
    open_c: int
    low_52w_c: int
    high_52w_c: int


class ProductPath:
    """The process for one product, advanced one block at a time."""

    def __init__(
        self,
        params: ProductParams,
        seed: int,
        *,
        rate_hz: float,
        regime_change_at_s: float | None = None,
        regime_vol_mult: float = 4.0,
    ) -> None:
        self.params = params
        self.rate_hz = float(rate_hz)
        self.regime_change_at_s = regime_change_at_s
        self.regime_vol_mult = float(regime_vol_mult)
        self.rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(params.product_id.encode())])
        self.seconds_done = 0
        self.last_t = 0.0
        self._log_vol_dev = 0.0
        self._burst_until = 0  # absolute second at which the current burst ends
        self._burst_mult = 1.0
        p = params
        inv_tick = 1.0 / p.tick
        self.log_mid = math.log(p.start_price)
        mid_c = p.start_price * inv_tick
        spread = max(1, round(p.spread_calm_ticks))
        bid = int(math.floor(mid_c - spread / 2))
        open_c = round(mid_c * (1.0 + 0.002 * float(self.rng.standard_normal())))
        self.state = ProductState(
            price_c=bid + spread,
            bid_c=bid,
            ask_c=bid + spread,
            bid_qty=round(p.qty_median, 8),
            ask_qty=round(p.qty_median * 1.3, 8),
            volume_24h=round(p.volume_24h_start, 8),
            low_c=round(min(mid_c, open_c) * 0.99),
            high_c=round(max(mid_c, open_c) * 1.01),
            open_c=open_c,
            low_52w_c=round(mid_c * 0.7),
            high_52w_c=round(mid_c * 1.6),
        )
        # Per past block (low, high, price at its start); the first entry stands for "yesterday".
        s = self.state
        self._history: deque[tuple[int, int, int]] = deque(
            [(s.low_c, s.high_c, s.open_c)], maxlen=BLOCKS_PER_DAY - 1
        )

    # -- volatility on the 1-second grid -------------------------------------------------------
    def _second_vols(self, n: int) -> np.ndarray:
        """Volatility per sqrt(second) for the next `n` whole seconds (vectorized, exact AR(1))."""
        p, rng = self.params, self.rng
        phi = p.vol_persistence
        eta = p.vol_of_vol * math.sqrt(1.0 - phi * phi)
        shocks = rng.standard_normal(n) * eta
        burst_u = rng.random(n)
        burst_len = rng.exponential(p.burst_mean_s, n)
        burst_mult = rng.uniform(p.burst_mult[0], p.burst_mult[1], n)
        # AR(1) x_t = phi x_{t-1} + e_t, solved in closed form over short stretches (no overflow).
        dev = np.empty(n)
        x0 = self._log_vol_dev
        for lo in range(0, n, 64):
            e = shocks[lo : lo + 64]
            w = phi ** np.arange(1, len(e) + 1)
            dev[lo : lo + len(e)] = w * (x0 + np.cumsum(e / w))
            x0 = float(dev[lo + len(e) - 1])
        self._log_vol_dev = x0
        # Bursts: a burst starting at second s covers [s, s + length); none starts inside another.
        log_mult = np.zeros(n)
        first = self.seconds_done
        until, mult = self._burst_until, self._burst_mult
        if until > first:
            log_mult[: min(n, until - first)] = math.log(mult)
        p_burst = p.bursts_per_hour / 3600.0
        for i in np.flatnonzero(burst_u < p_burst):
            if first + i < until:
                continue
            until = first + int(i) + int(max(p.burst_min_s, burst_len[i]))
            mult = float(burst_mult[i])
            log_mult[i : until - first] = math.log(mult)
        self._burst_until, self._burst_mult = until, mult
        # exp(dev - var/2) keeps the mean vol at base_vol outside bursts.
        vols = p.base_vol * np.exp(dev + log_mult - 0.5 * p.vol_of_vol**2)
        if self.regime_change_at_s is not None:
            secs = first + np.arange(n)
            vols = np.where(secs >= self.regime_change_at_s, vols * self.regime_vol_mult, vols)
        return vols

    def next_block(self, n_seconds: int = BLOCK_S) -> TickBlock:
        """Simulate the next `n_seconds` of this product; advances the state."""
        p, rng, st = self.params, self.rng, self.state
        vols = self._second_vols(n_seconds)
        # Message intensity rises with volatility (bursts and a new regime included), capped at 8x.
        intensity = self.rate_hz * np.clip((vols / p.base_vol) ** 0.6, 0.25, 8.0)
        counts = rng.poisson(intensity)
        total = int(counts.sum())
        sec = np.repeat(np.arange(n_seconds), counts)
        t = np.sort(self.seconds_done + sec + rng.random(total))
        # Draw everything for this block up front (fixed order keeps the seed contract simple).
        z = rng.standard_normal(total)
        jump_u = rng.random(total)
        jump_z = rng.standard_normal(total)
        spread_z = rng.standard_normal(total)
        trade_u = rng.random(total)
        side_u = rng.random(total)
        inside_u = rng.random(total)
        size_z = rng.standard_normal(total)
        qty_z = rng.standard_normal((2, total))
        qty_keep = rng.random((2, total))
        if total == 0:
            self.seconds_done += n_seconds
            self._history.append((st.price_c, st.price_c, st.price_c))
            return _empty_block()

        sec_of = (t - self.seconds_done).astype(np.int64).clip(0, n_seconds - 1)
        vol = vols[sec_of]
        dt = np.diff(t, prepend=self.last_t)
        rets = vol * np.sqrt(dt) * z
        jumps = jump_u < (p.jumps_per_hour / 3600.0) * dt
        rets += np.where(jumps, jump_z * p.jump_std, 0.0)
        log_mid = self.log_mid + np.cumsum(rets)
        mid_c = np.exp(log_mid) / p.tick

        rel_vol = vol / p.base_vol
        spread = np.maximum(
            1, np.rint(p.spread_calm_ticks * rel_vol**p.spread_vol_power * np.exp(0.5 * spread_z))
        ).astype(np.int64)
        bid_c = np.floor(mid_c - spread / 2.0).astype(np.int64)
        ask_c = bid_c + spread

        # Last trade: at the ask or the bid, sometimes inside the spread; carried forward otherwise.
        is_trade = trade_u < np.clip(p.trade_fraction * rel_vol**0.3, 0.05, 0.9)
        inside = bid_c + np.floor(inside_u * spread).astype(np.int64)
        trade_c = np.where(side_u < 0.45, ask_c, np.where(side_u < 0.9, bid_c, inside))
        idx = np.where(is_trade, np.arange(total), -1)
        last = np.maximum.accumulate(idx)
        price_c = np.where(last >= 0, trade_c[np.maximum(last, 0)], st.price_c)

        # 24 h volume: exponential window approximation v_i = v_{i-1} e^{-dt/DAY} + size_i.
        mean_size = p.volume_24h_start / (DAY_S * self.rate_hz * p.trade_fraction)
        sizes = np.where(is_trade, mean_size * np.exp(1.0 * size_z - 0.5), 0.0)
        rel_t = t - self.last_t
        growth = np.exp(rel_t / DAY_S)
        volume = np.round((st.volume_24h + np.cumsum(sizes * growth)) / growth, 8)

        # Rolling 24 h low/high/open at block resolution: the blocks of the last day + this one.
        traded = np.where(is_trade, trade_c, price_c)
        day_low = min(h[0] for h in self._history)
        day_high = max(h[1] for h in self._history)
        open_c = self._history[0][2]
        low_c = np.minimum(np.minimum.accumulate(traded), day_low)
        high_c = np.maximum(np.maximum.accumulate(traded), day_high)
        self._history.append((int(traded.min()), int(traded.max()), st.price_c))

        # Resting sizes: each side keeps its quantity on ~50% of messages (as in the recording, a
        # message often changes one side only).
        fresh = np.round(p.qty_median * np.exp(1.3 * qty_z), 8).clip(1e-8)
        bid_qty = _carry(fresh[0], qty_keep[0] < 0.5, st.bid_qty)
        ask_qty = _carry(fresh[1], qty_keep[1] < 0.5, st.ask_qty)

        block = TickBlock(t, vol, price_c, bid_c, ask_c, bid_qty, ask_qty, volume, low_c, high_c, open_c)
        self.log_mid = float(log_mid[-1])
        self.last_t = float(t[-1])
        self.seconds_done += n_seconds
        self.state = replace(
            st,
            price_c=int(price_c[-1]),
            bid_c=int(bid_c[-1]),
            ask_c=int(ask_c[-1]),
            bid_qty=float(bid_qty[-1]),
            ask_qty=float(ask_qty[-1]),
            volume_24h=float(volume[-1]),
            low_c=int(low_c[-1]),
            high_c=int(high_c[-1]),
            open_c=open_c,
        )
        return block


def _carry(fresh: np.ndarray, changed: np.ndarray, start: float) -> np.ndarray:
    """Forward-fill `fresh` values where `changed`, starting from `start`."""
    idx = np.maximum.accumulate(np.where(changed, np.arange(len(fresh)), -1))
    return np.where(idx >= 0, fresh[np.maximum(idx, 0)], start)


def _empty_block() -> TickBlock:
    f, i = np.empty(0), np.empty(0, dtype=np.int64)
    return TickBlock(f, f, i, i, i, f, f, f, i, i)


@dataclass(frozen=True)
class MarketEvent:
    """One ticker update of one product at `t_s` simulated seconds after the market start."""

    product_id: str
    t_s: float
    vol: float
    state: ProductState


@dataclass
class _Cursor:
    path: ProductPath
    block: TickBlock = field(default_factory=_empty_block)
    pos: int = 0


class MarketSimulator:
    """All products of one market, merged in time order; usable without the server.

    `next_event()` returns the next ticker update across products; `state(product)` the last
    quoted state (what a snapshot shows). Deterministic for `(products, seed, rate_hz, regime_*)`.

    `start_at_s` resumes the market that far in: the updates before it are simulated and dropped
    (not sent), so a history written by `cryptovol.simulator.synthetic` for the first `start_at_s`
    seconds with the same seed and parameters is continued tick for tick, price included.
    Times (`t_s`, `regime_change_at_s`) stay on the market clock that starts at 0.
    """

    def __init__(
        self,
        products: Sequence[str],
        seed: int = 0,
        rate_hz: float = 4.0,
        *,
        regime_change_at_s: float | None = None,
        regime_vol_mult: float = 4.0,
        start_prices: dict[str, float] | None = None,
        params: Sequence[ProductParams] | None = None,
        start_at_s: float = 0.0,
    ) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        if start_at_s < 0:
            raise ValueError(f"start_at_s must be >= 0, got {start_at_s}")
        if params is None:
            start_prices = start_prices or {}
            params = [ProductParams.for_product(p, start_prices.get(p)) for p in products]
        self.products = tuple(p.product_id for p in params)
        self.seed = seed
        self.rate_hz = rate_hz
        self._cursors = {
            p.product_id: _Cursor(
                ProductPath(
                    p, seed, rate_hz=rate_hz,
                    regime_change_at_s=regime_change_at_s, regime_vol_mult=regime_vol_mult,
                )
            )
            for p in params
        }
        # What clients have seen so far: the initial quote until a product's first update.
        self._current: dict[str, ProductState] = {
            product: cur.path.state for product, cur in self._cursors.items()
        }
        self._heap: list[tuple[float, int, str]] = []
        for order, product in enumerate(self.products):
            self._push(product, order)
        self.start_at_s = float(start_at_s)
        while self._heap and self._heap[0][0] < self.start_at_s:
            self.next_event()

    def _push(self, product: str, order: int) -> None:
        cur = self._cursors[product]
        while cur.pos >= len(cur.block):
            cur.block, cur.pos = cur.path.next_block(), 0
        heapq.heappush(self._heap, (float(cur.block.t[cur.pos]), order, product))

    def state(self, product: str) -> ProductState:
        """The last state a client of `product` has been sent (the snapshot content)."""
        return self._current[product]

    def next_event(self) -> MarketEvent:
        t, order, product = heapq.heappop(self._heap)
        cur = self._cursors[product]
        b, i = cur.block, cur.pos
        prev = self._current[product]
        state = ProductState(
            int(b.price_c[i]), int(b.bid_c[i]), int(b.ask_c[i]),
            float(b.bid_qty[i]), float(b.ask_qty[i]), float(b.volume_24h[i]),
            int(b.low_c[i]), int(b.high_c[i]),
            b.open_c, prev.low_52w_c, prev.high_52w_c,
        )
        self._current[product] = state
        cur.pos += 1
        self._push(product, order)
        return MarketEvent(product, t, float(b.vol[i]), state)

    def events(self) -> Iterator[MarketEvent]:
        while True:
            yield self.next_event()
