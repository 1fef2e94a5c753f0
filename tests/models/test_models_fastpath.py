"""The serving fast path (`pyfunc.predict_matrix`, `ServedModel.predict_matrix`) must give the same
answers as the general `SpikePredictor.predict` path on random rows, NaN rows and warm-up rows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from models_synth import spike_labels, synthetic_matrix

from cryptovol.featureset import FEATURE_NAMES
from cryptovol.models.baselines import HarScorer
from cryptovol.models.calibration import Calibrator
from cryptovol.models.fitting import fit_predictor
from cryptovol.models.pyfunc import SpikeModel, predict_matrix
from cryptovol.serving.champion import ServedModel, probe_batch


def _fit(kind: str):
    frame = synthetic_matrix(1200, seed=7)
    y = spike_labels(frame)
    predictor, _ = fit_predictor(kind, frame.iloc[:800], y[:800], frame.iloc[860:], y[860:],
                                 fwd_rv_fit=frame["fwd_rv"].to_numpy()[:800],
                                 params={"n_estimators": 40, "n_jobs": 1, "grid": None} if kind == "xgboost"
                                 else None)
    return frame, predictor


def _rows(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """Real feature rows, the probe batch, randomly perturbed rows, NaN holes and all-NaN rows."""
    rng = np.random.default_rng(seed)
    real = frame[FEATURE_NAMES].to_numpy(dtype=np.float64)[rng.choice(len(frame), 150)]
    noisy = real * rng.lognormal(0.0, 0.5, real.shape)
    X = np.vstack([real, noisy, probe_batch(rows=32)[FEATURE_NAMES].to_numpy(dtype=np.float64),
                   np.full((3, len(FEATURE_NAMES)), np.nan)])
    holes = rng.random(X.shape) < 0.15
    holes[:50] = False  # keep some complete rows
    X[holes] = np.nan
    return X


def _general(predictor, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = predictor.predict(pd.DataFrame(X, columns=FEATURE_NAMES))
    return out["spike_probability"].to_numpy(np.float64), out["spike_flag"].to_numpy(bool)


@pytest.mark.parametrize("kind", ["xgboost", "logistic", "persistence", "ewma", "har"])
@pytest.mark.parametrize("method", ["fitted", "isotonic", "platt"])
def test_fast_path_matches_general_path(kind, method):
    frame, predictor = _fit(kind)
    if method != "fitted":  # exercise both calibrators whichever one validation picked
        score = predictor.scorer.score(frame.iloc[860:])
        calibrator = Calibrator(method).fit(score, spike_labels(frame)[860:])
        predictor = dataclasses.replace(predictor, calibrator=calibrator)
    X = _rows(frame, seed=11)
    fast = predict_matrix(predictor, X)
    assert fast is not None, f"{kind} should be covered by the fast path"
    prob, flag = _general(predictor, X)
    assert fast[0].dtype == np.float64 and fast[1].dtype == bool
    np.testing.assert_allclose(fast[0], prob, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(fast[1], flag)
    # single rows (the online case) answer exactly like the batch
    for i in (0, 160, len(X) - 1):
        one = predict_matrix(predictor, X[i : i + 1])
        np.testing.assert_allclose(one[0], prob[i : i + 1], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(one[1], flag[i : i + 1])


class _CustomHar(HarScorer):
    """A scorer type the fast path does not know (e.g. a subclass someone adds later)."""


@pytest.mark.parametrize("kind", ["xgboost", "har", "custom"])
def test_served_model_matrix_and_frame_paths_agree_with_the_predictor(kind):
    """`ServedModel` (as the service holds it: a stored SpikeModel) on the fast path for covered
    kinds and on the general path for the others, frames in any column order."""
    frame, predictor = _fit("har" if kind == "custom" else kind)
    if kind == "custom":
        scorer = _CustomHar(**{f.name: getattr(predictor.scorer, f.name)
                               for f in dataclasses.fields(predictor.scorer)})
        predictor = dataclasses.replace(predictor, scorer=scorer)
    python_model = SpikeModel()
    python_model.predictor = predictor
    served = ServedModel(name="m", version="1", alias="champion", run_id="r",
                         metadata={"decision_threshold": predictor.decision_threshold},
                         predictor=None, python_model=python_model)
    X = _rows(frame, seed=3)
    prob, flag = _general(predictor, X)
    got = served.predict_matrix(X)
    np.testing.assert_allclose(got[0], prob, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got[1], flag)
    shuffled = pd.DataFrame(X, columns=FEATURE_NAMES, index=np.arange(len(X)) + 100)
    shuffled = shuffled[list(reversed(FEATURE_NAMES))].assign(product_id="BTC-USD")
    out = served.predict(shuffled)
    assert list(out.index) == list(shuffled.index)
    np.testing.assert_allclose(out["spike_probability"].to_numpy(), prob, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out["spike_flag"].to_numpy(), flag)
    covered = predict_matrix(predictor, X)
    assert (covered is None) == (kind == "custom")  # a baseline champion serves on the fast path too
