"""Evaluation plots logged as MLflow artifacts (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cryptovol.models.training import Evaluation


def write_plots(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """PR curves (pooled test folds, every model), calibration curves (learned challenger and best
    baseline), PR-AUC per fold, and the learned challenger's feature importance. Returns the files."""
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

    fig, ax = plt.subplots(figsize=(5, 5))
    for kind in [k for k in (evaluation.chosen_kind, evaluation.best_baseline) if k]:
        p = np.concatenate([f.probabilities[kind] for f in folds])
        if y.any() and not y.all():
            frac, mean_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
            ax.plot(mean_pred, frac, marker="o", label=kind)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("predicted spike probability")
    ax.set_ylabel("observed spike frequency")
    ax.set_title("Calibration, pooled test folds")
    ax.legend()
    path = out_dir / "calibration_curve.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    kinds = list(evaluation.summary.index)
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(kinds))
    x = np.arange(len(folds))
    for i, kind in enumerate(kinds):
        ax.bar(x + i * width, [f.metrics[kind]["pr_auc"] for f in folds], width, label=kind)
    ax.plot(x + 0.4 - width / 2, [f.metrics[kinds[0]]["base_rate"] for f in folds], "k_", markersize=20,
            label="base rate")
    ax.set_xticks(x + 0.4 - width / 2, [f"fold {f.index}" for f in folds])
    ax.set_ylabel("test PR-AUC")
    ax.set_title("PR-AUC per walk-forward test fold (time order)")
    ax.legend(fontsize=7, ncol=3)
    path = out_dir / "per_fold.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    kind = evaluation.chosen_kind or kinds[0]
    scorer = evaluation.predictor(kind).scorer
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
