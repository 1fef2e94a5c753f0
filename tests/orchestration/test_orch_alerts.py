"""The alert notifier against a real local HTTP server: delivered, retried, and never raising."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest

from cryptovol.alerts import CHAMPION_CHANGED, DELIVERY_FAILED, AlertNotifier, read_alerts
from cryptovol.procs import free_port

SECRET = "T0SECRET/B0SECRET/xoxsecrettoken"


def test_alert_is_logged_and_posted_as_slack_payload(tmp_path: Path, webhook_factory) -> None:
    hook = webhook_factory([200])
    notifier = AlertNotifier(tmp_path / "alerts" / "alerts.jsonl", hook.url, backoff_s=0.01)

    delivery = notifier.notify(
        CHAMPION_CHANGED, "champion moved to v3", severity="info", model="cryptovol-spike", version=3
    )

    assert (delivery.webhook, delivery.attempts, delivery.logged) == ("sent", 1, True)
    assert len(hook.bodies) == 1
    body = hook.bodies[0]
    assert "champion moved to v3" in body["text"]
    assert body["blocks"][0]["type"] == "section"
    assert body["cryptovol_alert"]["details"] == {"model": "cryptovol-spike", "version": 3}
    logged = read_alerts(tmp_path / "alerts" / "alerts.jsonl")
    assert [a["kind"] for a in logged] == [CHAMPION_CHANGED]
    assert logged[0]["details"]["version"] == 3


def test_transient_webhook_failures_are_retried(tmp_path: Path, webhook_factory) -> None:
    hook = webhook_factory([503, 500, 200])
    sleeps: list[float] = []
    notifier = AlertNotifier(tmp_path / "a.jsonl", hook.url, retries=3, backoff_s=0.05, sleep=sleeps.append)

    delivery = notifier.notify("run_failed", "run abc failed", severity="error")

    assert (delivery.webhook, delivery.attempts) == ("sent", 3)
    assert len(hook.bodies) == 3
    assert sleeps == [0.05, 0.1]  # exponential backoff between attempts
    assert [a["kind"] for a in read_alerts(tmp_path / "a.jsonl")] == ["run_failed"]


def test_failing_webhook_is_logged_never_raised(tmp_path: Path, webhook_factory) -> None:
    hook = webhook_factory([500, 500, 500])
    notifier = AlertNotifier(tmp_path / "a.jsonl", hook.url, retries=2, backoff_s=0.01)

    delivery = notifier.notify("check_failed", "raw_ticks suite failed", severity="error", check="ge")

    assert delivery.webhook == "failed"
    assert delivery.attempts == 3 and "HTTP 500" in delivery.error
    kinds = [a["kind"] for a in read_alerts(tmp_path / "a.jsonl")]
    assert kinds == ["check_failed", DELIVERY_FAILED]


def test_unreachable_webhook_and_permanent_4xx(tmp_path: Path, webhook_factory) -> None:
    dead = AlertNotifier(tmp_path / "a.jsonl", f"http://127.0.0.1:{free_port()}/x", retries=1, backoff_s=0.01)
    delivery = dead.notify("drift_detected", "drift", share=0.8)
    assert delivery.webhook == "failed" and delivery.attempts == 2
    assert "URLError" in delivery.error or "Connection" in delivery.error

    hook = webhook_factory([404, 200])
    bad_url = AlertNotifier(tmp_path / "b.jsonl", hook.url, retries=3, backoff_s=0.01)
    delivery = bad_url.notify("drift_detected", "drift")
    assert (delivery.webhook, delivery.attempts, delivery.error) == ("failed", 1, "HTTP 404")
    assert len(hook.bodies) == 1


def test_without_webhook_alerts_only_go_to_the_log(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CRYPTOVOL_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CRYPTOVOL_ALERT_WEBHOOK_URL", raising=False)
    notifier = AlertNotifier.from_env()
    assert notifier.log_path == tmp_path / "alerts" / "alerts.jsonl"
    delivery = notifier.notify("drift_detected", "drift share 0.70", share=0.7)
    assert delivery.webhook == "disabled"
    assert read_alerts(notifier.log_path, kind="drift_detected")[0]["details"] == {"share": 0.7}


@pytest.mark.parametrize("url", [
    f"file:///etc/{SECRET}", f"ftp://hooks.example/{SECRET}", f"hooks.example/{SECRET}", f"http:///{SECRET}",
])
def test_only_http_webhooks_are_accepted_and_the_refusal_does_not_echo_the_url(tmp_path: Path, url) -> None:
    with pytest.raises(ValueError, match="http:// or https://") as refused:
        AlertNotifier(tmp_path / "a.jsonl", url)
    assert "SECRET" not in str(refused.value)


def test_a_webhook_that_never_answers_takes_at_most_the_total_timeout(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/{SECRET}"
        notifier = AlertNotifier(tmp_path / "a.jsonl", url, retries=5, backoff_s=0.2, timeout_s=5.0,
                                 total_timeout_s=1.5)
        started = time.monotonic()
        delivery = notifier.notify("drift_detected", "drift")
        elapsed = time.monotonic() - started
    assert delivery.webhook == "failed" and "gave up after 1.5 s" in delivery.error, delivery.error
    assert elapsed < 1.5 + 1.0, elapsed  # one attempt's join slack at most
    assert read_alerts(tmp_path / "a.jsonl", kind="drift_detected")  # still logged


def test_the_webhook_url_never_appears_in_logs_errors_or_the_alert_log(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    urls = [
        f"http://127.0.0.1:{free_port()}/{SECRET}",  # connection refused
        f"http://127.0.0.1:{free_port()}/{SECRET} with spaces",  # http.client names the bad URL
        f"https://no-such-host.invalid/{SECRET}",  # name resolution fails (no network needed)
    ]
    for i, url in enumerate(urls):
        notifier = AlertNotifier(tmp_path / "alerts.jsonl", url, retries=1, backoff_s=0.01, total_timeout_s=5)
        delivery = notifier.notify("run_failed", f"run {i} failed")
        assert delivery.webhook == "failed" and delivery.error, delivery
        assert "SECRET" not in delivery.error and "SECRET" not in repr(notifier), delivery.error
    assert "SECRET" not in caplog.text
    assert "SECRET" not in (tmp_path / "alerts.jsonl").read_text()
    assert "<webhook>" in (tmp_path / "alerts.jsonl").read_text()


def test_a_redirect_is_not_followed(tmp_path: Path, webhook_factory) -> None:
    hook = webhook_factory([302, 200])
    delivery = AlertNotifier(tmp_path / "a.jsonl", hook.url, retries=3, backoff_s=0.01).notify("x", "y")
    assert (delivery.webhook, delivery.attempts, delivery.error) == ("failed", 1, "HTTP 302")
    assert len(hook.bodies) == 1
