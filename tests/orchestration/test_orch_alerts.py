"""The alert notifier against a real local HTTP server: delivered, retried, and never raising."""

from __future__ import annotations

from pathlib import Path

from cryptovol.alerts import CHAMPION_CHANGED, DELIVERY_FAILED, AlertNotifier, read_alerts
from cryptovol.procs import free_port


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
