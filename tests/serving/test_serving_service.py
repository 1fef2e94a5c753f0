"""The BentoML service, served for real (`bentoml serve`) against a real MLflow SQLite registry.

One server for the whole module (start-up ~6-10 s). Tests do not depend on each other's order:
each reads the version currently serving instead of assuming one.
"""

from __future__ import annotations

import json
import math
import threading
import urllib.error
import urllib.request
from pathlib import Path

import bentoml
import numpy as np
import pandas as pd
import pytest
from registry_helpers import (
    WEIGHTS_V1,
    WEIGHTS_V2,
    register_stub,
    register_trained,
    set_alias,
    synthetic_ticks,
    tracking_uri,
)

from cryptovol.featureset import FEATURE_NAMES
from cryptovol.procs import wait_until
from cryptovol.serving.champion import probe_batch

MODEL = "cryptovol-spike"
MAX_BATCH = 50
TOKEN = "s3cret-test-token"


def http(url: str, body: bytes | str | dict | None = None, *, method: str | None = None,
         headers: dict[str, str] | None = None, auth: bool = True, timeout: float = 30.0) -> tuple[int, str]:
    """Plain HTTP (urllib): (status, body text), 4xx/5xx included; sends the bearer token unless
    `auth=False` (harmless for a server without auth)."""
    if isinstance(body, dict):
        body = json.dumps(body)
    data = body.encode() if isinstance(body, str) else body
    base = {"Content-Type": "application/json"}
    if auth:
        base["Authorization"] = f"Bearer {TOKEN}"
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"),
                                     headers={**base, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def in_process(data_dir: Path, version: str, frame: pd.DataFrame) -> pd.DataFrame:
    """What the model itself says, loaded in this process through the serving contract."""
    import mlflow

    from cryptovol.models.pyfunc import load_spike_model

    mlflow.set_tracking_uri(tracking_uri(data_dir))
    mlflow.set_registry_uri(tracking_uri(data_dir))
    return load_spike_model(f"models:/{MODEL}/{version}").predict(frame)


def rows_of(frame: pd.DataFrame) -> list[dict]:
    return [{k: float(v) for k, v in row.items()} for row in frame[FEATURE_NAMES].to_dict("records")]


def serving_version(server) -> str:
    status, text = http(server.url + "/version")
    assert status == 200, text
    return json.loads(text)["model_version"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, bento_server_factory):
    """One server for the module, with bearer auth and shadow scoring on, started BEFORE any model
    exists."""
    data_dir = tmp_path_factory.mktemp("serving") / "data"
    data_dir.mkdir()
    server = bento_server_factory(
        data_dir, wait="health",
        env={"CRYPTOVOL_MODEL_POLL_S": "0.3", "CRYPTOVOL_MAX_BATCH": str(MAX_BATCH),
             "CRYPTOVOL_API_TOKEN": TOKEN, "CRYPTOVOL_SHADOW": "1"},
    )
    BEFORE_CHAMPION["readyz"] = http(server.url + "/readyz")[0]
    BEFORE_CHAMPION["predict"] = http(server.url + "/predict", {"rows": rows_of(warm_rows(1))})
    # The first champion is a real model trained through cryptovol.models (XGBoost + calibration);
    # later versions (swap, rejection, shadow) are cheap stubs honoring the same contract.
    TRAINED["version"] = register_trained(data_dir, MODEL, kind="xgboost")
    wait_until(lambda: http(server.url + "/readyz")[0] == 200, timeout_s=120, what="readiness")
    return server


TRAINED: dict[str, str] = {}
BEFORE_CHAMPION: dict[str, object] = {}


def test_not_ready_and_503_until_a_champion_exists(server):
    assert BEFORE_CHAMPION["readyz"] == 503
    status, text = BEFORE_CHAMPION["predict"]
    assert status == 503, text  # BentoML hides 5xx details from clients; the log has the reason
    assert "no model loaded for models:/cryptovol-spike@champion" in server.log()
    assert http(server.url + "/readyz")[0] == 200


def test_bearer_token_required_except_health_and_metrics(server):
    body = {"rows": rows_of(warm_rows(2))}
    assert http(server.url + "/predict", body, auth=False)[0] == 401
    assert http(server.url + "/predict", body, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert http(server.url + "/version", auth=False)[0] == 401
    assert http(server.url + "/predict", body)[0] == 200
    for path in ("/healthz", "/readyz", "/livez", "/metrics"):
        assert http(server.url + path, auth=False)[0] == 200, path


def warm_rows(n: int = 24) -> pd.DataFrame:
    return probe_batch(rows=n + 1).iloc[:n]  # the probe's last row is a warm-up (NaN) row


def test_predict_equals_in_process_model_over_sync_client_and_plain_http(server):
    version = TRAINED["version"]
    set_alias(server.data_dir, MODEL, "champion", version)
    wait_until(lambda: serving_version(server) == version, timeout_s=60, what="the trained champion")
    assert json.loads(http(server.url + "/version")[1])["model_kind"] == "xgboost"
    frame = warm_rows()
    expected = in_process(server.data_dir, version, frame)

    with bentoml.SyncHTTPClient(server.url, token=TOKEN) as client:
        answers = client.predict(rows=rows_of(frame))
    status, text = http(server.url + "/predict", {"rows": rows_of(frame)})
    assert status == 200, text
    for got in (answers, json.loads(text)):
        assert len(got) == len(frame)
        np.testing.assert_allclose([a["spike_probability"] for a in got],
                                   expected["spike_probability"], rtol=1e-12)
        assert [a["spike_flag"] for a in got] == expected["spike_flag"].tolist()
        assert {(a["model_name"], a["model_version"], a["model_alias"]) for a in got} == {
            (MODEL, version, "champion")
        }
    assert len(set(expected["spike_probability"].round(9))) > 1  # a real, row-dependent answer


def test_predict_batch_answers_exactly_like_predict(server):
    body = {"rows": [{**r, "product_id": "BTC-USD", "event_time_ns": i}
                     for i, r in enumerate(rows_of(warm_rows(MAX_BATCH)))]}
    status_a, a = http(server.url + "/predict", body)
    status_b, b = http(server.url + "/predict_batch", body)
    assert status_a == status_b == 200
    assert json.loads(a) == json.loads(b)
    assert [x["event_time_ns"] for x in json.loads(b)] == list(range(MAX_BATCH))


def test_keys_are_echoed_and_extra_key_columns_allowed(server):
    row = {**rows_of(warm_rows(1))[0], "product_id": "ETH-USD", "event_time_ns": 123, "sequence": 7}
    status, text = http(server.url + "/predict", {"rows": [row]})
    assert status == 200, text
    answer = json.loads(text)[0]
    assert (answer["product_id"], answer["event_time_ns"]) == ("ETH-USD", 123)


def _bad(row_change):
    row = rows_of(warm_rows(1))[0]
    row_change(row)
    return json.dumps({"rows": [row]})


BAD_INPUTS = {
    "wrong_type_string": (_bad(lambda r: r.update(rv_30s="0.01")), "rv_30s"),
    "wrong_type_bool": (_bad(lambda r: r.update(spread=True)), "spread"),
    "null_feature": (_bad(lambda r: r.update(ewma_vol=None)), "ewma_vol"),
    "missing_feature": (_bad(lambda r: r.pop("tick_rate_60s")), "tick_rate_60s"),
    "extra_feature": (_bad(lambda r: r.update(whale_alert=1.0)), "whale_alert"),
    "nan": (_bad(lambda r: r.update(ret_5s=math.nan)), "ret_5s"),  # json.dumps writes NaN
    "inf": (_bad(lambda r: r.update(vol_of_vol=math.inf)), "vol_of_vol"),
    "empty_batch": (json.dumps({"rows": []}), "rows"),
    "over_size_limit": (json.dumps({"rows": rows_of(warm_rows(MAX_BATCH + 1))}), "rows"),
    "rows_not_a_list": (json.dumps({"rows": {"mid": 1.0}}), "rows"),
    "no_rows_field": (json.dumps({"features": []}), "rows"),
    "not_json": ("{rows: [", "json"),
}


@pytest.mark.parametrize("endpoint", ["/predict", "/predict_batch"])
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_answers_4xx_naming_the_field(server, case, endpoint):
    body, field = BAD_INPUTS[case]
    status, text = http(server.url + endpoint, body)
    assert 400 <= status < 500, (status, text)
    assert field.lower() in text.lower(), text


def test_predict_ticks_uses_the_stream_feature_code(server):
    from cryptovol.features import compute_features

    ticks = synthetic_ticks(seconds=420, rate_hz=2.0, seed=5)
    payload = {
        "product_id": "BTC-USD",
        "ticks": [
            {"event_time_ns": int(t.event_time_ns), "price": t.price, "best_bid": t.best_bid,
             "best_ask": t.best_ask, "best_bid_qty": t.best_bid_qty, "best_ask_qty": t.best_ask_qty,
             "volume_24h": t.volume_24h, "sequence": int(t.sequence)}
            for t in ticks.itertuples()
        ],
    }
    status, text = http(server.url + "/predict_ticks", payload)
    assert status == 200, text
    answer = json.loads(text)
    expected_features = compute_features(ticks).iloc[-1]
    for name in FEATURE_NAMES:
        assert answer["features"][name] == pytest.approx(float(expected_features[name]), rel=1e-12, abs=0)
    expected = in_process(server.data_dir, answer["model_version"],
                          pd.DataFrame([expected_features[FEATURE_NAMES].astype(float)]))
    assert answer["spike_probability"] == pytest.approx(expected["spike_probability"].iloc[0], rel=1e-12)
    assert answer["event_time_ns"] == int(ticks["event_time_ns"].iloc[-1])
    assert answer["ticks_used"] == len(ticks)

    # Too short a window: a 4xx that says which features are not warm, not a NaN-fed guess.
    status, text = http(server.url + "/predict_ticks", {**payload, "ticks": payload["ticks"][-20:]})
    assert 400 <= status < 500 and "rv_300s" in text and "warm" in text, text
    # A crossed book is refused with the field named.
    bad_tick = {**payload["ticks"][0], "best_bid": payload["ticks"][0]["best_ask"] + 1}
    status, text = http(server.url + "/predict_ticks", {"product_id": "BTC-USD", "ticks": [bad_tick]})
    assert 400 <= status < 500 and "best_bid" in text, text


def test_version_health_and_metrics(server):
    status, text = http(server.url + "/version")
    assert status == 200
    info = json.loads(text)
    assert info["model_name"] == MODEL and info["alias"] == "champion"
    assert info["run_id"] and info["feature_set_version"] == "1.0.0"
    assert info["trained_window"] and info["metrics"] and info["model_kind"]
    assert info["decision_threshold"] is not None
    assert http(server.url + "/healthz")[0] == 200
    assert http(server.url + "/readyz")[0] == 200

    http(server.url + "/predict", {"rows": rows_of(warm_rows(4))})
    status, metrics = http(server.url + "/metrics")
    assert status == 200
    for name in ("cryptovol_prediction_latency_seconds_bucket", "cryptovol_predictions_total",
                 "cryptovol_spike_rate", "cryptovol_model_reloads_total"):
        assert name in metrics, name
    assert f'version="{info["model_version"]}"' in metrics


def test_hot_swap_under_load_no_failed_request_and_answers_switch(server):
    old = serving_version(server)
    frame = warm_rows(8)
    body = json.dumps({"rows": rows_of(frame)})
    failures: list[tuple[int, str]] = []
    versions: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            status, text = http(server.url + "/predict", body)
            if status != 200:
                failures.append((status, text))
                continue
            answer_versions = {a["model_version"] for a in json.loads(text)}
            if len(answer_versions) != 1:  # one model per request, even mid-swap
                failures.append((status, f"mixed versions {answer_versions}"))
            versions.extend(answer_versions)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(versions) > 20, timeout_s=60, what="requests before the swap")
        new = register_stub(server.data_dir, MODEL, weights=WEIGHTS_V2, alias="champion")
        wait_until(lambda: versions[-1:] == [new], timeout_s=60, what=f"answers from version {new}")
        count_at_swap = len(versions)
        wait_until(lambda: len(versions) > count_at_swap + 20, timeout_s=60, what="requests after")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not failures, failures[:3]
    assert versions[0] == old and versions[-1] == new
    first_new = versions.index(new)
    assert set(versions[first_new:]) == {new}  # once swapped, never back

    status, text = http(server.url + "/predict", body)
    expected = in_process(server.data_dir, new, frame)
    np.testing.assert_allclose([a["spike_probability"] for a in json.loads(text)],
                               expected["spike_probability"], rtol=1e-12)


def test_model_failing_validation_is_not_swapped_in_and_alerts(server):
    good = serving_version(server)
    alerts = server.data_dir / "alerts" / "alerts.jsonl"
    broken = register_stub(server.data_dir, MODEL, weights=WEIGHTS_V1, broken=True, alias="champion")
    try:
        def rejected() -> bool:
            lines = alerts.read_text().splitlines() if alerts.exists() else []
            return any(a["kind"] == "model_rejected" and a["details"].get("version") == broken
                       for a in map(json.loads, lines))

        wait_until(rejected, timeout_s=60, what="the model-rejected alert")
        assert serving_version(server) == good
        status, text = http(server.url + "/predict", {"rows": rows_of(warm_rows(2))})
        assert status == 200 and json.loads(text)[0]["model_version"] == good
        assert 'result="rejected"' in http(server.url + "/metrics")[1]
    finally:
        set_alias(server.data_dir, MODEL, "champion", good)


def test_shadow_challenger_scores_in_background_and_is_never_returned(server):
    champion = serving_version(server)
    challenger = register_stub(server.data_dir, MODEL, weights=WEIGHTS_V2, bias=1.0, alias="challenger")
    wait_until(lambda: (json.loads(http(server.url + "/version")[1]).get("challenger") or {})
               .get("model_version") == challenger, timeout_s=60, what="the challenger to load")
    frame = warm_rows(16)
    for _ in range(5):
        status, text = http(server.url + "/predict", {"rows": rows_of(frame)})
        assert status == 200
        assert {a["model_version"] for a in json.loads(text)} == {champion}

    def shadow_metrics() -> str:
        return http(server.url + "/metrics")[1]

    wait_until(lambda: "cryptovol_challenger_spike_probability_count" in shadow_metrics()
               and "cryptovol_shadow_agreement_rate" in shadow_metrics(),
               timeout_s=30, what="shadow metrics")
    log_path = server.data_dir / "serving" / "shadow.jsonl"
    wait_until(log_path.exists, timeout_s=30, what="the shadow log")
    record = json.loads(log_path.read_text().splitlines()[-1])
    assert record["champion"]["version"] == champion and record["challenger"]["version"] == challenger
    expected = in_process(server.data_dir, challenger, frame)["spike_probability"].to_numpy()
    np.testing.assert_allclose(record["challenger_probability"], expected.round(6), atol=1e-6)
