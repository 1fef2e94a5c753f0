"""Champion/challenger registry on MLflow: aliases, the promotion gate, manual promotion, rollback.

One registered model (`Settings.model_name`) with aliases:
- `challenger`: the newest trained version (set on every training run);
- `champion`: what serving reads (`models:/<name>@champion`);
- `previous_champion`: the version a rollback returns to.
The champion stack (every version that became champion, oldest first) is kept as the registered
model tag `cryptovol.champion_history` (JSON list), so a rollback can be repeated and audited.
Gate decisions and their evidence are written as tags on the candidate version (the rule itself
is `cryptovol.models.gate`; the lifecycle in `cryptovol.models.lifecycle` applies it).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from cryptovol.models.gate import GateConfig, PromotionDecision

__all__ = ["GateConfig", "PromotionDecision", "RegistryError", "alias_version", "champion_history",
           "list_versions", "promote", "register_version", "rollback", "set_challenger"]

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"
HISTORY_TAG = "cryptovol.champion_history"


class RegistryError(RuntimeError):
    """A registry operation that cannot be carried out (e.g. rollback with no previous champion)."""


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
            "role": tags.get("cryptovol.role", ""),
            "pr_auc": tags.get("cryptovol.evidence.pr_auc_pooled", ""),
            "brier": tags.get("cryptovol.evidence.brier_pooled", ""),
            "promoted": tags.get("cryptovol.gate.promote", ""),
            "reason": tags.get("cryptovol.gate.reason", ""),
            "run_id": mv.run_id,
            "created": mv.creation_timestamp,
        })
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- registration --------------------------------------------------------------------------------


def register_version(
    name: str, model_uri: str, *, tags: dict[str, str] | None = None, description: str | None = None,
    client: Any | None = None,
) -> str:
    """Register a logged model as a new version of `name`, with tags (and a description)."""
    import mlflow

    client = _client(client)
    version = str(mlflow.register_model(model_uri, name).version)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, version, key, str(value))
    if description:
        client.update_model_version(name, version, description=description)
    return version
