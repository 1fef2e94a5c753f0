"""The drift -> retrain policy: persistence, hysteresis, cooldown, once per event."""

from __future__ import annotations

import pytest

from cryptovol.retrain_policy import DriftObservation, PolicyState, RetrainPolicy, decide

HOUR = 3600.0


def run(
    policy: RetrainPolicy,
    shares: list[float],
    *,
    start: float = 1e9,
    step: float = HOUR,
    state: PolicyState | None = None,
    last_retrain_at: float | None = None,
):
    """Feed shares as consecutive reports (one per `step` seconds); -> (retrain flags, state)."""
    state = state or PolicyState()
    fired = []
    for i, share in enumerate(shares):
        decision = decide(
            policy,
            state,
            DriftObservation(f"r{i}-{start}", share),
            now=start + i * step,
            last_retrain_at=last_retrain_at,
        )
        fired.append(decision.retrain)
        state = decision.state
    return fired, state


def test_calm_data_never_retrains() -> None:
    fired, state = run(RetrainPolicy(min_drift_share=0.5, persistence=2), [0.0, 0.1, 0.2, 0.3, 0.1] * 10)
    assert not any(fired)
    assert not state.in_event


@pytest.mark.parametrize("persistence", [1, 2, 3])
def test_drift_must_persist_over_consecutive_reports(persistence: int) -> None:
    policy = RetrainPolicy(min_drift_share=0.5, persistence=persistence, cooldown_s=0)
    fired, _ = run(policy, [0.8] * 5)
    assert fired.index(True) == persistence - 1


def test_isolated_drifted_reports_do_not_trigger() -> None:
    policy = RetrainPolicy(min_drift_share=0.5, persistence=2, cooldown_s=0)
    fired, _ = run(policy, [0.8, 0.1, 0.8, 0.4, 0.8, 0.0])
    assert not any(fired)


def test_once_per_drift_event_and_again_after_calm() -> None:
    policy = RetrainPolicy(min_drift_share=0.5, persistence=2, cooldown_s=0)
    fired, _ = run(policy, [0.7, 0.8, 0.9, 0.9, 0.8, 0.1, 0.6, 0.7, 0.7])
    assert fired == [False, True, False, False, False, False, False, True, False]


def test_hysteresis_band_keeps_an_open_event_open() -> None:
    # Shares between calm (0.25) and trigger (0.5) neither end the event nor start a new one.
    policy = RetrainPolicy(min_drift_share=0.5, persistence=2, cooldown_s=0, calm_share=0.25)
    fired, state = run(policy, [0.6, 0.6, 0.45, 0.55, 0.4, 0.6])
    assert fired == [False, True, False, False, False, False]
    assert state.in_event and state.event_fired


def test_cooldown_defers_the_retrain_until_it_expires() -> None:
    policy = RetrainPolicy(min_drift_share=0.5, persistence=2, cooldown_s=3 * HOUR)
    start = 1e9
    # A nightly retrain happened just before the first report.
    fired, state = run(policy, [0.8, 0.8, 0.8, 0.8, 0.8], start=start, last_retrain_at=start - 60)
    assert fired == [False, False, False, True, False]
    assert state.last_retrain_at == start + 3 * HOUR


def test_same_report_is_evaluated_once() -> None:
    policy = RetrainPolicy(min_drift_share=0.5, persistence=1, cooldown_s=0)
    first = decide(policy, PolicyState(), DriftObservation("rep-1", 0.9), now=100.0)
    again = decide(policy, first.state, DriftObservation("rep-1", 0.9), now=200.0)
    assert first.retrain and first.event_started
    assert not again.retrain and again.state == first.state
    assert "already evaluated" in again.reason


def test_state_round_trips_through_json_cursor() -> None:
    policy = RetrainPolicy(persistence=3)
    _, state = run(policy, [0.9, 0.9])
    assert PolicyState.from_json(state.to_json()) == state
    assert PolicyState.from_json(None) == PolicyState()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_drift_share": 0.0},
        {"min_drift_share": 1.5},
        {"persistence": 0},
        {"cooldown_s": -1},
        {"min_drift_share": 0.4, "calm_share": 0.6},
    ],
)
def test_invalid_policy_is_rejected(kwargs) -> None:
    with pytest.raises(ValueError):
        RetrainPolicy(**kwargs)


def test_policy_from_env(monkeypatch) -> None:
    monkeypatch.setenv("CRYPTOVOL_DRIFT_MIN_SHARE", "0.3")
    monkeypatch.setenv("CRYPTOVOL_DRIFT_PERSISTENCE", "4")
    monkeypatch.setenv("CRYPTOVOL_RETRAIN_COOLDOWN_S", "60")
    policy = RetrainPolicy.from_env()
    assert (policy.min_drift_share, policy.persistence, policy.cooldown_s) == (0.3, 4, 60.0)
    assert policy.effective_calm_share == pytest.approx(0.15)
