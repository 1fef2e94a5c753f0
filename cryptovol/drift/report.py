"""The drift report: Evidently run on two windows -> `DriftResult` (JSON summary with
`SUMMARY_KEYS`, HTML), saved atomically under reports/drift; `build_drift_report` is what
the CLI, the monitor and the Dagster asset call."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.drift.sources import (
    ChampionInfo,
    latest_feature_time_ns,
    live_pr_auc_for,
    load_champion,
    read_feature_window,
    read_prediction_window,
)
from cryptovol.drift.stats import (
    EXCLUDED_FEATURES,
    DriftConfig,
    DriftError,
    Window,
    _column_entry,
    _metric_values,
    _run_evidently,
    current_window,
    decimate,
    prediction_drift_entry,
    prepare,
)
from cryptovol.featureset import FEATURE_SET_VERSION

log = logging.getLogger(__name__)


#: Keys of the JSON summary; the drift sensor relies on them.
SUMMARY_KEYS = (
    "generated_at",
    "reference_window",
    "current_window",
    "n_reference",
    "n_current",
    "drift_share",
    "drifted_columns",
    "dataset_drift",
    "per_feature",
    "prediction_drift",
    "live_pr_auc",
    "html_path",
)


@dataclass
class DriftResult:
    """The computed report: the JSON summary plus Evidently's snapshot (for the HTML)."""

    summary: dict[str, Any]
    snapshot: Any = None

    def save(
        self, reports_dir: Path, *, when: datetime | None = None, keep_html: int = 48
    ) -> tuple[Path, Path]:
        """Write `<stamp>.html`, `<stamp>.json` and `latest.json` (atomically) under `reports_dir`.

        Evidently's HTML embeds its JavaScript (~5 MB each): only the newest `keep_html` HTML
        files are kept; the small JSON summaries are all kept.
        """
        reports_dir = Path(reports_dir)
        reports_dir.mkdir(parents=True, exist_ok=True)
        stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S_%fZ")
        html_path = reports_dir / f"{stamp}.html"
        json_path = reports_dir / f"{stamp}.json"
        if self.snapshot is not None:
            from cryptovol.atomic import write_bytes_atomic

            with tempfile.TemporaryDirectory(dir=reports_dir, prefix=".html-") as scratch:
                rendered = Path(scratch) / html_path.name  # Evidently writes to a path
                self.snapshot.save_html(str(rendered))
                write_bytes_atomic(html_path, rendered.read_bytes())
            self.summary["html_path"] = str(html_path)
        self.summary["json_path"] = str(json_path)
        text = json.dumps(self.summary, indent=2, default=_json_default, allow_nan=False)
        _atomic_write(json_path, text)
        _atomic_write(reports_dir / "latest.json", text)
        for old in sorted(reports_dir.glob("*.html"))[:-keep_html or None]:
            old.unlink(missing_ok=True)
        return json_path, html_path


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    config: DriftConfig | None = None,
    *,
    reference_predictions: pd.Series | np.ndarray | None = None,
    current_predictions: pd.Series | np.ndarray | None = None,
    live_pr_auc: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> DriftResult:
    """Data drift of `current` against `reference` feature rows, with Evidently.

    Both frames hold feature rows (keys + features, any number of products). They are decimated
    and warm-up rows dropped (`prepare`) before testing. Prediction drift is added when both
    prediction samples are given (spike probabilities), and `live_pr_auc` is passed through.
    Raises `DriftError` when either side has fewer than `config.min_rows` usable rows.
    """
    config = config or DriftConfig()
    ref = prepare(reference, config)
    cur = prepare(current, config)
    for name, frame, raw in (("reference", ref, reference), ("current", cur, current)):
        if len(frame) < config.min_rows:
            raise DriftError(
                f"{name} window has {len(frame)} usable rows after decimation to one per "
                f"{config.sample_every_s:g}s and dropping warm-up rows ({len(raw)} raw rows); "
                f"need at least {config.min_rows}"
            )
    columns = list(config.columns)
    snapshot = _run_evidently(ref[columns], cur[columns], config)
    values, evidently_count = _metric_values(snapshot)

    per_feature: dict[str, dict[str, Any]] = {}
    for column in columns:
        stat = values.get(column)
        if stat is None:
            raise DriftError(f"Evidently returned no drift value for column {column!r}")
        per_feature[column] = _column_entry(
            column, float(stat), config.method, config.threshold_for(column), ref, cur
        )
    drifted = [c for c, entry in per_feature.items() if entry["drifted"]]
    if evidently_count is not None and int(evidently_count) != len(drifted):
        log.warning(
            "drifted-column count differs from Evidently's (%s vs %s)", len(drifted), evidently_count
        )
    share = len(drifted) / len(columns)

    prediction_drift = None
    if reference_predictions is not None and current_predictions is not None:
        prediction_drift = prediction_drift_entry(
            reference_predictions, current_predictions, config
        )

    summary: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "reference_window": Window.of(reference).as_dict(),
        "current_window": Window.of(current).as_dict(),
        "n_reference": len(ref),
        "n_current": len(cur),
        "drift_share": share,
        "drift_share_threshold": config.drift_share,
        "drifted_columns": drifted,
        "dataset_drift": share >= config.drift_share,
        "per_feature": per_feature,
        "prediction_drift": prediction_drift,
        "live_pr_auc": live_pr_auc,
        "html_path": None,
        "method": config.method,
        "sample_every_s": config.sample_every_s,
        "products": sorted(set(ref["product_id"].astype(str)) | set(cur["product_id"].astype(str))),
        "feature_set_version": FEATURE_SET_VERSION,
        "excluded_features": EXCLUDED_FEATURES,
    }
    summary.update(extra or {})
    return DriftResult(summary=summary, snapshot=snapshot)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _atomic_write(path: Path, text: str) -> None:
    from cryptovol.atomic import write_text_atomic

    write_text_atomic(path, text)


def read_latest(reports_dir: Path) -> dict[str, Any] | None:
    """The latest drift summary under `reports_dir`, or None when no report exists yet."""
    try:
        return json.loads((Path(reports_dir) / "latest.json").read_text())
    except (OSError, ValueError):
        return None


def build_drift_report(
    settings: Any,
    config: DriftConfig | None = None,
    *,
    reference: Window | None = None,
    products: Sequence[str] | None = None,
    champion: ChampionInfo | None = None,
    current_end_ns: int | None = None,
    save: bool = True,
    extra: dict[str, Any] | None = None,
) -> DriftResult:
    """The drift report the CLI, the demo and the Dagster asset produce, saved under reports/drift.

    Reference: `reference` if given, else the champion's training window (`DriftError` when there
    is neither). Current: the last `config.current_minutes` of feature event time in the lake (or
    ending at `current_end_ns`, for a look back). A reference that reaches into the current window
    is cut at the current window's start. `extra` goes into the summary as is (e.g. the id of the
    Dagster run that wrote it, so the drift sensor does not record that report a second time).
    """
    config = config or DriftConfig()
    latest = latest_feature_time_ns(settings, products)
    if latest is None:
        raise DriftError(f"no feature rows under {settings.features_dir}")
    if current_end_ns is not None:
        latest = min(latest, int(current_end_ns) - 1)
    current_win = current_window(latest, config.current_minutes)
    predictions = read_prediction_window(settings, current_win)
    # The champion (an MLflow load, seconds) is needed for its window or to score the reference.
    if champion is None and (reference is None or not predictions.empty):
        champion = load_champion(settings)
    source = "explicit"
    if reference is None:
        if champion is None or champion.trained_window is None:
            raise DriftError(
                "no reference window: there is no champion with a training window in the registry "
                f"({settings.model_name}@champion); pass --reference-start/--reference-end"
            )
        reference, source = champion.trained_window, "champion training window"
    if reference.end_ns > current_win.start_ns:
        reference = Window(reference.start_ns, current_win.start_ns)
        source += " (cut at the current window)"
        if reference.end_ns <= reference.start_ns:
            raise DriftError("the reference window lies entirely inside the current window")
    ref = read_feature_window(settings, reference, products)
    cur = read_feature_window(settings, current_win, products)
    if ref.empty:
        raise DriftError(
            f"no feature rows in the reference window {reference.as_dict()['start']} .. "
            f"{reference.as_dict()['end']} under {settings.features_dir}"
        )

    ref_pred = cur_pred = None
    live = None
    if not predictions.empty:
        cur_pred = decimate(predictions, config.sample_every_s)["spike_probability"] \
            if "product_id" in predictions.columns else predictions["spike_probability"]
        if champion is not None and champion.model is not None:
            sample = prepare(ref, config)
            ref_pred = champion.model.predict(sample)["spike_probability"]
            live = live_pr_auc_for(champion, cur, predictions)
        else:
            old = read_prediction_window(settings, reference)
            if not old.empty:
                ref_pred = old["spike_probability"]
    result = drift_report(
        ref, cur, config,
        reference_predictions=ref_pred,
        current_predictions=cur_pred,
        live_pr_auc=live,
        extra={
            "reference_source": source,
            "champion": champion.as_dict() if champion else None,
            "current_minutes": config.current_minutes,
            **(extra or {}),
        },
    )
    if save:
        result.save(settings.reports_dir / "drift")
    return result
