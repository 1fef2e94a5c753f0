"""The streaming scorer on the real embedded broker with a real MLflow SQLite registry."""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable
from registry_helpers import WEIGHTS_V1, WEIGHTS_V2, register_stub, synthetic_ticks, tracking_uri

from cryptovol import lake
from cryptovol.config import TOPIC_DEADLETTER, TOPIC_FEATURES, TOPIC_PREDICTIONS, Settings
from cryptovol.features import compute_features
from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET
from cryptovol.kafka_io import admin_client, ensure_topics, make_producer, read_topic
from cryptovol.procs import ManagedProcess, free_port, http_ok, wait_until

MODEL = "cryptovol-spike"
REPO_ROOT = Path(__file__).resolve().parents[2]


def feature_rows(seed: int, seconds: float = 90.0) -> pd.DataFrame:
    """Real feature rows (warm-up NaNs included) for two products, from the core feature code."""
    frames = []
    for product, s in (("BTC-USD", seed), ("ETH-USD", seed + 1)):
        ticks = synthetic_ticks(product, seconds=seconds, rate_hz=2.0, seed=s,
                                start_ns=1_765_000_000_000_000_000 + seed * 10**12)
        frames.append(compute_features(ticks))
    return pd.concat(frames, ignore_index=True)


def as_message(row: pd.Series) -> bytes:
    """The featurizer's `ticks.features` JSON: keys, features (NaN as null), feature_set_version."""
    obj = {"product_id": row["product_id"], "event_time_ns": int(row["event_time_ns"]),
           "sequence": int(row["sequence"])}
    obj.update({n: (float(row[n]) if math.isfinite(row[n]) else None) for n in FEATURE_NAMES})
    obj["feature_set_version"] = FEATURE_SET.version
    return json.dumps(obj).encode()


BAD_MESSAGES = {
    "feature_set_mismatch": lambda good: {**good, "feature_set_version": "0.0.1"},
    "missing_feature": lambda good: {k: v for k, v in good.items() if k != "rv_60s"},
    "non_numeric_feature": lambda good: {**good, "spread": "wide"},
    # Issue 2.2: records from any producer that used to escape the data dir, crash the Parquet
    # flush (and so crash-loop the scorer on restart), or score an impossible time.
    "bad_product_id": lambda good: {**good, "product_id": "../../escaped"},
    "event_time_out_of_range": lambda good: {**good, "event_time_ns": 4_102_444_800 * 10**9},
    "bad_value": lambda good: {**good, "sequence": 10**30},
    "non_finite_feature": lambda good: {**good, "spread": 10**400},
}


def produce(bootstrap: str, frame: pd.DataFrame, bad: bool = False) -> int:
    producer = make_producer(bootstrap)
    sent = 0
    for _, row in frame.iterrows():
        producer.send(TOPIC_FEATURES, key=row["product_id"].encode(), value=as_message(row))
        sent += 1
    if bad:
        good = json.loads(as_message(frame.iloc[-1]))
        for make in BAD_MESSAGES.values():
            producer.send(TOPIC_FEATURES, key=b"BTC-USD", value=json.dumps(make(good)).encode())
            sent += 1
        producer.send(TOPIC_FEATURES, key=b"BTC-USD", value=b"{not json")
        sent += 1
    producer.flush()
    producer.close()
    return sent


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Records of `topic` the group has committed (offsets start at 0 in every partition)."""
    admin = admin_client(bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return sum(om.offset for tp, om in offsets.items() if tp.topic == topic and om.offset > 0)


def expected_probabilities(data_dir: Path, version: str, frame: pd.DataFrame) -> np.ndarray:
    import mlflow

    from cryptovol.models.pyfunc import load_spike_model

    mlflow.set_tracking_uri(tracking_uri(data_dir))
    mlflow.set_registry_uri(tracking_uri(data_dir))
    return load_spike_model(f"models:/{MODEL}/{version}").predict(frame)["spike_probability"].to_numpy()


def key_of(obj) -> tuple:
    return (obj["product_id"], int(obj["event_time_ns"]), int(obj["sequence"]))


def test_every_feature_row_gets_exactly_one_prediction_and_hot_swap_applies(broker, data_dir):
    from prometheus_client import CollectorRegistry

    from cryptovol.scoring.scorer import StreamingScorer
    from cryptovol.serving.champion import ChampionLoader
    from cryptovol.serving.metrics import ServingMetrics

    v1 = register_stub(data_dir, MODEL, weights=WEIGHTS_V1)
    settings = Settings.from_env()
    ensure_topics(broker.bootstrap, partitions=3)
    phase1 = feature_rows(seed=1)
    assert phase1[FEATURE_NAMES].isna().any(axis=1).sum() > 0  # warm-up rows are in the stream
    sent1 = produce(broker.bootstrap, phase1, bad=True)

    loader = ChampionLoader.from_settings(settings, poll_s=0.2).start()
    scorer = StreamingScorer(settings, loader, group_id="scorer-test", flush_s=0.5,
                             metrics=ServingMetrics("scorer", registry=CollectorRegistry()))
    thread = threading.Thread(target=scorer.run, kwargs={"duration_s": 180}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: scorer.stats.consumed >= sent1, timeout_s=90, what="phase 1 consumed")
        # The lake write runs in the background; its offsets are committed once it finished, even
        # with nothing more to score (no further flush comes): a crash now re-scores nothing.
        wait_until(lambda: committed_total(broker.bootstrap, "scorer-test", TOPIC_FEATURES) == sent1,
                   timeout_s=30, what="phase 1 offsets committed while the scorer idles")
        v2 = register_stub(data_dir, MODEL, weights=WEIGHTS_V2)  # the alias moves while running
        wait_until(lambda: loader.current.version == v2, timeout_s=30, what="scorer hot swap")
        phase2 = feature_rows(seed=2)
        sent2 = produce(broker.bootstrap, phase2)
        wait_until(lambda: scorer.stats.consumed >= sent1 + sent2, timeout_s=90, what="phase 2 consumed")
    finally:
        scorer.stop()
        thread.join(timeout=60)
        loader.stop()
    assert not thread.is_alive()

    predictions = [json.loads(r.value) for r in read_topic(broker.bootstrap, TOPIC_PREDICTIONS)]
    keys = [key_of(p) for p in predictions]
    assert len(keys) == len(set(keys)) == len(phase1) + len(phase2)  # exactly one each, no extra
    by_key = {key_of(p): p for p in predictions}
    for frame, version in ((phase1, v1), (phase2, v2)):
        got = [by_key[key_of(row)] for _, row in frame.iterrows()]
        assert {g["model_version"] for g in got} == {version}
        np.testing.assert_allclose([g["spike_probability"] for g in got],
                                   expected_probabilities(data_dir, version, frame), rtol=1e-12)
        assert all(g["scoring_latency_s"] >= 0 and g["scored_at_ns"] > 0 for g in got)

    letters = [json.loads(r.value) for r in read_topic(broker.bootstrap, TOPIC_DEADLETTER)]
    assert sorted(letter["reason"] for letter in letters) == sorted([*BAD_MESSAGES, "bad_json"])
    assert scorer.stats.dead_lettered == len(BAD_MESSAGES) + 1
    assert all(len(letter["raw"]) <= 2048 for letter in letters)
    assert not (data_dir.parent / "escaped").exists() and not (data_dir / "escaped").exists()
    assert {p.name for p in settings.predictions_dir.iterdir()} == {
        "_delta_log", "product_id=BTC-USD", "product_id=ETH-USD"}

    # the prediction Delta table holds every key once, through the lake and through pyarrow alone
    table = lake.read_predictions(settings)
    assert sorted(map(tuple, table[["product_id", "event_time_ns", "sequence"]].to_numpy().tolist())) \
        == sorted(keys)
    other = DeltaTable(str(settings.predictions_dir)).to_pyarrow_dataset().to_table().to_pandas()
    assert len(other) == len(table) == len(keys)


@pytest.mark.slow
def test_score_cli_publishes_exposes_metrics_and_stops_cleanly_on_sigterm(broker, data_dir, tmp_path):
    register_stub(data_dir, MODEL, weights=WEIGHTS_V1)
    ensure_topics(broker.bootstrap, partitions=3)
    frame = feature_rows(seed=3, seconds=40)
    sent = produce(broker.bootstrap, frame)
    port = free_port()
    process = ManagedProcess(
        "scorer",
        [sys.executable, "-m", "cryptovol.cli", "score", "--group-id", "cli-test",
         "--metrics-port", str(port), "--duration", "300"],
        log_path=tmp_path / "scorer.log",
        cwd=REPO_ROOT,
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/metrics"),
    )
    with process:
        process.start(timeout_s=120)

        def scored() -> float:
            import urllib.request

            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("cryptovol_predictions_total{"))

        wait_until(lambda: scored() >= sent, timeout_s=120, what="the scorer to score every row")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout_s=60) == 0, process.tail()
    stats = json.loads(process.log_path.read_text().strip().splitlines()[-1])
    assert stats["scored"] == sent and stats["dead_lettered"] == 0
    assert stats["parquet_rows"] == sent
    predictions = list(read_topic(broker.bootstrap, TOPIC_PREDICTIONS))
    assert len(predictions) == sent
    assert {r.key.decode() for r in predictions} == {"BTC-USD", "ETH-USD"}


def test_parse_accepts_flat_or_nested_features_and_null_as_warm_up():
    from cryptovol.scoring.scorer import parse_feature_message

    good = json.loads(as_message(feature_rows(seed=4, seconds=5).iloc[0]))  # first row: warm-up
    keys, flat = parse_feature_message(json.dumps(good).encode())
    assert keys == {"product_id": good["product_id"], "event_time_ns": good["event_time_ns"],
                    "sequence": good["sequence"]}
    assert any(math.isnan(v) for v in flat) and len(flat) == len(FEATURE_NAMES)
    nested = {**{k: good[k] for k in ("product_id", "event_time_ns", "sequence", "feature_set_version")},
              "features": {n: good[n] for n in FEATURE_NAMES}}
    _, values = parse_feature_message(json.dumps(nested))
    np.testing.assert_array_equal(values, flat)


def test_end_to_end_latency_is_observed_since_event_and_since_receipt():
    """A feature message carrying the ingestor's receive time keeps it through parsing, and the
    scorer's histogram counts one observation per row for each clock (`since` label)."""
    from prometheus_client import CollectorRegistry

    from cryptovol.scoring.scorer import parse_feature_message
    from cryptovol.serving.metrics import ServingMetrics

    message = json.loads(as_message(feature_rows(seed=4, seconds=5).iloc[-1]))
    keys, _ = parse_feature_message(json.dumps({**message, "receive_time_ns": 123}).encode())
    assert keys["receive_time_ns"] == 123
    registry = CollectorRegistry()
    metrics = ServingMetrics("scorer", registry=registry)
    metrics.observe_end_to_end([40_000_000, 300_000_000], [30_000_000])
    count = registry.get_sample_value
    assert count("cryptovol_end_to_end_latency_seconds_count", {"component": "scorer", "since": "event"}) == 2
    assert count("cryptovol_end_to_end_latency_seconds_bucket",
                 {"component": "scorer", "since": "event", "le": "0.25"}) == 1
    received = {"component": "scorer", "since": "received"}
    assert count("cryptovol_end_to_end_latency_seconds_count", received) == 1
