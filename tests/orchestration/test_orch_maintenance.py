"""The `compact_lake` job: a real in-process Dagster run compacts, checkpoints and vacuums the
feature and prediction Delta tables and reports what it did; the lake reads the same rows afterwards."""

from __future__ import annotations

import shutil

import pandas as pd

from cryptovol import lake
from cryptovol.delta import open_table
from orchestration.maintenance import compact_lake
from orchestration.resources import LakeResource

OP = "maintain_lake_tables"


def _run(data_dir, retention_hours: float, **kwargs):
    return compact_lake.execute_in_process(
        resources={"lake": LakeResource(data_dir=str(data_dir))},
        run_config={"ops": {OP: {"config": {"retention_hours": retention_hours}}}},
        **kwargs,
    )


def test_maintenance_job_compacts_the_tables_and_reports_counts(data_dir, stream_parts_dir):
    shutil.copytree(stream_parts_dir, data_dir / "features")
    files_before = len(open_table(data_dir / "features").file_uris())
    rows_before = lake.read_features(data_dir)

    result = _run(data_dir, 0)

    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert metadata["features_files_before"] == files_before > 100
    assert metadata["features_files_after"] == 4 and metadata["features_files_vacuumed"] >= files_before
    assert metadata["features_table_version"] == open_table(data_dir / "features").version()
    assert metadata["predictions_files_before"] == 0  # no scorer output in this lake
    assert len(open_table(data_dir / "features").file_uris()) == 4
    pd.testing.assert_frame_equal(lake.read_features(data_dir), rows_before, check_like=False)


def test_maintenance_job_refuses_a_negative_retention(data_dir, stream_parts_dir):
    shutil.copytree(stream_parts_dir, data_dir / "features")
    files_before = open_table(data_dir / "features").file_uris()
    result = _run(data_dir, -1, raise_on_error=False)
    assert not result.success
    assert open_table(data_dir / "features").file_uris() == files_before
