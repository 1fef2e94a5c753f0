"""The promotion gate decides on paired out-of-sample evidence: it promotes on a real gain, refuses
a noise-level gain, a recent collapse and a worse Brier score (pure rule, no MLflow)."""

from __future__ import annotations

import numpy as np
import pytest

from cryptovol.models import gate as G

CONFIG = G.GateConfig(n_boot=300)


def _rows(n: int = 6000, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Labels with a persistent latent state (spikes cluster, like volatility), a score that sees
    the state well and one that sees it weakly; `recent` marks the last fifth."""
    rng = np.random.default_rng(seed)
    state = np.zeros(n)
    for i in range(1, n):
        state[i] = 0.98 * state[i - 1] + rng.normal(0, 0.2)
    y = state + rng.normal(0, 0.5, n) > np.quantile(state, 0.88)
    strong = 1 / (1 + np.exp(-(3 * state + rng.normal(0, 0.6, n) - 3)))
    weak = 1 / (1 + np.exp(-(1.0 * state + rng.normal(0, 1.5, n) - 2)))
    recent = np.zeros(n, bool)
    recent[-n // 5:] = True
    return y, strong, weak, recent


def test_promotes_on_a_real_gain():
    y, strong, weak, recent = _rows()
    evidence = G.measure(y, strong, weak, recent, CONFIG)
    promote, reason = G.judge(evidence, CONFIG, candidate="logistic", reference="baseline har")
    assert promote, reason
    assert evidence.gain_low > CONFIG.min_pr_auc_gain
    assert evidence.gain_low < evidence.gain < evidence.gain_high
    assert "beats baseline har" in reason


def test_refuses_a_noise_level_gain():
    y, strong, _, recent = _rows(seed=1)
    rng = np.random.default_rng(5)
    # the same model with a little noise: the gain is within bootstrap noise of zero
    jittered = np.clip(strong + rng.normal(0, 0.003, strong.size), 0, 1)
    evidence = G.measure(y, jittered, strong, recent, CONFIG)
    promote, reason = G.judge(evidence, CONFIG, candidate="xgboost", reference="champion v1")
    assert not promote
    assert evidence.gain_low <= CONFIG.min_pr_auc_gain
    assert "lower bound is not above the margin 0.01" in reason


def test_refuses_a_recent_collapse():
    y, strong, weak, recent = _rows(seed=2)
    rng = np.random.default_rng(3)
    collapsed = strong.copy()
    collapsed[recent] = rng.uniform(0, 0.3, recent.sum())  # stopped working on the newest block
    evidence = G.measure(y, collapsed, weak, recent, CONFIG)
    assert evidence.gain_low > CONFIG.min_pr_auc_gain  # still better on the pooled rows ...
    promote, reason = G.judge(evidence, CONFIG, candidate="logistic", reference="baseline har")
    assert not promote  # ... but not on the most recent window
    assert "recent collapse" in reason
    assert evidence.candidate_recent_pr_auc < evidence.reference_recent_pr_auc - CONFIG.recent_margin


def test_refuses_a_worse_brier_score_and_never_promotes_without_evidence():
    y, strong, weak, recent = _rows(seed=4)
    overconfident = 0.5 + 0.5 * strong  # same ranking, badly calibrated
    evidence = G.measure(y, overconfident, weak, recent, CONFIG)
    promote, reason = G.judge(evidence, CONFIG, candidate="logistic", reference="baseline har")
    assert not promote and "Brier" in reason
    only_calm = G.measure(np.zeros(500, bool), strong[:500], weak[:500], recent[:500], CONFIG)
    assert not G.judge(only_calm, CONFIG, candidate="a", reference="b")[0]


@pytest.mark.parametrize("margin", [0.01, 0.05])
def test_a_larger_margin_never_promotes_more(margin):
    y, strong, weak, recent = _rows(seed=6)
    evidence = G.measure(y, strong, weak, recent, CONFIG)
    strict = G.GateConfig(min_pr_auc_gain=evidence.gain_low + margin)
    assert not G.judge(evidence, strict, candidate="a", reference="b")[0]
