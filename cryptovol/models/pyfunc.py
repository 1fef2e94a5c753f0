"""THE SERVING CONTRACT: how a spike model is stored in MLflow and loaded by every consumer.

The BentoML service, the streaming scorer and the promotion gate all load models through
`load_spike_model(uri)`; keep this module stable.

Stored model (MLflow pyfunc, python_model = `SpikeModel`)
-----------------------------------------------------------
- `predict(model_input)`: `model_input` is a DataFrame holding at least the `FEATURE_NAMES`
  columns of `cryptovol.featureset` (any order; extra columns such as the keys `product_id`,
  `event_time_ns`, `sequence` are ignored; NaN allowed — e.g. warm-up rows — and imputed
  deterministically by models that need it). Returns a DataFrame, one row per input row, same order:
    - `spike_probability` (float64): calibrated probability that forward 60 s realized vol will
      be a spike under the model's label definition;
    - `spike_flag` (bool): `spike_probability >= decision_threshold`.
- Input signature: every feature as `double`; output: `spike_probability` double, `spike_flag`
  boolean. An input example (a few real training rows) is stored with the model.
- Metadata (`MLmodel` -> `metadata`, also `LoadedSpikeModel.metadata`):
    - `feature_set_version` (str): the `FEATURE_SET.version` the model was trained on;
    - `decision_threshold` (float);
    - `label_config` (dict): horizon_s, kind, quantile, fitted `spike_threshold`, grid_s, ...;
    - `model_kind` (str): `logistic` | `xgboost` | ...;
    - `trained_window` (dict): `first_event_time`/`last_event_time` (ISO UTC) and `*_ns`;
    - `metrics` (dict): held-out metrics on the most recent window (pr_auc, brier, ...);
    - `cryptovol_model_format` (int): this contract's version (1).
- The fitted predictor is a pickled `cryptovol.models.classifiers.SpikePredictor` artifact, so
  loading needs `cryptovol` importable (the service and scorer import it anyway).

Loading
-------
`load_spike_model("models:/cryptovol-spike@champion")` (or `models:/name/3`, `runs:/<id>/model`)
-> `LoadedSpikeModel` with `.predict(df)` (validates columns, casts to float, then calls the
predictor in-process: same output as `.pyfunc.predict`, without MLflow's per-call schema
enforcement), `.metadata`, `.decision_threshold`,
`.feature_set_version`, `.model_kind` and registry info (`.model_name`, `.version`, `.alias`,
`.run_id`). It refuses a model whose feature-set version differs from this code's
(`FeatureSchemaError`) unless `check_feature_set=False`.
"""

from __future__ import annotations

import json
import pickle
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET

MODEL_FORMAT_VERSION = 1
OUTPUT_COLUMNS = ("spike_probability", "spike_flag")
PREDICTOR_ARTIFACT = "predictor"
#: Name of the model inside its MLflow run (`runs:/<run_id>/model`).
MODEL_ARTIFACT_NAME = "model"


class SpikeModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc wrapper around a pickled `SpikePredictor` (see the module docstring)."""

    def load_context(self, context: Any) -> None:
        with open(context.artifacts[PREDICTOR_ARTIFACT], "rb") as fh:
            self.predictor = pickle.load(fh)

    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.predictor.predict(frame).reset_index(drop=True)


def predict_matrix(predictor: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Serving fast path: `(spike_probability, spike_flag)` for a float64 matrix whose columns are
    FEATURE_NAMES in order, without pandas, or None when `predictor` is not a kind it covers.

    Why: on one row the general `SpikePredictor.predict` spends ~90% of its time building
    DataFrames and in sklearn/xgboost input checks. Same numbers as the general path (tested on
    random and NaN rows): the same model inputs, the same booster call xgboost's `predict_proba`
    makes (`inplace_predict`, best iteration, same `missing`), the isotonic calibrator's linear
    interpolation done by `np.interp` on its fitted thresholds (differences ~1e-16), and the
    baselines' closed-form scores on the same columns (a baseline can be the champion). Platt
    calibration falls back to the general calibrator.
    """
    from cryptovol.models.classifiers import (
        LogisticScorer,
        SpikePredictor,
        XGBoostScorer,
        model_input_arrays_from_matrix,
    )

    if type(predictor) is not SpikePredictor or X.ndim != 2 or X.shape[1] != len(FEATURE_NAMES):
        return None
    scorer = predictor.scorer
    if type(scorer) is XGBoostScorer:
        score = _xgboost_score(scorer, model_input_arrays_from_matrix(X))
    elif type(scorer) is LogisticScorer and scorer.pipeline is not None:
        X_in = scorer._impute(_stack(model_input_arrays_from_matrix(X), scorer.columns, len(X)))
        scaler, model = scorer.pipeline[0], scorer.pipeline[-1]
        score = ((X_in - scaler.mean_) / scaler.scale_) @ model.coef_[0] + model.intercept_[0]
    else:
        score = _baseline_score(scorer, X)
    if score is None:
        return None
    probability = _calibrate(predictor.calibrator, score).astype(np.float64, copy=False)
    return probability, probability >= predictor.decision_threshold


_EPS = 1e-10


def _baseline_score(scorer: Any, X: np.ndarray) -> np.ndarray | None:
    """`PersistenceScorer/EwmaScorer/HarScorer.score` on a FEATURE_NAMES matrix, numpy only."""
    from cryptovol.models.baselines import EwmaScorer, HarScorer, PersistenceScorer

    col = {name: X[:, i] for i, name in enumerate(FEATURE_NAMES)}
    with np.errstate(all="ignore"):
        if type(scorer) is PersistenceScorer:
            z = (np.log(col[scorer.column] + _EPS) - scorer.mean) / scorer.std
            return np.nan_to_num(z, nan=0.0)
        reference = np.log(col["rv_300s"] * np.sqrt(getattr(scorer, "horizon_s", 60.0) / 300.0) + _EPS)
        if type(scorer) is EwmaScorer:
            forecast = col["ewma_vol"] * np.sqrt(scorer.horizon_s)
            return np.nan_to_num(np.log(forecast + _EPS) - reference, nan=0.0)
        if type(scorer) is HarScorer and scorer.coef is not None:
            design = np.column_stack([np.log(np.abs(col["ret_1s"]) + _EPS), np.log(col["rv_30s"] + _EPS),
                                      np.log(col["rv_300s"] + _EPS)])
            if scorer.medians is not None:
                design = np.where(np.isfinite(design), design, scorer.medians)
            design = np.column_stack([np.ones(len(design)), design])
            forecast = np.exp(design @ scorer.coef) * np.sqrt(scorer.variance_scale)
            return np.nan_to_num(np.log(forecast) - reference, nan=0.0)
    return None


def _stack(cols: dict[str, np.ndarray], names: Any, n: int) -> np.ndarray:
    """`classifiers.input_matrix` from already computed model-input arrays."""
    names = list(names) if names else list(cols)
    return np.column_stack([cols[c] for c in names]) if names else np.empty((n, 0))


def _xgboost_score(scorer: Any, cols: dict[str, np.ndarray]) -> np.ndarray | None:
    """What `XGBClassifier.predict_proba(X)[:, 1]` returns for a binary:logistic model."""
    sk = scorer.booster
    if (getattr(sk, "objective", None) != "binary:logistic" or getattr(sk, "n_classes_", 2) != 2
            or getattr(sk, "booster", None) == "gblinear"):
        return None
    X_in = _stack(cols, scorer.inputs, len(next(iter(cols.values()))))
    try:
        iteration_range = (0, sk.best_iteration + 1)  # as XGBModel._get_iteration_range(None)
    except AttributeError:
        iteration_range = (0, 0)
    out = sk.get_booster().inplace_predict(
        X_in, iteration_range=iteration_range, predict_type="value", missing=sk.missing,
        validate_features=False,
    )
    return np.asarray(out) if np.ndim(out) == 1 else None


def _calibrate(calibrator: Any, score: np.ndarray) -> np.ndarray:
    """`Calibrator.transform` with the isotonic case vectorised without sklearn's input checks."""
    from sklearn.isotonic import IsotonicRegression

    model = getattr(calibrator, "_model", None)
    if type(model) is IsotonicRegression and model.out_of_bounds == "clip":
        finite = np.nan_to_num(np.asarray(score, dtype=float), nan=0.0, posinf=1e6, neginf=-1e6)
        x = np.clip(finite, model.X_min_, model.X_max_)
        return np.clip(np.interp(x, model.X_thresholds_, model.y_thresholds_), 0.0, 1.0)
    return calibrator.transform(score)


def model_signature() -> ModelSignature:
    inputs = Schema([ColSpec("double", name) for name in FEATURE_NAMES])
    outputs = Schema([ColSpec("double", "spike_probability"), ColSpec("boolean", "spike_flag")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("mlflow", "scikit-learn", "xgboost-cpu", "pandas", "numpy"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return reqs


def _jsonable(value: Any) -> Any:
    """Metadata must survive YAML: numpy scalars -> Python, NaN -> None."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)),
                      parse_constant=lambda _: None)


def log_spike_model(
    predictor: Any,
    *,
    metadata: dict[str, Any],
    input_example: pd.DataFrame,
    registered_model_name: str | None = None,
    name: str = MODEL_ARTIFACT_NAME,
) -> Any:
    """Log `predictor` as a `SpikeModel` pyfunc in the active run; optionally register a version.

    Returns MLflow's `ModelInfo` (`.model_uri`, `.registered_model_version`).
    """
    required = {"feature_set_version", "decision_threshold", "label_config", "model_kind",
                "trained_window", "metrics"}
    missing = required - set(metadata)
    if missing:
        raise ValueError(f"model metadata lacks {sorted(missing)}")
    meta = _jsonable({**metadata, "cryptovol_model_format": MODEL_FORMAT_VERSION})
    example = input_example.loc[:, FEATURE_NAMES].astype(float).head(5).reset_index(drop=True)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The input schema is the explicit signature; MLflow's type-hint inference does not apply.
        warnings.filterwarnings("ignore", message=".*type hints.*", category=UserWarning)
        path = Path(tmp) / "predictor.pkl"
        path.write_bytes(pickle.dumps(predictor))
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=SpikeModel(),
            artifacts={PREDICTOR_ARTIFACT: str(path)},
            signature=model_signature(),
            input_example=example,
            metadata=meta,
            pip_requirements=_pip_requirements(),
            registered_model_name=registered_model_name,
        )


@dataclass
class LoadedSpikeModel:
    """A loaded spike model plus what a consumer needs to know about it."""

    uri: str
    pyfunc: Any
    metadata: dict[str, Any]
    model_name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    version_tags: dict[str, str] = field(default_factory=dict)
    #: The unpickled `SpikePredictor` inside the pyfunc: `predict` calls it directly after its own
    #: column check and float cast, skipping MLflow's per-call schema enforcement (about 3x the
    #: cost of the model on one row). Same outputs as `pyfunc.predict`.
    predictor: Any = None

    @property
    def decision_threshold(self) -> float:
        return float(self.metadata["decision_threshold"])

    @property
    def feature_set_version(self) -> str:
        return str(self.metadata["feature_set_version"])

    @property
    def model_kind(self) -> str:
        return str(self.metadata.get("model_kind", "unknown"))

    @property
    def label_config(self) -> dict[str, Any]:
        return dict(self.metadata.get("label_config", {}))

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`spike_probability` and `spike_flag` for each row of `frame` (FEATURE_NAMES columns)."""
        FEATURE_SET.validate_columns(list(frame.columns))
        features = frame.loc[:, FEATURE_NAMES].astype(float).reset_index(drop=True)
        model = self.predictor if self.predictor is not None else self.pyfunc
        out = model.predict(features)
        out = pd.DataFrame(out).reset_index(drop=True)
        out["spike_probability"] = out["spike_probability"].astype(float)
        out["spike_flag"] = out["spike_flag"].astype(bool)
        out.index = frame.index
        return out

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary (for /version endpoints and logs)."""
        return {
            "uri": self.uri,
            "model_name": self.model_name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "model_kind": self.model_kind,
            "feature_set_version": self.feature_set_version,
            "decision_threshold": self.decision_threshold,
            "trained_window": self.metadata.get("trained_window"),
            "metrics": self.metadata.get("metrics"),
        }


_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def load_spike_model(
    uri: str, *, tracking_uri: str | None = None, check_feature_set: bool = True
) -> LoadedSpikeModel:
    """Load a spike model by URI (`models:/name@alias`, `models:/name/N`, `runs:/id/model`, path)."""
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)  # the registry lives in the tracking store
    info: dict[str, Any] = {}
    match = _REGISTRY_URI.match(uri)
    if match:
        client = mlflow.MlflowClient()
        name = match["name"]
        if match["alias"]:
            mv = client.get_model_version_by_alias(name, match["alias"])
        else:
            mv = client.get_model_version(name, match["version"])
        info = {"model_name": name, "version": str(mv.version), "alias": match["alias"],
                "run_id": mv.run_id, "version_tags": dict(mv.tags or {})}
        # Pin the exact version so an alias moving mid-load cannot mix two models.
        load_uri = f"models:/{name}/{mv.version}"
    else:
        load_uri = uri
    model = mlflow.pyfunc.load_model(load_uri)
    metadata = dict(model.metadata.metadata or {})
    if "decision_threshold" not in metadata:
        raise ValueError(f"{uri} is not a cryptovol spike model (no decision_threshold in metadata)")
    if check_feature_set:
        FEATURE_SET.check_version(str(metadata.get("feature_set_version")))
    if not info.get("run_id"):
        info["run_id"] = getattr(model.metadata, "run_id", None)
    try:
        predictor = getattr(model.unwrap_python_model(), "predictor", None)
    except Exception:  # noqa: BLE001 - not a SpikeModel pyfunc: fall back to pyfunc.predict
        predictor = None
    return LoadedSpikeModel(uri=uri, pyfunc=model, metadata=metadata, predictor=predictor, **info)


def warmup_frame(n: int = 2) -> pd.DataFrame:
    """All-NaN feature rows (what a featurizer emits during warm-up); handy for smoke checks."""
    return pd.DataFrame(np.full((n, len(FEATURE_NAMES)), np.nan), columns=FEATURE_NAMES)
