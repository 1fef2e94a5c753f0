"""Models for volatility-spike prediction: baselines, classifiers, purged walk-forward validation,
MLflow tracking and the champion/challenger registry.

Submodules are imported on demand (`from cryptovol.models.pyfunc import load_spike_model`), so
importing this package stays cheap; MLflow and XGBoost load only where they are used.
"""
