"""Real data through the lineage graph: land the recorded Dec-2025 BTC-USD series as landing files,
then materialize the Dagster graph on it (`raw_ticks` + `features` per day x product partition,
then the `retrain` job) so the champion is chosen by the promotion gate inside Dagster.

    CRYPTOVOL_DATA_DIR=data-real python -m orchestration.real_data ../shared/data

Runs in process against the Dagster instance of the data dir (`<data>/dagster`, the one
`dagster dev` shows), so the UI shows every materialization with its MLflow links afterwards.
`cryptovol train --real-data ../shared/data` trains on the same recording files
(`cryptovol.models.dataset.real_series_paths`) through the same lifecycle.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import dagster as dg

log = logging.getLogger(__name__)

#: The whole labelled window (the recording spans a week), everything else at its defaults.
RETRAIN_CONFIG: dict[str, Any] = {"ops": {"labels": {"config": {"lookback_days": 0}}}}


def materialize_real_data(
    shared: Path, *, instance: dg.DagsterInstance, run_config: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """Land the real series under the data dir, featurize every partition, run `retrain`."""
    from assets.checks import SUITE_CHECKS
    from assets.features import features
    from assets.ingest import raw_ticks
    from assets.partitions import partition_key
    from cryptovol import lake
    from cryptovol.config import Settings
    from cryptovol.models.dataset import land_real_series
    from orchestration.definitions import ALL_ASSETS
    from orchestration.jobs import retrain_job
    from orchestration.resources import default_resources

    settings = Settings.from_env()
    stats = land_real_series(shared, settings.data_dir)
    log.info("landed %d ticks (%d already there) under %s", stats.landed, stats.already_landed,
             settings.raw_dir)
    for product, day in lake.list_landing_partitions(settings.data_dir):
        result = dg.materialize([raw_ticks, features, *SUITE_CHECKS],
                                partition_key=partition_key(day, product),
                                resources=default_resources(), instance=instance)
        if not result.success:
            raise RuntimeError(f"featurizing {day} {product} failed (run {result.run_id})")
        log.info("featurized %s %s", day, product)
    # Resources built now, from the environment of this call (the code location's `defs` holds the
    # ones of its import time).
    definitions = dg.Definitions(assets=ALL_ASSETS, jobs=[retrain_job], resources=default_resources())
    job = definitions.resolve_job_def("retrain")
    return job.execute_in_process(instance=instance, run_config=run_config or RETRAIN_CONFIG,
                                  tags={"cryptovol/trigger": "real-data"})


def main(argv: list[str] | None = None) -> int:
    from orchestration.dev import prepare_dagster_home

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared", type=Path, help="the shared data dir (or the series folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import os

    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home())
    with dg.DagsterInstance.get() as instance:
        result = materialize_real_data(args.shared, instance=instance)
    [champion] = result.asset_materializations_for_node("champion_model")
    meta = {k: v.value for k, v in champion.metadata.items()}
    print(f"champion v{meta['champion_version']} ({meta['champion_kind']}); candidate "
          f"{meta['candidate_kind']} {'promoted' if meta['promoted'] else 'not promoted'}: {meta['reason']}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
