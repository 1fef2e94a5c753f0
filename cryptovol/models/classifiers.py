"""Learned spike classifiers and the `SpikePredictor` every model (learned or baseline) becomes.

A `SpikePredictor` = a raw scorer + a calibrator + a decision threshold. It takes a DataFrame with
the shared feature columns (`FEATURE_NAMES`, any order, extra columns ignored, NaN allowed) and is
what the MLflow pyfunc (`cryptovol.models.pyfunc.SpikeModel`) wraps.

Model-side transforms (`model_inputs`): the shared features are price-level and scale dependent
(USD mid, raw realized vols). The learned models see scale-free views of the *same* features —
log vols and vol ratios — computed here, inside the model, so batch, stream and serving stay on one
feature implementation and the transform travels with the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET
from cryptovol.models.calibration import Calibrator

_EPS = 1e-10

#: Features a model must not see directly: USD levels (non-stationary across regimes) and time of
#: day (with hours of data it is a disguised timestamp, i.e. a regime lookup).
EXCLUDED_RAW = ("mid", "spread", "tod_sin", "tod_cos")


def _log(x: pd.Series) -> np.ndarray:
    return np.log(np.asarray(x, float) + _EPS)


def _ratio(a: pd.Series, b: pd.Series) -> np.ndarray:
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = a / b
    out[~np.isfinite(out)] = np.nan
    return out


def select_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The shared feature columns in contract order (robust to order and extra columns)."""
    FEATURE_SET.validate_columns(list(frame.columns))
    return frame.loc[:, FEATURE_NAMES].astype(float)


def model_input_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Scale-free model inputs derived deterministically (row by row) from the shared features.

    Plain numpy on one float matrix: serving scores one row at a time, where pandas column
    operations would cost more than the model itself.
    """
    FEATURE_SET.validate_columns(list(frame.columns))
    return model_input_arrays_from_matrix(frame[FEATURE_NAMES].to_numpy(dtype=np.float64))


def model_input_arrays_from_matrix(X: np.ndarray) -> dict[str, np.ndarray]:
    """`model_input_arrays` of a float64 matrix whose columns are FEATURE_NAMES, in order (the
    serving fast path in `cryptovol.models.pyfunc` starts from such a matrix, without pandas)."""
    f = {name: X[:, i] for i, name in enumerate(FEATURE_NAMES)}
    cols: dict[str, np.ndarray] = {}
    for name in FEATURE_NAMES:
        if name not in EXCLUDED_RAW and not name.startswith(("rv_", "ewma_vol", "vol_of_vol")):
            cols[name] = f[name]
    for name in ("rv_30s", "rv_60s", "rv_300s", "ewma_vol", "vol_of_vol"):
        cols[f"log_{name}"] = _log(f[name])
    cols["log_abs_ret_1s"] = _log(np.abs(f["ret_1s"]))
    cols["log_abs_ret_5s"] = _log(np.abs(f["ret_5s"]))
    cols["rv30_over_rv300"] = _ratio(f["rv_30s"] * np.sqrt(10), f["rv_300s"])
    cols["rv60_over_rv300"] = _ratio(f["rv_60s"] * np.sqrt(5), f["rv_300s"])
    cols["ewma_over_rv300"] = _ratio(f["ewma_vol"] * np.sqrt(300), f["rv_300s"])
    cols["vov_over_rv30"] = _ratio(f["vol_of_vol"], f["rv_30s"])
    cols["tick_rate_ratio"] = _ratio(f["tick_rate_30s"], f["tick_rate_60s"])
    per_second_vol = f["rv_30s"] / np.sqrt(30)
    cols["abs_ret_1s_over_vol"] = _ratio(np.abs(f["ret_1s"]), per_second_vol)
    cols["abs_ret_30s_over_rv30"] = _ratio(np.abs(f["ret_30s"]), f["rv_30s"])
    cols["abs_ret_60s_over_rv60"] = _ratio(np.abs(f["ret_60s"]), f["rv_60s"])
    cols["spread_over_vol"] = _ratio(f["spread_bps"] * 1e-4, per_second_vol)
    return cols


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """`model_input_arrays` as a DataFrame (for inspection, importance plots and tests)."""
    return pd.DataFrame(model_input_arrays(frame), index=frame.index)


def input_matrix(frame: pd.DataFrame, columns: tuple[str, ...] | list[str] | None) -> np.ndarray:
    """The model-input columns a scorer uses, as a float matrix (None: all of them)."""
    cols = model_input_arrays(frame)
    names = list(columns) if columns else list(cols)
    return np.column_stack([cols[c] for c in names]) if names else np.empty((len(frame), 0))


def input_names(columns: tuple[str, ...] | list[str] | None) -> list[str]:
    if columns:
        return list(columns)
    return list(model_input_arrays(pd.DataFrame(np.ones((1, len(FEATURE_NAMES))), columns=FEATURE_NAMES)))


#: The default learned-model inputs: eight simple, scale-free views of recent volatility, spread and
#: activity. On a few hours of data the full `model_inputs` set overfits (more columns than the
#: number of spike episodes can support); `columns=None` / `inputs=None` uses all of them.
COMPACT_INPUTS: tuple[str, ...] = (
    "log_rv_30s",
    "log_rv_60s",
    "log_rv_300s",
    "log_ewma_vol",
    "rv30_over_rv300",
    "spread_bps",
    "tick_rate_30s",
    "log_abs_ret_1s",
)


class Scorer:
    """Turns feature rows into a raw spike score (higher = more likely a spike)."""

    kind: str = "scorer"

    def score(self, frame: pd.DataFrame) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {}


@dataclass
class LogisticScorer(Scorer):
    """Median-imputed, standardised, class-weighted L2 logistic regression on `model_inputs`."""

    C: float = 1.0
    #: Subset of `model_inputs` columns (None: all of them).
    columns: tuple[str, ...] | None = COMPACT_INPUTS
    kind: str = "logistic"
    medians: np.ndarray | None = None
    pipeline: Any = None

    def fit(self, frame: pd.DataFrame, y: np.ndarray, **_: Any) -> LogisticScorer:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X = input_matrix(frame, self.columns)
        # Deterministic imputation from training medians: a warm-up row (NaN) never crashes.
        with np.errstate(all="ignore"):
            medians = np.nanmedian(np.where(np.isfinite(X), X, np.nan), axis=0) if len(X) else np.zeros(0)
        self.medians = np.where(np.isfinite(medians), medians, 0.0)
        self.pipeline = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000),
        )
        self.pipeline.fit(self._impute(X), np.asarray(y, int))
        return self

    def _impute(self, X: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(X), X, self.medians)

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        X = self._impute(input_matrix(frame, self.columns))
        # Linear decision function by hand: sklearn's input validation costs more than the model
        # on one row; identical to `self.pipeline.decision_function(X)`.
        scaler, model = self.pipeline[0], self.pipeline[-1]
        return ((X - scaler.mean_) / scaler.scale_) @ model.coef_[0] + model.intercept_[0]

    def params(self) -> dict[str, Any]:
        return {"C": self.C, "class_weight": "balanced", "imputation": "train median",
                "columns": ",".join(self.columns) if self.columns else "all"}

    def importance(self) -> pd.Series:
        coef = self.pipeline[-1].coef_[0]
        return pd.Series(np.abs(coef), index=input_names(self.columns)).sort_values(ascending=False)


@dataclass
class XGBoostScorer(Scorer):
    """Gradient-boosted trees (`hist`), early-stopped on the (first half of the) validation fold;
    NaN handled natively."""

    n_estimators: int = 400
    max_depth: int = 3
    learning_rate: float = 0.05
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 20.0
    early_stopping_rounds: int = 30
    n_jobs: int = 2
    seed: int = 0
    #: Subset of `model_inputs` columns (None: all of them).
    inputs: tuple[str, ...] | None = COMPACT_INPUTS
    kind: str = "xgboost"
    booster: Any = None
    best_iteration: int | None = None
    columns: list[str] = field(default_factory=list)

    def _inputs(self, frame: pd.DataFrame) -> np.ndarray:
        return input_matrix(frame, self.inputs)

    def fit(
        self,
        frame: pd.DataFrame,
        y: np.ndarray,
        *,
        val_frame: pd.DataFrame | None = None,
        y_val: np.ndarray | None = None,
        **_: Any,
    ) -> XGBoostScorer:
        import xgboost as xgb

        X = self._inputs(frame)
        self.columns = input_names(self.inputs)
        y = np.asarray(y, int)
        pos = max(1, int(y.sum()))
        model = xgb.XGBClassifier(
            tree_method="hist",
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            min_child_weight=self.min_child_weight,
            scale_pos_weight=(len(y) - pos) / pos,
            eval_metric="aucpr",
            early_stopping_rounds=self.early_stopping_rounds if val_frame is not None else None,
            n_jobs=self.n_jobs,
            random_state=self.seed,
        )
        eval_set = None
        if val_frame is not None and y_val is not None:
            # Early-stop on the first half of validation only: the second half stays untouched
            # for model selection (see `cryptovol.models.fitting.SELECTION_FRACTION`).
            stop = val_frame.iloc[: len(val_frame) // 2]
            y_stop = np.asarray(y_val, int)[: len(val_frame) // 2]
            if len(np.unique(y_stop)) == 2:
                eval_set = [(self._inputs(stop), y_stop)]
        if eval_set is None:
            model.set_params(early_stopping_rounds=None)
        model.fit(X, y, eval_set=eval_set, verbose=False)
        self.best_iteration = int(getattr(model, "best_iteration", self.n_estimators - 1) or 0)
        # One thread at inference: rows come one at a time in serving, and OpenMP threads spinning
        # on a busy machine cost far more than they save on small batches.
        model.set_params(n_jobs=1)
        self.booster = model
        return self

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return self.booster.predict_proba(self._inputs(frame))[:, 1]

    def params(self) -> dict[str, Any]:
        return {
            "n_estimators": self.n_estimators,
            "max_depth": self.max_depth,
            "learning_rate": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "early_stopping_rounds": self.early_stopping_rounds,
            "best_iteration": self.best_iteration,
            "tree_method": "hist",
            "columns": ",".join(self.inputs) if self.inputs else "all",
        }

    def importance(self) -> pd.Series:
        gain = self.booster.get_booster().get_score(importance_type="gain")
        values = {c: gain.get(f"f{i}", 0.0) for i, c in enumerate(self.columns)}
        return pd.Series(values).sort_values(ascending=False)


@dataclass
class SpikePredictor:
    """A fitted scorer + calibrator + decision threshold: the unit that is evaluated and served."""

    kind: str
    scorer: Scorer
    calibrator: Calibrator
    decision_threshold: float
    feature_set_version: str = FEATURE_SET.version

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.calibrator.transform(self.scorer.score(frame))

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The serving contract's output: calibrated probability and the alert flag."""
        probability = self.predict_proba(frame)
        return pd.DataFrame(
            {
                "spike_probability": probability.astype(float),
                "spike_flag": probability >= self.decision_threshold,
            },
            index=frame.index,
        )


@dataclass
class XGBoostVolRegressor:
    """The learned side of the regression view: log forward realized vol from `model_inputs`."""

    n_estimators: int = 300
    max_depth: int = 3
    learning_rate: float = 0.05
    min_child_weight: float = 20.0
    early_stopping_rounds: int = 30
    n_jobs: int = 2
    seed: int = 0
    model: Any = None
    #: Variance scale fitted on validation: a log-target model forecasts the geometric mean, QLIKE
    #: and MSE want the mean, so forecasts are rescaled until mean(realized / forecast variance) = 1.
    variance_scale: float = 1.0

    def fit(
        self, frame: pd.DataFrame, fwd_rv: np.ndarray, val_frame: pd.DataFrame, fwd_rv_val: np.ndarray,
        floor: float = 1e-6,
    ) -> XGBoostVolRegressor:
        import xgboost as xgb

        self.model = xgb.XGBRegressor(
            tree_method="hist", n_estimators=self.n_estimators, max_depth=self.max_depth,
            learning_rate=self.learning_rate, min_child_weight=self.min_child_weight,
            subsample=0.8, colsample_bytree=0.8, early_stopping_rounds=self.early_stopping_rounds,
            n_jobs=self.n_jobs, random_state=self.seed,
        )
        target = np.log(np.maximum(np.asarray(fwd_rv, float), floor))
        target_val = np.log(np.maximum(np.asarray(fwd_rv_val, float), floor))
        self.model.fit(input_matrix(frame, None), target,
                       eval_set=[(input_matrix(val_frame, None), target_val)], verbose=False)
        self.model.set_params(n_jobs=1)
        self.variance_scale = 1.0
        pred_val = self.forecast_vol(val_frame)
        self.variance_scale = float(np.mean(np.maximum(np.asarray(fwd_rv_val, float), floor) ** 2
                                            / pred_val**2))
        return self

    def forecast_vol(self, frame: pd.DataFrame) -> np.ndarray:
        return np.exp(self.model.predict(input_matrix(frame, None))) * np.sqrt(self.variance_scale)
