"""The promotion gate: a pure rule on paired out-of-sample evidence (no MLflow, no I/O).

A candidate replaces a reference (the current champion, or on first training the best baseline)
only if ALL of these hold on the same out-of-sample rows (the pooled walk-forward test folds):

1. **Real gain**: the lower end of the paired block-bootstrap 95% interval of
   PR-AUC(candidate) - PR-AUC(reference) is above `min_pr_auc_gain` (default 0.01). Blocks of 60
   rows (60 s on the 1 s grid) keep the overlap of neighbouring label windows inside a resample,
   so a noise-level gain is not mistaken for a real one.
2. **No recent collapse** (non-inferiority): on the most recent test block (the last fold), the
   candidate's PR-AUC may trail the reference's by at most `recent_margin` (default 0.05 PR-AUC,
   absolute; about half the typical spike base rate). A model that wins on average but has
   stopped working on the newest data is kept out. A recent block with one class only (no spike)
   cannot show a collapse and does not block.
3. **Calibration no worse**: pooled Brier score at most the reference's + `brier_tolerance` (0).

Margins are never loosened to get a learned champion; the CLI and the Dagster asset take the same
defaults from here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from cryptovol.models import metrics as M


@dataclass(frozen=True)
class GateConfig:
    min_pr_auc_gain: float = 0.01
    recent_margin: float = 0.05
    brier_tolerance: float = 0.0
    n_boot: int = 500
    block: int = 60
    level: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class Evidence:
    """Paired out-of-sample comparison of a candidate with a reference on the same rows."""

    rows: int
    recent_rows: int
    candidate_pr_auc: float
    reference_pr_auc: float
    gain: float
    gain_low: float
    gain_high: float
    candidate_brier: float
    reference_brier: float
    candidate_recent_pr_auc: float
    reference_recent_pr_auc: float


def measure(
    y: np.ndarray, candidate: np.ndarray, reference: np.ndarray, recent: np.ndarray,
    config: GateConfig = GateConfig(),
) -> Evidence:
    """Evidence on rows in time order; `recent` marks the most recent block."""
    y = np.asarray(y, bool)
    candidate = np.asarray(candidate, float)
    reference = np.asarray(reference, float)
    recent = np.asarray(recent, bool)
    boot = M.paired_block_bootstrap(y, candidate, reference, block=config.block, n_boot=config.n_boot,
                                    seed=config.seed, level=config.level)
    return Evidence(
        rows=int(y.size), recent_rows=int(recent.sum()),
        candidate_pr_auc=M.pr_auc(y, candidate), reference_pr_auc=M.pr_auc(y, reference),
        gain=float(boot["diff"]), gain_low=float(boot["low"]), gain_high=float(boot["high"]),
        candidate_brier=M.brier(y, candidate), reference_brier=M.brier(y, reference),
        candidate_recent_pr_auc=M.pr_auc(y[recent], candidate[recent]),
        reference_recent_pr_auc=M.pr_auc(y[recent], reference[recent]),
    )


def judge(evidence: Evidence, config: GateConfig, *, candidate: str, reference: str) -> tuple[bool, str]:
    """(promote, reason) by the three rules of the module docstring, first failure first."""
    e = evidence
    ci = f"gain {e.gain:+.4f} [95% CI {e.gain_low:+.4f}, {e.gain_high:+.4f}] over {e.rows} rows"
    if not math.isfinite(e.gain_low):
        return False, f"{candidate} vs {reference}: no bootstrap evidence (one class only in {e.rows} rows)"
    if e.gain_low <= config.min_pr_auc_gain:
        return False, (f"{candidate} vs {reference}: pooled PR-AUC {e.candidate_pr_auc:.4f} vs "
                       f"{e.reference_pr_auc:.4f}, {ci}; the lower bound is not above the margin "
                       f"{config.min_pr_auc_gain}")
    if (math.isfinite(e.candidate_recent_pr_auc) and math.isfinite(e.reference_recent_pr_auc)
            and e.candidate_recent_pr_auc < e.reference_recent_pr_auc - config.recent_margin):
        return False, (f"{candidate} vs {reference}: recent collapse: most recent window PR-AUC "
                       f"{e.candidate_recent_pr_auc:.4f} vs {e.reference_recent_pr_auc:.4f} "
                       f"({e.recent_rows} rows) trails by more than the non-inferiority margin "
                       f"{config.recent_margin} (pooled {ci})")
    if e.candidate_brier > e.reference_brier + config.brier_tolerance:
        return False, (f"{candidate} vs {reference}: pooled Brier {e.candidate_brier:.4f} is worse than "
                       f"{e.reference_brier:.4f} ({ci})")
    return True, (f"{candidate} beats {reference}: pooled PR-AUC {e.candidate_pr_auc:.4f} vs "
                  f"{e.reference_pr_auc:.4f}, {ci} > margin {config.min_pr_auc_gain}; recent PR-AUC "
                  f"{e.candidate_recent_pr_auc:.4f} vs {e.reference_recent_pr_auc:.4f} (margin "
                  f"{config.recent_margin}); Brier {e.candidate_brier:.4f} <= {e.reference_brier:.4f}")


@dataclass(frozen=True)
class PromotionDecision:
    """What the gate decided for one registered candidate, and the evidence (kept as version tags)."""

    promote: bool
    reason: str
    challenger_version: str | None
    challenger_kind: str
    reference: str  # "champion v3" / "baseline har" / "none (first champion)"
    challenger_pr_auc: float
    reference_pr_auc: float
    gain_low: float
    gain_high: float
    challenger_brier: float
    reference_brier: float
    recent_challenger_pr_auc: float
    recent_reference_pr_auc: float
    min_pr_auc_gain: float
    recent_margin: float
    holdout_rows: int = 0
    recent_rows: int = 0

    @classmethod
    def from_evidence(cls, evidence: Evidence | None, config: GateConfig, *, promote: bool, reason: str,
                      version: str | None, kind: str, reference: str) -> PromotionDecision:
        nan = float("nan")
        e = evidence
        return cls(
            promote=promote, reason=reason, challenger_version=version, challenger_kind=kind,
            reference=reference,
            challenger_pr_auc=e.candidate_pr_auc if e else nan,
            reference_pr_auc=e.reference_pr_auc if e else nan,
            gain_low=e.gain_low if e else nan, gain_high=e.gain_high if e else nan,
            challenger_brier=e.candidate_brier if e else nan,
            reference_brier=e.reference_brier if e else nan,
            recent_challenger_pr_auc=e.candidate_recent_pr_auc if e else nan,
            recent_reference_pr_auc=e.reference_recent_pr_auc if e else nan,
            min_pr_auc_gain=config.min_pr_auc_gain, recent_margin=config.recent_margin,
            holdout_rows=e.rows if e else 0, recent_rows=e.recent_rows if e else 0,
        )

    def as_tags(self) -> dict[str, str]:
        return {f"cryptovol.gate.{k}": str(v) for k, v in asdict(self).items()}
