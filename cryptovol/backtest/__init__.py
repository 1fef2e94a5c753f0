"""Does the signal pay? A risk overlay on a long position driven by a spike signal, backtested.

Pure core (no Dagster, no MLflow unless asked): `engine` (next-tick execution, costs from the
recorded bid/ask), `policy` (exposure rules, chosen on validation rows only), `metrics`
(Sharpe, Sortino, drawdown, block bootstrap), `signals` (each driver's out-of-sample
probabilities from the models' walk-forward code), `run` (the comparison), `report` (Markdown +
charts). `cryptovol backtest` and the Dagster asset `backtest` call `run.run_backtest`.
"""
