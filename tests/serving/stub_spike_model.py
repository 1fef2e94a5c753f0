"""A tiny pyfunc honoring the serving contract (`cryptovol.models.pyfunc`), logged as MLflow
"models from code" so any process can load it without pickles: a logistic score of a few features.

`model_config`: {"weights": {feature: w}, "bias": b, "threshold": t, "broken": bool}.
A `broken` model answers probabilities outside [0, 1], which validation must reject.
"""

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from cryptovol.featureset import FEATURE_NAMES


class StubSpikeModel(PythonModel):
    def load_context(self, context):
        config = context.model_config or {}
        self.weights = {k: float(v) for k, v in config.get("weights", {}).items()}
        self.bias = float(config.get("bias", 0.0))
        self.threshold = float(config.get("threshold", 0.5))
        self.broken = bool(config.get("broken", False))

    def predict(self, context, model_input, params=None):
        frame = model_input.loc[:, FEATURE_NAMES]
        z = np.full(len(frame), self.bias)
        for name, weight in self.weights.items():
            z = z + weight * np.nan_to_num(frame[name].to_numpy(dtype=np.float64))
        prob = 1.0 / (1.0 + np.exp(-z))
        if self.broken:
            prob = prob + 2.0
        return pd.DataFrame({"spike_probability": prob, "spike_flag": prob >= self.threshold})


mlflow.models.set_model(StubSpikeModel())
