"""The simulator over real sockets, as the ingestor sees it: the real `cryptovol simulate` process
(conftest `simulator` / `simulator_factory`) and a `websockets` client."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from cryptovol.ticks import TickError, parse_timestamp_ns, tick_from_ticker

PRODUCTS = ["BTC-USD", "ETH-USD"]
PRICE_FIELDS = ("price", "best_bid", "best_ask", "low_24_h", "high_24_h", "low_52_w", "high_52_w")
TICKER_KEYS = [
    "type", "product_id", "price", "volume_24_h", "low_24_h", "high_24_h", "low_52_w", "high_52_w",
    "price_percent_chg_24_h", "best_bid", "best_ask", "best_bid_quantity", "best_ask_quantity",
]


def open_ws(url: str) -> ClientConnection:
    return connect(url, open_timeout=20, close_timeout=5)


def send(ws: ClientConnection, **request: object) -> None:
    ws.send(json.dumps(request))


def recv(ws: ClientConnection, timeout: float = 15.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def subscribe_tickers(ws: ClientConnection, products: list[str] = PRODUCTS) -> list[dict]:
    """Subscribe and return the opening frames: one snapshot per product, then the ack."""
    send(ws, type="subscribe", product_ids=products, channel="ticker", jwt="ignored")
    return [recv(ws) for _ in range(len(products) + 1)]


def ticker_updates(ws: ClientConnection, n: int) -> list[dict]:
    """The next `n` ticker envelopes (other channels skipped)."""
    out: list[dict] = []
    while len(out) < n:
        msg = recv(ws)
        if msg.get("channel") == "ticker":
            out.append(msg)
    return out


def test_subscribe_gives_snapshots_ack_then_string_updates_with_consecutive_sequence(simulator):
    with open_ws(simulator.url) as ws:
        opening = subscribe_tickers(ws)
        updates = ticker_updates(ws, 60)
    snapshots, ack = opening[:2], opening[2]
    # The real recording's order: snapshot per product first (sequence 0, 1), then the ack.
    assert [s["events"][0]["type"] for s in snapshots] == ["snapshot", "snapshot"]
    assert [s["events"][0]["tickers"][0]["product_id"] for s in snapshots] == PRODUCTS
    assert ack["channel"] == "subscriptions"
    assert ack["events"] == [{"subscriptions": {"ticker": PRODUCTS}}]
    frames = [*opening, *updates]
    assert [f["sequence_num"] for f in frames] == list(range(len(frames)))
    assert all(f["client_id"] == "" for f in frames)
    assert {u["events"][0]["type"] for u in updates} == {"update"}
    times = [parse_timestamp_ns(f["timestamp"]) for f in frames]
    assert times == sorted(times)
    seen = set()
    for frame in [*snapshots, *updates]:
        (event,) = frame["events"]
        (ticker,) = event["tickers"]
        assert list(ticker) == TICKER_KEYS
        assert all(isinstance(v, str) for v in ticker.values())
        for name in PRICE_FIELDS:  # prices on the 0.01 tick, printed without trailing zeros
            assert re.fullmatch(r"\d+(\.\d{1,2})?", ticker[name]), (name, ticker[name])
            assert not ticker[name].endswith(".0") and not re.search(r"\.\d0$", ticker[name])
        tick = tick_from_ticker(ticker, event_time_ns=0, sequence=frame["sequence_num"], receive_time_ns=0)
        assert 0 < tick.best_bid < tick.best_ask
        seen.add(tick.product_id)
    assert seen == set(PRODUCTS)


def test_record_file_holds_exactly_the_frames_sent(simulator):
    with open_ws(simulator.url) as ws:
        received = [json.dumps(m) for m in subscribe_tickers(ws)]
        received += [json.dumps(m) for m in ticker_updates(ws, 20)]
    records = [r for r in simulator.records() if r["connection"] == 0]
    sent = [json.dumps(json.loads(r["frame"])) for r in records[: len(received)]]
    assert sent == received
    assert [r["kind"] for r in records[:3]] == ["ticker", "ticker", "subscriptions"]
    # The exact text on the wire is compact JSON, as the exchange sends it.
    assert records[0]["frame"].startswith('{"channel":"ticker","client_id":"","timestamp":"')


def test_heartbeats_once_per_second_with_increasing_counter(simulator):
    with open_ws(simulator.url) as ws:
        send(ws, type="subscribe", channel="heartbeats")
        ack = recv(ws)
        beats = [recv(ws, timeout=5) for _ in range(3)]
    assert ack["channel"] == "subscriptions" and "heartbeats" in ack["events"][0]["subscriptions"]
    assert [b["channel"] for b in beats] == ["heartbeats"] * 3
    assert [b["sequence_num"] for b in beats] == [1, 2, 3]
    counters = [int(b["events"][0]["heartbeat_counter"]) for b in beats]
    assert counters == [counters[0], counters[0] + 1, counters[0] + 2]
    gaps = [
        (parse_timestamp_ns(b["timestamp"]) - parse_timestamp_ns(a["timestamp"])) / 1e9
        for a, b in zip(beats, beats[1:], strict=False)
    ]
    # Once per second on a fixed schedule (a late beat is followed by an early one).
    assert 0.7 < sum(gaps) / len(gaps) < 1.6, gaps


def test_unsubscribe_stops_that_product_only(simulator):
    with open_ws(simulator.url) as ws:
        subscribe_tickers(ws)
        ticker_updates(ws, 5)
        send(ws, type="unsubscribe", product_ids=["ETH-USD"], channel="ticker")
        # Updates already queued before the request may still arrive; then the ack.
        while (msg := recv(ws))["channel"] != "subscriptions":
            assert msg["channel"] == "ticker"
        assert msg["events"] == [{"subscriptions": {"ticker": ["BTC-USD"]}}]
        after = ticker_updates(ws, 30)
    assert {u["events"][0]["tickers"][0]["product_id"] for u in after} == {"BTC-USD"}


BAD_REQUESTS = [
    "not json",
    json.dumps(["subscribe"]),
    json.dumps({"type": "ping"}),
    json.dumps({"type": "subscribe", "channel": "level3", "product_ids": ["BTC-USD"]}),
    json.dumps({"type": "subscribe", "channel": "ticker", "product_ids": ["DOGE-USD"]}),
    json.dumps({"type": "subscribe", "channel": "ticker"}),
    json.dumps({"type": "subscribe", "channel": "ticker", "product_ids": "BTC-USD"}),
]


def test_bad_requests_get_error_frames_and_connection_stays_usable(simulator):
    with open_ws(simulator.url) as ws:
        errors = []
        for text in BAD_REQUESTS:
            ws.send(text)
            errors.append(recv(ws))
        opening = subscribe_tickers(ws, ["BTC-USD"])
    assert [e["type"] for e in errors] == ["error"] * len(BAD_REQUESTS)
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)
    assert "DOGE-USD" in errors[4]["reason"]
    assert opening[0]["events"][0]["type"] == "snapshot"
    assert opening[0]["sequence_num"] == 0  # error frames carry no sequence number
    assert [r["kind"] for r in simulator.records()][: len(BAD_REQUESTS)] == ["error"] * len(BAD_REQUESTS)


def payloads(frames: list[dict]) -> list[list[dict]]:
    return [f["events"] for f in frames if f.get("channel") == "ticker"]


def run_and_collect(factory, n_updates: int, **options) -> list[dict]:
    sim = factory(max_updates=n_updates, **options)
    with open_ws(sim.url) as ws:
        frames = subscribe_tickers(ws)
        frames += ticker_updates(ws, n_updates)
    sim.stop()
    return frames


def test_same_seed_same_ticks_different_seed_different_ticks(simulator_factory):
    a = run_and_collect(simulator_factory, 50, seed=11, rate="max")
    b = run_and_collect(simulator_factory, 50, seed=11, rate="max")
    c = run_and_collect(simulator_factory, 50, seed=12, rate="max")
    assert payloads(a) == payloads(b)
    assert payloads(a) != payloads(c)


def test_start_time_gives_a_simulated_clock_and_fully_identical_frames(simulator_factory):
    start = "2025-03-01T12:00:00Z"
    a = run_and_collect(simulator_factory, 40, seed=5, rate="max", start_time=start)
    b = run_and_collect(simulator_factory, 40, seed=5, rate="max", start_time=start)
    assert a == b  # timestamps included
    times = [parse_timestamp_ns(f["timestamp"]) for f in a]
    t0 = parse_timestamp_ns(start)
    assert times[0] == t0 and times == sorted(times)
    # 40 updates at a simulated ~8 messages/s: seconds of simulated time, not wall time.
    assert 1e9 < times[-1] - t0 < 60e9


def test_max_updates_sends_exactly_n_then_only_heartbeats(simulator_factory):
    sim = simulator_factory(max_updates=25, rate="max")
    with open_ws(sim.url) as ws:
        subscribe_tickers(ws)
        send(ws, type="subscribe", channel="heartbeats")
        beats, updates = 0, 0
        while beats < 2:  # heartbeats keep coming after the last update
            msg = recv(ws)
            if msg["channel"] == "heartbeats":
                beats += 1
            elif msg["channel"] == "ticker":
                assert msg["events"][0]["type"] == "update"
                updates += 1
    assert updates == 25
    assert sum(r["kind"] == "ticker" for r in sim.records()) == 25 + 2  # + the two snapshots


def test_two_clients_see_the_same_market(simulator_factory):
    sim = simulator_factory(max_updates=40, products="BTC-USD")
    with open_ws(sim.url) as first, open_ws(sim.url) as second:
        subscribe_tickers(first, ["BTC-USD"])
        subscribe_tickers(second, ["BTC-USD"])
        a = payloads(ticker_updates(first, 30))
        b = payloads(ticker_updates(second, 20))
    # The second subscribed a moment later: it sees the same updates from its first one on.
    assert b[0] in a
    start = a.index(b[0])
    assert start <= 10
    assert a[start : start + 20] == b


def test_drop_every_closes_connection_and_reconnect_restarts_with_snapshot_of_last_state(simulator_factory):
    sim = simulator_factory(drop_every=2, max_updates=15, products="BTC-USD")
    opened = time.monotonic()
    with open_ws(sim.url) as ws:
        subscribe_tickers(ws, ["BTC-USD"])
        last = ticker_updates(ws, 15)[-1]
        with pytest.raises(ConnectionClosed):
            while True:
                recv(ws, timeout=20)
    assert 1.5 < time.monotonic() - opened < 15
    with open_ws(sim.url) as ws:
        snapshot, ack = subscribe_tickers(ws, ["BTC-USD"])
    assert snapshot["sequence_num"] == 0 and ack["sequence_num"] == 1
    assert snapshot["events"][0]["type"] == "snapshot"
    assert snapshot["events"][0]["tickers"] == last["events"][0]["tickers"]
    assert sorted({r["connection"] for r in sim.records()}) == [0, 1]


def test_malformed_frames_at_requested_rate_are_recorded_and_carry_no_tick(simulator_factory):
    n, rate = 300, 0.2
    sim = simulator_factory(max_updates=n, malformed_rate=rate, rate="max")
    with open_ws(sim.url) as ws:
        subscribe_tickers(ws)
        texts = [ws.recv(timeout=15) for _ in range(n)]
    records = sim.records()
    malformed = [r for r in records if r["kind"] == "malformed"]
    assert len(texts) == n == len([r for r in records if r["kind"] in ("ticker", "malformed")]) - 2
    # Binomial(300, 0.2): mean 60, sd 6.9; bounds at ~4 sd.
    assert 32 <= len(malformed) <= 88
    assert {r["frame"] for r in malformed} <= set(texts)
    reasons = []
    for text in texts:
        try:
            frame = json.loads(text)
            (ticker,) = frame["events"][0]["tickers"]
            tick_from_ticker(ticker, event_time_ns=1, sequence=frame["sequence_num"], receive_time_ns=1)
            reasons.append("ok")
        except ValueError as exc:  # JSONDecodeError and TickError
            reasons.append(exc.reason if isinstance(exc, TickError) else "invalid_json")
    assert reasons.count("ok") == n - len(malformed)
    assert {r for r in reasons if r != "ok"} == {
        "invalid_json", "missing_field", "non_numeric", "non_positive", "crossed_book"
    }


def test_skip_seq_rate_leaves_gaps_but_keeps_order(simulator_factory):
    sim = simulator_factory(max_updates=100, skip_seq_rate=0.2, rate="max")
    with open_ws(sim.url) as ws:
        frames = subscribe_tickers(ws) + ticker_updates(ws, 100)
    seqs = [f["sequence_num"] for f in frames]
    steps = [b - a for a, b in zip(seqs, seqs[1:], strict=False)]
    assert all(s >= 1 for s in steps)
    assert 5 <= sum(s > 1 for s in steps) <= 40
    assert sim.process.alive()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_stop_signal_closes_clients_flushes_record_and_exits_zero(simulator, signum):
    """`kill` and Ctrl-C both drain the clients and exit 0 (the shared `StopSignal` lifecycle)."""
    with open_ws(simulator.url) as ws:
        subscribe_tickers(ws)
        ticker_updates(ws, 5)
        simulator.process.send_signal(signum)
        assert simulator.process.wait(timeout_s=15) == 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                recv(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001  # a close, not a crash
    kinds = [r["kind"] for r in simulator.records()]
    assert kinds[:3] == ["ticker", "ticker", "subscriptions"] and len(kinds) >= 8
    assert "simulator listening on ws://127.0.0.1:" in simulator.process.tail()


def test_max_updates_is_exact_across_drops_and_reconnects(simulator_factory):
    """A reconnecting client gets exactly N updates in total: updates published while it is away
    are lost (as on the exchange) and do not count; those already queued at a drop are delivered."""
    n = 60
    sim = simulator_factory(max_updates=n, drop_every=0.7, rate=30)
    updates, connections = [], 0
    while len(updates) < n:
        connections += 1
        assert connections < 30, "too many reconnects"
        with open_ws(sim.url) as ws:
            subscribe_tickers(ws)
            try:
                while len(updates) < n:
                    msg = recv(ws)
                    if msg["channel"] == "ticker":
                        assert msg["events"][0]["type"] == "update"
                        updates.append(msg)
            except ConnectionClosed:
                continue
            send(ws, type="subscribe", channel="heartbeats")
            with pytest.raises((ConnectionClosed, TimeoutError)):  # nothing but heartbeats follows
                while True:
                    assert recv(ws, timeout=1.5)["channel"] in ("subscriptions", "heartbeats")
    assert connections >= 2
    assert len(updates) == n
    records = sim.records()
    sent_updates = [r for r in records if r["kind"] == "ticker" and '"type":"update"' in r["frame"]]
    assert len(sent_updates) == n
    assert len({r["connection"] for r in records}) == connections
