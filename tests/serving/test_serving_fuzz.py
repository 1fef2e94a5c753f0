"""No request makes the service answer 5xx: its OpenAPI schema fuzzed by schemathesis (valid and
invalid bodies) against a real `bentoml serve`, plus the bounds a fuzzer does not reach: bodies
over the size limit (413), product ids and tick counts over their limits, integers outside int64,
requests over the concurrency limit (429). The registry is a code-execution boundary: without
CRYPTOVOL_SHADOW a challenger alias is never loaded.
"""

from __future__ import annotations

import http.client as http_client
import json
import os
import socket
import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from registry_helpers import WEIGHTS_V1, WEIGHTS_V2, register_stub, synthetic_ticks

from cryptovol.featureset import FEATURE_NAMES
from cryptovol.procs import wait_until
from cryptovol.serving.champion import probe_batch

MODEL = "cryptovol-spike"
MAX_BATCH = 20
MAX_TICKS = 1000
MAX_BODY = 256 * 1024
#: Examples per operation and generation mode: ~190 requests, 15-45 s on the 2-core host; `make fuzz`
#: (HYPOTHESIS_PROFILE=fuzz) sends 1,000 per operation and mode (~6,000 requests).
EXAMPLES = 1000 if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else 30


def http(url: str, body: dict | bytes | None = None, timeout: float = 30.0) -> tuple[int, str]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                     method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory, bento_server_factory):
    """A champion and a challenger alias both registered BEFORE start; shadow scoring not asked for;
    one request in flight at most."""
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    data_dir.mkdir()
    register_stub(data_dir, MODEL, weights=WEIGHTS_V1)
    register_stub(data_dir, MODEL, weights=WEIGHTS_V2, alias="challenger")
    return bento_server_factory(data_dir, env={
        "CRYPTOVOL_MAX_BATCH": str(MAX_BATCH), "CRYPTOVOL_MAX_TICKS": str(MAX_TICKS),
        "CRYPTOVOL_MAX_BODY_BYTES": str(MAX_BODY), "CRYPTOVOL_MAX_CONCURRENCY": "1",
    })


def rows(n: int) -> list[dict]:
    frame = probe_batch(rows=n + 1).iloc[:n]
    return [{k: float(v) for k, v in r.items()} for r in frame[FEATURE_NAMES].to_dict("records")]


def ticks_payload(n: int) -> list[dict]:
    return [
        {"event_time_ns": int(t.event_time_ns), "price": t.price, "best_bid": t.best_bid,
         "best_ask": t.best_ask, "sequence": int(t.sequence)}
        for t in synthetic_ticks(seconds=n / 2.0, rate_hz=2.0, seed=3).itertuples()
    ][:n]


def _fuzz(operation, mode, base_url: str, statuses: list[int], failures: list[str]) -> None:
    """EXAMPLES generated requests to one operation; every status kept, every 5xx described."""

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case) -> None:
        response = case.call(base_url=base_url, timeout=30)
        statuses.append(response.status_code)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.path} body={str(case.body)[:300]!r} -> "
                            f"{response.status_code} {response.text[:200]!r}")

    call()


def test_openapi_schema_fuzzed_never_answers_5xx(server):
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(server.url + "/docs.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/predict", "/predict_batch", "/predict_ticks"} <= paths, paths
    seen: dict[tuple[str, str], list[int]] = {}
    failures: list[str] = []

    for operation in operations:
        # An operation without parameters or body (the probes, /metrics) has no invalid input.
        modes = [GenerationMode.POSITIVE] if operation.method.upper() == "GET" else list(GenerationMode)
        for mode in modes:
            statuses = seen.setdefault((operation.path, mode.value), [])
            _fuzz(operation, mode, server.url, statuses, failures)

    assert not failures, "\n".join(failures[:10])
    # The fuzzer reached the model (2xx) and the validation (4xx) of every prediction endpoint.
    for path in ("/predict", "/predict_batch"):
        assert any(s == 200 for s in seen[(path, "positive")]), seen[(path, "positive")]
    for path in ("/predict", "/predict_batch", "/predict_ticks"):
        assert any(400 <= s < 500 for s in seen[(path, "negative")]), (path, seen[(path, "negative")])
    assert sum(len(v) for v in seen.values()) >= 3 * 2 * EXAMPLES // 2


def _raw_post(port: int, head: bytes, body_parts: list[bytes]) -> str:
    """Send a request head and body parts on a raw socket; the status line and body answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer.decode(errors="replace")


def test_a_body_over_the_limit_is_413_declared_or_chunked(server):
    # Declared too large: refused on the headers alone, before a byte of the body is sent.
    head = (b"POST /predict_batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(MAX_BODY + 1).encode() + b"\r\n\r\n")
    answer = _raw_post(server.port, head, [])
    assert answer.startswith("HTTP/1.1 413") and "CRYPTOVOL_MAX_BODY_BYTES" in answer, answer[:300]

    # No Content-Length (chunked): read up to the limit, then refused.
    head = (b"POST /predict_batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    piece = b"x" * 16384
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * (MAX_BODY // len(piece) + 1)
    answer = _raw_post(server.port, head, chunks)
    assert answer.startswith("HTTP/1.1 413") and "CRYPTOVOL_MAX_BODY_BYTES" in answer, answer[:300]

    # Under the limit, chunked or not, bodies are served as usual.
    small = json.dumps({"rows": rows(2)}).encode()
    conn = http_client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", "/predict_batch", body=iter([small[:100], small[100:]]), encode_chunked=True,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and len(json.loads(response.read())) == 2
    finally:
        conn.close()
    assert http(server.url + "/predict_batch", {"rows": rows(MAX_BATCH)})[0] == 200


@pytest.mark.parametrize(("body", "field"), [
    ({"product_id": "X" * 10_000, "ticks": "TICKS"}, "product_id"),
    ({"product_id": "../../etc/passwd", "ticks": "TICKS"}, "product_id"),
    ({"product_id": "btc usd", "ticks": "TICKS"}, "product_id"),
    ({"product_id": "BTC-USD", "ticks": "TOO_MANY"}, "ticks"),
    ({"product_id": "BTC-USD", "ticks": "HUGE_TIME"}, "event_time_ns"),
    ({"product_id": "BTC-USD", "ticks": "NEGATIVE_TIME"}, "event_time_ns"),
    ({"product_id": "BTC-USD", "ticks": "HUGE_SEQUENCE"}, "sequence"),
    ({"product_id": "BTC-USD", "ticks": "YEAR_ONE"}, "event_time"),  # overflowed pandas: was a 500
])
def test_predict_ticks_bounds_are_4xx_naming_the_field(server, body, field):
    ticks = ticks_payload(20)
    variants = {
        "TICKS": ticks,
        "TOO_MANY": [ticks[0]] * (MAX_TICKS + 1),
        "HUGE_TIME": [{**ticks[0], "event_time_ns": 2**64}],
        "NEGATIVE_TIME": [{**ticks[0], "event_time_ns": -5}],
        "HUGE_SEQUENCE": [{**ticks[0], "sequence": 10**30}],
        "YEAR_ONE": [{"event_time": "0001-01-01T00:00:00Z", "price": 1.0, "best_bid": 1.0, "best_ask": 1.0}],
    }
    status, text = http(server.url + "/predict_ticks", {**body, "ticks": variants[body["ticks"]]})
    assert 400 <= status < 500 and field in text, (status, text[:300])


@pytest.mark.parametrize("change", [
    {"event_time_ns": 2**63}, {"event_time_ns": -1}, {"sequence": -(2**70)}, {"product_id": "Z" * 500},
])
def test_row_keys_out_of_range_are_4xx(server, change):
    row = {**rows(1)[0], **change}
    status, text = http(server.url + "/predict", {"rows": [row]})
    assert 400 <= status < 500 and next(iter(change)) in text, (status, text[:300])


def test_a_request_over_max_concurrency_is_429_and_the_held_one_completes(server):
    body = json.dumps({"rows": rows(2)}).encode()
    held = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        # Headers and half the body: the request is in flight until the rest arrives.
        held.sendall(b"POST /predict_batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
        wait_until(lambda: http(server.url + "/predict_batch", body)[0] == 429, timeout_s=15,
                   what="a second request to be refused with 429")
        held.sendall(body[10:])
        answer = held.recv(65536).decode()
        assert answer.startswith("HTTP/1.1 200"), answer[:200]
    finally:
        held.close()
    wait_until(lambda: http(server.url + "/predict_batch", body)[0] == 200, timeout_s=15,
               what="the server to take requests again")


def test_challenger_is_never_loaded_unless_shadow_scoring_is_switched_on(server):
    status, text = http(server.url + "/version")
    assert status == 200, text
    version = json.loads(text)
    assert version["alias"] == "champion" and version["model_version"] == "1"
    assert version["shadow"] is False and version["challenger"] is None, version
    assert "@challenger" not in server.log()


@pytest.mark.parametrize("content_type", [
    "multipart/form-data; boundary=xyz", "multipart/form-data", "application/x-www-form-urlencoded",
    "application/vnd.bentoml+pickle",
])
@pytest.mark.parametrize("path", ["/predict", "/predict_batch", "/predict_ticks"])
def test_forms_and_pickles_are_4xx(server, content_type, path):
    """A malformed multipart body reached Starlette's form parser and came back as a 500; the API
    takes JSON, so forms are refused (415) and BentoML's internal pickle format stays refused."""
    body = b'--xyz\r\nContent-Disposition: form-data; name="rows"\r\n\r\n[1]\r\n--xyz'  # no closing CRLF
    request = urllib.request.Request(server.url + path, data=body,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert 400 <= status < 500, status
