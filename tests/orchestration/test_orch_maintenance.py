"""The `compact_lake` job: a real in-process Dagster run merges the old feature and prediction
parts and reports what it did; the lake reads the same rows afterwards."""

from __future__ import annotations

import shutil

import pandas as pd

from cryptovol import lake
from cryptovol.stream.sink import stream_files
from orchestration.maintenance import compact_lake
from orchestration.resources import LakeResource

OP = "compact_lake_parts"


def _run(data_dir, older_than_s: float, **kwargs):
    return compact_lake.execute_in_process(
        resources={"lake": LakeResource(data_dir=str(data_dir))},
        run_config={"ops": {OP: {"config": {"older_than_s": older_than_s}}}},
        **kwargs,
    )


def test_compaction_job_merges_parts_and_reports_counts(data_dir, stream_parts_dir):
    shutil.copytree(stream_parts_dir, data_dir / "features")
    files_before = len(stream_files(data_dir / "features"))
    rows_before = lake.read_features(data_dir)

    result = _run(data_dir, 3600)

    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert metadata["features_files_after"] == 4 and metadata["features_files_before"] > 100
    assert metadata["features_mb_saved"] > 0
    assert metadata["predictions_files_before"] == 0  # no scorer output in this lake
    assert len(stream_files(data_dir / "features")) == files_before - metadata["features_files_before"] + 4
    pd.testing.assert_frame_equal(lake.read_features(data_dir), rows_before)


def test_compaction_job_refuses_a_window_inside_the_featurizers_rewarm_window(data_dir, stream_parts_dir):
    shutil.copytree(stream_parts_dir, data_dir / "features")
    files_before = stream_files(data_dir / "features")
    result = _run(data_dir, 60, raise_on_error=False)
    assert not result.success
    assert "re-warm window" in str(result.failure_data_for_node(OP).error)
    assert stream_files(data_dir / "features") == files_before
