"""Alerts: one notifier for drift, failed runs, failed checks and champion changes.

Every alert is appended to a JSON-lines log (`<data>/alerts/alerts.jsonl`) first, so nothing is
lost when a chat tool is down; when `CRYPTOVOL_ALERT_WEBHOOK_URL` is set it is also POSTed as a
Slack-compatible payload (`{"text": ..., "blocks": [...]}`), retried with exponential backoff.
Delivery failures are logged (and recorded in the alert log), never raised: an alert must not
crash the sensor or asset that emits it.

The webhook URL is a secret (it is the credential of a Slack-style hook): only http(s) URLs are
accepted, redirects are not followed, one alert takes at most `total_timeout_s` (retries and
backoff included, `CRYPTOVOL_ALERT_TIMEOUT_S`), and the URL never appears in a log line, an
exception or the alert log (errors name `<webhook>` instead).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptovol.config import Settings, load_env

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
        total_timeout_s: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.log_path = Path(log_path)
        self.webhook_url = (webhook_url or "").strip() or None
        if self.webhook_url is not None:
            check_webhook_url(self.webhook_url)
        self.retries = max(0, int(retries))
        self.backoff_s = float(backoff_s)
        self.timeout_s = float(timeout_s)
        self.total_timeout_s = float(total_timeout_s)
        self._sleep = sleep
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the URL
        hook = "<webhook>" if self.webhook_url else None
        return f"AlertNotifier(log_path={str(self.log_path)!r}, webhook={hook})"

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> AlertNotifier:
        """CRYPTOVOL_ALERT_WEBHOOK_URL, _RETRIES, _BACKOFF_S, _TIMEOUT_S (validated by load_env)."""
        env = load_env()
        settings = settings or Settings.from_env(env)
        url = env.alert_webhook_url.get_secret_value() if env.alert_webhook_url else None
        return cls(
            alert_log_path(settings),
            url,
            retries=env.alert_retries,
            backoff_s=env.alert_backoff_s,
            total_timeout_s=env.alert_timeout_s,
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
        """POST with retries on network errors, 429 and 5xx; 4xx and 3xx are permanent; the whole
        delivery ends by `total_timeout_s`. -> (attempts, error without the URL)."""
        body = json.dumps(payload, default=str).encode()
        deadline = time.monotonic() + self.total_timeout_s
        error = ""
        attempt = 0
        for attempt in range(1, self.retries + 2):  # noqa: B007 (reported after the loop)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return attempt - 1, f"{error}; gave up after {self.total_timeout_s:g} s".lstrip("; ")
            status, error = self._attempt(body, min(self.timeout_s, remaining))
            if not error:
                return attempt, ""
            if status is not None and (300 <= status < 500 and status != 429):
                return attempt, error
            if attempt <= self.retries:
                pause = min(self.backoff_s * 2 ** (attempt - 1), deadline - time.monotonic())
                if pause > 0:
                    self._sleep(pause)
        return attempt, error

    def _attempt(self, body: bytes, timeout_s: float) -> tuple[int | None, str]:
        """One POST, abandoned after `timeout_s` in all (a server trickling bytes included).
        -> (HTTP status or None, error text with the URL redacted; "" on 2xx)."""
        outcome: list[tuple[int | None, str]] = []

        def post() -> None:
            request = urllib.request.Request(
                self.webhook_url or "", data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with _NO_REDIRECTS.open(request, timeout=timeout_s) as response:
                    status = response.status
                    outcome.append((status, "" if 200 <= status < 300 else f"HTTP {status}"))
            except urllib.error.HTTPError as exc:
                outcome.append((exc.code, f"HTTP {exc.code}"))
            except Exception as exc:  # network errors, bad answers: never raised, never with the URL
                outcome.append((None, redact(f"{type(exc).__name__}: {exc}", self.webhook_url)))

        worker = threading.Thread(target=post, name="alert-webhook", daemon=True)
        worker.start()
        worker.join(timeout_s + 0.5)
        if not outcome:
            return None, f"no answer within {timeout_s:.1f} s"
        return outcome[0]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured: the 3xx is the answer, nothing is followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_NO_REDIRECTS = urllib.request.build_opener(_NoRedirect)


def check_webhook_url(url: str) -> None:
    """http(s) with a host, or ValueError (which never repeats the URL: it is a secret)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("the alert webhook URL must be an http:// or https:// URL (not shown: a secret)")


def redact(text: str, url: str | None) -> str:
    """`text` with the webhook URL and its host, path and query replaced by `<webhook>`."""
    if not url:
        return text
    pieces = {url}
    try:
        parts = urllib.parse.urlsplit(url)
        pieces |= {parts.netloc, parts.path, parts.query, parts.hostname or ""}
        pieces |= {urllib.parse.quote(parts.path), f"{parts.path}?{parts.query}"}
    except ValueError:
        pass
    for piece in sorted((p for p in pieces if len(p) > 1), key=len, reverse=True):
        text = text.replace(piece, "<webhook>")
    return text


def read_alerts(path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The alert log as dicts (optionally one kind); a missing log is an empty list."""
    path = Path(path)
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if kind is None or r.get("kind") == kind]


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(details, default=str))
