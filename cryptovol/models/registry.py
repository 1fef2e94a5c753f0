"""Champion/challenger registry on MLflow: aliases, the promotion gate, manual promotion, rollback.

One registered model (`Settings.model_name`) with aliases:
- `challenger`: the newest trained version (set on every training run);
- `champion`: what serving reads (`models:/<name>@champion`);
- `previous_champion`: the version a rollback returns to.
The champion stack (every version that became champion, oldest first) is kept as the registered
model tag `cryptovol.champion_history` (JSON list), so a rollback can be repeated and audited.
Gate decisions and both scores are written as tags on the challenger version.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.models import metrics as M

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"
HISTORY_TAG = "cryptovol.champion_history"


class RegistryError(RuntimeError):
    """A registry operation that cannot be carried out (e.g. rollback with no previous champion)."""


@dataclass(frozen=True)
class GateConfig:
    """Challenger must beat the reference PR-AUC by `min_pr_auc_gain` and not have a Brier score
    worse than the reference's by more than `brier_tolerance`."""

    min_pr_auc_gain: float = 0.01
    brier_tolerance: float = 0.0


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    challenger_version: str | None
    reference: str  # "champion v3" or "baseline har"
    challenger_pr_auc: float
    challenger_brier: float
    reference_pr_auc: float
    reference_brier: float
    min_pr_auc_gain: float
    holdout_rows: int = 0

    def as_tags(self) -> dict[str, str]:
        return {f"cryptovol.gate.{k}": str(v) for k, v in asdict(self).items()}


def decide_promotion(
    challenger: dict[str, float],
    reference: dict[str, float],
    *,
    reference_name: str,
    config: GateConfig = GateConfig(),
    compare_brier: bool = True,
    challenger_version: str | None = None,
    holdout_rows: int = 0,
) -> PromotionDecision:
    """Pure gate rule on scores measured on the same held-out window."""
    c_pr, c_brier = float(challenger["pr_auc"]), float(challenger["brier"])
    r_pr, r_brier = float(reference["pr_auc"]), float(reference["brier"])
    if not math.isfinite(c_pr):
        promote, reason = False, "challenger PR-AUC undefined on the held-out window (one class only)"
    elif math.isfinite(r_pr) and c_pr < r_pr + config.min_pr_auc_gain:
        promote = False
        reason = (f"PR-AUC {c_pr:.4f} does not beat {reference_name} {r_pr:.4f} "
                  f"by the margin {config.min_pr_auc_gain}")
    elif compare_brier and math.isfinite(r_brier) and c_brier > r_brier + config.brier_tolerance:
        promote = False
        reason = f"Brier {c_brier:.4f} is worse than {reference_name} {r_brier:.4f}"
    else:
        promote = True
        reason = (f"PR-AUC {c_pr:.4f} beats {reference_name} {r_pr:.4f} by >= {config.min_pr_auc_gain}"
                  + (f"; Brier {c_brier:.4f} <= {r_brier:.4f}" if compare_brier else ""))
    return PromotionDecision(
        promote=promote, reason=reason, challenger_version=challenger_version,
        reference=reference_name, challenger_pr_auc=c_pr, challenger_brier=c_brier,
        reference_pr_auc=r_pr, reference_brier=r_brier,
        min_pr_auc_gain=config.min_pr_auc_gain, holdout_rows=holdout_rows,
    )


# --- alias helpers -------------------------------------------------------------------------------


def _client(client: Any | None) -> Any:
    if client is not None:
        return client
    import mlflow

    return mlflow.MlflowClient()


def alias_version(name: str, alias: str, client: Any | None = None) -> str | None:
    """The version an alias points at, or None (no model / no alias)."""
    from mlflow.exceptions import MlflowException

    client = _client(client)
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def champion_history(name: str, client: Any | None = None) -> list[str]:
    client = _client(client)
    model = client.get_registered_model(name)
    raw = (model.tags or {}).get(HISTORY_TAG)
    return [str(v) for v in json.loads(raw)] if raw else []


def _set_history(name: str, history: list[str], client: Any) -> None:
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))


def set_challenger(name: str, version: str, client: Any | None = None) -> None:
    _client(client).set_registered_model_alias(name, CHALLENGER, str(version))


def promote(name: str, version: str, *, reason: str = "", client: Any | None = None) -> str | None:
    """Make `version` the champion; the old champion becomes `previous_champion`. Returns it."""
    client = _client(client)
    version = str(version)
    client.get_model_version(name, version)  # raises a clear MlflowException if it does not exist
    previous = alias_version(name, CHAMPION, client)
    if previous == version:
        return previous
    history = champion_history(name, client)
    if previous and (not history or history[-1] != previous):
        history.append(previous)  # champion set outside this module: keep it in the stack
    history.append(version)
    client.set_registered_model_alias(name, CHAMPION, version)
    if previous:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, previous)
    _set_history(name, history, client)
    client.set_model_version_tag(name, version, "cryptovol.promoted_at", _now())
    if reason:
        client.set_model_version_tag(name, version, "cryptovol.promotion_reason", reason)
    log.info("model %s: champion v%s (previous %s)", name, version, previous or "none")
    return previous


def rollback(name: str, client: Any | None = None) -> str:
    """Restore the previous champion; the rolled-back version keeps a tag saying so. Returns it."""
    client = _client(client)
    current = alias_version(name, CHAMPION, client)
    history = champion_history(name, client)
    if current and history and history[-1] != current:
        history.append(current)
    if len(history) < 2:
        raise RegistryError(f"model {name}: no previous champion to roll back to (history {history})")
    rolled_back = history.pop()
    target = history[-1]
    client.set_registered_model_alias(name, CHAMPION, target)
    if len(history) >= 2:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, history[-2])
    else:
        client.delete_registered_model_alias(name, PREVIOUS_CHAMPION)
    _set_history(name, history, client)
    client.set_model_version_tag(name, rolled_back, "cryptovol.rolled_back_at", _now())
    client.set_model_version_tag(name, target, "cryptovol.restored_at", _now())
    log.info("model %s: rolled back v%s -> champion v%s", name, rolled_back, target)
    return target


def list_versions(name: str, client: Any | None = None) -> list[dict[str, Any]]:
    """Every version with its aliases, kind, held-out PR-AUC and gate decision (newest first)."""
    from mlflow.exceptions import MlflowException

    client = _client(client)
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return []
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name='{name}'"):
        tags = dict(mv.tags or {})
        rows.append({
            "version": str(mv.version),
            "aliases": sorted(aliases.get(str(mv.version), [])),
            "model_kind": tags.get("cryptovol.model_kind", ""),
            "pr_auc": tags.get("cryptovol.gate.challenger_pr_auc", ""),
            "brier": tags.get("cryptovol.gate.challenger_brier", ""),
            "promoted": tags.get("cryptovol.gate.promote", ""),
            "reason": tags.get("cryptovol.gate.reason", ""),
            "run_id": mv.run_id,
            "created": mv.creation_timestamp,
        })
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- the gate ------------------------------------------------------------------------------------


def score_on_window(model: Any, frame: pd.DataFrame, y: np.ndarray) -> dict[str, float]:
    """PR-AUC and Brier of a loaded model (anything with `.predict(frame)`) on one window."""
    out = model.predict(frame)
    probability = np.asarray(out["spike_probability"], float)
    return {"pr_auc": M.pr_auc(y, probability), "brier": M.brier(y, probability)}


def run_promotion_gate(
    name: str,
    version: str,
    *,
    holdout_frame: pd.DataFrame,
    holdout_y: np.ndarray,
    baseline_scores: dict[str, dict[str, float]],
    config: GateConfig = GateConfig(),
    alert_hook: Callable[[PromotionDecision], None] | None = None,
    client: Any | None = None,
) -> PromotionDecision:
    """Register `version` as challenger, compare it with the champion on the same held-out window
    (or, with no champion yet, with the best baseline), promote if it wins, tag and report.

    `baseline_scores`: {baseline name: {"pr_auc", "brier"}} measured on the same window.
    """
    from cryptovol.models.pyfunc import load_spike_model

    client = _client(client)
    version = str(version)
    set_challenger(name, version, client)
    challenger = load_spike_model(f"models:/{name}/{version}")
    c_scores = score_on_window(challenger, holdout_frame, holdout_y)
    champion_version = alias_version(name, CHAMPION, client)
    decision: PromotionDecision
    if champion_version and champion_version != version:
        try:
            champion = load_spike_model(f"models:/{name}/{champion_version}")
            r_scores = score_on_window(champion, holdout_frame, holdout_y)
        except Exception as exc:  # noqa: BLE001 - an unloadable champion must not block retraining
            log.warning("champion v%s cannot be scored (%s); comparing with baselines", champion_version, exc)
            champion_version = None
    if champion_version and champion_version != version:
        decision = decide_promotion(
            c_scores, r_scores, reference_name=f"champion v{champion_version}", config=config,
            challenger_version=version, holdout_rows=len(holdout_y),
        )
    else:
        best = max(baseline_scores.items(), key=lambda kv: _nan_low(kv[1]["pr_auc"]),
                   default=("none", {"pr_auc": float("nan"), "brier": float("nan")}))
        decision = decide_promotion(
            c_scores, best[1], reference_name=f"baseline {best[0]}", config=config,
            compare_brier=False, challenger_version=version, holdout_rows=len(holdout_y),
        )
    for key, value in decision.as_tags().items():
        client.set_model_version_tag(name, version, key, value)
    if decision.promote:
        promote(name, version, reason=decision.reason, client=client)
    log.info("gate for %s v%s: %s (%s)", name, version, "PROMOTE" if decision.promote else "keep",
             decision.reason)
    if alert_hook is not None:
        alert_hook(decision)
    return decision


def _nan_low(x: float) -> float:
    return x if x == x else -1.0
