"""Models for volatility-spike prediction: baselines, classifiers, purged walk-forward validation,
the promotion gate, MLflow tracking and the champion/challenger registry.

Entry point: `cryptovol.models.lifecycle.run_lifecycle` (what `cryptovol train` and the Dagster
training assets run, step by step in Dagster). Submodules are imported on demand, so importing
this package stays cheap; MLflow and XGBoost load only where they are used.
"""
