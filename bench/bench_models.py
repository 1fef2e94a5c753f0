"""Benchmarks of the model path: per-fold training time of every model kind, inference latency of
the in-process predictor vs the MLflow pyfunc the service loads, and our vectorised PR-AUC vs
scikit-learn's (the bootstrap calls it thousands of times).

Run: `.venv/bin/python -m bench.bench_models` (`--rows N` training rows, default 4000). Figures go
to the `## models` section of docs/BENCHMARKS.md. The machine is shared: the load average is
printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from cryptovol.featureset import FEATURE_SET
from cryptovol.labels import LabelConfig
from cryptovol.models import metrics as M
from cryptovol.models.dataset import build_training_set
from cryptovol.models.fitting import ALL_KINDS, fit_predictor
from cryptovol.models.walkforward import WalkForwardConfig, fold_labels, walk_forward_folds
from cryptovol.simulator import generate_ticks_frame


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load avg {one:.1f}/{five:.1f} on {os.cpu_count()} cores"


def _timeit(fn, repeats: int) -> np.ndarray:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=4000, help="approximate training rows (1 s grid)")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    print(_load())

    ticks = generate_ticks_frame(("BTC-USD",), duration_s=args.rows + 400, seed=1, rate_hz=3)
    ts = build_training_set(ticks, LabelConfig(), min_segment_s=0)
    frame = ts.frame
    fold = list(walk_forward_folds(frame["event_time_ns"].to_numpy(), WalkForwardConfig(n_folds=1)))[-1]
    labels = fold_labels(frame, fold, LabelConfig())
    print(f"rows {len(frame)}: fit {len(fold.fit)}, val {len(fold.val)}, test {len(fold.test)}")

    predictors = {}
    for kind in ALL_KINDS:
        start = time.perf_counter()
        predictors[kind], _ = fit_predictor(kind, frame.iloc[fold.fit], labels.y_fit, frame.iloc[fold.val],
                                            labels.y_val, fwd_rv_fit=frame["fwd_rv"].to_numpy()[fold.fit])
        print(f"fit+calibrate {kind:<12} {time.perf_counter() - start:7.3f} s")

    test = frame.iloc[fold.test]
    one = test.iloc[[0]]
    for kind in ("logistic", "xgboost"):
        p = predictors[kind]
        single = _timeit(lambda p=p: p.predict(one), args.repeats)
        batch = _timeit(lambda p=p: p.predict(test), 5)
        print(f"in-process {kind:<9} one row p50 {1e3 * np.median(single):.3f} ms p99 "
              f"{1e3 * np.quantile(single, 0.99):.3f} ms; batch {1e6 * batch.min() / len(test):.1f} us/row")

    import mlflow

    from cryptovol.models.pyfunc import load_spike_model, log_spike_model

    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        exp = mlflow.MlflowClient().create_experiment("bench", artifact_location=Path(tmp, "a").as_uri())
        mlflow.set_experiment(experiment_id=exp)
        p = predictors["xgboost"]
        meta = {"feature_set_version": FEATURE_SET.version, "decision_threshold": p.decision_threshold,
                "label_config": {}, "model_kind": "xgboost", "trained_window": {}, "metrics": {}}
        with mlflow.start_run():
            log_spike_model(p, metadata=meta, input_example=test, registered_model_name="bench")
        start = time.perf_counter()
        loaded = load_spike_model("models:/bench/1")
        print(f"pyfunc load (models:/bench/1)       {time.perf_counter() - start:7.3f} s")
        single_py = _timeit(lambda: loaded.pyfunc.predict(one), args.repeats)
        single_ld = _timeit(lambda: loaded.predict(one), args.repeats)
        single_in = _timeit(lambda: p.predict(one), args.repeats)
        print(f"MLflow pyfunc.predict xgboost one row p50 {1e3 * np.median(single_py):.3f} ms p99 "
              f"{1e3 * np.quantile(single_py, 0.99):.3f} ms")
        print(f"LoadedSpikeModel.predict      one row p50 {1e3 * np.median(single_ld):.3f} ms p99 "
              f"{1e3 * np.quantile(single_ld, 0.99):.3f} ms")
        print(f"in-process SpikePredictor     one row p50 {1e3 * np.median(single_in):.3f} ms; "
              f"pyfunc/in-process = {np.median(single_py) / np.median(single_in):.2f}x, "
              f"LoadedSpikeModel/in-process = {np.median(single_ld) / np.median(single_in):.2f}x")

    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    y = rng.random(5000) < 0.12
    s = rng.random(5000) + 0.3 * y
    ours = _timeit(lambda: M.pr_auc(y, s), 200)
    theirs = _timeit(lambda: average_precision_score(y, s), 200)
    assert abs(M.pr_auc(y, s) - average_precision_score(y, s)) < 1e-12
    print(f"PR-AUC on 5000 rows: ours {1e3 * np.median(ours):.3f} ms, "
          f"sklearn {1e3 * np.median(theirs):.3f} ms "
          f"({np.median(theirs) / np.median(ours):.1f}x); identical values")
    print(_load())


if __name__ == "__main__":
    main()
