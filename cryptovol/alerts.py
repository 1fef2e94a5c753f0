"""Alerts: one notifier for drift, failed runs, failed checks and champion changes.

Every alert is appended to a JSON-lines log (`<data>/alerts/alerts.jsonl`) first, so nothing is
lost when a chat tool is down; when `CRYPTOVOL_ALERT_WEBHOOK_URL` is set it is also POSTed as a
Slack-compatible payload (`{"text": ..., "blocks": [...]}`), retried with exponential backoff.
Delivery failures are logged (and recorded in the alert log), never raised: an alert must not
crash the sensor or asset that emits it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptovol.config import Settings

log = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "error")
#: Alert kinds the platform emits (free-form kinds are allowed too).
DRIFT_DETECTED = "drift_detected"
RUN_FAILED = "run_failed"
CHECK_FAILED = "check_failed"
CHAMPION_CHANGED = "champion_changed"
DELIVERY_FAILED = "alert_delivery_failed"


def alert_log_path(settings: Settings) -> Path:
    return settings.data_dir / "alerts" / "alerts.jsonl"


@dataclass(frozen=True)
class Alert:
    """One thing a human should know about, with the context needed to act on it."""

    kind: str
    title: str
    severity: str = "warning"
    details: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def slack_payload(self) -> dict[str, Any]:
        """Slack incoming-webhook body; `text` alone is enough for Mattermost/Teams-style hooks."""
        icon = {"info": ":information_source:", "warning": ":warning:", "error": ":rotating_light:"}
        text = f"{icon[self.severity]} [cryptovol {self.severity}] {self.title}"
        lines = [f"*{k}*: `{v}`" for k, v in self.details.items()]
        blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
        if lines:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}})
        return {"text": text, "blocks": blocks, "cryptovol_alert": self.to_dict()}


@dataclass(frozen=True)
class Delivery:
    """What happened to one alert: always logged; webhook `sent`, `failed` or `disabled`."""

    alert: Alert
    logged: bool
    webhook: str
    attempts: int = 0
    error: str = ""


class AlertNotifier:
    """Append-to-log + optional webhook with retries. Thread-safe; never raises on delivery."""

    def __init__(
        self,
        log_path: Path,
        webhook_url: str | None = None,
        *,
        retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.log_path = Path(log_path)
        self.webhook_url = (webhook_url or "").strip() or None
        self.retries = max(0, int(retries))
        self.backoff_s = float(backoff_s)
        self.timeout_s = float(timeout_s)
        self._sleep = sleep
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> AlertNotifier:
        """CRYPTOVOL_ALERT_WEBHOOK_URL, CRYPTOVOL_ALERT_RETRIES, CRYPTOVOL_ALERT_BACKOFF_S."""
        settings = settings or Settings.from_env()
        return cls(
            alert_log_path(settings),
            os.environ.get("CRYPTOVOL_ALERT_WEBHOOK_URL"),
            retries=int(os.environ.get("CRYPTOVOL_ALERT_RETRIES", "3") or 3),
            backoff_s=float(os.environ.get("CRYPTOVOL_ALERT_BACKOFF_S", "0.5") or 0.5),
        )

    def notify(self, kind: str, title: str, *, severity: str = "warning", **details: Any) -> Delivery:
        return self.send(Alert(kind=kind, title=title, severity=severity, details=_jsonable(details)))

    def send(self, alert: Alert) -> Delivery:
        logged = self._append(alert.to_dict())
        if self.webhook_url is None:
            return Delivery(alert, logged, "disabled")
        attempts, error = self._post(alert.slack_payload())
        if not error:
            return Delivery(alert, logged, "sent", attempts)
        log.warning(
            "alert webhook failed after %d attempt(s): %s (alert kept in %s)", attempts, error, self.log_path
        )
        self._append(
            {
                "kind": DELIVERY_FAILED,
                "title": f"webhook delivery failed for {alert.kind}",
                "severity": "warning",
                "details": {"alert_created_at": alert.created_at, "attempts": attempts, "error": error},
                "created_at": datetime.now(UTC).isoformat(),
            }
        )
        return Delivery(alert, logged, "failed", attempts, error)

    def _append(self, record: dict[str, Any]) -> bool:
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
            with self._lock, open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(line)
            return True
        except OSError as exc:  # a full disk must not take the sensor down either
            log.error("could not write alert log %s: %s", self.log_path, exc)
            return False

    def _post(self, payload: dict[str, Any]) -> tuple[int, str]:
        """POST with retries on network errors, 429 and 5xx; 4xx is permanent. -> (attempts, error)."""
        body = json.dumps(payload, default=str).encode()
        error = ""
        for attempt in range(1, self.retries + 2):
            request = urllib.request.Request(
                self.webhook_url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                    if 200 <= response.status < 300:
                        return attempt, ""
                    error = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
                if 400 <= exc.code < 500 and exc.code != 429:
                    return attempt, error
            except (OSError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt <= self.retries:
                self._sleep(self.backoff_s * 2 ** (attempt - 1))
        return self.retries + 1, error


def read_alerts(path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The alert log as dicts (optionally one kind); a missing log is an empty list."""
    path = Path(path)
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if kind is None or r.get("kind") == kind]


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(details, default=str))
