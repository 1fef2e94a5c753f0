"""The market process and the offline generators, measured on generated data (no server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from cryptovol.simulator import MarketSimulator, generate_landing_files, generate_ticks_frame
from cryptovol.simulator.frames import format_decimal, format_ticks, ticker_object
from cryptovol.ticks import TICK_COLUMNS, TICK_DTYPES, tick_from_landing, ticks_to_frame


def one_second_returns(frame: pd.DataFrame, product: str = "BTC-USD") -> pd.Series:
    """Mid log returns on a 1-second grid (last quote of each second)."""
    ticks = frame[frame["product_id"] == product]
    mid = np.log((ticks["best_bid"] + ticks["best_ask"]).to_numpy() / 2)
    series = pd.Series(mid, index=pd.to_datetime(ticks["event_time_ns"].to_numpy()))
    return series.resample("1s").last().ffill().diff().dropna()


@pytest.fixture(scope="module")
def four_hours() -> pd.DataFrame:
    return generate_ticks_frame(duration_s=4 * 3600, seed=1)


def test_frame_has_tick_columns_and_dtypes_and_valid_books(four_hours):
    assert list(four_hours.columns) == list(TICK_COLUMNS)
    assert four_hours.dtypes.to_dict() == ticks_to_frame([]).dtypes.to_dict()
    assert {str(k): v for k, v in TICK_DTYPES.items()}.keys() == set(four_hours.columns)
    assert (four_hours["best_bid"] < four_hours["best_ask"]).all()
    assert (four_hours[["price", "best_bid", "best_ask", "best_bid_qty", "best_ask_qty"]] > 0).all().all()
    assert four_hours["event_time_ns"].is_monotonic_increasing
    assert (four_hours["sequence"].diff().dropna() >= 1).all()
    assert (four_hours["receive_time_ns"] > four_hours["event_time_ns"]).all()
    cents = four_hours[["price", "best_bid", "best_ask"]].to_numpy() * 100
    assert np.allclose(cents, np.rint(cents), atol=1e-6)  # on the 0.01 tick


def test_default_start_prices_and_rate(four_hours):
    first = four_hours.groupby("product_id", observed=True)["price"].first()
    assert first["BTC-USD"] == pytest.approx(90_000, rel=0.001)
    assert first["ETH-USD"] == pytest.approx(3_000, rel=0.001)
    per_product_hz = four_hours.groupby("product_id", observed=True).size() / (4 * 3600)
    assert ((per_product_hz > 3.0) & (per_product_hz < 6.0)).all(), per_product_hz


def test_volatility_clusters(four_hours):
    squared = one_second_returns(four_hours) ** 2
    acf = [squared.autocorr(lag) for lag in (1, 2, 5, 10)]
    shuffled = pd.Series(np.random.default_rng(0).permutation(squared.to_numpy())).autocorr(1)
    assert min(acf) > 0.05, acf
    assert abs(shuffled) < 0.03  # the same returns without time order do not cluster


def test_spread_and_message_rate_rise_with_volatility(four_hours):
    btc = four_hours[four_hours["product_id"] == "BTC-USD"]
    minute = pd.to_datetime(btc["event_time_ns"].to_numpy()).floor("1min")
    spread = (btc["best_ask"] - btc["best_bid"]).groupby(minute).mean()
    count = btc.groupby(minute).size()
    returns = one_second_returns(four_hours)
    realized = (returns**2).groupby(returns.index.floor("1min")).sum() ** 0.5
    joined = pd.DataFrame({"spread": spread, "count": count, "rv": realized}).dropna()
    calm = joined[joined["rv"] <= joined["rv"].quantile(0.2)]
    wild = joined[joined["rv"] >= joined["rv"].quantile(0.8)]
    assert wild["spread"].mean() > 2 * calm["spread"].mean()
    assert wild["count"].mean() > 1.5 * calm["count"].mean()
    # Calm BTC quotes a few cents wide, at least one tick.
    assert 0.01 <= calm["spread"].mean() <= 0.10
    assert (btc["best_ask"] - btc["best_bid"]).min() >= 0.01 - 1e-9


def test_last_trade_changes_on_about_a_third_of_messages(four_hours):
    btc = four_hours[four_hours["product_id"] == "BTC-USD"]
    changed = (btc["price"].diff().dropna() != 0).mean()
    assert 0.2 < changed < 0.45


def test_regime_change_raises_realized_volatility():
    """Median absolute 1-s return after the change vs before (robust to bursts and jumps)."""
    ratios = {}
    for regime in (1800.0, None):
        frame = generate_ticks_frame(duration_s=3600, seed=2, regime_change_at_s=regime, regime_vol_mult=4.0)
        returns = one_second_returns(frame).abs()
        cut = returns.index[0] + pd.Timedelta(seconds=1800)
        ratios[regime] = returns[returns.index >= cut].median() / returns[returns.index < cut].median()
    assert 2.5 < ratios[1800.0] < 8.0, ratios
    assert 0.5 < ratios[None] < 2.0, ratios


def test_generator_is_deterministic_per_seed():
    a = generate_ticks_frame(duration_s=600, seed=9)
    b = generate_ticks_frame(duration_s=600, seed=9)
    c = generate_ticks_frame(duration_s=600, seed=10)
    pd.testing.assert_frame_equal(a, b)
    assert not a["price"].equals(c["price"].iloc[: len(a)]) or len(a) != len(c)


def test_a_products_path_does_not_depend_on_the_other_products():
    both = generate_ticks_frame(("BTC-USD", "ETH-USD"), duration_s=300, seed=2)
    alone = generate_ticks_frame(("BTC-USD",), duration_s=300, seed=2)
    btc = both[both["product_id"] == "BTC-USD"].reset_index(drop=True)
    cols = ["event_time_ns", "price", "best_bid", "best_ask", "best_bid_qty", "volume_24h"]
    pd.testing.assert_frame_equal(btc[cols], alone[cols])


def test_streaming_process_yields_the_generator_ticks():
    frame = generate_ticks_frame(duration_s=120, seed=3, rate_hz=10.0)
    market = MarketSimulator(["BTC-USD", "ETH-USD"], seed=3, rate_hz=10.0)
    updates = frame.iloc[2:202]  # skip the two snapshot rows
    for row in updates.itertuples():
        event = market.next_event()
        assert event.product_id == row.product_id
        state = event.state
        assert (state.bid_c / 100, state.ask_c / 100, state.price_c / 100) == (
            row.best_bid, row.best_ask, row.price
        )
        assert round(event.t_s * 1e9) + 1_767_225_600 * 10**9 == row.event_time_ns


def test_landing_files_parse_with_zero_errors_and_split_by_utc_day(tmp_path):
    start = datetime(2026, 3, 1, 23, 55, tzinfo=UTC)
    paths = generate_landing_files(tmp_path, ["BTC-USD", "ETH-USD"], start, duration_s=600, seed=5)
    rel = sorted(str(p.relative_to(tmp_path)) for p in paths)
    assert rel == [
        "raw/BTC-USD/2026-03-01.ndjson", "raw/BTC-USD/2026-03-02.ndjson",
        "raw/ETH-USD/2026-03-01.ndjson", "raw/ETH-USD/2026-03-02.ndjson",
    ]
    ticks = []
    for path in paths:
        for line in path.read_text().splitlines():
            obj = json.loads(line)
            assert set(obj) == {"ticker", "timestamp", "sequence_num", "event_type", "received_at"}
            tick = tick_from_landing(obj)  # raises TickError on any bad line
            assert tick.product_id == path.parent.name
            day = datetime.fromtimestamp(tick.event_time_ns / 1e9, UTC).strftime("%Y-%m-%d")
            assert path.stem == day
            ticks.append(tick)
    parsed = ticks_to_frame(ticks).sort_values("sequence").reset_index(drop=True)
    expected = generate_ticks_frame(["BTC-USD", "ETH-USD"], start, duration_s=600, seed=5)
    # The tabular generator and the landing files hold the same ticks.
    pd.testing.assert_frame_equal(parsed, expected, check_dtype=False, check_categorical=False)
    snapshots = [t for t in ticks if t.event_time_ns == parsed["event_time_ns"].iloc[0]]
    assert {t.product_id for t in snapshots} == {"BTC-USD", "ETH-USD"}


def test_landing_files_append_like_the_ingestor(tmp_path):
    start = datetime(2026, 1, 5, tzinfo=UTC)
    first = generate_landing_files(tmp_path, ["ETH-USD"], start, duration_s=60, seed=1)
    n = len(first[0].read_text().splitlines())
    generate_landing_files(tmp_path, ["ETH-USD"], start, duration_s=60, seed=1)
    assert len(first[0].read_text().splitlines()) == 2 * n


@pytest.mark.parametrize(
    ("value", "text"),
    [(6746826, "67468.26"), (6747000, "67470"), (6746950, "67469.5"), (1, "0.01"), (0, "0"), (-5, "-0.05")],
)
def test_prices_are_printed_like_the_exchange(value, text):
    assert format_ticks(value) == text


def test_quantities_are_printed_like_the_exchange():
    assert format_decimal(0.0244) == "0.0244"
    assert format_decimal(3057.53218222) == "3057.53218222"
    assert format_decimal(0.000017) == "0.000017"
    assert format_decimal(12.0) == "12"


def test_ticker_object_matches_the_recorded_exchange_shape(shared_data):
    import gzip

    path = shared_data / "coinbase_advtrade_ticker_2026-04_slices" / "guhankesav" / "BTC_USD.ndjson.gz"
    with gzip.open(path, "rt") as fh:
        recorded = next(
            json.loads(line)["payload"]["events"][0]["tickers"][0]
            for line in fh
            if json.loads(line)["payload"]["channel"] == "ticker"
        )
    market = MarketSimulator(["BTC-USD"], seed=0)
    ours = ticker_object("BTC-USD", market.next_event().state)
    assert list(ours) == list(recorded)
    assert all(isinstance(v, str) for v in ours.values())


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="rate_hz"):
        MarketSimulator(["BTC-USD"], rate_hz=0)
    with pytest.raises(ValueError, match="duration_s"):
        generate_ticks_frame(duration_s=0)
