"""When does drift justify retraining? A pure, replayable policy (no clock, no I/O).

Evidently flags some drift on market data almost always, so a single drifted report must not
trigger a retrain. The policy:

- a report *is drifted* when its share of drifted feature columns is >= `min_drift_share`;
- a *drift event* starts after `persistence` consecutive drifted reports;
- the event ends only when a report is *calm* (share < `calm_share`, lower than
  `min_drift_share`: hysteresis, so a share hovering at the threshold does not flap);
- each event requests at most one retrain, and never within `cooldown_s` of the last retrain
  (a nightly retrain counts too); a retrain deferred by the cooldown fires on the first drifted
  report after it, if the event is still open;
- a report seen before changes nothing.

The drift sensor keeps `PolicyState` as its cursor (`to_json`/`from_json`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class RetrainPolicy:
    min_drift_share: float = 0.5
    persistence: int = 2
    cooldown_s: float = 6 * 3600.0
    calm_share: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.min_drift_share <= 1.0:
            raise ValueError(f"min_drift_share must be in (0, 1], got {self.min_drift_share}")
        if self.persistence < 1:
            raise ValueError(f"persistence must be >= 1, got {self.persistence}")
        if self.cooldown_s < 0:
            raise ValueError(f"cooldown_s must be >= 0, got {self.cooldown_s}")
        if self.calm_share is not None and not 0.0 <= self.calm_share <= self.min_drift_share:
            raise ValueError(
                f"calm_share must be in [0, min_drift_share={self.min_drift_share}], got {self.calm_share}"
            )

    @property
    def effective_calm_share(self) -> float:
        """Below this share an open drift event ends (default: half the trigger share)."""
        return self.min_drift_share / 2 if self.calm_share is None else self.calm_share

    @classmethod
    def from_env(cls) -> RetrainPolicy:
        """CRYPTOVOL_DRIFT_MIN_SHARE, CRYPTOVOL_DRIFT_PERSISTENCE, CRYPTOVOL_RETRAIN_COOLDOWN_S,
        CRYPTOVOL_DRIFT_CALM_SHARE."""
        from cryptovol.config import load_env

        env = load_env()
        return cls(
            min_drift_share=env.drift_min_share,
            persistence=env.drift_persistence,
            cooldown_s=env.retrain_cooldown_s,
            calm_share=env.drift_calm_share,
        )


@dataclass(frozen=True)
class DriftObservation:
    """One drift report, reduced to what the policy needs."""

    report_id: str
    drift_share: float


@dataclass(frozen=True)
class PolicyState:
    streak: int = 0
    in_event: bool = False
    event_fired: bool = False
    last_report_id: str | None = None
    last_retrain_at: float | None = None
    reports_seen: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> PolicyState:
        if not text:
            return cls()
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reason: str
    state: PolicyState
    #: True exactly once per drift event, when it is confirmed (the moment to alert).
    event_started: bool = False


def decide(
    policy: RetrainPolicy,
    state: PolicyState,
    report: DriftObservation,
    *,
    now: float,
    last_retrain_at: float | None = None,
) -> Decision:
    """Feed one report; `last_retrain_at` is any retrain the caller knows of (e.g. nightly)."""
    if report.report_id == state.last_report_id:
        return Decision(False, f"report {report.report_id} already evaluated", state)
    share = float(report.drift_share)
    known = [t for t in (state.last_retrain_at, last_retrain_at) if t is not None]
    new = replace(
        state,
        last_report_id=report.report_id,
        reports_seen=state.reports_seen + 1,
        last_retrain_at=max(known) if known else None,
    )
    if share < policy.effective_calm_share:
        ended = " (drift event over)" if state.in_event else ""
        calm = replace(new, streak=0, in_event=False, event_fired=False)
        reason = f"calm: drift share {share:.2f} < {policy.effective_calm_share:.2f}{ended}"
        return Decision(False, reason, calm)
    if share < policy.min_drift_share:
        # The hysteresis band: an open event stays open, a streak towards a new one breaks.
        held = new if new.in_event else replace(new, streak=0)
        return Decision(False, f"drift share {share:.2f} below trigger {policy.min_drift_share:.2f}", held)

    new = replace(new, streak=new.streak + 1)
    started = False
    if not new.in_event:
        if new.streak < policy.persistence:
            return Decision(
                False, f"drifted ({share:.2f}); {new.streak}/{policy.persistence} consecutive reports", new
            )
        new = replace(new, in_event=True, event_fired=False)
        started = True
    if new.event_fired:
        return Decision(False, "already retrained for this drift event", new)
    if new.last_retrain_at is not None and now - new.last_retrain_at < policy.cooldown_s:
        left = policy.cooldown_s - (now - new.last_retrain_at)
        return Decision(False, f"drift confirmed but in cooldown ({left:.0f} s left)", new, started)
    fired = replace(new, event_fired=True, last_retrain_at=now)
    reason = f"drift share {share:.2f} >= {policy.min_drift_share:.2f} for {new.streak} reports"
    return Decision(True, reason, fired, started)
