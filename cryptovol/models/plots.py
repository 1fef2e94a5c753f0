"""Evaluation plots logged as MLflow artifacts (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cryptovol.models.training import Evaluation


def write_plots(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """PR curves (pooled test folds, every model), calibration curve and feature importance of the
    chosen model. Returns the written files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve

    out_dir.mkdir(parents=True, exist_ok=True)
    folds = evaluation.folds
    y = np.concatenate([f.y_test for f in folds])
    written = []

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for kind in evaluation.summary.index:
        p = np.concatenate([f.probabilities[kind] for f in folds])
        if y.any() and not y.all():
            precision, recall, _ = precision_recall_curve(y, p)
            ap = evaluation.summary.loc[kind, "pr_auc_pooled"]
            ax.plot(recall, precision, label=f"{kind} (AP {ap:.3f})")
    ax.axhline(y.mean(), color="grey", linestyle=":", label=f"base rate {y.mean():.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall, pooled walk-forward test folds")
    ax.legend(fontsize=8)
    path = out_dir / "pr_curve.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    kind = evaluation.chosen_kind
    p = np.concatenate([f.probabilities[kind] for f in folds])
    fig, ax = plt.subplots(figsize=(5, 5))
    if y.any() and not y.all():
        frac, mean_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
        ax.plot(mean_pred, frac, marker="o", label=kind)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("predicted spike probability")
    ax.set_ylabel("observed spike frequency")
    ax.set_title(f"Calibration ({kind}, pooled test folds)")
    ax.legend()
    path = out_dir / "calibration_curve.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    scorer = evaluation.chosen_predictor.scorer
    if hasattr(scorer, "importance"):
        importance = scorer.importance().head(20)[::-1]
        fig, ax = plt.subplots(figsize=(6, 5))
        ax.barh(importance.index, importance.values)
        ax.set_title(f"Feature importance ({kind}, last fold)")
        path = out_dir / "feature_importance.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
