"""Training rows from the feature Delta table, at a recorded version (time travel), for
`cryptovol train --from-lake / --as-of-version N`: the same path the Dagster `labels` ->
`training_dataset` assets take (`training_set_from_features`)."""

from __future__ import annotations

from typing import Any


def lake_training_set(settings: Any, products: list[str], label: Any, min_segment_s: float, *,
                      as_of_version: int | None = None) -> tuple[Any, int]:
    """(`TrainingSet`, feature table version read). Raises FileNotFoundError without a table and
    ValueError for a version the table does not have (or whose files were vacuumed)."""
    from cryptovol import lake
    from cryptovol.models.dataset import training_set_from_features

    if lake.feature_table_version(settings) is None:
        raise FileNotFoundError(f"no feature table at {settings.features_dir}: run `cryptovol features "
                                "build` or `cryptovol featurize` first")
    try:
        read = lake.read_features_at(settings, products, as_of_version=as_of_version)
    except Exception as exc:  # noqa: BLE001 - delta-rs raises its own errors for a missing version
        raise ValueError(f"cannot read the feature table at version {as_of_version}: {exc}") from exc
    training_set = training_set_from_features(read.frame, label, min_segment_s=min_segment_s)
    training_set.info["feature_table_version"] = read.version
    training_set.info["source"] = f"feature lake {settings.features_dir} (Delta table version {read.version})"
    return training_set, int(read.version)
