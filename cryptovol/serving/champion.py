"""`ChampionLoader`: the one piece of code that decides which model answers.

Both the BentoML service and the streaming scorer hold a loader. It resolves `models:/<name>@<alias>`
to a concrete version, loads that exact version (so an alias moving mid-load cannot mix versions),
validates it (feature-set version, a prediction on a fixed probe batch) and only then swaps it in
with a single reference assignment. Readers take `loader.current` once per request and use that
object to the end, so a swap never changes the model under an in-flight request.

A model that fails validation is never swapped in: the old one keeps serving and an alert is raised.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.config import Settings
from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET, FeatureSchemaError, FeatureSet

log = logging.getLogger(__name__)

#: Default seconds between two looks at the alias (env CRYPTOVOL_MODEL_POLL_S).
DEFAULT_POLL_S = 10.0
#: A version that failed validation is retried only after this long (it is usually deterministic).
RETRY_FAILED_S = 300.0
#: Output columns of the serving contract (`cryptovol.models.pyfunc`).
OUTPUT_COLUMNS = ("spike_probability", "spike_flag")

#: Alert kind raised when a new model is rejected.
MODEL_REJECTED = "model_rejected"


class ModelValidationError(RuntimeError):
    """A registered model that must not serve: wrong feature set, broken predict, bad output."""


class ChampionUnavailable(RuntimeError):
    """No model is loaded (the alias does not exist yet, or nothing valid has been found)."""


@dataclass(frozen=True)
class ServedModel:
    """One loaded, validated model version and the registry facts a caller reports with it."""

    name: str
    version: str
    alias: str
    run_id: str
    metadata: Mapping[str, Any]
    predictor: Any = field(repr=False)
    loaded_at: float = field(default_factory=time.time)
    #: The stored `PythonModel` itself, when there is one: calling it directly skips MLflow's
    #: per-call wrapper (schema enforcement, tracing hooks), ~2 ms of a ~3 ms single-row call.
    #: Safe because every caller hands it float64 FEATURE_NAMES columns, validated beforehand.
    python_model: Any = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def feature_set_version(self) -> str:
        return str(self.metadata.get("feature_set_version", ""))

    @property
    def decision_threshold(self) -> float | None:
        value = self.metadata.get("decision_threshold")
        return None if value is None else float(value)

    def describe(self) -> dict[str, Any]:
        """What `/version` and the scorer's start-up log report."""
        return {
            "model_name": self.name,
            "model_version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "uri": self.uri,
            "feature_set_version": self.feature_set_version,
            "decision_threshold": self.decision_threshold,
            "model_kind": self.metadata.get("model_kind"),
            "trained_window": self.metadata.get("trained_window"),
            "metrics": self.metadata.get("metrics"),
            "label_config": self.metadata.get("label_config"),
            "loaded_at": self.loaded_at,
        }

    def predict_matrix(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(spike_probability float64, spike_flag bool) for a float64 matrix of FEATURE_NAMES
        columns in order: the service's per-request path. Uses the pandas-free fast path of
        `cryptovol.models.pyfunc.predict_matrix` for the model kinds it covers (same numbers),
        the general `predict` otherwise."""
        fast = self._fast_predictor()
        if fast is not None:
            result = _predict_matrix(fast, X)
            if result is not None:
                return result
        out = self.predict(pd.DataFrame(X, columns=FEATURE_NAMES))
        return (out["spike_probability"].to_numpy(dtype=np.float64),
                out["spike_flag"].to_numpy(dtype=bool))

    def _fast_predictor(self) -> Any:
        """The `SpikePredictor` inside a stored `SpikeModel`, if that is what this model is."""
        from cryptovol.models.pyfunc import SpikeModel

        if type(self.python_model) is SpikeModel:
            return getattr(self.python_model, "predictor", None)
        return None

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Feature rows (FEATURE_NAMES columns, any order, extras ignored) -> probability + flag."""
        frame = features if list(features.columns) == FEATURE_NAMES else features.loc[:, FEATURE_NAMES]
        fast = self._fast_predictor()
        if fast is not None:
            result = _predict_matrix(fast, frame.to_numpy(dtype=np.float64))
            if result is not None:
                return pd.DataFrame({"spike_probability": result[0], "spike_flag": result[1]},
                                    index=features.index)
        if self.python_model is not None:
            if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0:
                frame = frame.reset_index(drop=True)
            out = self.python_model.predict(None, frame.astype(np.float64, copy=False))
        else:
            out = self.predictor.predict(frame)
        return pd.DataFrame(
            {
                "spike_probability": np.asarray(out["spike_probability"], dtype=np.float64),
                "spike_flag": np.asarray(out["spike_flag"], dtype=bool),
            },
            index=features.index,
        )


def _predict_matrix(predictor: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    from cryptovol.models.pyfunc import predict_matrix

    return predict_matrix(predictor, X)


# --- the probe batch --------------------------------------------------------------------------


def probe_batch(rows: int = 32, seed: int = 20261122) -> pd.DataFrame:
    """A fixed, plausible batch of feature rows every candidate model must score sanely.

    Deterministic (seeded), covers calm and wild markets, and ends with one warm-up row (NaN where
    the long windows are not warm yet), because the stream sends those and a model must not crash.
    """
    rng = np.random.default_rng(seed)
    mid = 60_000.0 * np.exp(rng.normal(0.0, 0.3, rows))
    spread = np.round(rng.uniform(0.01, 5.0, rows), 2)
    vol = np.exp(rng.uniform(np.log(2e-5), np.log(2e-3), rows))  # per-second scale, calm to wild
    seconds = rng.uniform(0, 86_400, rows)
    values: dict[str, np.ndarray] = {
        "mid": mid,
        "spread": spread,
        "spread_bps": spread / mid * 1e4,
        "ret_1s": rng.normal(0, 1, rows) * vol,
        "ret_5s": rng.normal(0, 1, rows) * vol * math.sqrt(5),
        "ret_30s": rng.normal(0, 1, rows) * vol * math.sqrt(30),
        "ret_60s": rng.normal(0, 1, rows) * vol * math.sqrt(60),
        "rv_30s": vol * math.sqrt(30),
        "rv_60s": vol * math.sqrt(60) * rng.uniform(0.8, 1.2, rows),
        "rv_300s": vol * math.sqrt(300) * rng.uniform(0.7, 1.3, rows),
        "ewma_vol": vol * rng.uniform(0.8, 1.2, rows),
        "vol_of_vol": vol * math.sqrt(30) * rng.uniform(0.05, 0.5, rows),
        "tick_rate_30s": rng.uniform(0.1, 30.0, rows),
        "tick_rate_60s": rng.uniform(0.1, 30.0, rows),
        "book_imbalance": rng.uniform(-1, 1, rows),
        "volume_24h_chg_60s": rng.normal(0, 1e-3, rows),
        "tod_sin": np.sin(2 * np.pi * seconds / 86_400),
        "tod_cos": np.cos(2 * np.pi * seconds / 86_400),
    }
    # A feature added to the set later still gets a (neutral) probe column.
    frame = pd.DataFrame({name: values.get(name, np.zeros(rows)) for name in FEATURE_NAMES})
    long_windows = [s.name for s in FEATURE_SET.features if s.window_s >= 30]
    frame.loc[rows - 1, long_windows] = np.nan
    return frame


def validate_model(
    model: ServedModel, feature_set: FeatureSet = FEATURE_SET, probe: pd.DataFrame | None = None
) -> None:
    """Raise `ModelValidationError` (or `FeatureSchemaError`) unless `model` may serve."""
    try:
        feature_set.check_version(model.feature_set_version)
    except FeatureSchemaError as exc:
        raise FeatureSchemaError(f"{model.uri} cannot serve: {exc}") from None
    probe = probe_batch() if probe is None else probe
    try:
        out = model.predict(probe)
    except Exception as exc:  # any failure of a foreign model's predict is a rejection
        raise ModelValidationError(
            f"{model.uri}: predict failed on the probe batch: {type(exc).__name__}: {exc}"
        ) from exc
    prob = out["spike_probability"].to_numpy()
    if len(out) != len(probe):
        raise ModelValidationError(f"{model.uri}: {len(out)} predictions for {len(probe)} probe rows")
    bad = ~np.isfinite(prob) | (prob < 0) | (prob > 1)
    if bad.any():
        raise ModelValidationError(
            f"{model.uri}: spike_probability outside [0, 1] or not finite on probe rows "
            f"{np.flatnonzero(bad).tolist()[:5]}"
        )


# --- loading ----------------------------------------------------------------------------------


def load_registered(name: str, version: str, alias: str, run_id: str) -> ServedModel:
    """Load exactly `models:/name/version` through the serving contract (`cryptovol.models.pyfunc`).

    The feature-set check is left to `validate_model`, which names the version in its message.
    """
    from cryptovol.models.pyfunc import load_spike_model  # imports MLflow (~2.5 s): load time only

    uri = f"models:/{name}/{version}"
    try:
        loaded = load_spike_model(uri, check_feature_set=False)
    except Exception as exc:
        raise ModelValidationError(f"{uri}: cannot load: {type(exc).__name__}: {exc}") from exc
    metadata = dict(loaded.metadata)
    if "feature_set_version" not in metadata:
        raise FeatureSchemaError(
            f"{uri}: model metadata has no feature_set_version; it was not logged through "
            f"cryptovol.models.pyfunc (the serving contract), so its features cannot be checked"
        )
    try:
        python_model = loaded.pyfunc.unwrap_python_model()
    except Exception:  # not a python_model flavor: go through the pyfunc wrapper
        python_model = None
    return ServedModel(
        name=name, version=str(version), alias=alias, run_id=run_id or str(loaded.run_id or ""),
        metadata=metadata, predictor=loaded, python_model=python_model,
    )


def poll_interval_from_env() -> float:
    """CRYPTOVOL_MODEL_POLL_S, validated with the rest of the environment."""
    from cryptovol.config import load_env

    return load_env().model_poll_s


#: The only aliases a service or scorer ever loads: loading a model runs its pickled code, so the
#: registry is a code-execution boundary and only what an operator promoted is trusted.
TRUSTED_ALIASES = ("champion", "challenger")


SwapCallback = Callable[[ServedModel | None, ServedModel | None], None]
FailureCallback = Callable[[str, BaseException], None]


class ChampionLoader:
    """Serve whatever `models:/<name>@<alias>` points at; notice when it moves; swap atomically.

    `current` is the model to use (None until one is loaded). `refresh()` looks once; `start()`
    does a first look and then keeps looking every `poll_s` seconds in a daemon thread.
    `optional=True` (the challenger) drops the model when the alias disappears; the champion
    keeps its last good model instead.
    """

    def __init__(
        self,
        model_name: str,
        *,
        tracking_uri: str,
        alias: str = "champion",
        poll_s: float = DEFAULT_POLL_S,
        optional: bool = False,
        feature_set: FeatureSet = FEATURE_SET,
        on_swap: SwapCallback | None = None,
        on_failure: FailureCallback | None = None,
        loader: Callable[[str, str, str, str], ServedModel] = load_registered,
    ) -> None:
        if alias not in TRUSTED_ALIASES:
            raise ValueError(f"alias {alias!r}: only {TRUSTED_ALIASES} are ever loaded (models are code)")
        self.model_name = model_name
        self.tracking_uri = tracking_uri
        self.alias = alias
        self.poll_s = float(poll_s)
        self.optional = optional
        self.feature_set = feature_set
        self.on_swap = on_swap
        self.on_failure = on_failure
        self._loader = loader
        self._current: ServedModel | None = None
        self._failed: dict[str, float] = {}  # version -> when it failed
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self.reloads = 0
        self.rejections = 0

    @classmethod
    def from_settings(
        cls, settings: Settings, *, alias: str = "champion", poll_s: float | None = None, **kwargs: Any
    ) -> ChampionLoader:
        return cls(
            settings.model_name,
            tracking_uri=settings.mlflow_tracking_uri,
            alias=alias,
            poll_s=poll_interval_from_env() if poll_s is None else poll_s,
            **kwargs,
        )

    # -- reading ---------------------------------------------------------------------------

    @property
    def current(self) -> ServedModel | None:
        return self._current

    def require(self) -> ServedModel:
        model = self._current
        if model is None:
            raise ChampionUnavailable(
                f"no model loaded for models:/{self.model_name}@{self.alias} yet "
                f"(does the alias exist? `cryptovol models list`)"
            )
        return model

    # -- registry --------------------------------------------------------------------------

    def _registry(self) -> Any:
        if self._client is None:
            import mlflow
            from mlflow import MlflowClient

            # pyfunc.load_model resolves models:/ URIs against the global registry URI.
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def resolve(self) -> tuple[str, str] | None:
        """(version, run_id) the alias points at now, or None when the alias/model does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self._registry().get_model_version_by_alias(self.model_name, self.alias)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
        return str(mv.version), str(mv.run_id or "")

    # -- swapping --------------------------------------------------------------------------

    def refresh(self, *, strict: bool = False) -> bool:
        """Look at the alias once; load, validate and swap if it moved. True when swapped.

        `strict=True` raises the validation error instead of alerting (used at start-up, where a
        champion built for another feature set must stop the process with a clear message).
        """
        with self._refresh_lock:
            target = self.resolve()
            old = self._current
            if target is None:
                if old is not None and self.optional:
                    log.info("alias %s@%s removed: dropping version %s", self.model_name, self.alias,
                             old.version)
                    self._current = None
                    self._notify_swap(old, None)
                    return True
                return False
            version, run_id = target
            if old is not None and old.version == version:
                return False
            failed_at = self._failed.get(version)
            if not strict and failed_at is not None and time.time() - failed_at < RETRY_FAILED_S:
                return False
            try:
                candidate = self._loader(self.model_name, version, self.alias, run_id)
                validate_model(candidate, self.feature_set)
            except Exception as exc:
                self._failed[version] = time.time()
                self.rejections += 1
                if strict:
                    raise
                log.error("rejected %s version %s for alias %s: %s", self.model_name, version,
                          self.alias, exc)
                if self.on_failure is not None:
                    self.on_failure(version, exc)
                return False
            self._failed.pop(version, None)
            self._current = candidate  # the atomic swap: one reference assignment
            self.reloads += 1
            log.info("serving %s version %s (alias %s, run %s)%s", self.model_name, version, self.alias,
                     run_id, f", replacing version {old.version}" if old else "")
            self._notify_swap(old, candidate)
            return True

    def _notify_swap(self, old: ServedModel | None, new: ServedModel | None) -> None:
        if self.on_swap is not None:
            try:
                self.on_swap(old, new)
            except Exception:  # a metrics/log hook must never undo a swap
                log.exception("on_swap hook failed")

    # -- background polling ----------------------------------------------------------------

    def start(self, *, strict: bool = True) -> ChampionLoader:
        """First look (raising on an invalid model when `strict`), then poll in the background."""
        self.refresh(strict=strict)
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._poll_loop, name=f"champion-poll-{self.alias}", daemon=True
            )
            self._thread.start()
        return self

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception:  # registry briefly unreachable etc.: keep serving, try again
                log.exception("checking models:/%s@%s failed", self.model_name, self.alias)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None


def alert_on_rejection(settings: Settings) -> FailureCallback:
    """A `FailureCallback` that raises a platform alert (`cryptovol.alerts`) for a rejected model."""

    def notify(version: str, exc: BaseException) -> None:
        try:
            from cryptovol.alerts import AlertNotifier

            AlertNotifier.from_env(settings).notify(
                MODEL_REJECTED,
                f"model {settings.model_name} version {version} failed validation and was not served",
                severity="error",
                model_name=settings.model_name,
                version=version,
                error=f"{type(exc).__name__}: {exc}",
            )
        except Exception:  # alerting must not break serving
            log.exception("could not raise the model-rejected alert")

    return notify
