"""OpenTelemetry spans on the prediction routes: off by default (BentoML's tracing samples nothing
unless configured, and creating the spans cost ~40% of a single-row request's CPU), on with
CRYPTOVOL_TRACE_PREDICTIONS=1. BentoML's X-BentoML-Request-ID answer header is the request span's
id, so it shows whether a span was made."""

from __future__ import annotations

import json
import urllib.request

from registry_helpers import WEIGHTS_V1, register_stub

from cryptovol.featureset import FEATURE_NAMES
from cryptovol.procs import wait_until
from cryptovol.serving.champion import probe_batch

MODEL = "cryptovol-spike"


def _predict_headers(url: str) -> dict[str, str]:
    rows = probe_batch(rows=3).iloc[:2][FEATURE_NAMES].to_dict("records")
    request = urllib.request.Request(url + "/predict", data=json.dumps({"rows": rows}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
        assert response.status == 200
        json.loads(response.read())
        return {k.lower(): v for k, v in response.headers.items()}


def test_prediction_spans_off_by_default_and_on_when_asked(tmp_path, bento_server_factory):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    register_stub(data_dir, MODEL, weights=WEIGHTS_V1)
    default = bento_server_factory(data_dir)
    traced = bento_server_factory(data_dir, env={"CRYPTOVOL_TRACE_PREDICTIONS": "1"})

    assert "x-bentoml-request-id" not in _predict_headers(default.url)
    request_id = _predict_headers(traced.url).get("x-bentoml-request-id")
    assert request_id and int(request_id, 16) != 0
    # The traced request's span is the one BentoML's access log line names (written after the answer).
    wait_until(lambda: f"span={request_id}" in traced.log(), timeout_s=15, what="the access log line")
