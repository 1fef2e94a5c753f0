"""The framework-free serving core, in process, on a real MLflow SQLite registry (no servers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from registry_helpers import WEIGHTS_V1, WEIGHTS_V2, delete_alias, register_stub, set_alias, tracking_uri

from cryptovol.featureset import FEATURE_NAMES, FeatureSchemaError
from cryptovol.scoring.sink import PREDICTION_COLUMNS, write_prediction_parts
from cryptovol.serving.champion import ChampionLoader, ModelValidationError, load_registered, probe_batch
from cryptovol.serving.metrics import RollingRate

MODEL = "cryptovol-spike"


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory):
    """One SQLite registry for the module (creating the MLflow schema takes seconds); each test
    uses its own model name in it."""
    path = tmp_path_factory.mktemp("registry") / "data"
    path.mkdir()
    return path


def test_loader_follows_the_alias_and_never_swaps_in_a_bad_model(registry_dir):
    data_dir, MODEL = registry_dir, "loader-test"  # noqa: N806
    loads: list[str] = []
    failures: list[tuple[str, type]] = []
    swaps: list[tuple] = []

    def counting_loader(*args):
        loads.append(args[1])
        return load_registered(*args)

    loader = ChampionLoader(
        MODEL, tracking_uri=tracking_uri(data_dir), loader=counting_loader,
        on_failure=lambda version, exc: failures.append((version, type(exc))),
        on_swap=lambda old, new: swaps.append((old and old.version, new and new.version)),
    )
    loader.start(strict=True)  # no registered model yet: not an error, just nothing to serve
    try:
        assert loader.current is None

        v1 = register_stub(data_dir, MODEL, weights=WEIGHTS_V1)
        assert loader.refresh() and loader.current.version == v1
        assert not loader.refresh()  # alias unchanged: no reload
        assert loads == [v1]

        broken = register_stub(data_dir, MODEL, weights=WEIGHTS_V1, broken=True)
        wrong_set = register_stub(data_dir, MODEL, weights=WEIGHTS_V1, feature_set_version="2.0.0",
                                  alias=None)
        assert not loader.refresh()
        assert loader.current.version == v1 and failures == [(broken, ModelValidationError)]
        assert not loader.refresh() and loads.count(broken) == 1  # a rejected version is not re-tried

        set_alias(data_dir, MODEL, "champion", wrong_set)
        assert not loader.refresh() and loader.current.version == v1
        assert failures[-1] == (wrong_set, FeatureSchemaError)

        v4 = register_stub(data_dir, MODEL, weights=WEIGHTS_V2)
        assert loader.refresh() and loader.current.version == v4
        assert swaps == [(None, v1), (v1, v4)]
        assert (loader.reloads, loader.rejections) == (2, 2)

        delete_alias(data_dir, MODEL, "champion")  # the champion keeps its last good model
        assert not loader.refresh() and loader.current.version == v4
    finally:
        loader.stop()


def test_optional_challenger_appears_and_disappears_with_its_alias(registry_dir):
    data_dir, MODEL = registry_dir, "challenger-test"  # noqa: N806
    register_stub(data_dir, MODEL, weights=WEIGHTS_V1)
    challenger = ChampionLoader(MODEL, tracking_uri=tracking_uri(data_dir), alias="challenger",
                                optional=True)
    assert not challenger.refresh() and challenger.current is None
    v2 = register_stub(data_dir, MODEL, weights=WEIGHTS_V2, alias="challenger")
    assert challenger.refresh() and challenger.current.version == v2
    assert challenger.current.alias == "challenger"
    delete_alias(data_dir, MODEL, "challenger")
    assert challenger.refresh() and challenger.current is None


def test_probe_batch_is_fixed_and_contains_a_warm_up_row():
    a, b = probe_batch(), probe_batch()
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == FEATURE_NAMES
    assert a.iloc[:-1].notna().all().all() and a.iloc[-1].isna().any()
    assert (a["book_imbalance"].abs() <= 1).all() and (a["spread"] > 0).all()


def test_rolling_rate_counts_only_the_window():
    rate = RollingRate(window=4)
    assert rate.extend([True, True, False, False]) == 0.5
    assert rate.extend([False, False]) == 0.0  # both Trues slid out
    assert rate.extend([True]) == 0.25


def test_predictions_are_one_delta_transaction_each_key_once_for_duckdb_and_the_lake(settings):
    import duckdb

    from cryptovol.lake import connect

    day = 86_400 * 10**9
    t0 = 1_765_000_000 * 10**9
    frame = pd.DataFrame({
        "product_id": ["BTC-USD", "BTC-USD", "ETH-USD", "BTC-USD"],
        "event_time_ns": [t0, t0 + 1, t0 + 2, t0 + day],
        "sequence": [1, 2, 3, 4],
        "spike_probability": [0.1, 0.9, 0.5, 0.2],
        "spike_flag": [False, True, True, False],
        "model_name": MODEL,
        "model_version": "3",
        "model_alias": "champion",
        "feature_set_version": "1.0.0",
        "scored_at_ns": t0 + 5,
        "scoring_latency_s": 0.001,
    }, columns=list(PREDICTION_COLUMNS))
    commits = write_prediction_parts(frame, settings.predictions_dir)
    assert [c.rows for c in commits] == [4]  # one transaction
    again = write_prediction_parts(frame.assign(spike_probability=0.0), settings.predictions_dir)
    assert again == []  # re-scored rows (a scorer restart) are not written twice
    parts = sorted(p.relative_to(settings.predictions_dir).parent.as_posix()
                   for p in settings.predictions_dir.glob("product_id=*/date=*/*.parquet"))
    assert parts == ["product_id=BTC-USD/date=2025-12-06", "product_id=BTC-USD/date=2025-12-07",
                     "product_id=ETH-USD/date=2025-12-06"]
    from deltalake import DeltaTable

    other = duckdb.connect()  # a second engine: DuckDB on the Delta table's Arrow dataset alone
    other.register("dataset", DeltaTable(str(settings.predictions_dir)).to_pyarrow_dataset())
    rows = other.sql(
        "SELECT product_id, date, count(*) AS n, sum(spike_flag::int) AS spikes FROM dataset "
        "GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    other.close()
    assert [(r[0], str(r[1]), r[2], r[3]) for r in rows] == [
        ("BTC-USD", "2025-12-06", 2, 1), ("BTC-USD", "2025-12-07", 1, 0), ("ETH-USD", "2025-12-06", 1, 1)]
    con = connect(settings)
    assert con.execute("SELECT count(*) FROM predictions").fetchall() == [(4,)]
    got = con.execute("SELECT spike_probability FROM predictions ORDER BY event_time_ns").fetchall()
    np.testing.assert_allclose([g[0] for g in got], [0.1, 0.9, 0.5, 0.2])
